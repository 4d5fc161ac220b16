enable f16;
enable wgpu_cooperative_matrix;
// Matmul of many token rows on the matrix units for f16 weights, both operands staged in
// workgroup memory: y[t, row0 + r] (+)= dot(x[t, :], W[r, :]) + b, x read as the f16 rows
// that shaders/coop/x_to_f16.wgsl wrote (zero rows past the last token, up to a multiple of
// 128), W as stored. A workgroup of four subgroups owns 128 tokens x 128 weight rows; each
// subgroup multiplies 64 tokens x 64 rows of them as 4 x 4 tiles of 16x16x16 with f32
// accumulators. K goes in steps of 32 through two stages of workgroup memory: the next
// step's global loads are issued before this step's matrix work and stored into the other
// stage after it, so one barrier a step suffices. Weight rows past the part's end load the
// last row again (never stored); K past its end stages zeros.
// The stages hold f16 scalars (NVIDIA's driver refused matrix loads through a u32 array),
// written from f16 loads as they come (through u32 and f32 and back cost 2-3% on the H200:
// bench/2026-12-01-h200-gemm-loads).
// The loops over a step's chunks must unroll (naga's loop bounding off: src/gpu/mod.rs) or
// the chunks held in registers live in memory: 28 against 90 TFLOP/s on the H200.
// naga 30's SPIR-V writer needs every coopLoad/coopStore index bound to a `let` first.
//!COMMON
//!MATMUL
@group(0) @binding(2) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read> xh: array<vec4<f16>>;

const SG = {{SG}}u;    // subgroup size
const WG = 4u * SG;
const S = 40u;                       // row stride of a staged tile: 32 f16 + 8 padding
const TILE = 128u * S;               // one operand's tile in one stage
const LOADS = 512u / WG;             // 16-byte chunks of each operand per invocation per step

var<workgroup> xs: array<f16, 10240>;   // 2 stages x 128 tokens x S
var<workgroup> ws: array<f16, 10240>;   // 2 stages x 128 rows x S

{{COOP_EPILOGUE}}

// Half a 16-byte chunk of x and of W (four f16 each) into the stages at `o`.
fn stage_half(o: u32, hx: vec4<f16>, hw: vec4<f16>) {
    xs[o] = hx.x; xs[o + 1u] = hx.y; xs[o + 2u] = hx.z; xs[o + 3u] = hx.w;
    ws[o] = hw.x; ws[o + 1u] = hw.y; ws[o + 2u] = hw.z; ws[o + 3u] = hw.w;
}

// The 16-byte chunks of step `s` (32 along K) of x's 128 token rows and W's 128 rows this
// invocation loads: zeros past K, the last weight row again past the part's end.
fn load_step(lid: u32, s: u32, t0: u32, r0: u32, k8: u32,
             xr: ptr<function, array<vec4<f16>, 2u * LOADS>>,
             wr: ptr<function, array<vec4<f16>, 2u * LOADS>>) {
    let last_row = dims.rows - 1u;
    for (var j = 0u; j < LOADS; j++) {
        let i = lid + j * WG;
        let q = s * 4u + i % 4u;
        (*xr)[2u * j] = vec4<f16>(0.0h);
        (*xr)[2u * j + 1u] = vec4<f16>(0.0h);
        (*wr)[2u * j] = vec4<f16>(0.0h);
        (*wr)[2u * j + 1u] = vec4<f16>(0.0h);
        if (q < k8) {
            let xo = 2u * ((t0 + i / 4u) * k8 + q);
            let wo = 2u * (min(r0 + i / 4u, last_row) * k8 + q);
            (*xr)[2u * j] = xh[xo];
            (*xr)[2u * j + 1u] = xh[xo + 1u];
            (*wr)[2u * j] = w[wo];
            (*wr)[2u * j + 1u] = w[wo + 1u];
        }
    }
}

