//! A matmul and the kernel that makes its x (RMSNorm of the residual stream, SiLU·mul of
//! gate|up) as one op. On decode steps where the matmul runs the integer-dot kernel
//! (`ops::matmul`), that kernel makes x's 8-bit blocks itself, in workgroup memory, from
//! the rows the first kernel would have read (shaders/subgroup/matvec_q8_prologue.wgsl):
//! one dispatch instead of two, and x never goes through memory. A small model's decode
//! step is bound by its dispatches, not its bytes (issue 14), so this is two of a llama
//! layer's eleven gone. Every workgroup reads all of src, so this pays only where those
//! reads stay small (`FUSE_MAX_REREAD_BYTES`: small models, few token rows). Otherwise
//! (larger matmuls, more token rows, float weights, x's blocks over the workgroup memory,
//! or `GpuFeatures::fused_prologue` off) the two kernels run as before.

use super::elementwise::Activation;
use super::matmul::{matvec_q8_source, uses_q8_dot, Dims, Matmul, MatmulMode, WeightMatrix};
use super::matmul::{Q8_BLOCK_BYTES, VEC_MAX_ROWS};
use super::{bind_layout, grid_1d, Cost, Op, StepShape};
use crate::gpu::{BindingKind, GpuContext};
use std::sync::Arc;

/// The most bytes of src (and norm weights) all workgroups of a fused matmul may read
/// together: each reads all of it, so fusing trades one dispatch (some microseconds) for
/// that much cache traffic. On the H200 (bench/2026-11-30-h200-fused) SmolLM2's matmuls
/// (0.5-1.8 MB of it a token row) decoded 16% faster fused, the 7B shape's (25-88 MB)
/// 17% slower.
const FUSE_MAX_REREAD_BYTES: u64 = 4 << 20;

/// What the first kernel computes from `src`.
#[derive(Clone, Copy)]
pub enum Prologue<'a> {
    /// x = src * rsqrt(mean(src^2) + eps) * weight, rows of the matmul's K values
    RmsNorm { weight: &'a wgpu::Buffer, eps: f32 },
    /// x = act(gate) * up, src rows being gate|up (2 K values)
    Gated(Activation),
}

impl Prologue<'_> {
    /// f32 values of src per token row, for a matmul of `k` columns.
    fn src_cols(&self, k: usize) -> usize {
        match self {
            Prologue::RmsNorm { .. } => k,
            Prologue::Gated(_) => 2 * k,
        }
    }

    /// Bytes of weights it reads for a matmul of `k` columns (RMSNorm's, f32).
    fn weight_bytes(&self, k: usize) -> u64 {
        match self {
            Prologue::RmsNorm { .. } => 4 * k as u64,
            Prologue::Gated(_) => 0,
        }
    }
}

/// The matmul's inputs, as `Matmul::new` takes them.
pub struct MatmulInputs<'a> {
    pub w: &'a WeightMatrix,
    pub bias: Option<&'a wgpu::Buffer>,
    pub y: &'a wgpu::Buffer,
    pub mode: MatmulMode,
    /// bound where a binding is unused
    pub dummy: &'a wgpu::Buffer,
}

/// The first kernel, then the matmul; fused where it can be (see the module's text).
pub struct PrologueMatmul {
    first: Box<dyn Op>,
    matmul: Matmul,
    fused: Option<Fused>,
    name: &'static str,
    /// f32 values of src per token row
    src_cols: u64,
    /// bytes of weights the first kernel reads (RMSNorm's)
    first_weights: u64,
}

/// The fused kernel: one pipeline per token count and the weight rows each of its
/// workgroups takes (None where x's blocks would not fit the workgroup memory, or all
/// workgroups would read too much), one bind group per weight part.
struct Fused {
    vec: Vec<Option<(Arc<wgpu::ComputePipeline>, u32)>>,
    parts: Vec<(wgpu::BindGroup, u32)>,
}

impl PrologueMatmul {
    /// `first` (the standalone kernel computing the matmul's x from `src`) followed by
    /// `matmul` (which reads that x); `inputs` are the matmul's, for the fused kernel.
    pub fn new(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        prologue: Prologue<'_>,
        src: &wgpu::Buffer,
        first: Box<dyn Op>,
        matmul: Matmul,
        inputs: &MatmulInputs<'_>,
    ) -> Self {
        let k = inputs.w.cols;
        let fuse = gpu.features.fused_prologue
            && uses_q8_dot(gpu, inputs.w.format)
            && !inputs.mode.logits_rows
            && k.is_multiple_of(32);
        let fused = fuse.then(|| Fused::new(gpu, step, prologue, src, inputs));
        PrologueMatmul {
            name: match prologue {
                Prologue::RmsNorm { .. } => "rmsnorm_matmul",
                Prologue::Gated(Activation::Silu) => "silu_mul_matmul",
                Prologue::Gated(Activation::GeluTanh) => "gelu_mul_matmul",
            },
            first,
            matmul,
            fused,
            src_cols: prologue.src_cols(k) as u64,
            first_weights: prologue.weight_bytes(k),
        }
    }

