// Rotate-half RoPE on q (in place, inside the fused qkv rows) and k, then append the
// rotated k and the v of each token row to the paged KV cache of its sequence. With
// QK_NORM (qwen3) each query and key head is first RMS-normalised and scaled by q_norm or
// k_norm: a workgroup holds whole heads (WG is a multiple of the head_dim / 8 invocations
// of a head), whose squares meet in workgroup memory.
// qkv row layout: [q heads | k heads | v heads], each head head_dim wide.
// Row t: step_meta[t] = (context length including this token, block-table offset, qkv row, _),
// so its position is step_meta[t].x - 1. KV layout: see decode_attention.wgsl.
//!COMMON
struct Dims { heads: u32, kv_heads: u32, head_dim: u32, table_base: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read_write> qkv: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> inv_freq: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> step_meta: array<vec4<u32>>;
// [q_norm | k_norm], head_dim each (read with QK_NORM only)
@group(0) @binding(9) var<storage, read> qk_norm: array<vec4<f32>>;
//!PAGED k_pool 5 6 read_write
//!PAGED v_pool 7 8 read_write

const BS: u32 = {{BS}}u;
const BLOCK_ELEMS: u32 = {{BLOCK_ELEMS}}u;
const BLOCKS_PER_BINDING: u32 = {{BPB}}u;
const QK_NORM: bool = {{QK_NORM}};
const EPS: f32 = {{EPS}};
const WG: u32 = {{WG}}u;
// multiplies every rotated query and key (LongRoPE's attention factor; 1 elsewhere)
const ROPE_SCALE: f32 = {{ROPE_SCALE}};

var<workgroup> squares: array<f32, WG>;

fn table_entry(i: u32) -> u32 {
    let a = dims.table_base + i;
    return step_meta[a / 4u][a % 4u];
}

// vec4 index within a block of key values e..e+4 (e a multiple of 4) of a KV head
fn key_index4(h: u32, e: u32, off: u32) -> u32 {
    return (((h * dims.head_dim + e) / 8u) * BS + off) * 2u + (e % 8u) / 4u;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // the token row from the workgroup id, so that WGSL's uniformity analysis sees the
    // return as the same for the whole workgroup (a barrier follows with QK_NORM)
    let t = wid.y;
    if (t >= step.n_tokens) { return; }
    let row = step_meta[t];
    let d4 = dims.head_dim / 4u;
    let half4 = dims.head_dim / 8u;
    let row4 = (dims.heads + 2u * dims.kv_heads) * d4;
    let pos = row.x - 1u;
    let blk = table_entry(row.y + pos / BS);
    let off = pos % BS;
    let base = row.z * row4;
    let n_rope = (dims.heads + dims.kv_heads) * half4;
    let idx = wid.x * WG + lid;
    let head = idx / half4;
    let i4 = idx % half4;
    let lo = base + head * d4 + i4;
    let hi = lo + half4;
    var x1 = vec4<f32>(0.0);
    var x2 = vec4<f32>(0.0);
    if (idx < n_rope) {
        x1 = qkv[lo];
        x2 = qkv[hi];
    }
    if (QK_NORM) {
        // the head's sum of squares: its half4 invocations are lid - lid % half4 onwards
        squares[lid] = dot(x1, x1) + dot(x2, x2);
        workgroupBarrier();
        let first = lid - lid % half4;
        var sum = 0.0;
        for (var i = 0u; i < half4; i++) { sum += squares[first + i]; }
        let scale = inverseSqrt(sum / f32(dims.head_dim) + EPS);
        let w = select(0u, d4, head >= dims.heads);
        x1 *= scale * qk_norm[w + i4];
        x2 *= scale * qk_norm[w + i4 + half4];
    }
    if (idx < n_rope) {
        let ang = f32(pos) * inv_freq[i4];
        let c = cos(ang) * ROPE_SCALE;
        let s = sin(ang) * ROPE_SCALE;
        let y1 = x1 * c - x2 * s;
        let y2 = x2 * c + x1 * s;
        if (head < dims.heads) {
            qkv[lo] = y1;
            qkv[hi] = y2;
        } else {
            let h = head - dims.heads;
            k_pool_store4(blk, key_index4(h, 4u * i4, off), y1);
            k_pool_store4(blk, key_index4(h, 4u * (i4 + half4), off), y2);
        }
        return;
    }
    let j = idx - n_rope;
    if (j < dims.kv_heads * d4) {
        let h = j / d4;
        let src = base + (dims.heads + dims.kv_heads) * d4 + j;
        v_pool_store4(blk, (h * BS + off) * d4 + j % d4, qkv[src]);
    }
}
