enable f16;
enable wgpu_cooperative_matrix;
// Matmul of many token rows on the matrix units for f16 weights, every operand straight
// from memory: y[t, row0 + r] (+)= dot(x[t, :], W[r, :]) + b, x read as the f16 rows that
// shaders/coop/x_to_f16.wgsl wrote (zero rows past the last token, up to a multiple of
// 128), W as stored. A workgroup of four subgroups owns 2 x TT tiles of 16 tokens by 128
// rows; each subgroup multiplies TT x 16 tokens by 64 rows as TT x 4 tiles of 16x16x16
// with f32 accumulators (TT = 2 or 4: more tiles per subgroup reuse each load more, fewer
// fill more workgroups), with no workgroup memory or barrier until the epilogue. The
// last tiles of rows start at most 16 before the part's end (the host runs this only on
// parts of 16 rows or more, K a multiple of 16) and store only the rows no earlier tile
// stored. A subgroup whose tokens all lie past the last one skips the K loop.
// naga 30's SPIR-V writer needs every coopLoad/coopStore index bound to a `let` first.
//!COMMON
//!MATMUL
@group(0) @binding(2) var<storage, read> w: array<f16>;
@group(0) @binding(3) var<storage, read> xh: array<f16>;

const SG = {{SG}}u;    // subgroup size
const WG = 4u * SG;
const TT = {{TT}}u;    // 16-token tiles per subgroup: 2 or 4
const WIDE = TT == 4u;

{{COOP_EPILOGUE}}

@compute @workgroup_size(WG)
fn main(@builtin(subgroup_id) sg: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    let k = dims.k8 * 8u;
    let t = (wid.y * 2u + sg / 2u) * TT * 16u;
    let want = wid.x * 128u + (sg % 2u) * 64u;   // this subgroup's first row
    let last = dims.rows - 16u;                  // the last tile's first row
    let r0 = min(want, last);
    let r1 = min(want + 16u, last);
    let r2 = min(want + 32u, last);
    let r3 = min(want + 48u, last);
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    var c20 = coop_mat16x16<f32, C>();
    var c21 = coop_mat16x16<f32, C>();
    var c22 = coop_mat16x16<f32, C>();
    var c23 = coop_mat16x16<f32, C>();
    var c30 = coop_mat16x16<f32, C>();
    var c31 = coop_mat16x16<f32, C>();
    var c32 = coop_mat16x16<f32, C>();
    var c33 = coop_mat16x16<f32, C>();
    var kend = k;
    if (t >= t_count) { kend = 0u; }
    for (var kk = 0u; kk < kend; kk += 16u) {
        // B[k][n] = W[n][k]: column-major with the rows' stride
        let ib0 = r0 * k + kk;
        let ib1 = r1 * k + kk;
        let ib2 = r2 * k + kk;
        let ib3 = r3 * k + kk;
        let b0 = coopLoad<coop_mat16x16<f16, B>>(&w[ib0], k);
        let b1 = coopLoad<coop_mat16x16<f16, B>>(&w[ib1], k);
        let b2 = coopLoad<coop_mat16x16<f16, B>>(&w[ib2], k);
        let b3 = coopLoad<coop_mat16x16<f16, B>>(&w[ib3], k);
        let ia0 = t * k + kk;
        let ia1 = ia0 + 16u * k;
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xh[ia0], k);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xh[ia1], k);
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c02 = coopMultiplyAdd(a0, b2, c02);
        c03 = coopMultiplyAdd(a0, b3, c03);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
        c12 = coopMultiplyAdd(a1, b2, c12);
        c13 = coopMultiplyAdd(a1, b3, c13);
        if (WIDE) {
            let ia2 = ia0 + 32u * k;
            let ia3 = ia0 + 48u * k;
            let a2 = coopLoadT<coop_mat16x16<f16, A>>(&xh[ia2], k);
            let a3 = coopLoadT<coop_mat16x16<f16, A>>(&xh[ia3], k);
            c20 = coopMultiplyAdd(a2, b0, c20);
            c21 = coopMultiplyAdd(a2, b1, c21);
            c22 = coopMultiplyAdd(a2, b2, c22);
            c23 = coopMultiplyAdd(a2, b3, c23);
            c30 = coopMultiplyAdd(a3, b0, c30);
            c31 = coopMultiplyAdd(a3, b1, c31);
            c32 = coopMultiplyAdd(a3, b2, c32);
            c33 = coopMultiplyAdd(a3, b3, c33);
        }
    }
    let io = sg * 256u;
    let s16 = 16u;
    let t1 = t + 16u;
    coopStoreT(c00, &os[io], s16); workgroupBarrier(); emit(sg, lane, t, r0, want, t_count); workgroupBarrier();
    coopStoreT(c01, &os[io], s16); workgroupBarrier(); emit(sg, lane, t, r1, want + 16u, t_count); workgroupBarrier();
    coopStoreT(c02, &os[io], s16); workgroupBarrier(); emit(sg, lane, t, r2, want + 32u, t_count); workgroupBarrier();
    coopStoreT(c03, &os[io], s16); workgroupBarrier(); emit(sg, lane, t, r3, want + 48u, t_count); workgroupBarrier();
    coopStoreT(c10, &os[io], s16); workgroupBarrier(); emit(sg, lane, t1, r0, want, t_count); workgroupBarrier();
    coopStoreT(c11, &os[io], s16); workgroupBarrier(); emit(sg, lane, t1, r1, want + 16u, t_count); workgroupBarrier();
    coopStoreT(c12, &os[io], s16); workgroupBarrier(); emit(sg, lane, t1, r2, want + 32u, t_count); workgroupBarrier();
    coopStoreT(c13, &os[io], s16); workgroupBarrier(); emit(sg, lane, t1, r3, want + 48u, t_count); workgroupBarrier();
    if (WIDE) {
        let t2 = t + 32u;
        let t3 = t + 48u;
        coopStoreT(c20, &os[io], s16); workgroupBarrier(); emit(sg, lane, t2, r0, want, t_count); workgroupBarrier();
        coopStoreT(c21, &os[io], s16); workgroupBarrier(); emit(sg, lane, t2, r1, want + 16u, t_count); workgroupBarrier();
        coopStoreT(c22, &os[io], s16); workgroupBarrier(); emit(sg, lane, t2, r2, want + 32u, t_count); workgroupBarrier();
        coopStoreT(c23, &os[io], s16); workgroupBarrier(); emit(sg, lane, t2, r3, want + 48u, t_count); workgroupBarrier();
        coopStoreT(c30, &os[io], s16); workgroupBarrier(); emit(sg, lane, t3, r0, want, t_count); workgroupBarrier();
        coopStoreT(c31, &os[io], s16); workgroupBarrier(); emit(sg, lane, t3, r1, want + 16u, t_count); workgroupBarrier();
        coopStoreT(c32, &os[io], s16); workgroupBarrier(); emit(sg, lane, t3, r2, want + 32u, t_count); workgroupBarrier();
        coopStoreT(c33, &os[io], s16); workgroupBarrier(); emit(sg, lane, t3, r3, want + 48u, t_count); workgroupBarrier();
    }
}
