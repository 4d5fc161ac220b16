// Second pass of split-K decode attention: combines the partial (acc, max, sum) of every
// split of a query into the normalised output,
//   out = sum_s acc_s * exp(m_s - M) / sum_s l_s * exp(m_s - M),  M = max_s m_s.
// One thread per output vec4; workgroup (x: vec4 slice, y: head block, z: query). The Q8
// variant also stores the output as 8-bit blocks (shaders/q8_store.wgsl) for the
// integer-dot matmul that reads it next, on steps of few enough queries: one thread per
// 32 values then (the first pass then always leaves partials, one split or more).
//!ATTENTION_PARAMS
@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> step_meta: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
{{Q8_STORE}}
const Q8: bool = {{Q8}};
const Q8_MAX_ROWS: u32 = {{Q8_MAX_ROWS}}u;

const G: u32 = {{G}}u;
const NHB: u32 = {{NHB}}u;     // head blocks per query
const VD4: u32 = {{VD}}u / 4u;

// output vec4 i of head block hb's G x VD outputs for query qi: merged, written, returned
fn merged(qi: u32, hb: u32, i: u32) -> vec4<f32> {
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
    let v = total / denom;
    out[qm.w * prm.out_stride4 + (hb * G + g) * VD4 + d4] = v;
    return v;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let hb = gid.y;
    let qi = gid.z;
    if (Q8 && nwg.z <= Q8_MAX_ROWS) {
        // block b of the head block's outputs; blocks of a row are numbered over all heads
        let b = gid.x;
        if (b >= G * VD4 / 8u) { return; }
        var v: array<vec4<f32>, 8>;
        //!UNROLL j 8
        v[%j%] = merged(qi, hb, b * 8u + %j%u);
        //!END
        store_q8(step_meta[qi].w * (NHB * G * VD4 / 8u) + hb * G * VD4 / 8u + b, v);
        return;
    }
    let i = gid.x;
    if (i >= G * VD4) { return; }
    _ = merged(qi, hb, i);
}
