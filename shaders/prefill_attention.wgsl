// Causal attention of prefill chunks over the paged KV cache, tiled (flash-attention
// style): a workgroup takes a tile of QT consecutive queries of one sequence for the G
// query heads of one head block (R = QT x G rows) and walks their keys and values BK
// positions at a time, each position loaded from the cache once for all R rows (decode
// attention loads it once per query). f32 arithmetic, no subgroups: it runs wherever
// decode attention does.
//
// Per key tile, four phases, a barrier after each:
//   1. the tile's keys and values into workgroup memory as f32 (past the tile's longest
//      context: zeros);
//   2. scores: S[r][j] = q_r . k_j (q pre-scaled), or "masked" where position j is at or
//      past row r's context (the causal mask: a query sees positions up to its own) or
//      before its sliding window;
//   3. online softmax, one thread a row: the row's running max and sum stay in that
//      thread's registers; S becomes P = exp(S - max), and the factor the row's output is
//      rescaled by goes to workgroup memory;
//   4. outputs: each thread owns some (row, 4 dims) of O = O * factor + P V, in registers.
// At the end each row's output is divided by its sum and stored.
// Paged layout as in shaders/decode_attention.wgsl (K interleaved by 8 values, V row-major).
//!ATTENTION_PARAMS
@group(0) @binding(0) var<uniform> prm: Params;
// step_meta: per query (context length, block-table offset, query row, output row), then at
// table_base the block tables
@group(0) @binding(1) var<storage, read> step_meta: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;
//!PAGED k_pool 3 4 read
//!PAGED v_pool 5 6 read
@group(0) @binding(7) var<storage, read_write> out: array<vec4<f32>>;
// per tile: (first query, queries, -, -)
@group(0) @binding(8) var<storage, read> tiles: array<vec4<u32>>;

const G: u32 = {{G}}u;                 // query heads per workgroup (one KV head)
const HBPK: u32 = {{HBPK}}u;           // head blocks per KV head
const KD: u32 = {{KD}}u;               // key dim (multiple of 8)
const VD: u32 = {{VD}}u;               // value dim (multiple of 8)
const BS: u32 = {{BS}}u;               // positions per block
const BLOCK_ELEMS: u32 = {{BLOCK_ELEMS}}u;
const BLOCKS_PER_BINDING: u32 = {{BPB}}u;
const QT: u32 = {{QT}}u;               // queries per tile
const R: u32 = QT * G;                 // rows: row r is query r / G, head r % G
const BK: u32 = {{BK}}u;               // key positions per key tile
const WG: u32 = {{WG}}u;               // threads (at least R)
const KD4: u32 = KD / 4u;
const VD4: u32 = VD / 4u;
const KD8: u32 = KD / 8u;
const DC: u32 = VD / 8u;
const OUTS: u32 = (R * VD4 + WG - 1u) / WG;   // output vec4s per thread
const MASKED: f32 = -3.0e38;

var<workgroup> qs: array<vec4<f32>, R * KD4>;   // the rows' queries, scaled
var<workgroup> ks: array<vec4<f32>, BK * KD4>;
var<workgroup> vs: array<vec4<f32>, BK * VD4>;
var<workgroup> ps: array<f32, R * BK>;          // scores, then probabilities
var<workgroup> factor: array<f32, R>;           // this tile's rescaling of each row
var<workgroup> row_ctx: array<u32, R>;          // each row's context length (0: no query)
var<workgroup> wg_info: vec4<u32>;  // (first query, queries, longest context, window start)

