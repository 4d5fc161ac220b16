// Decode attention over a paged KV cache with shared KV heads (MHA, GQA, MQA, and MLA in
// its absorbed form), split-K (flash-decoding) over the context.
//
// One workgroup per (head block, split, query). A head block is G query heads that share
// one KV head: every K and V value of the split is read from memory, and converted to f32,
// once for all G heads, and used from registers for all of them. The split covers
// positions [split * chunk, min(ctx, (split + 1) * chunk)) of its query's context (those in
// its sliding window, where the model has one), walked
// in tiles of P = WG positions, with one barrier per tile:
//   A. scores: thread j takes position j of the tile; it reads that position's key 16
//      bytes at a time (K is stored interleaved so neighbouring threads read neighbouring
//      bytes) and dots each 8 values with the G queries (workgroup memory, read by all
//      threads at once); the G scores go to a double-buffered [P][G] tile;
//   B. values: thread (dc, pg) owns dims 8dc..8dc+8 of the value and the tile positions
//      j = pg (mod PG). It keeps its own online softmax (max, sum) and accumulators for
//      the G heads in registers, so no reduction or barrier is needed between tiles: the
//      DC threads of one position group see the same scores and stay consistent.
// At the end the PG position groups are merged (max, rescale, sum) through workgroup
// memory, and the workgroup writes either the normalised output (one split) or its
// partial (acc, max, sum) for decode_attention_merge.wgsl.
//
// Paged layout, per layer, block b of BS positions (the pool may span two bindings):
//   K: [b][kv_head][KD / 8][BS][8]   (interleaved by 8 values: coalesced score reads)
//   V: [b][kv_head][BS][VD]          (row-major: coalesced value reads)
// MLA (V_ALIASED): no V pool; the value of a position is the first VD values of its key
// (the latent), read from the K pool.
//!ATTENTION_PARAMS
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
const HBPK: u32 = {{HBPK}}u;           // head blocks per KV head
const KVH: u32 = {{KVH}}u;             // KV heads in the pool
const KD: u32 = {{KD}}u;               // key dim (multiple of 8)
const VD: u32 = {{VD}}u;               // value dim (multiple of 8)
const BS: u32 = {{BS}}u;               // positions per block
const V_ALIASED: bool = {{V_ALIASED}};
const BLOCK_ELEMS: u32 = {{BLOCK_ELEMS}}u;
const BLOCKS_PER_BINDING: u32 = {{BPB}}u;
const WG: u32 = {{WG}}u;
const P: u32 = WG;                     // positions per tile: one per thread in the scores
const DC: u32 = VD / 8u;               // 8-value chunks of a value row
const PG: u32 = WG / DC;               // position groups in the value phase
const PER_PG: u32 = (P + PG - 1u) / PG; // most tile positions one position group takes
const KD8: u32 = KD / 8u;
const CU: u32 = {{CU}}u;               // key chunks loaded together (divides KD8)
const VU: u32 = {{VU}}u;               // value rows loaded together
const KD4: u32 = KD / 4u;
const VD4: u32 = VD / 4u;

// two [P][G] score tiles (written by one tile while the previous one is read); at the end,
// [WG][8] accumulators of the position groups
var<workgroup> scores: array<f32, {{SCORES}}>;
var<workgroup> blocks: array<u32, 2 * P>;         // the block of each tile position
var<workgroup> group_max: array<f32, PG * G>;    // per position group and head
var<workgroup> group_sum: array<f32, PG * G>;
var<workgroup> q_s: array<vec4<f32>, G * KD4>;  // the G queries of this head block
var<workgroup> wg_ctx: u32;

fn table_entry(i: u32) -> u32 {
    let a = prm.table_base + i;
    return step_meta[a / 4u][a % 4u];
}

