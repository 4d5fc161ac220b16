// Decode matmul for few token rows (T <= 8, one pipeline per T), subgroup path: one subgroup per weight row,
// its lanes split K in chunks of 8 and finish with subgroupAdd, so there are no
// workgroup barriers at all. Every weight is read once for all T tokens.
//!COMMON
//!MATMUL

const ROWS: u32 = {{ROWS}}u;   // rows per workgroup: 256 / the adapter's smallest subgroup
const TMAX: u32 = {{T}}u;   // token rows, fixed per pipeline so the accumulators stay in registers

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) nsg: u32,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sg_size: u32) {
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    _ = t_count;
    let first = (wid.y * nwg.x + wid.x) * ROWS;
    for (var rr = sg; rr < ROWS; rr += nsg) {
        let r = first + rr;
        if (r >= dims.rows) { break; }
        var acc: array<f32, TMAX>;
        for (var t = 0u; t < TMAX; t++) { acc[t] = 0.0; }
        for (var c = lane; c < dims.k8; c += sg_size) {
            let wa = w_load4((r * dims.k8 + c) * 2u);
            let wb = w_load4((r * dims.k8 + c) * 2u + 1u);
            for (var t = 0u; t < TMAX; t++) {
                let xi = (t * dims.k8 + c) * 2u;
                acc[t] += dot(wa, x[xi]) + dot(wb, x[xi + 1u]);
            }
        }
        let col = dims.row0 + r;
        for (var t = 0u; t < TMAX; t++) {
            var v = subgroupAdd(acc[t]);
            if (lane == 0u) {
                if (dims.has_bias != 0u) { v += bias[col]; }
                let yi = t * dims.n + col;
                if (dims.accumulate != 0u) { v += y[yi]; }
                y[yi] = v;
            }
        }
    }
}
