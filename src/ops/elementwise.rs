//! SiLU(gate) * up on the fused gate|up activations (shaders/silu_mul.wgsl).

use super::{bind, Cost, Op, StepShape};
use crate::gpu::{GpuContext, KernelSource};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    inter4: u32,
    _pad: [u32; 3],
}

pub struct SiluMul {
    pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    group: wgpu::BindGroup,
    inter: u32,
}

impl SiluMul {
    pub fn new(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        intermediate: usize,
        gate_up: &wgpu::Buffer,
        h: &wgpu::Buffer,
    ) -> Self {
        let pipeline = gpu.pipelines.get(&KernelSource::new(
            "silu_mul",
            include_str!("../../shaders/silu_mul.wgsl"),
        ));
        let dims = gpu.uniform(
            "silu_mul.dims",
            &Dims {
                inter4: (intermediate / 4) as u32,
                _pad: [0; 3],
            },
        );
        let group = bind(gpu, &pipeline, "silu_mul", &[step, &dims, gate_up, h]);
        SiluMul {
            pipeline,
            group,
            inter: intermediate as u32,
        }
    }
}

impl Op for SiluMul {
    fn name(&self) -> &'static str {
        "silu_mul"
    }
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, s: &StepShape) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups((self.inter / 4).div_ceil(64), s.n_tokens, 1);
    }
    fn cost(&self, s: &StepShape) -> Cost {
        let n = s.n_tokens as u64 * self.inter as u64;
        Cost {
            bytes_read: 8 * n,
            bytes_written: 4 * n,
            flops: 6 * n,
            ..Cost::default()
        }
    }
}
