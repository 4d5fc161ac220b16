// Decode attention over a paged KV cache with shared KV heads (MHA, GQA, MQA, and MLA in
// its absorbed form), split-K (flash-decoding) over the context.
//
// One workgroup per (split, head block, query). A head block is G query heads that share
// one KV head: every K and V value of the split is read from memory once for all G heads.
// The split covers positions [split * chunk, min(ctx, (split + 1) * chunk)) of its query's
// context, walked in tiles of P positions with an online softmax:
//   A. scores: each (head g, position j) pair dots K of position j, read 16 bytes at a
//      time (K is stored interleaved so neighbouring threads read neighbouring bytes),
//      with the query of head g; a thread's pairs share one position, so each K row
//      leaves memory once; G x P scores go to workgroup memory;
//   B. per head, the tile max (tree reduction), the rescale of the running sums, and
//      exp(s - max) with its sum;
//   C. values: thread (dim chunk dc, head group hg, position group pg) reads V, 16 bytes
//      at a time, and accumulates weights x V for the HG heads of its group in registers;
// then the position groups are summed and the workgroup writes either the normalised
// output (one split) or its partial (acc, max, sum) for decode_attention_merge.wgsl.
//
// Paged layout, per layer, block b of BS positions (the pool may span two bindings):
//   K: [b][kv_head][KD / 8][BS][8]   (interleaved by 8 values: coalesced score reads)
//   V: [b][kv_head][BS][VD]          (row-major: coalesced value reads)
// MLA (V_ALIASED): no V pool; the value of a position is the first VD values of its key
// (the latent), read from the K pool.
struct Params {
    table_base: u32,     // u32 offset of the block tables in `step_meta`
    chunk: u32,          // positions per split, a multiple of P
    n_splits: u32,       // 1: write normalised outputs directly
    q_stride4: u32,      // vec4s between query rows
    out_stride4: u32,    // vec4s between output rows
    ml_base4: u32,       // vec4 offset of the (max, sum) pairs in `partials`
    _pad: u32,
    scale: f32,
}
@group(0) @binding(0) var<uniform> prm: Params;
// step_meta: per query (context length, block-table offset, query row, output row), then at
// table_base the block tables
@group(0) @binding(1) var<storage, read> step_meta: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;
//!PAGED k_pool 3 4 read
//!PAGED v_pool 5 6 read
@group(0) @binding(7) var<storage, read_write> out: array<vec4<f32>>;
// per (query, head block, split, head): VD accumulators; then at ml_base4 (max, sum)
@group(0) @binding(8) var<storage, read_write> partials: array<vec4<f32>>;

const G: u32 = {{G}}u;                 // query heads per workgroup (one KV head)
const HBPK: u32 = {{HBPK}}u;           // head blocks per KV head (MLA with many heads)
const KVH: u32 = {{KVH}}u;             // KV heads in the pool
const KD: u32 = {{KD}}u;               // key dim (multiple of 8)
const VD: u32 = {{VD}}u;               // value dim (multiple of 8)
const BS: u32 = {{BS}}u;               // positions per block
const V_ALIASED: bool = {{V_ALIASED}};
const BLOCK_ELEMS: u32 = {{BLOCK_ELEMS}}u;
const BLOCKS_PER_BINDING: u32 = {{BPB}}u;
const WG: u32 = {{WG}}u;
const P: u32 = {{P}}u;                 // positions per score tile
const TPH: u32 = {{TPH}}u;             // threads per head in the reductions (power of 2)
const DC: u32 = VD / 8u;               // 8-value chunks of a value row
const NHG: u32 = {{NHG}}u;             // head groups in the value phase
const HG: u32 = (G + NHG - 1u) / NHG;  // heads per thread in the value phase
const PG: u32 = WG / (DC * NHG);       // position groups in the value phase
const Q_SMEM: bool = {{Q_SMEM}};       // queries staged in workgroup memory
const V_STAGE: bool = {{V_STAGE}};     // each tile's values staged in workgroup memory (f16)
const KD8: u32 = KD / 8u;
const KD4: u32 = KD / 4u;
const VD4: u32 = VD / 4u;

