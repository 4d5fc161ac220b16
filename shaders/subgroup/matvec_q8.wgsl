// Decode matmul of quantized weights for few token rows (T <= 8, one pipeline per T),
// subgroup path, in integer dot products: x arrives as 8-bit blocks (shaders/quantize_q8.wgsl),
// so a weight block times an x block is 8 dot4I8Packed and two multiplies instead of 32
// dequantized FMAs, and x costs 48 bytes per block instead of 128. A subgroup takes RS
// weight rows at a time, its lanes whole blocks (a 16- or 32-byte load each, neighbours
// contiguous): each lane loads (and unpacks) an x block once for all RS rows, and has
// RS x KP weight blocks in flight before it uses any (KP blocks along K), then subgroupAdd.
// Where x's blocks come from is X_SOURCE: binding 3 as an earlier kernel stored them, or
// (shaders/subgroup/matvec_q8_prologue.wgsl) made in workgroup memory by `load_x` from the
// f32 rows that RMSNorm or SiLU·mul would have read, saving that dispatch.
// With LOOP (x's blocks bound), any number of token rows, TMAX at a time: a row's weights
// come from memory for the first TMAX and from the cache for the rest (many sequences
// decoding together, where the matrix units fill too few workgroups).
//!COMMON
//!MATMUL
//!WQ8 w 2
const ROWS: u32 = {{ROWS}}u;   // rows per workgroup, a multiple of RS
const TMAX: u32 = {{T}}u;      // token rows, fixed per pipeline so the accumulators stay in registers
const RS: u32 = {{RS}}u;       // weight rows per subgroup at a time
const KP: u32 = {{KP}}u;       // blocks along K per lane per trip (1 or 2)
const LOOP: bool = {{LOOP}};   // all the step's token rows, TMAX at a time
{{X_SOURCE}}
{{IDOT4}}

struct x_q8 { q0: vec4<u32>, q1: vec4<u32>, s: vec2<f32> }

fn x_fetch(xb: u32) -> x_q8 {
    return x_q8(x_word(xb), x_word(xb + 1u), bitcast<vec2<f32>>(x_word(xb + 2u).xy));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) nsg: u32,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sg_size: u32) {
    load_x(li, sg, nsg, lane);
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    let groups = select(1u, (t_count + TMAX - 1u) / TMAX, LOOP);
    let first = (wid.y * nwg.x + wid.x) * ROWS;
    let nb = dims.k8 / 4u;   // 32-value blocks per row
    for (var rr = sg * RS; rr < ROWS; rr += nsg * RS) {
        let r0 = first + rr;
        if (r0 >= dims.rows) { break; }
        // where each row's blocks start; rows past the matrix read its last row again and
        // are not stored
        var wrow: array<u32, RS>;
        //!UNROLL r {{RS}}
        wrow[%r%] = min(r0 + %r%u, dims.rows - 1u) * nb;
        //!END
        for (var g = 0u; g < groups; g++) {
        let tg = g * TMAX;
        // where accumulator t's row of x starts (LOOP's last group: past the last row, the
        // last row again, not stored)
        var xrow: array<u32, TMAX>;
        //!UNROLL t {{T}}
        xrow[%t%] = select(%t%u, min(tg + %t%u, t_count - 1u), LOOP) * nb;
        //!END
        var acc: array<f32, TMAX * RS>;   // zeroed, as every WGSL var
        var c = lane;
        // KP blocks along K for each of RS rows: every load issued before any is used
        for (; c + (KP - 1u) * sg_size < nb; c += KP * sg_size) {
            var wb: array<w_block, RS * KP>;
            //!UNROLL p {{KP}}
            //!UNROLL r {{RS}}
            wb[%p%u * RS + %r%u] = w_fetch(wrow[%r%] + c + %p%u * sg_size);
            //!END
            //!END
            //!UNROLL p {{KP}}
            //!UNROLL t {{T}}
            let xb = x_fetch((xrow[%t%] + c + %p%u * sg_size) * 3u);
            //!UNROLL r {{RS}}
            acc[%t%u * RS + %r%u] += w_dot(wb[%p%u * RS + %r%u], xb.q0, xb.q1, xb.s);
            //!END
            //!END
            //!END
        }
        for (; c < nb; c += sg_size) {
            var wb: array<w_block, RS>;
            //!UNROLL r {{RS}}
            wb[%r%] = w_fetch(wrow[%r%] + c);
            //!END
            //!UNROLL t {{T}}
            let xb = x_fetch((xrow[%t%] + c) * 3u);
            //!UNROLL r {{RS}}
            acc[%t%u * RS + %r%u] += w_dot(wb[%r%], xb.q0, xb.q1, xb.s);
            //!END
            //!END
        }
        //!UNROLL t {{T}}
        //!UNROLL r {{RS}}
        var v = subgroupAdd(acc[%t%u * RS + %r%u]);
        let r = r0 + %r%u;
        if (lane == 0u && r < dims.rows && (!LOOP || tg + %t%u < t_count)) {
            let col = dims.row0 + r;
            if (dims.has_bias != 0u) { v += bias[col]; }
            let yi = (tg + %t%u) * dims.n + col;
            if (dims.accumulate != 0u) { v += y[yi]; }
            y[yi] = v;
        }
        //!END
        //!END
        }
    }
}
