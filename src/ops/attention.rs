//! Decode and causal prefill attention with shared KV heads (shaders/attention.wgsl).
//! One workgroup per (token, KV head) serves all G = heads / kv_heads query heads.

use super::{bind, Cost, Op, StepShape};
use crate::gpu::{GpuContext, KernelSource, StorageFormat};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    scale_bits: u32,
}

pub struct Attention {
    pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    group: wgpu::BindGroup,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    kv_bytes: u64,
}

impl Attention {
    /// Head dims up to 256 (a multiple of 4) and group sizes up to 64 are supported.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        qkv: &wgpu::Buffer,
        k_cache: &wgpu::Buffer,
        v_cache: &wgpu::Buffer,
        out: &wgpu::Buffer,
        kv_format: StorageFormat,
    ) -> Self {
        let g = heads / kv_heads;
        let src = KernelSource::new("attention", include_str!("../../shaders/attention.wgsl"))
            .kv(kv_format)
            .constant("G", g)
            .constant("G_TILE", g * 64);
        let pipeline = gpu.pipelines.get(&src);
        let scale = 1.0f32 / (head_dim as f32).sqrt();
        let dims = gpu.uniform(
            "attention.dims",
            &Dims {
                heads: heads as u32,
                kv_heads: kv_heads as u32,
                head_dim: head_dim as u32,
                scale_bits: scale.to_bits(),
            },
        );
        let group = bind(
            gpu,
            &pipeline,
            "attention",
            &[step, &dims, qkv, k_cache, v_cache, out],
        );
        Attention {
            pipeline,
            group,
            heads: heads as u32,
            kv_heads: kv_heads as u32,
            head_dim: head_dim as u32,
            kv_bytes: kv_format.bytes_per_element() as u64,
        }
    }
}

impl Op for Attention {
    fn name(&self) -> &'static str {
        "attention"
    }
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, s: &StepShape) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(self.kv_heads, s.n_tokens, 1);
    }
    fn cost(&self, s: &StepShape) -> Cost {
        // token t reads the K and V rows of positions 0..=pos0+t of its KV head, once
        let t = s.n_tokens as u64;
        let ctx_sum = t * s.pos0 as u64 + t * (t + 1) / 2;
        let d = self.head_dim as u64;
        let kv = ctx_sum * self.kv_heads as u64 * 2 * d * self.kv_bytes;
        let q = t * self.heads as u64 * d * 4;
        Cost {
            bytes_read: kv + q,
            bytes_written: q,
            flops: ctx_sum * self.heads as u64 * 4 * d,
        }
    }
}
