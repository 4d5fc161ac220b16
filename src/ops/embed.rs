//! Token embedding lookup (shaders/embed.wgsl).

use super::{bind, Cost, Op, StepShape};
use crate::gpu::{GpuContext, KernelSource};
use crate::ops::matmul::WeightMatrix;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    hidden4: u32,
    row0: u32,
    rows: u32,
    /// the rows are multiplied by it (gemma: sqrt(hidden))
    scale: f32,
}

/// x[t, :] = table[tokens[t], :] (times a scale); one dispatch per part of a split table.
pub struct Embed {
    pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    groups: Vec<wgpu::BindGroup>,
    hidden: u32,
    /// bytes of one row of the table (a padded super-block's share aside)
    row_bytes: u64,
}

impl Embed {
    pub fn new(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        table: &WeightMatrix,
        tokens: &wgpu::Buffer,
        x: &wgpu::Buffer,
    ) -> Self {
        Self::scaled(gpu, step, table, tokens, x, 1.0)
    }

    /// x[t, :] = scale * table[tokens[t], :].
    pub fn scaled(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        table: &WeightMatrix,
        tokens: &wgpu::Buffer,
        x: &wgpu::Buffer,
        scale: f32,
    ) -> Self {
        let src = KernelSource::new("embed", include_str!("../../shaders/embed.wgsl"))
            .weights(table.format);
        let pipeline = gpu.pipelines.get(&src);
        let groups = table
            .parts
            .iter()
            .map(|p| {
                let dims = gpu.uniform(
                    "embed.dims",
                    &Dims {
                        hidden4: (table.cols / 4) as u32,
                        row0: p.row0 as u32,
                        rows: p.rows as u32,
                        scale,
                    },
                );
                bind(
                    gpu,
                    &pipeline,
                    "embed",
                    &[step, &dims, &p.buffer, tokens, x],
                )
            })
            .collect();
        Embed {
            pipeline,
            groups,
            hidden: table.cols as u32,
            row_bytes: table.format.bytes_for(table.cols),
        }
    }
}

impl Op for Embed {
    fn name(&self) -> &'static str {
        "embed"
    }
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, s: &StepShape) {
        pass.set_pipeline(&self.pipeline);
        for g in &self.groups {
            pass.set_bind_group(0, g, &[]);
            pass.dispatch_workgroups((self.hidden / 4).div_ceil(64), s.n_tokens, 1);
        }
    }
    fn cost(&self, s: &StepShape) -> Cost {
        let n = s.n_tokens as u64 * self.hidden as u64;
        let rows = s.n_tokens as u64 * self.row_bytes;
        Cost {
            bytes_read: rows + 4 * s.n_tokens as u64,
            bytes_written: n * 4,
            flops: 0,
            weight_bytes: rows,
            kv_bytes: 0,
        }
    }
}
