//! RoPE on q and k (after qwen3's per-head RMSNorm, where the model has it), and the
//! append of k and v to the paged KV cache (shaders/rope_kv.wgsl).

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

/// Qwen3's RMSNorm of each query and key head before RoPE, inside the same kernel.
#[derive(Clone, Copy)]
pub struct HeadNorms<'a> {
    /// `[q_norm | k_norm]`, `head_dim` f32 each
    pub weights: &'a wgpu::Buffer,
    pub eps: f32,
}

pub struct RopeKvAppend {
    pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    group: wgpu::BindGroup,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    kv_bytes: u64,
    /// invocations per workgroup: whole heads where they are normalised
    workgroup: u32,
    normed: bool,
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
        rope_scale: f32,
        norms: Option<HeadNorms<'_>>,
    ) -> Self {
        // a head is head_dim / 8 invocations; with norms a workgroup holds whole heads
        let per_head = (head_dim / 8).max(1);
        let workgroup = match norms {
            Some(_) => per_head * (64 / per_head).max(1),
            None => 64,
        };
        let src = KernelSource::new("rope_kv", include_str!("../../shaders/rope_kv.wgsl"))
            .kv(kv.format)
            .constant("BS", kv.block_size)
            .constant("BLOCK_ELEMS", kv.key_block_elems())
            .constant("BPB", blocks_per_binding)
            .constant("QK_NORM", norms.is_some())
            .constant("EPS", format!("{:?}", norms.map_or(0.0, |n| n.eps)))
            .constant("WG", workgroup)
            .constant("ROPE_SCALE", format!("{rope_scale:?}"));
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
        // without norms the binding is never read: any read-only buffer will do
        let norm_weights = norms.map_or(inv_freq, |n| n.weights);
        let group = bind(
            gpu,
            &pipeline,
            "rope_kv",
            &[
                step,
                &dims,
                qkv,
                inv_freq,
                meta,
                &pool.k[0],
                &pool.k[1],
                &pool.v[0],
                &pool.v[1],
                norm_weights,
            ],
        );
        RopeKvAppend {
            pipeline,
            group,
            heads: heads as u32,
            kv_heads: kv_heads as u32,
            head_dim: head_dim as u32,
            kv_bytes: kv.format.bytes_per_element() as u64,
            workgroup: workgroup as u32,
            normed: norms.is_some(),
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
        pass.dispatch_workgroups(threads.div_ceil(self.workgroup), s.n_tokens, 1);
    }
    fn cost(&self, s: &StepShape) -> Cost {
        let t = s.n_tokens as u64;
        let d = self.head_dim as u64;
        let qk = (self.heads + self.kv_heads) as u64 * d;
        let kv = 2 * self.kv_heads as u64 * d;
        let norms = if self.normed { 2 * d * 4 } else { 0 };
        Cost {
            bytes_read: t * (qk + kv / 2) * 4 + d * 2 + norms,
            bytes_written: t * (self.heads as u64 * d * 4 + kv * self.kv_bytes),
            flops: t * qk * (3 + 4 * self.normed as u64),
            weight_bytes: norms,
            kv_bytes: t * kv * self.kv_bytes,
        }
    }
}
