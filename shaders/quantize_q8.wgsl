// x (f32 rows of K values) to 8-bit blocks for the integer-dot decode matmul, for the
// matmuls whose x no earlier kernel quantized (see shaders/q8_store.wgsl). One invocation
// per block.
//!COMMON
struct Dims { blocks: u32, t_from_logits: u32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
{{Q8_STORE}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    let blk = gid.y * nwg.x * 64u + gid.x;   // t * blocks + block of row t (grid_1d's 2-D grid)
    if (blk >= t_count * dims.blocks) { return; }
    var v: array<vec4<f32>, 8>;
    //!UNROLL j 8
    v[%j%] = x[blk * 8u + %j%u];
    //!END
    store_q8(blk, v);
}