// Those chunks into the stage at `base`.
fn store_step(lid: u32, base: u32,
              xr: ptr<function, array<vec4<f16>, 2u * LOADS>>,
              wr: ptr<function, array<vec4<f16>, 2u * LOADS>>) {
    for (var j = 0u; j < LOADS; j++) {
        let i = lid + j * WG;
        let o = base + (i / 4u) * S + (i % 4u) * 8u;
        stage_half(o, (*xr)[2u * j], (*wr)[2u * j]);
        stage_half(o + 4u, (*xr)[2u * j + 1u], (*wr)[2u * j + 1u]);
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_id) sg: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    let k8 = dims.k8;                 // 16-byte chunks per row
    let steps = (k8 + 3u) / 4u;       // steps of 32 along K
    let t0 = wid.y * 128u;
    let r0 = wid.x * 128u;
    let tm = (sg / 2u) * 64u;         // this subgroup's tokens within the tile
    let tn = (sg % 2u) * 64u;         // and weight rows
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
    var xr: array<vec4<f16>, 2u * LOADS>;
    var wr: array<vec4<f16>, 2u * LOADS>;
    // step 0 into stage 0
    load_step(lid, 0u, t0, r0, k8, &xr, &wr);
    store_step(lid, 0u, &xr, &wr);
    workgroupBarrier();
    // Each step: the next step's global loads are issued, this step's matrix work runs
    // from its stage, the next step goes into the other stage (whose readers, the step
    // before, passed the last barrier). naga holds every local variable non-uniform, so
    // the matrix work sits in no `if` of one.
    for (var s = 0u; s < steps; s++) {
        let more = s + 1u < steps;
        if (more) { load_step(lid, s + 1u, t0, r0, k8, &xr, &wr); }
        let cur = (s % 2u) * TILE;
        for (var kk = 0u; kk < 2u; kk++) {
            let ka = cur + kk * 16u;
            let ia0 = ka + tm * S;
            let ia1 = ia0 + 16u * S;
            let ia2 = ia0 + 32u * S;
            let ia3 = ia0 + 48u * S;
            let ib0 = ka + tn * S;
            let ib1 = ib0 + 16u * S;
            let ib2 = ib0 + 32u * S;
            let ib3 = ib0 + 48u * S;
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[ia0], S);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[ia1], S);
            let a2 = coopLoadT<coop_mat16x16<f16, A>>(&xs[ia2], S);
            let a3 = coopLoadT<coop_mat16x16<f16, A>>(&xs[ia3], S);
            // B[k][n] = W[n][k]: column-major with the rows' stride
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
            c20 = coopMultiplyAdd(a2, b0, c20);
            c21 = coopMultiplyAdd(a2, b1, c21);
            c22 = coopMultiplyAdd(a2, b2, c22);
            c23 = coopMultiplyAdd(a2, b3, c23);
            c30 = coopMultiplyAdd(a3, b0, c30);
            c31 = coopMultiplyAdd(a3, b1, c31);
            c32 = coopMultiplyAdd(a3, b2, c32);
            c33 = coopMultiplyAdd(a3, b3, c33);
        }
        if (more) { store_step(lid, ((s + 1u) % 2u) * TILE, &xr, &wr); }
        workgroupBarrier();
    }
    let io = sg * 256u;
    let s16 = 16u;
    let t = t0 + tm;
    let r = r0 + tn;
    let t1 = t + 16u;
    let t2 = t + 32u;
    let t3 = t + 48u;
    let r1 = r + 16u;
    let r2 = r + 32u;
    let r3 = r + 48u;
    coopStoreT(c00, &os[io], s16); workgroupBarrier(); emit(sg, lane, t, r, r, t_count); workgroupBarrier();
    coopStoreT(c01, &os[io], s16); workgroupBarrier(); emit(sg, lane, t, r1, r1, t_count); workgroupBarrier();
    coopStoreT(c02, &os[io], s16); workgroupBarrier(); emit(sg, lane, t, r2, r2, t_count); workgroupBarrier();
    coopStoreT(c03, &os[io], s16); workgroupBarrier(); emit(sg, lane, t, r3, r3, t_count); workgroupBarrier();
    coopStoreT(c10, &os[io], s16); workgroupBarrier(); emit(sg, lane, t1, r, r, t_count); workgroupBarrier();
    coopStoreT(c11, &os[io], s16); workgroupBarrier(); emit(sg, lane, t1, r1, r1, t_count); workgroupBarrier();
    coopStoreT(c12, &os[io], s16); workgroupBarrier(); emit(sg, lane, t1, r2, r2, t_count); workgroupBarrier();
    coopStoreT(c13, &os[io], s16); workgroupBarrier(); emit(sg, lane, t1, r3, r3, t_count); workgroupBarrier();
    coopStoreT(c20, &os[io], s16); workgroupBarrier(); emit(sg, lane, t2, r, r, t_count); workgroupBarrier();
    coopStoreT(c21, &os[io], s16); workgroupBarrier(); emit(sg, lane, t2, r1, r1, t_count); workgroupBarrier();
    coopStoreT(c22, &os[io], s16); workgroupBarrier(); emit(sg, lane, t2, r2, r2, t_count); workgroupBarrier();
    coopStoreT(c23, &os[io], s16); workgroupBarrier(); emit(sg, lane, t2, r3, r3, t_count); workgroupBarrier();
    coopStoreT(c30, &os[io], s16); workgroupBarrier(); emit(sg, lane, t3, r, r, t_count); workgroupBarrier();
    coopStoreT(c31, &os[io], s16); workgroupBarrier(); emit(sg, lane, t3, r1, r1, t_count); workgroupBarrier();
    coopStoreT(c32, &os[io], s16); workgroupBarrier(); emit(sg, lane, t3, r2, r2, t_count); workgroupBarrier();
    coopStoreT(c33, &os[io], s16); workgroupBarrier(); emit(sg, lane, t3, r3, r3, t_count); workgroupBarrier();
}