// [G][P] scores of a tile; at the end, [WG][8] accumulators of the position groups
var<workgroup> scores: array<f32, {{SCORES}}>;
var<workgroup> red: array<f32, WG>;
var<workgroup> head_max: array<f32, G>;   // running max of each head's scores
var<workgroup> head_sum: array<f32, G>;   // running sum of exp(score - head_max)
var<workgroup> alpha: array<f32, G>;      // rescale of the running sums for this tile
var<workgroup> wg_ctx: u32;
// the G queries of this head block (when Q_SMEM): every score reads them, and global
// loads of them would put a memory round trip in the score loop
var<workgroup> q_s: array<vec4<f32>, {{QS4}}>;
// the tile's values as packed f16 rows [P][DC] (when V_STAGE): loaded by all threads at
// once in phase A, so the value phase, with few position groups, does not wait on memory
// once per position
var<workgroup> v_s: array<vec4<u32>, {{VS}}>;

fn table_entry(i: u32) -> u32 {
    let a = prm.table_base + i;
    return step_meta[a / 4u][a % 4u];
}

fn q_load(q_base: u32, i: u32) -> vec4<f32> {
    if (Q_SMEM) { return q_s[i]; }
    return q[q_base + i];
}

fn key_index8(kvh: u32, c: u32, off: u32) -> u32 { return (kvh * KD8 + c) * BS + off; }

