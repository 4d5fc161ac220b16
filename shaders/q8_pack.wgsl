// 32 values as one 8-bit block of x for the integer-dot decode matmul
// (shaders/subgroup/matvec_q8.wgsl): d = max |v| / 127 and q = round(v / d), as llama.cpp's
// q8_1. A block is three vec4<u32>: the 32 quants packed four per word, then
// (d, d * sum(q)) as f32 bits (the sum serves the weights' offsets: Q4_0's -8, Q4_1's min).
fn q8_pack(v: array<vec4<f32>, 8>) -> array<vec4<u32>, 3> {
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
    return array<vec4<u32>, 3>(
        vec4<u32>(words[0], words[1], words[2], words[3]),
        vec4<u32>(words[4], words[5], words[6], words[7]),
        vec4<u32>(bitcast<u32>(d), bitcast<u32>(d * s), 0u, 0u));
}
