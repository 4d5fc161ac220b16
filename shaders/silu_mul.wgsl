// h[t, i] = act(gu[t, i]) * gu[t, inter + i], where gu is the fused gate|up output and act
// SiLU (SwiGLU) or, with GELU, tanh-GELU (gemma's GeGLU). The Q8 variant also stores h as
// 8-bit blocks (shaders/q8_store.wgsl) on steps of few enough rows for the integer-dot
// decode matmul that reads them: an invocation per 32 values then.
//!COMMON
struct Dims { inter4: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> gu: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> h: array<vec4<f32>>;
{{Q8_STORE}}
const Q8: bool = {{Q8}};
const GELU: bool = {{GELU}};
const Q8_MAX_ROWS: u32 = {{Q8_MAX_ROWS}}u;

fn silu_mul(t: u32, i: u32) -> vec4<f32> {
    let g = gu[t * 2u * dims.inter4 + i];
    let u = gu[t * 2u * dims.inter4 + dims.inter4 + i];
    let v = gate_activation4(g, GELU) * u;
    h[t * dims.inter4 + i] = v;
    return v;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
    if (Q8 && step.n_tokens <= Q8_MAX_ROWS) {
        let blocks = dims.inter4 / 8u;
        let b = gid.x;
        if (b >= blocks || t >= step.n_tokens) { return; }
        var v: array<vec4<f32>, 8>;
        //!UNROLL j 8
        v[%j%] = silu_mul(t, b * 8u + %j%u);
        //!END
        store_q8(t * blocks + b, v);
        return;
    }
    let i = gid.x;
    if (i >= dims.inter4 || t >= step.n_tokens) { return; }
    _ = silu_mul(t, i);
}
