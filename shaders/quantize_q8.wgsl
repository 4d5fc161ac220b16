// x (f32 rows of K values) to 8-bit blocks for the integer-dot decode matmul
// (shaders/subgroup/matvec_q8.wgsl): per 32 values, d = max |v| / 127 and q = round(v / d),
// as llama.cpp's q8_1. A block is three vec4<u32>: the 32 quants packed four per word,
// then (d, d * sum(q)) as f32 bits (the sum serves the weights' offsets: Q4_0's -8, Q4_1's
// min). One invocation per block.
//!COMMON
struct Dims { blocks: u32, t_from_logits: u32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> xq: array<vec4<u32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    let blk = gid.y * nwg.x * 64u + gid.x;   // t * blocks + block of row t (grid_1d's 2-D grid)
    if (blk >= t_count * dims.blocks) { return; }
    var v: array<vec4<f32>, 8>;
    var amax = vec4<f32>(0.0);
    //!UNROLL j 8
    v[%j%] = x[blk * 8u + %j%u];
    amax = max(amax, abs(v[%j%]));
    //!END
    let m = max(max(amax.x, amax.y), max(amax.z, amax.w));
    let d = m / 127.0;
    let inv = select(0.0, 1.0 / d, m > 0.0);
    var words: array<u32, 8>;
    var sum = vec4<i32>(0);
    //!UNROLL j 8
    let q%j% = vec4<i32>(round(v[%j%] * inv));
    sum += q%j%;
    words[%j%] = pack4xI8(q%j%);
    //!END
    let s = f32(sum.x + sum.y + sum.z + sum.w);
    xq[blk * 3u] = vec4<u32>(words[0], words[1], words[2], words[3]);
    xq[blk * 3u + 1u] = vec4<u32>(words[4], words[5], words[6], words[7]);
    xq[blk * 3u + 2u] = vec4<u32>(bitcast<u32>(d), bitcast<u32>(d * s), 0u, 0u);
}
