// The arithmetic roof: every thread runs 4 independent chains of vec4 fused multiply-adds
// (16 FMAs, 32 FLOPs, an iteration) and writes one vec4, so nothing is cut away and memory
// plays no part. src/metrics/probe.rs counts 32 * ITERS FLOPs a thread.
@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;
const ITERS: u32 = {{ITERS}}u;
const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = gid.x + gid.y * nwg.x * WG;
    let seed = f32(id % 1024u) * 1e-4;
    var a = vec4<f32>(seed, 0.25, 0.5, 0.75);
    var b = a + 0.125;
    var c = a + 0.0625;
    var d = a + 0.03125;
    let m = vec4<f32>(0.99990);
    let k = vec4<f32>(0.0001);
    for (var i = 0u; i < ITERS; i++) {
        a = fma(a, m, k);
        b = fma(b, m, k);
        c = fma(c, m, k);
        d = fma(d, m, k);
    }
    if (id < arrayLength(&out)) {
        out[id] = a + b + c + d;
    }
}
