// x[t, :] = scale * E[token[t], :] for the tokens whose ids fall in this part of E.
// One thread per 4 elements of a row; grid: (hidden/4 / 64, n_tokens).
//!COMMON
struct Dims { hidden4: u32, row0: u32, rows: u32, scale: f32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
//!W4 w 2
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let t = gid.y;
    if (i >= dims.hidden4 || t >= step.n_tokens) { return; }
    let id = tokens[t];
    if (id < dims.row0 || id >= dims.row0 + dims.rows) { return; }
    x[t * dims.hidden4 + i] = w_load4((id - dims.row0) * dims.hidden4 + i) * dims.scale;
}
