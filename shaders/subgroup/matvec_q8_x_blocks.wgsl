// X_SOURCE of shaders/subgroup/matvec_q8.wgsl where an earlier kernel stored x's blocks.
@group(0) @binding(3) var<storage, read> xq: array<vec4<u32>>;
fn x_word(i: u32) -> vec4<u32> { return xq[i]; }
fn load_x(li: u32, sg: u32, nsg: u32, lane: u32) {}
