// The epilogue of the cooperative-matrix GEMMs (shaders/coop/gemm*.wgsl, through the
// COOP_EPILOGUE constant): each subgroup stores one 16x16 f32 tile at a time into its
// slice of `os`, then its lanes add bias and residual and store the elements in range.
var<workgroup> os: array<f32, 1024>;   // one 16x16 f32 tile per subgroup

// Stores the tile the subgroup just wrote to os: tokens t.., rows r.., of which the rows
// from `first` on (a tile moved back to end at the part's last row repeats some).
fn emit(sg: u32, lane: u32, t: u32, r: u32, first: u32, t_count: u32) {
    for (var e = lane; e < 256u; e += SG) {
        let tt = t + e / 16u;
        let rr = r + e % 16u;
        if (tt < t_count && rr >= first && rr < dims.rows) {
            store_y(tt, rr, os[sg * 256u + e]);
        }
    }
}
