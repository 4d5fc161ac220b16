// Rotate-half RoPE on q (in place, inside the fused qkv rows) and k, then append the
// rotated k and the v of each token row to the paged KV cache of its sequence.
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
//!PAGED k_pool 5 6 read_write
//!PAGED v_pool 7 8 read_write

const BS: u32 = {{BS}}u;
const BLOCK_ELEMS: u32 = {{BLOCK_ELEMS}}u;
const BLOCKS_PER_BINDING: u32 = {{BPB}}u;

fn table_entry(i: u32) -> u32 {
    let a = dims.table_base + i;
    return step_meta[a / 4u][a % 4u];
}

// vec4 index within a block of key values e..e+4 (e a multiple of 4) of a KV head
fn key_index4(h: u32, e: u32, off: u32) -> u32 {
    return (((h * dims.head_dim + e) / 8u) * BS + off) * 2u + (e % 8u) / 4u;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
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
    let idx = gid.x;
    if (idx < n_rope) {
        let head = idx / half4;
        let i4 = idx % half4;
        let lo = base + head * d4 + i4;
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
