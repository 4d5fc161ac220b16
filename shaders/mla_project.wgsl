// The per-head projections of MLA's absorbed form, one thread per output value:
//   out[row, h, i] = sum_j W[h, j, i] * x[row, h, j]        (i < M, j < N)
// and, for i in M .. M + copy_n, out[row, h, i] = xc[row, h, i - M] (appends q_rope to
// the absorbed query so the key of a position is [latent | rope key]).
// Queries: W = W_UK (per head [d_nope][rank]) turns q_nope into a rank-wide query.
// Outputs: W = W_UV^T (per head [rank][d_v]) turns the attended latent into the head output.
struct Params {
    m: u32, n: u32, copy_n: u32, heads: u32,
    in_stride: u32, in_hstride: u32, in_off: u32, _p0: u32,
    out_stride: u32, out_hstride: u32, out_off: u32, _p1: u32,
    copy_stride: u32, copy_hstride: u32, copy_off: u32, _p2: u32,
}
@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> xc: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let h = gid.y;
    let row = gid.z;
    let o = row * prm.out_stride + h * prm.out_hstride + prm.out_off + i;
    if (i < prm.m) {
        let xb = row * prm.in_stride + h * prm.in_hstride + prm.in_off;
        let wb = h * prm.n * prm.m + i;
        var acc = 0.0;
        for (var j = 0u; j < prm.n; j++) { acc += w[wb + j * prm.m] * x[xb + j]; }
        out[o] = acc;
    } else if (i < prm.m + prm.copy_n) {
        out[o] = xc[row * prm.copy_stride + h * prm.copy_hstride + prm.copy_off + i - prm.m];
    }
}
