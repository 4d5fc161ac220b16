//! RoPE on q and k, and the append of k and v to the paged KV cache (shaders/rope_kv.wgsl).

use super::{bind, Cost, Op, StepShape};
use crate::gpu::{GpuContext, KernelSource};
use crate::kv::{KvLayout, LayerPool};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    table_base: u32,
}

pub struct RopeKvAppend {
    pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    group: wgpu::BindGroup,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    kv_bytes: u64,
}

impl RopeKvAppend {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        qkv: &wgpu::Buffer,
        inv_freq: &wgpu::Buffer,
        meta: &wgpu::Buffer,
        table_base: u32,
        kv: &KvLayout,
        blocks_per_binding: usize,
        pool: &LayerPool,
    ) -> Self {
        let src = KernelSource::new("rope_kv", include_str!("../../shaders/rope_kv.wgsl"))
            .kv(kv.format)
            .constant("BS", kv.block_size)
            .constant("BLOCK_ELEMS", kv.key_block_elems())
            .constant("BPB", blocks_per_binding);
        let pipeline = gpu.pipelines.get(&src);
        let dims = gpu.uniform(
            "rope_kv.dims",
            &Dims {
                heads: heads as u32,
                kv_heads: kv_heads as u32,
                head_dim: head_dim as u32,
                table_base,
            },
        );
        let group = bind(
            gpu,
            &pipeline,
            "rope_kv",
            &[
                step, &dims, qkv, inv_freq, meta, &pool.k[0], &pool.k[1], &pool.v[0], &pool.v[1],
            ],
        );
        RopeKvAppend {
            pipeline,
            group,
            heads: heads as u32,
            kv_heads: kv_heads as u32,
            head_dim: head_dim as u32,
            kv_bytes: kv.format.bytes_per_element() as u64,
        }
    }
}

impl Op for RopeKvAppend {
    fn name(&self) -> &'static str {
        "rope_kv"
    }
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, s: &StepShape) {
        let threads =
            (self.heads + self.kv_heads) * self.head_dim / 8 + self.kv_heads * self.head_dim / 4;
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(threads.div_ceil(64), s.n_tokens, 1);
    }
    fn cost(&self, s: &StepShape) -> Cost {
        let t = s.n_tokens as u64;
        let d = self.head_dim as u64;
        let qk = (self.heads + self.kv_heads) as u64 * d;
        let kv = 2 * self.kv_heads as u64 * d;
        Cost {
            bytes_read: t * (qk + kv / 2) * 4 + d * 2,
            bytes_written: t * (self.heads as u64 * d * 4 + kv * self.kv_bytes),
            flops: t * qk * 3,
            weight_bytes: 0,
            kv_bytes: t * kv * self.kv_bytes,
        }
    }
}
