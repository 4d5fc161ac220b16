// y[r, :] = x[src, :] * rsqrt(mean(x^2) + eps) * weight (with accumulate, y[r, :] += that).
// One workgroup per row; src = r, or for the logits rows the activation row out_rows[r]
// names. The Q8 variant also stores
// y as 8-bit blocks (shaders/q8_store.wgsl) when the step has few enough rows for the
// integer-dot decode matmul that reads them.
//!COMMON
struct Dims { hidden4: u32, eps: f32, rows_from_logits: u32, accumulate: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> weight: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> out_rows: array<OutRow>;
{{Q8_STORE}}
const Q8: bool = {{Q8}};
const Q8_MAX_ROWS: u32 = {{Q8_MAX_ROWS}}u;

const WG: u32 = 256u;

// what the normalised value is added to: y's old value where accumulating
fn added(i: u32) -> vec4<f32> {
    if (dims.accumulate != 0u) {
        return y[i];
    }
    return vec4<f32>(0.0);
}
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.x;
    var src_row = r;
    var n_rows = step.n_tokens;
    if (dims.rows_from_logits != 0u) {
        src_row = out_rows[min(r, arrayLength(&out_rows) - 1u)].src_row;
        n_rows = step.n_out_rows;
    }
    if (r >= n_rows) { return; }
    let base = src_row * dims.hidden4;
    var s = 0.0;
    for (var i = lid.x; i < dims.hidden4; i += WG) {
        let v = x[base + i];
        s += dot(v, v);
    }
    partial[lid.x] = s;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (lid.x < off) { partial[lid.x] += partial[lid.x + off]; }
        workgroupBarrier();
    }
    let scale = inverseSqrt(partial[0] / f32(dims.hidden4 * 4u) + dims.eps);
    if (Q8 && n_rows <= Q8_MAX_ROWS) {
        // a 32-value block per invocation, stored in f32 and as 8 bits
        let blocks = dims.hidden4 / 8u;
        for (var b = lid.x; b < blocks; b += WG) {
            var v: array<vec4<f32>, 8>;
            //!UNROLL j 8
            v[%j%] = x[base + b * 8u + %j%u] * scale * weight[b * 8u + %j%u]
                + added(r * dims.hidden4 + b * 8u + %j%u);
            y[r * dims.hidden4 + b * 8u + %j%u] = v[%j%];
            //!END
            store_q8(r * blocks + b, v);
        }
        return;
    }
    for (var i = lid.x; i < dims.hidden4; i += WG) {
        y[r * dims.hidden4 + i] = x[base + i] * scale * weight[i] + added(r * dims.hidden4 + i);
    }
}
