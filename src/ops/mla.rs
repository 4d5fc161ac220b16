//! MLA (DeepSeek-V2 style) decode in its absorbed form: the cache holds one latent vector
//! (rank r) and one shared RoPE key per token, so attention runs as one "KV head" of key
//! dim r + rope and value dim r (see `decode_attention`). Around it, per head:
//!   q_lat = W_UK^T q_nope, query = [q_lat | q_rope]   (MlaProjection, before)
//!   out   = W_UV  latent_out                          (MlaProjection, after)
//! (shaders/mla_project.wgsl).

use super::bind;
use crate::gpu::{GpuContext, KernelSource};
use std::sync::Arc;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    copy_n: u32,
    heads: u32,
    in_stride: u32,
    in_hstride: u32,
    in_off: u32,
    _p0: u32,
    out_stride: u32,
    out_hstride: u32,
    out_off: u32,
    _p1: u32,
    copy_stride: u32,
    copy_hstride: u32,
    copy_off: u32,
    _p2: u32,
}

/// Where a projection reads a head's vector: `row * stride + head * head_stride + offset`.
#[derive(Clone, Copy, Debug)]
pub struct Strided {
    pub stride: usize,
    pub head_stride: usize,
    pub offset: usize,
}

/// `out[row, h, 0..m] = W[h]^T x[row, h, 0..n]` with `W[h]` stored `[n][m]`, then
/// `copy_n` values of `xc[row, h]` appended.
pub struct MlaProjection {
    pipeline: Arc<wgpu::ComputePipeline>,
    group: wgpu::BindGroup,
    m: usize,
    n: usize,
    copy_n: usize,
    heads: usize,
}

impl MlaProjection {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &GpuContext,
        heads: usize,
        w: &wgpu::Buffer,
        m: usize,
        n: usize,
        x: (&wgpu::Buffer, Strided),
        copy: Option<(&wgpu::Buffer, Strided, usize)>,
        out: (&wgpu::Buffer, Strided),
    ) -> Self {
        let src = KernelSource::new(
            "mla_project",
            include_str!("../../shaders/mla_project.wgsl"),
        );
        let pipeline = gpu.pipelines.get(&src);
        let (xc, cs, copy_n) = copy.unwrap_or((x.0, x.1, 0));
        let params = gpu.uniform(
            "mla_project.params",
            &Params {
                m: m as u32,
                n: n as u32,
                copy_n: copy_n as u32,
                heads: heads as u32,
                in_stride: x.1.stride as u32,
                in_hstride: x.1.head_stride as u32,
                in_off: x.1.offset as u32,
                out_stride: out.1.stride as u32,
                out_hstride: out.1.head_stride as u32,
                out_off: out.1.offset as u32,
                copy_stride: cs.stride as u32,
                copy_hstride: cs.head_stride as u32,
                copy_off: cs.offset as u32,
                ..Default::default()
            },
        );
        let group = bind(gpu, &pipeline, "mla_project", &[&params, w, x.0, xc, out.0]);
        MlaProjection {
            pipeline,
            group,
            m,
            n,
            copy_n,
            heads,
        }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, rows: u32) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(
            ((self.m + self.copy_n) as u32).div_ceil(64),
            self.heads as u32,
            rows,
        );
    }

    /// Bytes read (weights once, inputs) and flops for `rows` rows.
    pub fn bytes_and_flops(&self, rows: usize) -> (u64, u64) {
        let w = (self.heads * self.m * self.n * 4) as u64;
        let x = (rows * self.heads * (self.n + self.copy_n) * 4) as u64;
        (w + x, (2 * rows * self.heads * self.m * self.n) as u64)
    }
}
