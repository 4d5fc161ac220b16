// Second pass of split-K decode attention: combines the partial (acc, max, sum) of every
// split of a query into the normalised output,
//   out = sum_s acc_s * exp(m_s - M) / sum_s l_s * exp(m_s - M),  M = max_s m_s.
// One thread per output vec4; workgroup (x: vec4 slice, y: head block, z: query).
//!ATTENTION_PARAMS
@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> step_meta: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

const G: u32 = {{G}}u;
const NHB: u32 = {{NHB}}u;     // head blocks per query
const VD4: u32 = {{VD}}u / 4u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;                     // vec4 within the head block's G x VD outputs
    if (i >= G * VD4) { return; }
    let hb = gid.y;
    let qi = gid.z;
    let qm = step_meta[qi];
    let used = (qm.x + prm.chunk - 1u) / prm.chunk;   // splits this query wrote
    let g = i / VD4;
    let d4 = i % VD4;
    let slot0 = (qi * NHB + hb) * prm.n_splits;
    var mx = -3.0e38;
    for (var s = 0u; s < used; s++) { mx = max(mx, partials[prm.ml_base4 + (slot0 + s) * G + g].x); }
    var total = vec4<f32>(0.0);
    var denom = 0.0;
    for (var s = 0u; s < used; s++) {
        let slot = (slot0 + s) * G + g;
        let ml = partials[prm.ml_base4 + slot];
        let w = exp(ml.x - mx);
        denom += ml.y * w;
        total += partials[slot * VD4 + d4] * w;
    }
    out[qm.w * prm.out_stride4 + (hb * G + g) * VD4 + d4] = total / denom;
}
