enable f16;
enable wgpu_cooperative_matrix;
// Matmul of many token rows on the matrix units: y[t, row0 + r] (+)= dot(x[t, :], W[r, :]) + b.
// A workgroup of four subgroups owns 64 tokens x 128 weight rows. Each step of 32 along K
// stages x (rounded to f16) and W (dequantized from its stored form by whole chunks: 8
// values, or a 32-value block, then f16) in workgroup memory; each subgroup multiplies 32
// tokens x 64 rows of them as 2 x 4 tiles of 16x16 with f32 accumulators. The next step's
// global loads are issued before this step's matrix work so they overlap it. Tokens and
// rows past the ends are staged as zeros (the coop calls need uniform control flow: nobody
// returns early) and never stored.
// naga 30's SPIR-V writer needs every coopLoad/coopStore index bound to a `let` first.
//!COMMON
//!MATMUL
//!W4 w 2
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;

const BM = 64u;        // tokens per workgroup
const BN = 128u;       // weight rows per workgroup
const S = 40u;         // row stride of the staged tiles, in f16 (32 values + padding)
const SG = {{SG}}u;    // subgroup size
const WG = 4u * SG;
const X_LOADS = BM * 8u / WG;   // vec4s of x each invocation stages per step
const CHUNK4 = {{CHUNK4}}u;     // vec4s in one w_load_chunk (8 values, or a 32-value block)
const CPR = 8u / CHUNK4;        // chunks of a row per step
const W_LOADS = (BN * CPR + WG - 1u) / WG;  // chunks of W each invocation stages per step
const W_CHUNKS = BN * CPR;

var<workgroup> xs: array<f16, 2560>;   // BM x S, token-major
var<workgroup> ws: array<f16, 5120>;   // BN x S, row-major (K contiguous)

{{COOP_EPILOGUE}}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_id) sg: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    let t0 = wid.y * BM;
    let r0 = wid.x * BN;
    let k4 = dims.k8 * 2u;
    let tm = (sg / 2u) * 32u;   // this subgroup's tokens within the tile
    let tn = (sg % 2u) * 64u;   // and weight rows
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    // one step's operands in registers: loaded a step ahead, staged at the top of the step
    var xr: array<vec4<f32>, X_LOADS>;
    var wr: array<array<vec4<f32>, CHUNK4>, W_LOADS>;
    for (var kb = 0u; kb < k4 + 8u; kb += 8u) {
        if (kb > 0u) {
            workgroupBarrier();   // the previous step's matrix loads are done with the tiles
            for (var j = 0u; j < X_LOADS; j++) {
                let i = lid + j * WG;
                let o = (i / 8u) * S + (i % 8u) * 4u;
                let v = xr[j];
                xs[o] = f16(v.x); xs[o + 1u] = f16(v.y); xs[o + 2u] = f16(v.z); xs[o + 3u] = f16(v.w);
            }
            for (var j = 0u; j < W_LOADS; j++) {
                let i = lid + j * WG;
                if (i >= W_CHUNKS) { break; }
                let o = (i / CPR) * S + (i % CPR) * CHUNK4 * 4u;
                for (var m = 0u; m < CHUNK4; m++) {
                    let v = wr[j][m];
                    let om = o + 4u * m;
                    ws[om] = f16(v.x); ws[om + 1u] = f16(v.y); ws[om + 2u] = f16(v.z); ws[om + 3u] = f16(v.w);
                }
            }
            workgroupBarrier();
        }
        // the next step's global loads, in flight during this step's matrix work
        if (kb < k4) {
            for (var j = 0u; j < X_LOADS; j++) {
                let i = lid + j * WG;
                let t = t0 + i / 8u;
                let q = kb + i % 8u;
                xr[j] = vec4<f32>(0.0);
                if (t < t_count && q < k4) { xr[j] = x[t * k4 + q]; }
            }
            for (var j = 0u; j < W_LOADS; j++) {
                let i = lid + j * WG;
                let r = r0 + i / CPR;
                let q = kb + (i % CPR) * CHUNK4;
                if (i < W_CHUNKS && r < dims.rows && q < k4) {
                    wr[j] = w_load_chunk((r * k4 + q) / CHUNK4);
                } else {
                    for (var m = 0u; m < CHUNK4; m++) { wr[j][m] = vec4<f32>(0.0); }
                }
            }
        }
        if (kb == 0u) { continue; }
        for (var kk = 0u; kk < 32u; kk += 16u) {
            let ia0 = tm * S + kk;
            let ia1 = ia0 + 16u * S;
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[ia0], S);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[ia1], S);
            // B[k][n] = W[n][k]: column-major with the rows' stride
            let ib0 = tn * S + kk;
            let ib1 = ib0 + 16u * S;
            let ib2 = ib0 + 32u * S;
            let ib3 = ib0 + 48u * S;
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&ws[ib0], S);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&ws[ib1], S);
            let b2 = coopLoad<coop_mat16x16<f16, B>>(&ws[ib2], S);
            let b3 = coopLoad<coop_mat16x16<f16, B>>(&ws[ib3], S);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c02 = coopMultiplyAdd(a0, b2, c02);
            c03 = coopMultiplyAdd(a0, b3, c03);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            c12 = coopMultiplyAdd(a1, b2, c12);
            c13 = coopMultiplyAdd(a1, b3, c13);
        }
    }
    // epilogue: each tile through os, then bias / residual / bounds per element
    let io = sg * 256u;
    let t = t0 + tm;
    let r = r0 + tn;
    let s16 = 16u;
    coopStoreT(c00, &os[io], s16); workgroupBarrier(); emit(sg, lane, t, r, r, t_count); workgroupBarrier();
    coopStoreT(c01, &os[io], s16); workgroupBarrier(); emit(sg, lane, t, r + 16u, r + 16u, t_count); workgroupBarrier();
    coopStoreT(c02, &os[io], s16); workgroupBarrier(); emit(sg, lane, t, r + 32u, r + 32u, t_count); workgroupBarrier();
    coopStoreT(c03, &os[io], s16); workgroupBarrier(); emit(sg, lane, t, r + 48u, r + 48u, t_count); workgroupBarrier();
    coopStoreT(c10, &os[io], s16); workgroupBarrier(); emit(sg, lane, t + 16u, r, r, t_count); workgroupBarrier();
    coopStoreT(c11, &os[io], s16); workgroupBarrier(); emit(sg, lane, t + 16u, r + 16u, r + 16u, t_count); workgroupBarrier();
    coopStoreT(c12, &os[io], s16); workgroupBarrier(); emit(sg, lane, t + 16u, r + 32u, r + 32u, t_count); workgroupBarrier();
    coopStoreT(c13, &os[io], s16); workgroupBarrier(); emit(sg, lane, t + 16u, r + 48u, r + 48u, t_count); workgroupBarrier();
}
