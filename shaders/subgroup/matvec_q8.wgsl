// Decode matmul of quantized weights for few token rows (T <= 8, one pipeline per T),
// subgroup path, in integer dot products: x arrives as 8-bit blocks (shaders/quantize_q8.wgsl),
// so a weight block times an x block is 8 dot4I8Packed and two multiplies instead of 32
// dequantized FMAs, and x costs 48 bytes per block instead of 128. One subgroup per weight
// row, its lanes take whole blocks (a 16- or 32-byte load each, neighbours contiguous);
// BLOCKS_IN_FLIGHT blocks per lane are fetched before any is used, then subgroupAdd.
// Where x's blocks come from is X_SOURCE: binding 3 as an earlier kernel stored them, or
// (shaders/subgroup/matvec_q8_prologue.wgsl) made in workgroup memory by `load_x` from the
// f32 rows that RMSNorm or SiLU·mul would have read, saving that dispatch.
//!COMMON
//!MATMUL
//!WQ8 w 2
const ROWS: u32 = {{ROWS}}u;   // rows per workgroup: 256 / the adapter's smallest subgroup
const TMAX: u32 = {{T}}u;      // token rows, fixed per pipeline so the accumulators stay in registers
{{X_SOURCE}}
{{IDOT4}}

fn x_dot(wb: w_block, xb: u32) -> f32 {
    return w_dot(wb, x_word(xb), x_word(xb + 1u), bitcast<vec2<f32>>(x_word(xb + 2u).xy));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) nsg: u32,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sg_size: u32) {
    load_x(li, sg, nsg, lane);
    let first = (wid.y * nwg.x + wid.x) * ROWS;
    let nb = dims.k8 / 4u;   // 32-value blocks per row
    for (var rr = sg; rr < ROWS; rr += nsg) {
        let r = first + rr;
        if (r >= dims.rows) { break; }
        var acc: array<f32, TMAX>;
        //!UNROLL t {{T}}
        acc[%t%] = 0.0;
        //!END
        var c = lane;
        // two blocks per lane per trip: both loads are issued before either is used
        for (; c + sg_size < nb; c += 2u * sg_size) {
            let wa = w_fetch(r * nb + c);
            let wb = w_fetch(r * nb + c + sg_size);
            //!UNROLL t {{T}}
            acc[%t%] += x_dot(wa, (%t%u * nb + c) * 3u) + x_dot(wb, (%t%u * nb + c + sg_size) * 3u);
            //!END
        }
        if (c < nb) {
            let wa = w_fetch(r * nb + c);
            //!UNROLL t {{T}}
            acc[%t%] += x_dot(wa, (%t%u * nb + c) * 3u);
            //!END
        }
        let col = dims.row0 + r;
        //!UNROLL t {{T}}
        var v = subgroupAdd(acc[%t%]);
        if (lane == 0u) {
            if (dims.has_bias != 0u) { v += bias[col]; }
            let yi = %t%u * dims.n + col;
            if (dims.accumulate != 0u) { v += y[yi]; }
            y[yi] = v;
        }
        //!END
    }
}
