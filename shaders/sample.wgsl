// Sampling on the GPU, one workgroup per logits row, so a step reads back only token ids.
// temperature 0 (or top_k 1) is greedy: the largest logit, lowest index on ties.
// Otherwise softmax(logits / T) restricted to the top-k, then to the smallest top set whose
// mass reaches top_p, sampled with a counter-based RNG seeded by the row's (seed, counter),
// so a sequence draws the same numbers whichever row of a batch it sits in. A row that
// verifies a speculative draft keeps the drafted token with its probability and otherwise
// draws from the rest (see `OutRow::drafted`).
// Thresholds are found by binary search on an order-preserving u32 key of each logit.
//!COMMON
struct Dims { vocab: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(4) var<storage, read> out_rows: array<OutRow>;

const WG: u32 = 256u;
var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;
var<workgroup> prefix: array<f32, WG>;

fn key_of(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x80000000u) != 0u) { return ~b; }
    return b | 0x80000000u;
}

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

fn sum_f(lid: u32, v: f32) -> f32 {
    red_f[lid] = v;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (lid < off) { red_f[lid] += red_f[lid + off]; }
        workgroupBarrier();
    }
    // uniform for every invocation (browsers' WGSL compilers must be able to prove it:
    // callers branch on it around barriers)
    let r = workgroupUniformLoad(&red_f[0]);
    workgroupBarrier();
    return r;
}

fn sum_u(lid: u32, v: u32) -> u32 {
    red_u[lid] = v;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (lid < off) { red_u[lid] += red_u[lid + off]; }
        workgroupBarrier();
    }
    // uniform for every invocation (browsers' WGSL compilers must be able to prove it:
    // callers branch on it around barriers)
    let r = workgroupUniformLoad(&red_u[0]);
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let lid = lid3.x;
    let row = wid.x;
    if (row >= step.n_out_rows) { return; }
    let o = out_rows[row];
    let base = row * dims.vocab;
    let n = dims.vocab;

    // argmax (lowest index on ties); also the max for a stable softmax
    var best = -3.4e38;
    var best_i = 0xffffffffu;
    for (var i = lid; i < n; i += WG) {
        let v = logits[base + i];
        if (v > best) { best = v; best_i = i; }
    }
    red_f[lid] = best;
    red_u[lid] = best_i;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (lid < off) {
            let v = red_f[lid + off];
            let j = red_u[lid + off];
            if (v > red_f[lid] || (v == red_f[lid] && j < red_u[lid])) {
                red_f[lid] = v;
                red_u[lid] = j;
            }
        }
        workgroupBarrier();
    }
    let max_v = workgroupUniformLoad(&red_f[0]);
    let arg = workgroupUniformLoad(&red_u[0]);
    workgroupBarrier();
    if (o.temperature <= 0.0 || o.top_k == 1u) {
        if (lid == 0u) { tokens[row] = arg; }
        return;
    }
    let inv_t = 1.0 / o.temperature;

    // top-k: the largest key threshold that keeps at least k logits
    var thr = 0u;
    if (o.top_k > 0u && o.top_k < n) {
        var lo = 0u;
        var hi = key_of(max_v);
        loop {
            if (lo >= hi) { break; }
            let mid = lo + (hi - lo + 1u) / 2u;
            var c = 0u;
            for (var i = lid; i < n; i += WG) {
                if (key_of(logits[base + i]) >= mid) { c += 1u; }
            }
            if (sum_u(lid, c) >= o.top_k) { lo = mid; } else { hi = mid - 1u; }
        }
        thr = lo;
    }
    // top-p: the largest threshold (>= thr) whose kept mass reaches top_p of the top-k mass
    if (o.top_p < 1.0) {
        var z = 0.0;
        for (var i = lid; i < n; i += WG) {
            let v = logits[base + i];
            if (key_of(v) >= thr) { z += exp((v - max_v) * inv_t); }
        }
        let goal = sum_f(lid, z) * o.top_p;
        var lo = thr;
        var hi = key_of(max_v);
        loop {
            if (lo >= hi) { break; }
            let mid = lo + (hi - lo + 1u) / 2u;
            var m = 0.0;
            for (var i = lid; i < n; i += WG) {
                let v = logits[base + i];
                if (key_of(v) >= mid) { m += exp((v - max_v) * inv_t); }
            }
            if (sum_f(lid, m) >= goal) { lo = mid; } else { hi = mid - 1u; }
        }
        thr = lo;
    }

    // sample: each thread owns a contiguous chunk; a prefix over the chunks finds the owner
    let chunk = (n + WG - 1u) / WG;
    let start = min(lid * chunk, n);
    let end = min(start + chunk, n);
    // a drafted token's mass stays out of the chunks: see the draft's test below
    var part = 0.0;
    for (var i = start; i < end; i += 1u) {
        let v = logits[base + i];
        if (key_of(v) >= thr && i != o.draft) { part += exp((v - max_v) * inv_t); }
    }
    prefix[lid] = part;
    workgroupBarrier();
    if (lid == 0u) {
        var run = 0.0;
        for (var j = 0u; j < WG; j++) {
            let p = prefix[j];
            prefix[j] = run;
            run += p;
        }
        red_f[0] = run;
        // the last chunk holding any mass takes the rounding remainder
        var last = 0u;
        for (var j = 0u; j < WG; j++) {
            let next = select(red_f[0], prefix[min(j + 1u, WG - 1u)], j + 1u < WG);
            if (next > prefix[j]) { last = j; }
        }
        red_u[0] = last;
    }
    workgroupBarrier();
    let total = red_f[0];
    let last_chunk = red_u[0];
    let r = pcg(pcg(o.seed ^ pcg(o.counter)));
    // Speculative decoding: the drafted token stands with its probability; otherwise the
    // draw is from the rest, renormalized. Either way the drawn token has the
    // distribution's own law (a draft proposed with certainty, rejection-sampled).
    if (o.draft < n) {
        let vd = logits[base + o.draft];
        let wd = select(0.0, exp((vd - max_v) * inv_t), key_of(vd) >= thr);
        let ua = f32(pcg(r ^ 0x68e31da4u) >> 8u) * (1.0 / 16777216.0);
        if (ua * (total + wd) < wd) {
            if (lid == 0u) { tokens[row] = o.draft; }
            return;
        }
    }
    let u = f32(r >> 8u) * (1.0 / 16777216.0) * total;
    let lo_p = prefix[lid];
    let owner = (part > 0.0 && u >= lo_p && u < lo_p + part) || (lid == last_chunk && u >= lo_p + part);
    if (owner) {
        var run = lo_p;
        var pick = 0xffffffffu;
        var last_kept = 0u;
        for (var i = start; i < end; i += 1u) {
            let v = logits[base + i];
            if (key_of(v) >= thr && i != o.draft) {
                last_kept = i;
                run += exp((v - max_v) * inv_t);
                if (run > u) { pick = i; break; }
            }
        }
        if (pick == 0xffffffffu) { pick = last_kept; }
        tokens[row] = pick;
    }
}
