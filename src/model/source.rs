//! The boundary between file formats and the GPU: a model source hands out tensors by
//! canonical name, dequantized to f32, in HF row-major layout.

use super::config::ModelConfig;
use std::fmt;

/// Canonical tensor names, independent of GGUF or HF naming.
/// Matrices are row-major `[out_features, in_features]` (HF `nn.Linear` layout);
/// q/k projections are in HF order (rotate-half RoPE), whatever the file stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorName {
    /// `[vocab, hidden]`
    TokenEmbedding,
    /// `[hidden]`
    FinalNorm,
    /// `[vocab, hidden]`; absent when embeddings are tied
    LmHead,
    Layer(usize, LayerTensor),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerTensor {
    /// `[hidden]`
    AttnNorm,
    /// `[heads*head_dim, hidden]`
    Wq,
    /// `[kv_heads*head_dim, hidden]`
    Wk,
    /// `[kv_heads*head_dim, hidden]`
    Wv,
    /// `[heads*head_dim]` (qwen2)
    Bq,
    /// `[kv_heads*head_dim]` (qwen2)
    Bk,
    /// `[kv_heads*head_dim]` (qwen2)
    Bv,
    /// `[hidden, heads*head_dim]`
    Wo,
    /// `[hidden]`
    FfnNorm,
    /// `[intermediate, hidden]`
    WGate,
    /// `[intermediate, hidden]`
    WUp,
    /// `[hidden, intermediate]`
    WDown,
}

impl fmt::Display for TensorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorName::TokenEmbedding => write!(f, "token_embedding"),
            TensorName::FinalNorm => write!(f, "final_norm"),
            TensorName::LmHead => write!(f, "lm_head"),
            TensorName::Layer(i, t) => write!(f, "layers.{i}.{t:?}"),
        }
    }
}

/// A dequantized tensor on the host. `shape` is row-major, outermost first.
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// One row of `headroom inspect`'s tensor table.
#[derive(Clone, Debug)]
pub struct TensorSummary {
    /// the name as stored in the file
    pub file_name: String,
    /// e.g. "Q4_1", "F16", "BF16"
    pub dtype: String,
    /// row-major, outermost first
    pub shape: Vec<usize>,
    /// bytes the tensor occupies in the file
    pub bytes: u64,
}

/// An error while reading model files: always names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LoadError {
    pub path: String,
    pub message: String,
}

impl LoadError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        LoadError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A loaded model file (GGUF) or directory (HF safetensors).
pub trait WeightSource: Send + Sync {
    fn config(&self) -> &ModelConfig;
    /// Where it came from, for messages.
    fn path(&self) -> &str;
    /// Whether the tensor exists (biases and lm_head are optional).
    fn has(&self, name: TensorName) -> bool;
    /// The tensor dequantized to f32, shape checked against the config.
    fn load(&self, name: TensorName) -> Result<HostTensor, LoadError>;
    /// Every tensor of the file, for `inspect`.
    fn summaries(&self) -> Vec<TensorSummary>;
}
