// Rotate-half RoPE on q (in place, inside the fused qkv rows) and k, then append the
// rotated k and the v of each token to this layer's KV cache at position pos0 + t.
// qkv row layout: [q heads | k heads | v heads], each head head_dim wide.
// KV cache layout: [position][kv_head][head_dim].
//!COMMON
struct Dims { heads: u32, kv_heads: u32, head_dim: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read_write> qkv: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> inv_freq: array<vec4<f32>>;
//!KV4 k_cache 4 read_write
//!KV4 v_cache 5 read_write

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
    if (t >= step.n_tokens) { return; }
    let d4 = dims.head_dim / 4u;
    let half4 = dims.head_dim / 8u;
    let row4 = (dims.heads + 2u * dims.kv_heads) * d4;
    let pos = step.pos0 + t;
    let n_rope = (dims.heads + dims.kv_heads) * half4;
    let idx = gid.x;
    if (idx < n_rope) {
        let head = idx / half4;
        let i4 = idx % half4;
        let lo = t * row4 + head * d4 + i4;
        let hi = lo + half4;
        let x1 = qkv[lo];
        let x2 = qkv[hi];
        let ang = f32(pos) * inv_freq[i4];
        let c = cos(ang);
        let s = sin(ang);
        let y1 = x1 * c - x2 * s;
        let y2 = x2 * c + x1 * s;
        if (head < dims.heads) {
            qkv[lo] = y1;
            qkv[hi] = y2;
        } else {
            let cache = (pos * dims.kv_heads + (head - dims.heads)) * d4 + i4;
            k_cache_store4(cache, y1);
            k_cache_store4(cache + half4, y2);
        }
        return;
    }
    let j = idx - n_rope;
    if (j < dims.kv_heads * d4) {
        let src = t * row4 + (dims.heads + dims.kv_heads) * d4 + j;
        v_cache_store4(pos * dims.kv_heads * d4 + j, qkv[src]);
    }
}
