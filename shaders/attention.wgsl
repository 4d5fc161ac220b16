// Attention for decode and (causal) prefill, one workgroup per (token, KV head).
// The workgroup serves all G query heads of its KV head: every K and V row of the context
// is read from memory once per workgroup and used for all G heads (the GQA/MQA saving).
// Online softmax over tiles of 64 positions; token t sees positions 0 ..= pos0 + t.
//!COMMON
struct Dims { heads: u32, kv_heads: u32, head_dim: u32, scale_bits: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> qkv: array<vec4<f32>>;
//!KV4 k_cache 3 read
//!KV4 v_cache 4 read
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

const G: u32 = {{G}}u;        // query heads per KV head
const TILE: u32 = 64u;        // positions per tile, one per thread in the score phase
var<workgroup> scores: array<f32, {{G_TILE}}>;   // [G][TILE]
var<workgroup> alpha: array<f32, G>;             // rescale of the running sums
var<workgroup> run_max: array<f32, G>;           // running max of the scores
var<workgroup> denom: array<f32, G>;             // running softmax denominators
var<workgroup> red: array<vec4<f32>, TILE>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let kvh = wid.x;
    let t = wid.y;
    let d4n = dims.head_dim / 4u;
    let groups = TILE / d4n;               // position groups in the value phase
    let row4 = (dims.heads + 2u * dims.kv_heads) * d4n;
    let q_base = t * row4 + kvh * G * d4n;
    let scale = bitcast<f32>(dims.scale_bits);
    let ctx = step.pos0 + t + 1u;          // causal: this token's context length
    let d4 = lid.x % d4n;
    let pg = lid.x / d4n;
    let kv_stride = dims.kv_heads * d4n;

    var acc: array<vec4<f32>, G>;
    for (var g = 0u; g < G; g++) { acc[g] = vec4<f32>(0.0); }
    for (var g = lid.x; g < G; g += TILE) {
        run_max[g] = -3.0e38;
        denom[g] = 0.0;
    }

    for (var p0 = 0u; p0 < ctx; p0 += TILE) {
        // A. scores: thread lid.x owns position p0 + lid.x and reads its K row once for all G heads
        let p = p0 + lid.x;
        var s: array<f32, G>;
        for (var g = 0u; g < G; g++) { s[g] = -3.0e38; }
        if (p < ctx) {
            for (var g = 0u; g < G; g++) { s[g] = 0.0; }
            let k_base = p * kv_stride + kvh * d4n;
            for (var i = 0u; i < d4n; i++) {
                let k = k_cache_load4(k_base + i);
                for (var g = 0u; g < G; g++) {
                    s[g] += dot(qkv[q_base + g * d4n + i], k);
                }
            }
            for (var g = 0u; g < G; g++) { s[g] *= scale; }
        }
        for (var g = 0u; g < G; g++) { scores[g * TILE + lid.x] = s[g]; }
        workgroupBarrier();
        // B. online softmax, one thread per head: scores become exp(s - new max)
        for (var g = lid.x; g < G; g += TILE) {
            var m = run_max[g];
            for (var j = 0u; j < TILE; j++) { m = max(m, scores[g * TILE + j]); }
            var sum = 0.0;
            for (var j = 0u; j < TILE; j++) {
                let e = exp(scores[g * TILE + j] - m);
                scores[g * TILE + j] = e;
                sum += e;
            }
            let a = exp(run_max[g] - m);
            alpha[g] = a;
            denom[g] = denom[g] * a + sum;
            run_max[g] = m;
        }
        workgroupBarrier();
        // C. values: thread (pg, d4) reads its share of the tile's V rows once for all G heads
        if (pg < groups) {
            for (var g = 0u; g < G; g++) { acc[g] *= alpha[g]; }
            for (var j = pg; j < TILE; j += groups) {
                let pp = p0 + j;
                if (pp >= ctx) { break; }
                let v = v_cache_load4(pp * kv_stride + kvh * d4n + d4);
                for (var g = 0u; g < G; g++) { acc[g] += scores[g * TILE + j] * v; }
            }
        }
        workgroupBarrier();
    }
    // reduce the position groups, one head at a time, and normalise
    for (var g = 0u; g < G; g++) {
        red[lid.x] = acc[g];
        workgroupBarrier();
        if (pg == 0u) {
            var total = red[d4];
            for (var k = 1u; k < groups; k++) { total += red[k * d4n + d4]; }
            out[t * dims.heads * d4n + (kvh * G + g) * d4n + d4] = total / denom[g];
        }
        workgroupBarrier();
    }
}
