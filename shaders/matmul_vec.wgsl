// Decode matmul for few token rows (T <= 8, one pipeline per T): y[t, row0 + r] (+)= dot(x[t, :], W[r, :]) + b.
// Each workgroup owns ROWS weight rows; LANES threads split K of each row in chunks (8
// values of float weights, a 32-value block of quantized ones),
// so every weight is read once for all T tokens. LANES = 1 (CPU adapters) needs no
// reduction and no barrier.
//!COMMON
//!MATMUL
//!W4 w 2
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;

const LANES: u32 = {{LANES}}u;
const ROWS: u32 = 256u / LANES;
const TMAX: u32 = {{T}}u;   // token rows, fixed per pipeline so the accumulators stay in registers
const CHUNK4: u32 = {{CHUNK4}}u;   // vec4s per weight chunk (w_load_chunk)
var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let lane = lid.x % LANES;
    let slot = lid.x / LANES;
    let r = (wid.y * nwg.x + wid.x) * ROWS + slot;
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    _ = t_count;
    var acc: array<f32, TMAX>;
    for (var t = 0u; t < TMAX; t++) { acc[t] = 0.0; }
    if (r < dims.rows) {
        let chunks = dims.k8 * 2u / CHUNK4;
        for (var c = lane; c < chunks; c += LANES) {
            let wc = w_load_chunk(r * chunks + c);
            for (var t = 0u; t < TMAX; t++) {
                let xi = t * dims.k8 * 2u + c * CHUNK4;
                var s = 0.0;
                //!UNROLL j {{CHUNK4}}
                s += dot(wc[%j%], x[xi + %j%u]);
                //!END
                acc[t] += s;
            }
        }
    }
    for (var t = 0u; t < TMAX; t++) {
        var v = acc[t];
        if (LANES > 1u) {
            red[lid.x] = v;
            workgroupBarrier();
            for (var off = LANES / 2u; off > 0u; off >>= 1u) {
                if (lane < off) { red[lid.x] += red[lid.x + off]; }
                workgroupBarrier();
            }
            v = red[lid.x];
        }
        if (lane == 0u && r < dims.rows) {
            let col = dims.row0 + r;
            if (dims.has_bias != 0u) { v += bias[col]; }
            let yi = t * dims.n + col;
            if (dims.accumulate != 0u) { v += y[yi]; }
            y[yi] = v;
        }
        if (LANES > 1u) { workgroupBarrier(); }
    }
}
