//! The gated MLP's activation on the fused gate|up activations, act(gate) * up: SiLU
//! (SwiGLU) or tanh-GELU (GeGLU) (shaders/silu_mul.wgsl).

use super::matmul::{with_q8_store, Q8_BLOCK_BYTES, VEC_MAX_ROWS};
use super::{bind, Cost, Op, StepShape};
use crate::gpu::{GpuContext, KernelSource};

/// The gated MLP's activation: down(act(gate) * up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Activation {
    /// SwiGLU (llama)
    #[default]
    Silu,
    /// GeGLU with the tanh approximation of GELU (gemma's `gelu_pytorch_tanh`)
    GeluTanh,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    inter4: u32,
    _pad: [u32; 3],
}

pub struct SiluMul {
    pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    group: wgpu::BindGroup,
    activation: Activation,
    inter: u32,
    /// also writes 8-bit blocks (steps of at most `VEC_MAX_ROWS` rows)
    blocks: bool,
}

impl SiluMul {
    pub fn new(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        intermediate: usize,
        gate_up: &wgpu::Buffer,
        h: &wgpu::Buffer,
    ) -> Self {
        Self::new_with_x_blocks(gpu, step, intermediate, gate_up, h, None)
    }

    /// As `new`, also storing h as 8-bit blocks in `h_blocks` (`ops::matmul::q8_scratch`)
    /// on steps of at most `VEC_MAX_ROWS` rows, for the integer-dot matmul that reads h
    /// next (`Matmul::new_with_x_blocks`).
    pub fn new_with_x_blocks(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        intermediate: usize,
        gate_up: &wgpu::Buffer,
        h: &wgpu::Buffer,
        h_blocks: Option<&wgpu::Buffer>,
    ) -> Self {
        Self::gated(
            gpu,
            step,
            Activation::Silu,
            intermediate,
            gate_up,
            h,
            h_blocks,
        )
    }

    /// As `new_with_x_blocks`, with `activation` on the gate.
    pub fn gated(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        activation: Activation,
        intermediate: usize,
        gate_up: &wgpu::Buffer,
        h: &wgpu::Buffer,
        h_blocks: Option<&wgpu::Buffer>,
    ) -> Self {
        let pipeline = gpu.pipelines.get(
            &with_q8_store(
                KernelSource::new("silu_mul", include_str!("../../shaders/silu_mul.wgsl")),
                4,
                h_blocks.is_some(),
            )
            .constant("GELU", activation == Activation::GeluTanh),
        );
        let dims = gpu.uniform(
            "silu_mul.dims",
            &Dims {
                inter4: (intermediate / 4) as u32,
                _pad: [0; 3],
            },
        );
        let mut buffers = vec![step, &dims, gate_up, h];
        buffers.extend(h_blocks);
        let group = bind(gpu, &pipeline, "silu_mul", &buffers);
        SiluMul {
            pipeline,
            group,
            activation,
            inter: intermediate as u32,
            blocks: h_blocks.is_some(),
        }
    }
}

impl SiluMul {
    fn writes_blocks(&self, s: &StepShape) -> bool {
        self.blocks && s.n_tokens <= VEC_MAX_ROWS
    }
}

impl Op for SiluMul {
    fn name(&self) -> &'static str {
        match self.activation {
            Activation::Silu => "silu_mul",
            Activation::GeluTanh => "gelu_mul",
        }
    }
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, s: &StepShape) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        // an invocation per 32 values where it also writes blocks, else per 4
        let per = if self.writes_blocks(s) { 32 } else { 4 };
        pass.dispatch_workgroups((self.inter / per).div_ceil(64), s.n_tokens, 1);
    }
    fn cost(&self, s: &StepShape) -> Cost {
        let n = s.n_tokens as u64 * self.inter as u64;
        let blocks = match self.writes_blocks(s) {
            true => n / 32 * Q8_BLOCK_BYTES,
            false => 0,
        };
        Cost {
            bytes_read: 8 * n,
            bytes_written: 4 * n + blocks,
            flops: match self.activation {
                Activation::Silu => 6 * n,
                Activation::GeluTanh => 12 * n,
            },
            ..Cost::default()
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftcapDims {
    vocab: u32,
    cap: f32,
    _pad: [u32; 2],
}

/// logits = cap * tanh(logits / cap) on the rows that got logits (gemma2's final
/// soft-capping), in place (shaders/softcap.wgsl).
pub struct SoftcapLogits {
    pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    group: wgpu::BindGroup,
    vocab: u32,
}

impl SoftcapLogits {
    pub fn new(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        vocab: usize,
        cap: f32,
        logits: &wgpu::Buffer,
    ) -> Self {
        let pipeline = gpu.pipelines.get(&KernelSource::new(
            "softcap",
            include_str!("../../shaders/softcap.wgsl"),
        ));
        let dims = gpu.uniform(
            "softcap.dims",
            &SoftcapDims {
                vocab: vocab as u32,
                cap,
                _pad: [0; 2],
            },
        );
        let group = bind(gpu, &pipeline, "softcap", &[step, &dims, logits]);
        SoftcapLogits {
            pipeline,
            group,
            vocab: vocab as u32,
        }
    }
}

impl Op for SoftcapLogits {
    fn name(&self) -> &'static str {
        "softcap"
    }
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, s: &StepShape) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(self.vocab.div_ceil(256), s.n_out_rows, 1);
    }
    fn cost(&self, s: &StepShape) -> Cost {
        let n = s.n_out_rows as u64 * self.vocab as u64;
        Cost {
            bytes_read: 4 * n,
            bytes_written: 4 * n,
            flops: 8 * n,
            ..Cost::default()
        }
    }
}
