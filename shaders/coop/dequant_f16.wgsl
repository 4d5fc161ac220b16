// Quantized weight rows as f16 for shaders/coop/gemm_f16*.wgsl: a slice of a part's rows,
// dequantized block by block (32 values) into a scratch buffer that the GEMM reads right
// after, so prefill chunks run on the f16 matrix-unit kernel whatever the file stores.
// The weights themselves stay as blocks: the scratch holds one slice at a time.
struct DequantDims {
    block0: u32,   // first block of the slice in the part (row-major, 32 values each)
    blocks: u32,   // blocks in the slice
    _pad: vec2<u32>,
}
@group(0) @binding(0) var<uniform> dims: DequantDims;
//!W4 w 1
@group(0) @binding(2) var<storage, read_write> wh: array<vec2<u32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = gid.y * nwg.x * 64u + gid.x;
    if (b >= dims.blocks) { return; }
    let v = w_load_chunk(dims.block0 + b);
    for (var m = 0u; m < 8u; m++) {
        wh[b * 8u + m] = vec2<u32>(pack2x16float(v[m].xy), pack2x16float(v[m].zw));
    }
}
