// Second pass of split-K decode attention: combines the partial (acc, max, sum) of every
// split of a query into the normalised output,
//   out = sum_s acc_s * exp(m_s - M) / sum_s l_s * exp(m_s - M),  M = max_s m_s.
// One thread per output vec4; workgroup (x: vec4 slice, y: head block, z: query). The Q8
// variant also stores the output as 8-bit blocks (shaders/q8_store.wgsl) for the
// integer-dot matmul that reads it next, on steps of few enough queries, through
// workgroup memory (the first pass then always leaves partials, one split or more).
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
    // the splits this query wrote: up to its context, from the one holding its window's start
    let used = (qm.x + prm.chunk - 1u) / prm.chunk;
    let first = window_start(qm.x) / prm.chunk;
    let g = i / VD4;
    let d4 = i % VD4;
    let slot0 = (qi * NHB + hb) * prm.n_splits;
    var mx = -3.0e38;
    for (var s = first; s < used; s++) { mx = max(mx, partials[prm.ml_base4 + (slot0 + s) * G + g].x); }
    var total = vec4<f32>(0.0);
    var denom = 0.0;
    for (var s = first; s < used; s++) {
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

var<workgroup> merged_vals: array<vec4<f32>, 64>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x;                     // vec4 within the head block's G x VD outputs
    let hb = gid.y;
    let qi = gid.z;
    let inside = i < G * VD4;
    var v = vec4<f32>(0.0);
    if (inside) { v = merged(qi, hb, i); }
    if (Q8 && nwg.z <= Q8_MAX_ROWS) {
        // a workgroup's 64 vec4s are 8 whole blocks (VD is a multiple of 32): the first
        // thread of each stores its block
        merged_vals[li] = v;
        workgroupBarrier();
        if (inside && li % 8u == 0u) {
            var blk: array<vec4<f32>, 8>;
            //!UNROLL j 8
            blk[%j%] = merged_vals[li + %j%u];
            //!END
            store_q8(step_meta[qi].w * (NHB * G * VD4 / 8u) + (hb * G * VD4 + i) / 8u, blk);
        }
    }
}
