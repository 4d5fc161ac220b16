//! Sampling on the GPU (shaders/sample.wgsl): greedy, temperature, top-k, top-p, seeded.
//! The chosen ids land in the token buffer that the next step embeds. Each logits row
//! has its own settings (an `ops::OutRow`).

use super::{bind, Cost, Op, StepShape};
use crate::gpu::{GpuContext, KernelSource};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    vocab: u32,
    _pad: [u32; 3],
}

/// How to pick the next token.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct SamplingParams {
    /// 0 = greedy
    pub temperature: f32,
    /// 0 = off
    pub top_k: u32,
    /// 1 = off
    pub top_p: f32,
    pub seed: u32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top-p must be in (0, 1], got {}", self.top_p));
        }
        Ok(())
    }
}

pub struct Sample {
    pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    group: wgpu::BindGroup,
    vocab: u32,
}

impl Sample {
    pub fn new(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        vocab: usize,
        logits: &wgpu::Buffer,
        tokens: &wgpu::Buffer,
        out_rows: &wgpu::Buffer,
    ) -> Self {
        let pipeline = gpu.pipelines.get(&KernelSource::new(
            "sample",
            include_str!("../../shaders/sample.wgsl"),
        ));
        let dims = gpu.uniform(
            "sample.dims",
            &Dims {
                vocab: vocab as u32,
                _pad: [0; 3],
            },
        );
        let group = bind(
            gpu,
            &pipeline,
            "sample",
            &[step, &dims, logits, tokens, out_rows],
        );
        Sample {
            pipeline,
            group,
            vocab: vocab as u32,
        }
    }
}

impl Op for Sample {
    fn name(&self) -> &'static str {
        "sample"
    }
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, s: &StepShape) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(s.n_out_rows, 1, 1);
    }
    fn cost(&self, s: &StepShape) -> Cost {
        let n = s.n_out_rows as u64 * self.vocab as u64;
        // greedy: one pass; sampling adds up to ~64 threshold passes, counted as one here
        Cost {
            bytes_read: 4 * n,
            bytes_written: 4 * s.n_out_rows as u64,
            flops: n,
            ..Cost::default()
        }
    }
}
