// x's token rows as f16 for shaders/coop/gemm_f16.wgsl, zero rows after the last token up
// to a multiple of 128 (the GEMM's tiles of tokens read them and store nothing of theirs).
//!COMMON
struct CastDims {
    k4: u32,             // K / 4
    t_from_logits: u32,  // 1: T = step.n_out_rows, else step.n_tokens
    _pad: vec2<u32>,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: CastDims;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> xh: array<vec2<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    let i = gid.y * nwg.x * 256u + gid.x;
    let rows = (t_count + 127u) / 128u * 128u;
    if (i >= rows * dims.k4) { return; }
    var v = vec4<f32>(0.0);
    if (i / dims.k4 < t_count) { v = x[i]; }
    xh[i] = vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw));
}
