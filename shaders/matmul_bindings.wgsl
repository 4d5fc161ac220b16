// Parameters and bindings shared by every matmul kernel (one layout for all variants:
// src/ops/matmul.rs builds it). Included with //!MATMUL after //!COMMON. Each kernel
// declares binding 2 (the weights) and 3 (the activations) as it reads them: through
// `//!W4 w 2` and f32 `x`, or (shaders/subgroup/matvec_q8.wgsl) as 8-bit blocks.
struct Dims {
    k8: u32,            // K / 8
    n: u32,             // full output width (row stride of y)
    row0: u32,          // first output column of this weight part
    rows: u32,          // rows in this weight part
    accumulate: u32,    // 1: y += result (residual add)
    has_bias: u32,
    t_from_logits: u32, // 1: T = step.n_out_rows, else step.n_tokens
    _pad: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;

// y[t, row0 + r] = sum, plus the bias and the residual in y where the dims ask for them:
// the store every matmul kernel ends with.
fn store_y(t: u32, r: u32, sum: f32) {
    let col = dims.row0 + r;
    var v = sum;
    if (dims.has_bias != 0u) { v += bias[col]; }
    let yi = t * dims.n + col;
    if (dims.accumulate != 0u) { v += y[yi]; }
    y[yi] = v;
}
