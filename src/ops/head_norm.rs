//! RMSNorm of each query and key head before RoPE (shaders/head_norm.wgsl), qwen3's
//! `q_norm` / `k_norm`.

use super::{bind, Cost, Op, StepShape};
use crate::gpu::{GpuContext, KernelSource};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    heads: u32,
    kv_heads: u32,
    head_dim4: u32,
    eps: f32,
}

/// Normalises the query and key heads of `qkv` (rows `[q heads | k heads | v heads]`) in
/// place, each by its own RMS, times `weight` = `[q_norm | k_norm]` (`head_dim` each).
pub struct HeadNorm {
    pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    group: wgpu::BindGroup,
    heads: u32,
    head_dim: u32,
}

impl HeadNorm {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        eps: f32,
        weight: &wgpu::Buffer,
        qkv: &wgpu::Buffer,
        meta: &wgpu::Buffer,
    ) -> Self {
        let src = KernelSource::new("head_norm", include_str!("../../shaders/head_norm.wgsl"));
        let pipeline = gpu.pipelines.get(&src);
        let dims = gpu.uniform(
            "head_norm.dims",
            &Dims {
                heads: heads as u32,
                kv_heads: kv_heads as u32,
                head_dim4: (head_dim / 4) as u32,
                eps,
            },
        );
        let group = bind(
            gpu,
            &pipeline,
            "head_norm",
            &[step, &dims, qkv, weight, meta],
        );
        HeadNorm {
            pipeline,
            group,
            heads: (heads + kv_heads) as u32,
            head_dim: head_dim as u32,
        }
    }
}

impl Op for HeadNorm {
    fn name(&self) -> &'static str {
        "head_norm"
    }
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, s: &StepShape) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(self.heads.div_ceil(64), s.n_tokens, 1);
    }
    fn cost(&self, s: &StepShape) -> Cost {
        let values = s.n_tokens as u64 * (self.heads * self.head_dim) as u64;
        Cost {
            bytes_read: values * 4 + 2 * self.head_dim as u64 * 4,
            bytes_written: values * 4,
            flops: values * 4,
            weight_bytes: 2 * self.head_dim as u64 * 4,
            kv_bytes: 0,
        }
    }
}
