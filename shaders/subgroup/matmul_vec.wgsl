// Decode matmul for few token rows (T <= 8, one pipeline per T), subgroup path: a subgroup
// takes RS weight rows at a time, its lanes split K in chunks (8 values of float weights,
// one 32-value block of quantized ones: w_load_chunk) and finish with subgroupAdd, so there
// are no workgroup barriers at all. Every weight is read once for all T tokens, and each
// x chunk once for all RS rows. With LOOP, any number of token rows, T at a time: a row's
// weights come from memory for the first T and from the cache for the rest
// (ops::matmul's `GemmKernel::Matvec`).
//!COMMON
//!MATMUL
//!W4 w 2
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;

const ROWS: u32 = {{ROWS}}u;   // rows per workgroup, a multiple of RS
const TMAX: u32 = {{T}}u;   // token rows, fixed per pipeline so the accumulators stay in registers
const RS: u32 = {{RS}}u;       // weight rows per subgroup at a time
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
    for (var rr = sg * RS; rr < ROWS; rr += nsg * RS) {
        let r0 = first + rr;
        if (r0 >= dims.rows) { break; }
        // where each row's chunks start; rows past the matrix read its last row again and
        // are not stored
        var wrow: array<u32, RS>;
        //!UNROLL r {{RS}}
        wrow[%r%] = min(r0 + %r%u, dims.rows - 1u) * chunks;
        //!END
        for (var g = 0u; g < groups; g++) {
            let tg = g * TMAX;
            // where accumulator t's row of x starts (LOOP's last group: past the last row,
            // the last row again, not stored)
            var xr: array<u32, TMAX>;
            for (var t = 0u; t < TMAX; t++) {
                xr[t] = select(t, min(tg + t, t_count - 1u), LOOP) * dims.k8 * 2u;
            }
            var acc: array<f32, TMAX * RS>;   // zeroed, as every WGSL var
            var c = lane;
            // two chunks per lane per trip: both loads are issued before either is used (for
            // float weights; a quantized block is already 8 vec4s of work, and pairing them
            // ran slower on the H200: bench/2026-11-30-h200-q8dot)
            for (; PAIRED && c + sg_size < chunks; c += 2u * sg_size) {
                var wa: array<array<vec4<f32>, CHUNK4>, RS>;
                var wb: array<array<vec4<f32>, CHUNK4>, RS>;
                //!UNROLL r {{RS}}
                wa[%r%] = w_load_chunk(wrow[%r%] + c);
                wb[%r%] = w_load_chunk(wrow[%r%] + c + sg_size);
                //!END
                for (var t = 0u; t < TMAX; t++) {
                    // x's two chunks, loaded once for the RS rows
                    let xa = xr[t] + c * CHUNK4;
                    let xb = xa + sg_size * CHUNK4;
                    var va: array<vec4<f32>, CHUNK4>;
                    var vb: array<vec4<f32>, CHUNK4>;
                    //!UNROLL j {{CHUNK4}}
                    va[%j%] = x[xa + %j%u];
                    vb[%j%] = x[xb + %j%u];
                    //!END
                    //!UNROLL r {{RS}}
                    var s = 0.0;
                    //!UNROLL j {{CHUNK4}}
                    s += dot(wa[%r%][%j%], va[%j%]) + dot(wb[%r%][%j%], vb[%j%]);
                    //!END
                    acc[t * RS + %r%u] += s;
                    //!END
                }
            }
            for (; c < chunks; c += sg_size) {
                var wc: array<array<vec4<f32>, CHUNK4>, RS>;
                //!UNROLL r {{RS}}
                wc[%r%] = w_load_chunk(wrow[%r%] + c);
                //!END
                for (var t = 0u; t < TMAX; t++) {
                    let xi = xr[t] + c * CHUNK4;
                    var vc: array<vec4<f32>, CHUNK4>;
                    //!UNROLL j {{CHUNK4}}
                    vc[%j%] = x[xi + %j%u];
                    //!END
                    //!UNROLL r {{RS}}
                    var s = 0.0;
                    //!UNROLL j {{CHUNK4}}
                    s += dot(wc[%r%][%j%], vc[%j%]);
                    //!END
                    acc[t * RS + %r%u] += s;
                    //!END
                }
            }
            for (var t = 0u; t < TMAX; t++) {
                //!UNROLL r {{RS}}
                var v = subgroupAdd(acc[t * RS + %r%u]);
                let r = r0 + %r%u;
                if (lane == 0u && r < dims.rows && (!LOOP || tg + t < t_count)) {
                    let col = dims.row0 + r;
                    if (dims.has_bias != 0u) { v += bias[col]; }
                    let yi = (tg + t) * dims.n + col;
                    if (dims.accumulate != 0u) { v += y[yi]; }
                    y[yi] = v;
                }
                //!END
            }
        }
    }
}
