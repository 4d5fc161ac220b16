// Decode matmul for few token rows (T <= 8, one pipeline per T), subgroup path: one subgroup per weight row,
// its lanes split K in chunks (8 values of float weights, one 32-value block of quantized
// ones: w_load_chunk) and finish with subgroupAdd, so there are no
// workgroup barriers at all. Every weight is read once for all T tokens. With LOOP, any
// number of token rows, T at a time: a row's weights come from memory for the first T and
// from the cache for the rest (ops::matmul's `GemmKernel::Matvec`).
//!COMMON
//!MATMUL
//!W4 w 2
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;

const ROWS: u32 = {{ROWS}}u;   // rows per workgroup: 256 / the adapter's smallest subgroup
const TMAX: u32 = {{T}}u;   // token rows, fixed per pipeline so the accumulators stay in registers
const CHUNK4: u32 = {{CHUNK4}}u;   // vec4s per weight chunk
const PAIRED: bool = {{PAIRED}};   // two chunks per lane per trip (float weights)
const LOOP: bool = {{LOOP}};       // all the step's token rows, TMAX at a time

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) nsg: u32,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sg_size: u32) {
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    let groups = select(1u, (t_count + TMAX - 1u) / TMAX, LOOP);
    let first = (wid.y * nwg.x + wid.x) * ROWS;
    let chunks = dims.k8 * 2u / CHUNK4;
    for (var rr = sg; rr < ROWS; rr += nsg) {
        let r = first + rr;
        if (r >= dims.rows) { break; }
        for (var g = 0u; g < groups; g++) {
            let tg = g * TMAX;
            // where accumulator t's row of x starts (LOOP's last group: past the last row,
            // the last row again, not stored)
            var xr: array<u32, TMAX>;
            for (var t = 0u; t < TMAX; t++) {
                xr[t] = select(t, min(tg + t, t_count - 1u), LOOP) * dims.k8 * 2u;
            }
            var acc: array<f32, TMAX>;
            for (var t = 0u; t < TMAX; t++) { acc[t] = 0.0; }
            var c = lane;
            // two chunks per lane per trip: both loads are issued before either is used (for
            // float weights; a quantized block is already 8 vec4s of work, and pairing them
            // ran slower on the H200: bench/2026-11-30-h200-q8dot)
            for (; PAIRED && c + sg_size < chunks; c += 2u * sg_size) {
                let wa = w_load_chunk(r * chunks + c);
                let wb = w_load_chunk(r * chunks + c + sg_size);
                for (var t = 0u; t < TMAX; t++) {
                    let xa = xr[t] + c * CHUNK4;
                    let xb = xa + sg_size * CHUNK4;
                    var s = 0.0;
                    //!UNROLL j {{CHUNK4}}
                    s += dot(wa[%j%], x[xa + %j%u]) + dot(wb[%j%], x[xb + %j%u]);
                    //!END
                    acc[t] += s;
                }
            }
            for (; c < chunks; c += sg_size) {
                let wc = w_load_chunk(r * chunks + c);
                for (var t = 0u; t < TMAX; t++) {
                    let xi = xr[t] + c * CHUNK4;
                    var s = 0.0;
                    //!UNROLL j {{CHUNK4}}
                    s += dot(wc[%j%], x[xi + %j%u]);
                    //!END
                    acc[t] += s;
                }
            }
            let col = dims.row0 + r;
            for (var t = 0u; t < TMAX; t++) {
                var v = subgroupAdd(acc[t]);
                if (lane == 0u && (!LOOP || tg + t < t_count)) {
                    if (dims.has_bias != 0u) { v += bias[col]; }
                    let yi = (tg + t) * dims.n + col;
                    if (dims.accumulate != 0u) { v += y[yi]; }
                    y[yi] = v;
                }
            }
        }
    }
}