    /// The fused kernel for `t` token rows, if it runs.
    fn fused_for(&self, t: u32) -> Option<(&Fused, &(Arc<wgpu::ComputePipeline>, u32))> {
        let f = self.fused.as_ref()?;
        let pipeline = f.vec.get((t as usize).checked_sub(1)?)?.as_ref()?;
        Some((f, pipeline))
    }
}

impl Fused {
    fn new(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        prologue: Prologue<'_>,
        src: &wgpu::Buffer,
        m: &MatmulInputs<'_>,
    ) -> Fused {
        use BindingKind::*;
        let layout = gpu.pipelines.layout(
            "matvec_q8_prologue",
            &[Uniform, Uniform, Read, Read, ReadWrite, Read, Read],
        );
        let max_subgroups = (256 / gpu.features.subgroup_min_size).clamp(1, 256);
        // every workgroup makes all of x: more rows each make that cheaper, fewer keep
        // more workgroups busy (`HEADROOM_FUSED_ROWS`, for tuning)
        let rows_wanted = std::env::var("HEADROOM_FUSED_ROWS")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(max_subgroups.min(64))
            .clamp(1, 1024);
        let (norm, eps, weight, gelu) = match prologue {
            Prologue::RmsNorm { weight, eps } => (true, eps, weight, false),
            Prologue::Gated(act) => (false, 0.0, m.dummy, act == Activation::GeluTanh),
        };
        let x_source = concat!(
            include_str!("../../shaders/q8_pack.wgsl"),
            include_str!("../../shaders/subgroup/matvec_q8_prologue.wgsl")
        );
        let limit = gpu.limits.max_compute_workgroup_storage_size as u64;
        let norm_bytes = prologue.weight_bytes(m.w.cols);
        let vec = (1..=VEC_MAX_ROWS)
            .map(|t| {
                let (source, rows_per_group) = matvec_q8_source(
                    gpu,
                    m.w.format,
                    x_source,
                    t,
                    (m.w.rows, m.w.cols),
                    Some(rows_wanted),
                    false,
                );
                let source = source
                    .constant("NORM", norm)
                    .constant("GELU", gelu)
                    .constant("COLS", m.w.cols)
                    .constant("EPS_BITS", eps.to_bits())
                    .constant("MAX_SUBGROUPS", max_subgroups);
                let workgroups = m.w.rows.div_ceil(rows_per_group as usize) as u64;
                let t64 = t as u64;
                let bytes = t64 * (m.w.cols as u64 / 32) * Q8_BLOCK_BYTES
                    + t64 * max_subgroups as u64 * 4
                    + t64 * 4;
                let again =
                    workgroups * (t64 * 4 * prologue.src_cols(m.w.cols) as u64 + norm_bytes);
                (bytes <= limit && again <= FUSE_MAX_REREAD_BYTES).then(|| {
                    let pipeline = gpu.pipelines.get_with_layout(&source, Some(&layout));
                    (pipeline, rows_per_group)
                })
            })
            .collect();
        let parts =
            m.w.parts
                .iter()
                .map(|p| {
                    let dims = gpu.uniform(
                        "matvec_q8_prologue.dims",
                        &Dims::new(m.w, p, m.mode, m.bias.is_some()),
                    );
                    let bias = m.bias.unwrap_or(m.dummy);
                    let group = bind_layout(
                        gpu,
                        &layout,
                        "matvec_q8_prologue",
                        &[step, &dims, &p.buffer, src, m.y, bias, weight],
                    );
                    (group, p.rows as u32)
                })
                .collect();
        Fused { vec, parts }
    }
}

impl Op for PrologueMatmul {
    fn name(&self) -> &'static str {
        self.name
    }
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, s: &StepShape) {
        match self.fused_for(s.n_tokens) {
            Some((f, (pipeline, rows_per_group))) => {
                pass.set_pipeline(pipeline);
                for (group, rows) in &f.parts {
                    pass.set_bind_group(0, group, &[]);
                    let (x, y) = grid_1d(rows.div_ceil(*rows_per_group));
                    pass.dispatch_workgroups(x, y, 1);
                }
            }
            None => {
                self.first.record(pass, s);
                self.matmul.record(pass, s);
            }
        }
    }
    fn dispatches(&self, s: &StepShape) -> u32 {
        match self.fused_for(s.n_tokens) {
            Some((f, _)) => f.parts.len() as u32,
            None => self.first.dispatches(s) + self.matmul.dispatches(s),
        }
    }
    /// Fused: the matmul's weights and output, and src read once (the copies every
    /// workgroup reads again come from cache), in place of x and its blocks.
    fn cost(&self, s: &StepShape) -> Cost {
        let matmul = self.matmul.cost(s);
        if self.fused_for(s.n_tokens).is_none() {
            return self.first.cost(s) + matmul;
        }
        let t = s.n_tokens as u64;
        let c = self.matmul.cost_without_x(s);
        Cost {
            bytes_read: c.bytes_read + t * self.src_cols * 4 + self.first_weights,
            weight_bytes: c.weight_bytes + self.first_weights,
            ..c
        }
    }
}
