//! RMSNorm (shaders/rmsnorm.wgsl).

use super::matmul::{with_q8_store, VEC_MAX_ROWS};
use super::{bind, Cost, Op, StepShape};
use crate::gpu::{GpuContext, KernelSource};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    hidden4: u32,
    eps: f32,
    rows_from_logits: u32,
    /// 1: y += the normalised row (gemma's post-norms, into the residual stream)
    accumulate: u32,
}

/// Which rows an [`RmsNorm`] normalises, and whether it adds them to y.
#[derive(Clone, Copy)]
pub enum NormRows<'a> {
    /// every token row
    All,
    /// the logits rows: row r of y is the activation row `out_rows[r].src_row` (a buffer
    /// of `ops::OutRow`)
    Logits(&'a wgpu::Buffer),
    /// every token row, added to y (y += x * rsqrt(..) * weight)
    AddAll,
}

/// y = x * rsqrt(mean(x^2) + eps) * weight, over all token rows or only the logits rows.
pub struct RmsNorm {
    pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    group: wgpu::BindGroup,
    hidden: u32,
    logits_rows: bool,
    /// adds to y
    accumulate: bool,
    /// also writes 8-bit blocks (steps of at most `VEC_MAX_ROWS` rows)
    blocks: bool,
}

impl RmsNorm {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        hidden: usize,
        eps: f32,
        weight: &wgpu::Buffer,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        rows: NormRows<'_>,
    ) -> Self {
        Self::new_with_x_blocks(gpu, step, hidden, eps, weight, x, y, None, rows)
    }

    /// As `new`, also storing y as 8-bit blocks in `y_blocks` (`ops::matmul::q8_scratch`)
    /// on steps of at most `VEC_MAX_ROWS` rows, for an integer-dot matmul that reads y
    /// next (`Matmul::new_with_x_blocks`): the quantize dispatch in front of it is saved.
    #[allow(clippy::too_many_arguments)]
    pub fn new_with_x_blocks(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        hidden: usize,
        eps: f32,
        weight: &wgpu::Buffer,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        y_blocks: Option<&wgpu::Buffer>,
        rows: NormRows<'_>,
    ) -> Self {
        let (logits_rows, out_rows) = match rows {
            NormRows::All | NormRows::AddAll => (false, x), // bound but never read
            NormRows::Logits(b) => (true, b),
        };
        let accumulate = matches!(rows, NormRows::AddAll);
        let pipeline = gpu.pipelines.get(&with_q8_store(
            KernelSource::new("rmsnorm", include_str!("../../shaders/rmsnorm.wgsl")),
            6,
            y_blocks.is_some(),
        ));
        let dims = gpu.uniform(
            "rmsnorm.dims",
            &Dims {
                hidden4: (hidden / 4) as u32,
                eps,
                rows_from_logits: logits_rows as u32,
                accumulate: accumulate as u32,
            },
        );
        let mut buffers = vec![step, &dims, x, weight, y, out_rows];
        buffers.extend(y_blocks);
        let group = bind(gpu, &pipeline, "rmsnorm", &buffers);
        RmsNorm {
            pipeline,
            group,
            hidden: hidden as u32,
            logits_rows,
            accumulate,
            blocks: y_blocks.is_some(),
        }
    }

    fn rows(&self, s: &StepShape) -> u32 {
        if self.logits_rows {
            s.n_out_rows
        } else {
            s.n_tokens
        }
    }
}

impl Op for RmsNorm {
    fn name(&self) -> &'static str {
        "rmsnorm"
    }
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, s: &StepShape) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(self.rows(s), 1, 1);
    }
    fn cost(&self, s: &StepShape) -> Cost {
        let n = self.rows(s) as u64 * self.hidden as u64;
        let blocks = match self.blocks && self.rows(s) <= VEC_MAX_ROWS {
            true => n / 32 * super::matmul::Q8_BLOCK_BYTES,
            false => 0,
        };
        let y_read = if self.accumulate { 4 * n } else { 0 };
        Cost {
            bytes_read: 4 * n + 4 * self.hidden as u64 + y_read,
            bytes_written: 4 * n + blocks,
            flops: if self.accumulate { 5 * n } else { 4 * n },
            weight_bytes: 4 * self.hidden as u64,
            kv_bytes: 0,
        }
    }
}
