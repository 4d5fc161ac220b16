//! How a model is stored on the GPU and how large its buffers are.

use super::ModelConfig;
use crate::gpu::quant_layout::QuantType;
use crate::gpu::StorageFormat;
use crate::kv::KvLayout;

/// Storage choices and sizes for a loaded model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuModelOptions {
    /// how weight matrices are stored (f16 halves the bytes every token reads)
    pub weights: StorageFormat,
    /// matrices a GGUF stores in blocks a kernel reads (Q4_0 ... Q6_K) stay in them on
    /// the GPU (dequantized in registers); the others are stored as `weights`, or
    /// quantized as `quantize` says
    pub quantized: bool,
    /// matrices the file stores as floats (safetensors, F16/F32 GGUF tensors; with
    /// `quantized` off, every matrix) quantized to these blocks at load (`--quantize`),
    /// where their rows are whole blocks
    pub quantize: Option<QuantType>,
    /// how the KV cache is stored
    pub kv: StorageFormat,
    /// positions the KV cache holds
    pub context: usize,
    /// most tokens in one forward pass (longer prompts are prefilled in chunks). 512 by
    /// default, as llama.cpp's micro-batch: the matrix units run a 7B layer's matmuls 1.4x
    /// faster per row on 512 rows than on 256 (bench/2026-11-30-h200-coop-wide).
    pub max_chunk: usize,
    /// positions per block of the paged KV cache
    pub kv_block_size: usize,
}

impl Default for GpuModelOptions {
    fn default() -> Self {
        GpuModelOptions {
            weights: StorageFormat::F16,
            quantized: false,
            quantize: None,
            kv: StorageFormat::F16,
            context: 4096,
            max_chunk: 512,
            kv_block_size: 16,
        }
    }
}

impl GpuModelOptions {
    /// How weights are stored, for messages and reports: "native" (blocks as stored where
    /// a kernel reads them), the type floats are quantized to at load, else the float
    /// format.
    pub fn weights_name(&self) -> String {
        match (self.quantize, self.quantized) {
            (Some(q), true) => format!("native, floats as {}", q.name()),
            (Some(q), false) => q.name().to_string(),
            (None, true) => "native".into(),
            (None, false) => self.weights.name().into(),
        }
    }

    /// The KV cache's layout for `cfg` stored this way: a key and a value of `head_dim`
    /// per KV head, position and layer.
    pub fn kv_layout(&self, cfg: &ModelConfig) -> KvLayout {
        KvLayout {
            layers: cfg.num_layers,
            kv_heads: cfg.num_kv_heads,
            key_dim: cfg.head_dim,
            value_dim: cfg.head_dim,
            block_size: self.kv_block_size,
            format: self.kv,
            latent: false,
        }
    }
}
