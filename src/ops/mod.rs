//! One Rust wrapper per WGSL kernel family. Each op is built once (pipeline, parameters,
//! bind group) and then recorded into a compute pass every step; each states its cost.

pub mod decode_attention;
pub mod elementwise;
pub mod embed;
pub mod matmul;
pub mod matmul_prologue;
pub mod mla;
pub mod rmsnorm;
pub mod rope_kv;
pub mod sample;

pub use crate::gpu::{bind, bind_layout};

/// Per-step parameters shared by every kernel (mirrors `Step` in shaders/common.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    pub n_tokens: u32,
    pub pos0: u32,
    /// rows that get logits, each described by an [`OutRow`]
    pub n_out_rows: u32,
    pub _pad: u32,
}

/// A row that gets logits: the activation row it comes from and how to sample the next
/// token (mirrors `OutRow` in shaders/common.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OutRow {
    pub src_row: u32,
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub seed: u32,
    pub counter: u32,
    /// a speculative draft's token after this row, which a sampled draw keeps with its
    /// probability (shaders/sample.wgsl); `NO_DRAFT` for none
    pub draft: u32,
    pub _pad: u32,
}

/// `OutRow::draft` of a row without a draft.
pub const NO_DRAFT: u32 = u32::MAX;

impl OutRow {
    /// Row `src_row`, sampled with `sampling` as the `counter`-th draw of its sequence.
    pub fn new(src_row: u32, sampling: &sample::SamplingParams, counter: u32) -> Self {
        OutRow {
            src_row,
            temperature: sampling.temperature,
            top_k: sampling.top_k,
            top_p: sampling.top_p,
            seed: sampling.seed,
            counter,
            draft: NO_DRAFT,
            _pad: 0,
        }
    }

    /// As `new`, the row verifying the drafted token `draft`: a greedy draw is the
    /// argmax as ever (the draft stands if it is that); a sampled one keeps `draft` with
    /// its probability and otherwise draws from the distribution without it, so that the
    /// draw has the distribution's own law (the rejection rule of speculative sampling
    /// for a draft proposed with certainty).
    pub fn drafted(
        src_row: u32,
        sampling: &sample::SamplingParams,
        counter: u32,
        draft: u32,
    ) -> Self {
        OutRow {
            draft,
            ..OutRow::new(src_row, sampling, counter)
        }
    }
}

/// What varies between recordings of the same op.
#[derive(Clone, Copy, Debug)]
pub struct StepShape {
    /// token rows in this forward pass
    pub n_tokens: u32,
    /// position of the first of them
    pub pos0: u32,
    /// rows that get logits
    pub n_out_rows: u32,
    /// the longest context of any token row (pos0 + n_tokens for one sequence)
    pub max_context: u32,
    /// tiles of consecutive queries of one sequence that attention takes together
    /// (`ops::decode_attention::query_tiles`); 0: attention takes each query alone
    pub query_tiles: u32,
}

impl StepShape {
    /// A step of `n_tokens` tokens of one sequence from position `pos0`, logits for the last.
    pub fn single(n_tokens: u32, pos0: u32) -> Self {
        StepShape {
            n_tokens,
            pos0,
            n_out_rows: 1,
            max_context: pos0 + n_tokens,
            query_tiles: 0,
        }
    }
}

/// Memory traffic and arithmetic of one recording, from the op's own shapes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub flops: u64,
    /// of the bytes read, those that are model weights (embeddings, matrices, norms)
    pub weight_bytes: u64,
    /// of the bytes read and written, those of the KV cache
    pub kv_bytes: u64,
}

impl Cost {
    /// Bytes read and written.
    pub fn bytes(&self) -> u64 {
        self.bytes_read + self.bytes_written
    }

    /// Bytes that are neither weights nor KV cache: activations, step metadata, logits.
    pub fn activation_bytes(&self) -> u64 {
        self.bytes() - self.weight_bytes - self.kv_bytes
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            bytes_read: self.bytes_read + o.bytes_read,
            bytes_written: self.bytes_written + o.bytes_written,
            flops: self.flops + o.flops,
            weight_bytes: self.weight_bytes + o.weight_bytes,
            kv_bytes: self.kv_bytes + o.kv_bytes,
        }
    }
}

/// A kernel ready to record.
pub trait Op {
    fn name(&self) -> &'static str;
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, shape: &StepShape);
    fn cost(&self, shape: &StepShape) -> Cost;
    /// The cost of a step whose query rows see these context lengths (a batched or
    /// mixed step); only attention depends on them.
    fn cost_of_rows(&self, shape: &StepShape, _context_lens: &[u32]) -> Cost {
        self.cost(shape)
    }
    /// Dispatches one recording makes (a small model's decode step is bound by them).
    fn dispatches(&self, _shape: &StepShape) -> u32 {
        1
    }
}

/// Splits a 1-D workgroup count over x and y so neither exceeds the 65535 limit.
pub fn grid_1d(workgroups: u32) -> (u32, u32) {
    let x = workgroups.clamp(1, 65535);
    (x, workgroups.div_ceil(x).max(1))
}
