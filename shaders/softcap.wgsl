// logits[r, :] = cap * tanh(logits[r, :] / cap) for the rows that got logits: gemma2's final
// soft-capping. One invocation per logit.
//!COMMON
struct Dims { vocab: u32, cap: f32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let r = gid.y;
    if (i >= dims.vocab || r >= step.n_out_rows) { return; }
    let at = r * dims.vocab + i;
    logits[at] = softcap(logits[at], dims.cap);
}
