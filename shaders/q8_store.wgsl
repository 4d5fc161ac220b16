// x as 8-bit blocks for the integer-dot decode matmul (shaders/subgroup/matvec_q8.wgsl):
// per 32 values, d = max |v| / 127 and q = round(v / d), as llama.cpp's q8_1. A block is
// three vec4<u32>: the 32 quants packed four per word, then (d, d * sum(q)) as f32 bits
// (the sum serves the weights' offsets: Q4_0's -8, Q4_1's min). Inserted by the kernels
// that write blocks (src/ops/matmul.rs: Q8_STORE), with binding XQ_BINDING.
@group(0) @binding({{XQ_BINDING}}) var<storage, read_write> xq: array<vec4<u32>>;

fn store_q8(blk: u32, v: array<vec4<f32>, 8>) {
    var amax = vec4<f32>(0.0);
    //!UNROLL j 8
    amax = max(amax, abs(v[%j%]));
    //!END
    let m = max(max(amax.x, amax.y), max(amax.z, amax.w));
    let d = m / 127.0;
    let inv = select(0.0, 1.0 / d, m > 0.0);
    var words: array<u32, 8>;
    var sum = vec4<i32>(0);
    //!UNROLL j 8
    let q = vec4<i32>(round(v[%j%] * inv));
    sum += q;
    words[%j%] = pack4xI8(q);
    //!END
    let s = f32(sum.x + sum.y + sum.z + sum.w);
    xq[blk * 3u] = vec4<u32>(words[0], words[1], words[2], words[3]);
    xq[blk * 3u + 1u] = vec4<u32>(words[4], words[5], words[6], words[7]);
    xq[blk * 3u + 2u] = vec4<u32>(bitcast<u32>(d), bitcast<u32>(d * s), 0u, 0u);
}