fn table_entry(i: u32) -> u32 {
    let a = prm.table_base + i;
    return step_meta[a / 4u][a % 4u];
}

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let hb = wid.y;                  // head block: G query heads of KV head hb / HBPK
    let kvh = hb / HBPK;
    // the tile's queries are one sequence's, at consecutive positions: the last one has
    // the longest context, and all share the first one's block table
    if (lid == 0u) {
        let t = tiles[wid.x];
        let last = step_meta[t.x + t.y - 1u];
        // the first query's window starts first: keys before it no row sees
        wg_info = vec4<u32>(t.x, t.y, last.x, window_start(step_meta[t.x].x));
    }
    let info = workgroupUniformLoad(&wg_info);
    let first = info.x;
    let count = info.y;
    let ctx_end = info.z;
    let key_start = info.w - info.w % BK;
    let toff = step_meta[first].y;
    for (var r = lid; r < R; r += WG) {
        let qt = r / G;
        row_ctx[r] = select(0u, step_meta[first + min(qt, count - 1u)].x, qt < count);
    }
    for (var e = lid; e < R * KD4; e += WG) {
        let r = e / KD4;
        let qt = r / G;
        var v = vec4<f32>(0.0);
        if (qt < count) {
            let row = step_meta[first + qt].z;
            v = q[row * prm.q_stride4 + (hb * G + r % G) * KD4 + e % KD4] * prm.scale;
        }
        qs[e] = v;
    }
    // the softmax thread of row lid: its running max and sum
    var m = MASKED;
    var l = 0.0;
    var o: array<vec4<f32>, OUTS>;
    workgroupBarrier();

    for (var p0 = key_start; p0 < ctx_end; p0 += BK) {
        // 1. keys and values of positions p0.. (zeros past the longest context)
        for (var e = lid; e < BK * KD8; e += WG) {
            let j = e / KD8;
            let c = e % KD8;
            let pos = p0 + j;
            var k = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
            if (pos < ctx_end) {
                let blk = table_entry(toff + pos / BS);
                k = k_pool_unpack8(k_pool_fetch8(blk, (kvh * KD8 + c) * BS + pos % BS));
            }
            ks[j * KD4 + 2u * c] = k[0];
            ks[j * KD4 + 2u * c + 1u] = k[1];
        }
        for (var e = lid; e < BK * DC; e += WG) {
            let j = e / DC;
            let dc = e % DC;
            let pos = p0 + j;
            var v = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
            if (pos < ctx_end) {
                let blk = table_entry(toff + pos / BS);
                v = v_pool_unpack8(v_pool_fetch8(blk, (kvh * BS + pos % BS) * DC + dc));
            }
            vs[j * VD4 + 2u * dc] = v[0];
            vs[j * VD4 + 2u * dc + 1u] = v[1];
        }
        workgroupBarrier();
        // 2. scores
        for (var e = lid; e < R * BK; e += WG) {
            let r = e / BK;
            let j = e % BK;
            var s = MASKED;
            let pos = p0 + j;
            if (pos < row_ctx[r] && pos >= window_start(row_ctx[r])) {
                var acc = vec4<f32>(0.0);
                for (var c = 0u; c < KD4; c++) {
                    acc += qs[r * KD4 + c] * ks[j * KD4 + c];
                }
                s = capped(acc.x + acc.y + acc.z + acc.w);
            }
            ps[e] = s;
        }
        workgroupBarrier();
        // 3. online softmax of each row
        if (lid < R) {
            var tmax = MASKED;
            for (var j = 0u; j < BK; j++) { tmax = max(tmax, ps[lid * BK + j]); }
            let nm = max(m, tmax);
            let a = exp(m - nm);
            var sum = 0.0;
            for (var j = 0u; j < BK; j++) {
                let s = ps[lid * BK + j];
                let p = select(0.0, exp(s - nm), s > MASKED);
                ps[lid * BK + j] = p;
                sum += p;
            }
            m = nm;
            l = l * a + sum;
            factor[lid] = a;
        }
        workgroupBarrier();
        // 4. outputs
        for (var i = 0u; i < OUTS; i++) {
            let e = lid + i * WG;
            if (e < R * VD4) {
                let r = e / VD4;
                let d4 = e % VD4;
                var acc = o[i] * factor[r];
                for (var j = 0u; j < BK; j++) {
                    acc += ps[r * BK + j] * vs[j * VD4 + d4];
                }
                o[i] = acc;
            }
        }
        workgroupBarrier();
    }

    // each row's sum, then the outputs divided by it
    if (lid < R) { factor[lid] = l; }
    workgroupBarrier();
    for (var i = 0u; i < OUTS; i++) {
        let e = lid + i * WG;
        if (e < R * VD4) {
            let r = e / VD4;
            let qt = r / G;
            if (qt < count) {
                let row = step_meta[first + qt].w;
                out[row * prm.out_stride4 + (hb * G + r % G) * VD4 + e % VD4] = o[i] / factor[r];
            }
        }
    }
}
