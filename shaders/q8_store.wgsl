// x stored as 8-bit blocks (shaders/q8_pack.wgsl, prepended) for the integer-dot decode
// matmul. Inserted by the kernels that write blocks (src/ops/matmul.rs: Q8_STORE), with
// binding XQ_BINDING.
@group(0) @binding({{XQ_BINDING}}) var<storage, read_write> xq: array<vec4<u32>>;

fn store_q8(blk: u32, v: array<vec4<f32>, 8>) {
    let q = q8_pack(v);
    xq[blk * 3u] = q[0];
    xq[blk * 3u + 1u] = q[1];
    xq[blk * 3u + 2u] = q[2];
}