// Reduces red[g * TPH .. (g + 1) * TPH] into red[g * TPH] for every head (max or sum).
fn reduce_heads(lid: u32, is_max: bool) {
    for (var o = TPH / 2u; o > 0u; o >>= 1u) {
        workgroupBarrier();
        let r = lid % TPH;
        if (lid < G * TPH && r < o) {
            let a = red[lid];
            let b = red[lid + o];
            red[lid] = select(a + b, max(a, b), is_max);
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let lid = lid3.x;
    let split = wid.x;
    let hb = wid.y;
    let qi = wid.z;
    let qm = step_meta[qi];
    // the context length steers loops that contain barriers: make it provably uniform
    if (lid == 0u) { wg_ctx = qm.x; }
    let ctx = workgroupUniformLoad(&wg_ctx);
    let start = split * prm.chunk;
    if (start >= ctx) { return; }          // the same for the whole workgroup
    let len = min(ctx - start, prm.chunk);
    let toff = qm.y;
    let kvh = hb / HBPK;
    let q_base = qm.z * prm.q_stride4 + hb * G * KD4;

    for (var g = lid; g < G; g += WG) {
        head_max[g] = -3.0e38;
        head_sum[g] = 0.0;
    }
    if (Q_SMEM) {
        for (var i = lid; i < G * KD4; i += WG) { q_s[i] = q[q_base + i]; }
    }
    workgroupBarrier();
    let g_r = lid / TPH;          // head and lane of this thread in the reductions
    let r = lid % TPH;
    let dc = lid % DC;            // value phase: dim chunk, head group, position group
    let hg = (lid / DC) % NHG;
    let pg = lid / (DC * NHG);
    var acc: array<array<vec4<f32>, 2>, HG>;
    for (var h = 0u; h < HG; h++) {
        acc[h][0] = vec4<f32>(0.0);
        acc[h][1] = vec4<f32>(0.0);
    }

    for (var t0 = 0u; t0 < len; t0 += P) {
        let tile = min(P, len - t0);
        // A. scores: pair (g, j) is head g at position j; with P = WG / NSH the pairs of
        // one thread share a position, so its K row is fetched from memory once
        for (var pr = lid; pr < G * P; pr += WG) {
            let g = pr / P;
            let j = pr % P;
            if (j < tile) {
                let pos = start + t0 + j;
                let blk = table_entry(toff + pos / BS);
                let off = pos % BS;
                var s = 0.0;
                for (var c = 0u; c < KD8; c++) {
                    let k = k_pool_load8(blk, key_index8(kvh, c, off));
                    let qi4 = g * KD4 + 2u * c;
                    s += dot(q_load(q_base, qi4), k[0]) + dot(q_load(q_base, qi4 + 1u), k[1]);
                }
                scores[g * P + j] = s * prm.scale;
            }
        }
        if (V_STAGE) {
            for (var i = lid; i < tile * DC; i += WG) {
                let jj = i / DC;
                let d = i % DC;
                let pos = start + t0 + jj;
                let blk = table_entry(toff + pos / BS);
                let off = pos % BS;
                if (V_ALIASED) {
                    v_s[i] = k_pool_raw8(blk, key_index8(kvh, d, off));
                } else {
                    v_s[i] = v_pool_raw8(blk, (kvh * BS + off) * DC + d);
                }
            }
        }
        workgroupBarrier();

        // B. online softmax: new max, rescale, exp and sum
        var m = -3.0e38;
        if (g_r < G) {
            for (var jj = r; jj < tile; jj += TPH) { m = max(m, scores[g_r * P + jj]); }
        }
        red[lid] = m;
        reduce_heads(lid, true);
        if (g_r < G && r == 0u) {
            let new_max = max(head_max[g_r], red[lid]);
            alpha[g_r] = exp(head_max[g_r] - new_max);
            head_max[g_r] = new_max;
        }
        workgroupBarrier();
        var l = 0.0;
        if (g_r < G) {
            let mx = head_max[g_r];
            for (var jj = r; jj < tile; jj += TPH) {
                let e = exp(scores[g_r * P + jj] - mx);
                scores[g_r * P + jj] = e;
                l += e;
            }
        }
        red[lid] = l;
        reduce_heads(lid, false);
        if (g_r < G && r == 0u) { head_sum[g_r] = head_sum[g_r] * alpha[g_r] + red[lid]; }

        // C. values
        if (pg < PG) {
            for (var h = 0u; h < HG; h++) {
                let a = alpha[min(hg * HG + h, G - 1u)];
                acc[h][0] *= a;
                acc[h][1] *= a;
            }
            for (var jj = pg; jj < tile; jj += PG) {
                var v: array<vec4<f32>, 2>;
                if (V_STAGE) {
                    let p8 = v_s[jj * DC + dc];
                    v[0] = vec4<f32>(unpack2x16float(p8.x), unpack2x16float(p8.y));
                    v[1] = vec4<f32>(unpack2x16float(p8.z), unpack2x16float(p8.w));
                    for (var h = 0u; h < HG; h++) {
                        let g = hg * HG + h;
                        if (g < G) {
                            let w = scores[g * P + jj];
                            acc[h][0] += w * v[0];
                            acc[h][1] += w * v[1];
                        }
                    }
                    continue;
                }
                let pos = start + t0 + jj;
                let blk = table_entry(toff + pos / BS);
                let off = pos % BS;
                if (V_ALIASED) {
                    v = k_pool_load8(blk, key_index8(kvh, dc, off));
                } else {
                    v = v_pool_load8(blk, (kvh * BS + off) * DC + dc);
                }
                for (var h = 0u; h < HG; h++) {
                    let g = hg * HG + h;
                    if (g < G) {
                        let w = scores[g * P + jj];
                        acc[h][0] += w * v[0];
                        acc[h][1] += w * v[1];
                    }
                }
            }
        }
        workgroupBarrier();
    }

    // sum the position groups, one head of each group at a time, and write
    let direct = prm.n_splits == 1u;
    for (var h = 0u; h < HG; h++) {
        let a = 8u * lid;
        for (var e = 0u; e < 4u; e++) {
            scores[a + e] = acc[h][0][e];
            scores[a + 4u + e] = acc[h][1][e];
        }
        workgroupBarrier();
        let g = hg * HG + h;
        if (pg == 0u && lid < DC * NHG && g < G) {
            var a0 = acc[h][0];
            var a1 = acc[h][1];
            for (var p = 1u; p < PG; p++) {
                let o = 8u * (p * DC * NHG + lid);
                a0 += vec4<f32>(scores[o], scores[o + 1u], scores[o + 2u], scores[o + 3u]);
                a1 += vec4<f32>(scores[o + 4u], scores[o + 5u], scores[o + 6u], scores[o + 7u]);
            }
            if (direct) {
                let inv = 1.0 / head_sum[g];
                let ob = qm.w * prm.out_stride4 + (hb * G + g) * VD4 + 2u * dc;
                out[ob] = a0 * inv;
                out[ob + 1u] = a1 * inv;
            } else {
                let slot = ((qi * KVH * HBPK + hb) * prm.n_splits + split) * G + g;
                let pb = slot * VD4 + 2u * dc;
                partials[pb] = a0;
                partials[pb + 1u] = a1;
                if (dc == 0u) {
                    partials[prm.ml_base4 + slot] = vec4<f32>(head_max[g], head_sum[g], 0.0, 0.0);
                }
            }
        }
        workgroupBarrier();
    }
}
