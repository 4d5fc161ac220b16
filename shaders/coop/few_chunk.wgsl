// One 16-wide chunk of K at `kk` in shaders/coop/gemm_f16_few.wgsl (its CHUNK constant, in the
// trip of four chunks and in the loop over the rest): the RT weight tiles, then each
// token tile's x tile times them into the accumulators.
let ib0 = r0 * k + kk;
let ib1 = r1 * k + kk;
let ib2 = r2 * k + kk;
let ib3 = r3 * k + kk;
// B[k][n] = W[n][k]: column-major with the rows' stride (tiles past RT unused)
let b0 = coopLoad<coop_mat16x16<f16, B>>(&w[ib0], k);
let b1 = coopLoad<coop_mat16x16<f16, B>>(&w[ib1], k);
let b2 = coopLoad<coop_mat16x16<f16, B>>(&w[ib2], k);
let b3 = coopLoad<coop_mat16x16<f16, B>>(&w[ib3], k);
let a0 = x_tile(t, 0u, kk, k);
c00 = coopMultiplyAdd(a0, b0, c00);
if (RT > 1u) { c01 = coopMultiplyAdd(a0, b1, c01); }
if (RT > 2u) {
    c02 = coopMultiplyAdd(a0, b2, c02);
    c03 = coopMultiplyAdd(a0, b3, c03);
}
if (TA > 1u) {
    let a1 = x_tile(t, 1u, kk, k);
    c10 = coopMultiplyAdd(a1, b0, c10);
    if (RT > 1u) { c11 = coopMultiplyAdd(a1, b1, c11); }
}
if (TA > 2u) {
    let a2 = x_tile(t, 2u, kk, k);
    let a3 = x_tile(t, 3u, kk, k);
    c20 = coopMultiplyAdd(a2, b0, c20);
    c30 = coopMultiplyAdd(a3, b0, c30);
}
