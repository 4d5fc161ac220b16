// RMSNorm of every query and key head in place, before RoPE (qwen3):
//   head = head * rsqrt(mean(head^2) + eps) * w,  w = q_norm for query heads, k_norm for keys.
// One invocation per (head, token row); a head is at most a few hundred values, read twice
// from cache. qkv row layout and step_meta as in shaders/rope_kv.wgsl.
//!COMMON
struct Dims { heads: u32, kv_heads: u32, head_dim4: u32, eps: f32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read_write> qkv: array<vec4<f32>>;
// [q_norm | k_norm], head_dim each
@group(0) @binding(3) var<storage, read> weight: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> step_meta: array<vec4<u32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h = gid.x;
    let t = gid.y;
    if (t >= step.n_tokens || h >= dims.heads + dims.kv_heads) { return; }
    let d4 = dims.head_dim4;
    let base = step_meta[t].z * (dims.heads + 2u * dims.kv_heads) * d4 + h * d4;
    var s = 0.0;
    for (var i = 0u; i < d4; i++) {
        let v = qkv[base + i];
        s += dot(v, v);
    }
    let scale = inverseSqrt(s / f32(4u * d4) + dims.eps);
    let w = select(0u, d4, h >= dims.heads);
    for (var i = 0u; i < d4; i++) {
        qkv[base + i] = qkv[base + i] * scale * weight[w + i];
    }
}
