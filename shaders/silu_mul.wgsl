// h[t, i] = silu(gu[t, i]) * gu[t, inter + i], where gu is the fused gate|up output.
//!COMMON
struct Dims { inter4: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> gu: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> h: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let t = gid.y;
    if (i >= dims.inter4 || t >= step.n_tokens) { return; }
    let g = gu[t * 2u * dims.inter4 + i];
    let u = gu[t * 2u * dims.inter4 + dims.inter4 + i];
    h[t * dims.inter4 + i] = g / (1.0 + exp(-g)) * u;
}
