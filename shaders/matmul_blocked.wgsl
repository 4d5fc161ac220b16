// Prefill matmul without workgroup memory: y[t, row0 + r] (+)= dot(x[t, :], W[r, :]) + b.
// Each invocation owns a 4-token x 4-row block and streams K through registers (4 x rows
// and 4 W rows as vec4: 16 dot4 per 8 loads); neighbours share rows through the caches.
// A workgroup of 64 covers 32 tokens x 32 rows.
//!COMMON
//!MATMUL
//!W4 w 2
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    var t_count = step.n_tokens;
    if (dims.t_from_logits != 0u) { t_count = step.n_out_rows; }
    let t0 = wid.y * 32u + (lid.x / 8u) * 4u;
    let r0 = wid.x * 32u + (lid.x % 8u) * 4u;
    if (t0 >= t_count || r0 >= dims.rows) { return; }
    let k4 = dims.k8 * 2u;
    // clamp out-of-range rows/tokens to valid ones; their results are not stored
    let ta = t0 * k4;
    let tb = min(t0 + 1u, t_count - 1u) * k4;
    let tc = min(t0 + 2u, t_count - 1u) * k4;
    let td = min(t0 + 3u, t_count - 1u) * k4;
    let ra = r0 * k4;
    let rb = min(r0 + 1u, dims.rows - 1u) * k4;
    let rc = min(r0 + 2u, dims.rows - 1u) * k4;
    let rd = min(r0 + 3u, dims.rows - 1u) * k4;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var k = 0u; k < k4; k++) {
        let w0 = w_load4(ra + k);
        let w1 = w_load4(rb + k);
        let w2 = w_load4(rc + k);
        let w3 = w_load4(rd + k);
        let x0 = x[ta + k];
        let x1 = x[tb + k];
        let x2 = x[tc + k];
        let x3 = x[td + k];
        a0 += vec4<f32>(dot(x0, w0), dot(x0, w1), dot(x0, w2), dot(x0, w3));
        a1 += vec4<f32>(dot(x1, w0), dot(x1, w1), dot(x1, w2), dot(x1, w3));
        a2 += vec4<f32>(dot(x2, w0), dot(x2, w1), dot(x2, w2), dot(x2, w3));
        a3 += vec4<f32>(dot(x3, w0), dot(x3, w1), dot(x3, w2), dot(x3, w3));
    }
    var acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
    for (var j = 0u; j < 4u; j++) {
        let t = t0 + j;
        if (t >= t_count) { break; }
        for (var i = 0u; i < 4u; i++) {
            let r = r0 + i;
            if (r >= dims.rows) { break; }
            store_y(t, r, acc[j][i]);
        }
    }
}
