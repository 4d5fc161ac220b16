enable f16;
enable wgpu_cooperative_matrix;
// Matmul of a few token rows (9 to 128: several sequences decoding together) on the matrix
// units for f16 weights: y[t, row0 + r] (+)= dot(x[t, :], W[r, :]) + b, x read as the f16
// rows that shaders/coop/x_to_f16.wgsl wrote (zero rows past the last token, up to a
// multiple of 128), W as stored. Few rows leave little matrix work per weight, so what
// counts is reading the weights once, with many loads in flight on every core: a
// workgroup owns RT x 16 weight rows by TA x 16 tokens, and its NS subgroups split K
// between them (subgroup s takes the 16-wide chunks s, s + NS, ...; four chunks a trip),
// each into TA x RT accumulators of 16x16x16, f32 (more row tiles use each x tile more:
// for the widest matrices). The subgroups' sums meet in workgroup memory, where the
// epilogue adds them. A tile of rows past the part's end starts at most 16 before it (the
// host runs this only on parts of 16 rows or more, K a multiple of 16) and stores only
// the rows no earlier tile stored.
// naga 30's SPIR-V writer needs every coopLoad/coopStore index bound to a `let` first.
//!COMMON
//!MATMUL
@group(0) @binding(2) var<storage, read> w: array<f16>;
@group(0) @binding(3) var<storage, read> xh: array<f16>;

const SG = {{SG}}u;     // subgroup size
const NS = {{NS}}u;     // subgroups, each a share of K
const WG = NS * SG;
const TA = {{TA}}u;     // 16-token tiles per workgroup: 1, 2 or 4
const RT = {{RT}}u;     // 16-row tiles per workgroup: 1, 2 or 4 (TA x RT at most 4)
const TILE = TA * RT * 256u; // one subgroup's sums

var<workgroup> sums: array<f32, {{SUMS}}>;   // NS x TILE

// x's token tile `ta` (rows t + 16 ta ..) at the 16-wide chunk of K from `kk`, as A
fn x_tile(t: u32, ta: u32, kk: u32, k: u32) -> coop_mat16x16<f16, A> {
    let ia = (t + ta * 16u) * k + kk;
    return coopLoadT<coop_mat16x16<f16, A>>(&xh[ia], k);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_id) sg: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    let k = dims.k8 * 8u;
    let chunks = k / 16u;
    let t = wid.y * TA * 16u;
    let want = wid.x * RT * 16u;             // this workgroup's first row
    let last = dims.rows - 16u;              // the last tile's first row
    // each row tile moved back inside the part where it runs past it
    let r0 = min(want, last);
    let r1 = min(want + 16u, last);
    let r2 = min(want + 32u, last);
    let r3 = min(want + 48u, last);
    // c<token tile><row tile>
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c20 = coop_mat16x16<f32, C>();
    var c30 = coop_mat16x16<f32, C>();
    // this subgroup's chunks: every NS-th from its own (giving each subgroup a run of
    // its own, and eight chunks a trip, ran no faster on the H200:
    // bench/2026-12-01-h200-gemm-loads); four a trip, each chunk's weight tiles loaded
    // before its x tiles
    var i = sg;
    for (; i + 3u * NS < chunks; i += 4u * NS) {
        //!UNROLL u 4
        let kk = (i + %u%u * NS) * 16u;
        {{CHUNK}}
        //!END
    }
    for (; i < chunks; i += NS) {
        let kk = i * 16u;
        {{CHUNK}}
    }
    // each subgroup's sums (element e of a tile: token + e / 16, row + e % 16), then every
    // thread adds the subgroups' for its elements
    let base = sg * TILE;
    let s16 = 16u;
    coopStoreT(c00, &sums[base], s16);
    if (RT > 1u) {
        let o = base + 256u;
        coopStoreT(c01, &sums[o], s16);
    }
    if (RT > 2u) {
        let o2 = base + 512u;
        let o3 = base + 768u;
        coopStoreT(c02, &sums[o2], s16);
        coopStoreT(c03, &sums[o3], s16);
    }
    if (TA > 1u) {
        let o = base + RT * 256u;
        coopStoreT(c10, &sums[o], s16);
    }
    if (TA > 1u && RT > 1u) {
        let o = base + RT * 256u + 256u;
        coopStoreT(c11, &sums[o], s16);
    }
    if (TA > 2u) {
        let o2 = base + 512u;
        let o3 = base + 768u;
        coopStoreT(c20, &sums[o2], s16);
        coopStoreT(c30, &sums[o3], s16);
    }
    workgroupBarrier();
    for (var e = lid; e < TILE; e += WG) {
        var v = 0.0;
        for (var s = 0u; s < NS; s++) { v += sums[s * TILE + e]; }
        let tile = e / 256u;                 // TA x RT tiles, token tile major
        let ta = tile / RT;
        let rt = tile % RT;
        let tt = t + ta * 16u + (e % 256u) / 16u;
        let row = want + rt * 16u;
        let rr = min(row, last) + e % 16u;
        if (tt < t_count && rr >= row && rr < dims.rows) {
            store_y(tt, rr, v);
        }
    }
}
