// Memory-bandwidth probes for src/gpu/timing.rs, over arrays of vec4<u32> (16 bytes a load
// or store). `{{KERNEL}}` picks what `main` runs:
//   copy_kernel  dst[i] = src[i] for i < n4, one vec4 per thread
//   read_kernel  per-lane wrapping sum of src[0..n4], READ_PER_THREAD coalesced vec4 loads
//                per thread, one vec4 per workgroup written to dst[group] (reads only, in
//                effect: 16 bytes written per 256 * READ_PER_THREAD * 16 bytes read)
//   fill_kernel  dst[i] = a hash of (i, seed), so the copied data is neither zero nor
//                compressible
// Workgroups are numbered over a 2-D grid (x * y), so more than 65535 fit; groups past
// `groups` (the last row of the grid may overhang) do nothing.
struct Params {
    n4: u32,      // vec4 elements to copy, read or fill
    groups: u32,  // workgroups needed; the grid may have a few more
    seed: u32,
    _p0: u32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;

const WG: u32 = 256u;
const READ_PER_THREAD: u32 = {{READ_PER_THREAD}}u;

var<workgroup> partial: array<vec4<u32>, 256>;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

fn copy_kernel(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i < params.n4) {
        dst[i] = src[i];
    }
}

fn read_kernel(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) {
    let g = group_index(wid, nwg);
    // the k-th load of a workgroup covers 256 consecutive vec4 (4 KiB)
    let base = g * WG * READ_PER_THREAD + lid;
    var acc = vec4<u32>(0u);
    for (var k = 0u; k < READ_PER_THREAD; k++) {
        let i = base + k * WG;
        if (i < params.n4) {
            acc += src[i];
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u && g < params.groups) {
        dst[g] = partial[0];
    }
}

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

fn fill_kernel(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i < params.n4) {
        let h = pcg(i ^ params.seed);
        dst[i] = vec4<u32>(h, pcg(h), pcg(h + 1u), pcg(h + 2u));
    }
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    {{KERNEL}}(wid, nwg, lid);
}
