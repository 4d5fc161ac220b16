// Matmul of many token rows in f32 with workgroup-memory tiles (no matrix units):
// y[t, row0 + r] (+)= dot(x[t, :], W[r, :]) + b. A workgroup of 256 owns 64 tokens x 64
// weight rows; each step of 16 along K stages x and W (dequantized from its stored form)
// in workgroup memory, K-major, four tokens or rows to a vec4, and each invocation
// accumulates 4 tokens x 4 rows from two vec4 reads per K. Each invocation stages one
// token's and one row's vec4 (consecutive invocations: consecutive tokens, so consecutive
// words), and loads the next step's before this step's arithmetic, which hides them.
//!COMMON
//!MATMUL
//!W4 w 2
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;

var<workgroup> xs: array<vec4<f32>, 256>;   // [k][token / 4], 16 x 16
var<workgroup> ws: array<vec4<f32>, 256>;   // [k][row / 4]

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    let t0 = wid.y * 64u;
    let r0 = wid.x * 64u;
    let k4 = dims.k8 * 2u;
    // what this invocation stages: token / row `st`, the `sq`-th vec4 of the step
    let st = lid % 64u;
    let sq = lid / 64u;
    let t_ok = t0 + st < t_count;
    let r_ok = r0 + st < dims.rows;
    let xa = (t0 + st) * k4 + sq;
    let wa = (r0 + st) * k4 + sq;
    // what it computes: tokens 4ti.., rows 4ri..
    let ti = lid / 16u;
    let ri = lid % 16u;
    var acc: array<vec4<f32>, 4>;   // acc[j][i]: token 4ti + j, row 4ri + i
    for (var j = 0u; j < 4u; j++) { acc[j] = vec4<f32>(0.0); }
    var xv = vec4<f32>(0.0);
    var wv = vec4<f32>(0.0);
    if (t_ok && sq < k4) { xv = x[xa]; }
    if (r_ok && sq < k4) { wv = w_load4(wa); }
    for (var kb = 0u; kb < k4; kb += 4u) {
        workgroupBarrier();   // the previous step's reads of the tiles are done
        for (var c = 0u; c < 4u; c++) {
            let o = (4u * sq + c) * 16u + st / 4u;
            xs[o][st % 4u] = xv[c];
            ws[o][st % 4u] = wv[c];
        }
        workgroupBarrier();
        let q = kb + 4u + sq;
        xv = vec4<f32>(0.0);
        wv = vec4<f32>(0.0);
        if (t_ok && q < k4) { xv = x[xa + kb + 4u]; }
        if (r_ok && q < k4) { wv = w_load4(wa + kb + 4u); }
        for (var k = 0u; k < 16u; k++) {
            let a = xs[k * 16u + ti];
            let b = ws[k * 16u + ri];
            acc[0] += a.x * b;
            acc[1] += a.y * b;
            acc[2] += a.z * b;
            acc[3] += a.w * b;
        }
    }
    for (var j = 0u; j < 4u; j++) {
        let t = t0 + 4u * ti + j;
        if (t >= t_count) { break; }
        for (var i = 0u; i < 4u; i++) {
            let r = r0 + 4u * ri + i;
            if (r >= dims.rows) { break; }
            store_y(t, r, acc[j][i]);
        }
    }
}
