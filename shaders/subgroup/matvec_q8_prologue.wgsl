// X_SOURCE of shaders/subgroup/matvec_q8.wgsl that makes x's 8-bit blocks itself, in
// workgroup memory, from the f32 rows the kernel before it would have read (one dispatch
// fewer): NORM, x = src / rms(src) * norm (RMSNorm of rows of COLS values); else
// x = act(gate) * up of gate|up rows (2 COLS values each; act SiLU, or tanh-GELU where
// GELU). Every workgroup reads the whole rows (TMAX x COLS or 2 COLS floats, from cache
// after the first), which is why src/ops/matmul_prologue.rs fuses only where all
// workgroups' copies stay a few MB.
// q8_pack (shaders/q8_pack.wgsl) is prepended.
@group(0) @binding(3) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> norm: array<vec4<f32>>;

const NORM: bool = {{NORM}};
const GELU: bool = {{GELU}};
const NB: u32 = {{COLS}}u / 32u;                  // 32-value blocks per row of x
const SRC4: u32 = select(2u, 1u, NORM) * NB * 8u; // vec4s per row of src
const EPS_BITS: u32 = {{EPS_BITS}}u;   // RMSNorm's epsilon, as f32 bits
const MAX_SG: u32 = {{MAX_SUBGROUPS}}u;

var<workgroup> xw: array<vec4<u32>, TMAX * NB * 3u>;
var<workgroup> partial: array<f32, TMAX * MAX_SG>;
var<workgroup> scale: array<f32, TMAX>;

fn x_word(i: u32) -> vec4<u32> { return xw[i]; }

// the 32 values of block c of row t, as the skipped kernel computes them
fn x_block(t: u32, c: u32) -> array<vec4<f32>, 8> {
    var v: array<vec4<f32>, 8>;
    let base = t * SRC4 + c * 8u;
    if (NORM) {
        let s = scale[t];
        //!UNROLL j 8
        v[%j%] = src[base + %j%u] * s * norm[c * 8u + %j%u];
        //!END
    } else {
        //!UNROLL j 8
        let g = src[base + %j%u];
        v[%j%] = gate_activation4(g, GELU) * src[base + NB * 8u + %j%u];
        //!END
    }
    return v;
}

fn load_x(li: u32, sg: u32, nsg: u32, lane: u32) {
    if (NORM) {
        //!UNROLL t {{T}}
        var s = 0.0;
        for (var i = li; i < SRC4; i += 256u) {
            let v = src[%t%u * SRC4 + i];
            s += dot(v, v);
        }
        s = subgroupAdd(s);
        if (lane == 0u) { partial[%t%u * MAX_SG + sg] = s; }
        //!END
        workgroupBarrier();
        if (li < TMAX) {
            var total = 0.0;
            for (var j = 0u; j < nsg; j++) { total += partial[li * MAX_SG + j]; }
            scale[li] = inverseSqrt(total / f32(NB * 32u) + bitcast<f32>(EPS_BITS));
        }
        workgroupBarrier();
    }
    for (var b = li; b < TMAX * NB; b += 256u) {
        let q = q8_pack(x_block(b / NB, b % NB));
        xw[b * 3u] = q[0];
        xw[b * 3u + 1u] = q[1];
        xw[b * 3u + 2u] = q[2];
    }
    workgroupBarrier();
}
