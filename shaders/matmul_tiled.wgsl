// Prefill matmul: y[t, row0 + r] (+)= dot(x[t, :], W[r, :]) + b for many tokens.
// 64x64 output tiles (tokens x rows), K in steps of 16 through workgroup memory;
// each of the 256 threads computes a 4x4 block.
//!COMMON
struct Dims {
    k8: u32, n: u32, row0: u32, rows: u32,
    accumulate: u32, has_bias: u32, t_from_logits: u32, _pad: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
//!W4 w 2
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;

const TILE: u32 = 64u;
const BK: u32 = 16u;
var<workgroup> xs: array<vec4<f32>, 256>;  // [64 tokens][16 k] as [64][4] vec4
var<workgroup> ws: array<vec4<f32>, 256>;  // [64 rows][16 k]

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    let t_base = wid.y * TILE;
    let r_base = wid.x * TILE;
    let k4 = dims.k8 * 2u;
    let tx = lid.x % 16u;  // 4 rows each
    let ty = lid.x / 16u;  // 4 tokens each
    var acc: array<vec4<f32>, 4>;  // acc[token j][row i]
    for (var j = 0u; j < 4u; j++) { acc[j] = vec4<f32>(0.0); }
    // each thread loads one vec4 of x and one of w per k-step
    let lrow = lid.x / 4u;
    let lk = lid.x % 4u;
    for (var kb = 0u; kb < k4; kb += 4u) {
        let t = t_base + lrow;
        var xv = vec4<f32>(0.0);
        if (t < t_count && kb + lk < k4) { xv = x[t * k4 + kb + lk]; }
        xs[lid.x] = xv;
        let r = r_base + lrow;
        var wv = vec4<f32>(0.0);
        if (r < dims.rows && kb + lk < k4) { wv = w_load4(r * k4 + kb + lk); }
        ws[lid.x] = wv;
        workgroupBarrier();
        for (var kk = 0u; kk < 4u; kk++) {
            let w0 = ws[(tx * 4u + 0u) * 4u + kk];
            let w1 = ws[(tx * 4u + 1u) * 4u + kk];
            let w2 = ws[(tx * 4u + 2u) * 4u + kk];
            let w3 = ws[(tx * 4u + 3u) * 4u + kk];
            for (var j = 0u; j < 4u; j++) {
                let xv2 = xs[(ty * 4u + j) * 4u + kk];
                acc[j] += vec4<f32>(dot(xv2, w0), dot(xv2, w1), dot(xv2, w2), dot(xv2, w3));
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let t = t_base + ty * 4u + j;
        if (t >= t_count) { continue; }
        for (var i = 0u; i < 4u; i++) {
            let r = r_base + tx * 4u + i;
            if (r >= dims.rows) { continue; }
            let col = dims.row0 + r;
            var v = acc[j][i];
            if (dims.has_bias != 0u) { v += bias[col]; }
            let yi = t * dims.n + col;
            if (dims.accumulate != 0u) { v += y[yi]; }
            y[yi] = v;
        }
    }
}