fn key_index8(kvh: u32, c: u32, off: u32) -> u32 { return (kvh * KD8 + c) * BS + off; }

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let lid = lid3.x;
    // head blocks vary fastest so the blocks that share a KV head run together and the
    // later ones find its K/V in cache
    let hb = wid.x;
    let split = wid.y;
    let qi = wid.z;
    let qm = step_meta[qi];
    // the context length steers loops that contain barriers: make it provably uniform
    if (lid == 0u) { wg_ctx = qm.x; }
    let ctx = workgroupUniformLoad(&wg_ctx);
    // this split's positions, those before the window left out; a split wholly before it
    // writes nothing, and the merge skips it (the same for the whole workgroup)
    let end = min(ctx, split * prm.chunk + prm.chunk);
    let start = max(split * prm.chunk, window_start(ctx));
    if (start >= end) { return; }
    let len = end - start;
    let toff = qm.y;
    let kvh = hb / HBPK;
    let q_base = qm.z * prm.q_stride4 + hb * G * KD4;
    for (var i = lid; i < G * KD4; i += WG) { q_s[i] = q[q_base + i]; }

    let dc = lid % DC;            // value phase: dim chunk and position group
    let pg = lid / DC;
    // this position group's running max, sum and output per head; every index into
    // these is a constant (unrolled), so they stay in registers
    var m: array<f32, G>;
    var l: array<f32, G>;
    var acc: array<array<vec4<f32>, 2>, G>;
    //!UNROLL g {{G}}
    m[%g%] = -3.0e38;
    l[%g%] = 0.0;
    acc[%g%][0] = vec4<f32>(0.0);
    acc[%g%][1] = vec4<f32>(0.0);
    //!END
    workgroupBarrier();

    var buf = 0u;
    for (var t0 = 0u; t0 < len; t0 += P) {
        let tile = min(P, len - t0);
        let sb = buf * P * G;
        // A. scores of position lid for the G heads
        if (lid < tile) {
            let pos = start + t0 + lid;
            let blk = table_entry(toff + pos / BS);
            blocks[buf * P + lid] = blk;
            let off = pos % BS;
            var s: array<f32, G>;
            //!UNROLL g {{G}}
            s[%g%] = 0.0;
            //!END
            for (var c0 = 0u; c0 < KD8; c0 += CU) {
                // CU chunks are loaded before any is used, so their loads overlap
                var kr: array<k_pool_raw, CU>;
                //!UNROLL u {{CU}}
                kr[%u%] = k_pool_fetch8(blk, key_index8(kvh, c0 + %u%u, off));
                //!END
                //!UNROLL u {{CU}}
                let k = k_pool_unpack8(kr[%u%]);
                //!UNROLL g {{G}}
                let qi4 = %g%u * KD4 + 2u * (c0 + %u%u);
                s[%g%] += dot(q_s[qi4], k[0]) + dot(q_s[qi4 + 1u], k[1]);
                //!END
                //!END
            }
            //!UNROLL g {{G}}
            scores[sb + lid * G + %g%u] = capped(s[%g%] * prm.scale);
            //!END
        }
        // the one barrier of the tile: the scores above are complete, and every thread
        // has finished reading the other buffer (the tile before), which the next tile
        // overwrites
        workgroupBarrier();

        // B. values: this thread's positions of the tile, with its own online softmax
        if (pg < PG) {
            var tmax: array<f32, G>;
            //!UNROLL g {{G}}
            tmax[%g%] = -3.0e38;
            //!END
            for (var n = 0u; n < PER_PG; n++) {
                let j = pg + n * PG;
                if (j < tile) {
                    //!UNROLL g {{G}}
                    tmax[%g%] = max(tmax[%g%], scores[sb + j * G + %g%u]);
                    //!END
                }
            }
            //!UNROLL g {{G}}
            let nm = max(m[%g%], tmax[%g%]);
            let a = exp(m[%g%] - nm);
            m[%g%] = nm;
            l[%g%] *= a;
            acc[%g%][0] *= a;
            acc[%g%][1] *= a;
            //!END
            for (var n0 = 0u; n0 < PER_PG; n0 += VU) {
                // VU positions' values are loaded before any is used, so their loads overlap
                var vr: array<v_pool_raw, VU>;
                //!UNROLL u {{VU}}
                let j = pg + (n0 + %u%u) * PG;
                if (j < tile) {
                    let blk = blocks[buf * P + j];
                    let off = (start + t0 + j) % BS;
                    if (V_ALIASED) {
                        vr[%u%] = k_pool_fetch8(blk, key_index8(kvh, dc, off));
                    } else {
                        vr[%u%] = v_pool_fetch8(blk, (kvh * BS + off) * DC + dc);
                    }
                }
                //!END
                //!UNROLL u {{VU}}
                let j = pg + (n0 + %u%u) * PG;
                if (j < tile) {
                    let v = v_pool_unpack8(vr[%u%]);
                    //!UNROLL g {{G}}
                    let e = exp(scores[sb + j * G + %g%u] - m[%g%]);
                    l[%g%] += e;
                    acc[%g%][0] += e * v[0];
                    acc[%g%][1] += e * v[1];
                    //!END
                }
                //!END
            }
        }
        buf ^= 1u;
    }

    // merge the position groups: each head's max and sum over the groups, then its
    // rescaled accumulators summed, one head at a time through workgroup memory
    workgroupBarrier();
    if (pg < PG && dc == 0u) {
        //!UNROLL g {{G}}
        group_max[pg * G + %g%u] = m[%g%];
        group_sum[pg * G + %g%u] = l[%g%];
        //!END
    }
    workgroupBarrier();
    let direct = prm.n_splits == 1u && prm.merge_always == 0u;
    //!UNROLL g {{G}}
    let g = %g%u;
    var mx = -3.0e38;
    for (var p = 0u; p < PG; p++) { mx = max(mx, group_max[p * G + g]); }
    if (pg < PG) {
        let f = exp(m[%g%] - mx);
        let a0 = acc[%g%][0] * f;
        let a1 = acc[%g%][1] * f;
        let a = 8u * lid;
        scores[a] = a0.x;
        scores[a + 1u] = a0.y;
        scores[a + 2u] = a0.z;
        scores[a + 3u] = a0.w;
        scores[a + 4u] = a1.x;
        scores[a + 5u] = a1.y;
        scores[a + 6u] = a1.z;
        scores[a + 7u] = a1.w;
    }
    workgroupBarrier();
    if (lid < DC) {
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var total = 0.0;
        for (var p = 0u; p < PG; p++) {
            let o = 8u * (p * DC + lid);
            a0 += vec4<f32>(scores[o], scores[o + 1u], scores[o + 2u], scores[o + 3u]);
            a1 += vec4<f32>(scores[o + 4u], scores[o + 5u], scores[o + 6u], scores[o + 7u]);
            total += group_sum[p * G + g] * exp(group_max[p * G + g] - mx);
        }
        if (direct) {
            let inv = 1.0 / total;
            let ob = qm.w * prm.out_stride4 + (hb * G + g) * VD4 + 2u * lid;
            out[ob] = a0 * inv;
            out[ob + 1u] = a1 * inv;
        } else {
            let slot = ((qi * KVH * HBPK + hb) * prm.n_splits + split) * G + g;
            let pb = slot * VD4 + 2u * lid;
            partials[pb] = a0;
            partials[pb + 1u] = a1;
            if (lid == 0u) {
                partials[prm.ml_base4 + slot] = vec4<f32>(mx, total, 0.0, 0.0);
            }
        }
    }
    workgroupBarrier();
    //!END
}
