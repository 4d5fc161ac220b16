//! The boundary between file formats and the GPU: a model source hands out tensors by
//! canonical name, dequantized to f32, in HF row-major layout.

use super::config::ModelConfig;
use crate::formats::quant::GgmlType;
pub use crate::formats::LoadError;
use std::fmt;
use std::ops::Range;

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
    /// `[head_dim]`, every query head's RMSNorm weights (qwen3, gemma3)
    QNorm,
    /// `[head_dim]`, every key head's RMSNorm weights (qwen3)
    KNorm,
    /// `[(heads + 2 kv_heads) head_dim, hidden]`: Wq, Wk, Wv as a file stores them fused
    /// (phi3); sources hand out its parts (`fused_rows`), never it
    Wqkv,
    /// `[2 intermediate, hidden]`: WGate, WUp as a file stores them fused (phi3)
    WGateUp,
    /// `[hidden, heads*head_dim]`
    Wo,
    /// `[hidden]`, the norm before the MLP (gemma: pre_feedforward_layernorm)
    FfnNorm,
    /// `[hidden]`, the norm of the attention block's output before the residual add (gemma)
    PostAttnNorm,
    /// `[hidden]`, the norm of the MLP's output before the residual add (gemma)
    PostFfnNorm,
    /// `[intermediate, hidden]`
    WGate,
    /// `[intermediate, hidden]`
    WUp,
    /// `[hidden, intermediate]`
    WDown,
}

impl TensorName {
    /// Whether it is an RMSNorm's weights (which gemma's HF files store as w for 1 + w).
    pub fn is_norm(self) -> bool {
        use LayerTensor::*;
        match self {
            TensorName::FinalNorm => true,
            TensorName::Layer(_, t) => matches!(
                t,
                AttnNorm | FfnNorm | PostAttnNorm | PostFfnNorm | QNorm | KNorm
            ),
            _ => false,
        }
    }
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

/// Every tensor a model of this config has: biases only with `attention_bias`, q/k norms
/// only with `qk_norm`, post-norms only with `variant.post_norms`, lm_head only when
/// embeddings are not tied.
pub fn tensor_names(cfg: &ModelConfig) -> Vec<TensorName> {
    let mut names = vec![TensorName::TokenEmbedding];
    for l in 0..cfg.num_layers {
        use LayerTensor::*;
        let mut layer = vec![AttnNorm, Wq, Wk, Wv];
        if cfg.attention_bias {
            layer.extend([Bq, Bk, Bv]);
        }
        if cfg.qk_norm {
            layer.extend([QNorm, KNorm]);
        }
        layer.extend([Wo, FfnNorm, WGate, WUp, WDown]);
        if cfg.variant.post_norms {
            layer.extend([PostAttnNorm, PostFfnNorm]);
        }
        names.extend(layer.into_iter().map(|t| TensorName::Layer(l, t)));
    }
    names.push(TensorName::FinalNorm);
    if !cfg.tie_word_embeddings {
        names.push(TensorName::LmHead);
    }
    names
}

/// Errors unless the file(s) hold at least one tensor per layer the config declares:
/// [`tensor_names`] lists a dozen per layer, so a header's layer count must be bounded by
/// what the file holds before they are listed (a 4-billion `block_count` in a tiny file
/// is an error here, not a 700 GB list).
pub(crate) fn check_layer_count(
    path: &str,
    what: &str,
    cfg: &ModelConfig,
    n_tensors: usize,
) -> Result<(), LoadError> {
    if cfg.num_layers > n_tensors {
        return Err(LoadError::new(
            path,
            format!(
                "{what} is {} layers, but the file has only {n_tensors} tensors (each layer \
                 needs 9 or more): truncated or corrupt",
                cfg.num_layers
            ),
        ));
    }
    Ok(())
}

/// Row-major shape of a tensor, outermost first (see [`TensorName`]'s docs).
pub fn expected_shape(cfg: &ModelConfig, name: TensorName) -> Vec<usize> {
    let q = cfg.num_heads * cfg.head_dim;
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
    match name {
        TensorName::TokenEmbedding | TensorName::LmHead => vec![cfg.vocab_size, h],
        TensorName::FinalNorm => vec![h],
        TensorName::Layer(_, t) => match t {
            LayerTensor::AttnNorm
            | LayerTensor::FfnNorm
            | LayerTensor::PostAttnNorm
            | LayerTensor::PostFfnNorm => vec![h],
            LayerTensor::Wq => vec![q, h],
            LayerTensor::Wk | LayerTensor::Wv => vec![kv, h],
            LayerTensor::Bq => vec![q],
            LayerTensor::Bk | LayerTensor::Bv => vec![kv],
            LayerTensor::QNorm | LayerTensor::KNorm => vec![cfg.head_dim],
            LayerTensor::Wqkv => vec![q + 2 * kv, h],
            LayerTensor::WGateUp => vec![2 * f, h],
            LayerTensor::Wo => vec![h, q],
            LayerTensor::WGate | LayerTensor::WUp => vec![f, h],
            LayerTensor::WDown => vec![h, f],
        },
    }
}

/// Where a file that fuses tensors (phi3) keeps `name`: the fused tensor and the range of
/// its rows that are `name`'s. None where the tensor is stored on its own.
pub fn fused_rows(cfg: &ModelConfig, name: TensorName) -> Option<(LayerTensor, Range<usize>)> {
    if !cfg.arch.fused_tensors() {
        return None;
    }
    let TensorName::Layer(_, t) = name else {
        return None;
    };
    let (q, kv, f) = (
        cfg.num_heads * cfg.head_dim,
        cfg.num_kv_heads * cfg.head_dim,
        cfg.intermediate_size,
    );
    use LayerTensor::*;
    match t {
        Wq => Some((Wqkv, 0..q)),
        Wk => Some((Wqkv, q..q + kv)),
        Wv => Some((Wqkv, q + kv..q + 2 * kv)),
        WGate => Some((WGateUp, 0..f)),
        WUp => Some((WGateUp, f..2 * f)),
        _ => None,
    }
}

/// The tensor a file stores `name` in, and which of its rows are `name`'s (all of them
/// but for phi3's fused q/k/v and gate/up).
pub(crate) fn stored_as(cfg: &ModelConfig, name: TensorName) -> (TensorName, Range<usize>) {
    match (fused_rows(cfg, name), name) {
        (Some((fused, rows)), TensorName::Layer(l, _)) => (TensorName::Layer(l, fused), rows),
        _ => (name, 0..expected_shape(cfg, name)[0]),
    }
}

/// `name`'s rows of a fused tensor `t` (see `stored_as`), or `t` itself.
pub(crate) fn rows_of(cfg: &ModelConfig, name: TensorName, t: HostTensor) -> HostTensor {
    let (stored, rows) = stored_as(cfg, name);
    if stored == name {
        return t;
    }
    let cols = t.shape[1];
    HostTensor {
        shape: expected_shape(cfg, name),
        data: t.data[rows.start * cols..rows.end * cols].to_vec(),
    }
}

/// Errors unless `shape` is what the config says `name` (stored as `file_name`) must be.
pub(crate) fn check_shape(
    path: &str,
    file_name: &str,
    cfg: &ModelConfig,
    name: TensorName,
    shape: &[usize],
) -> Result<(), LoadError> {
    let want = expected_shape(cfg, name);
    if shape != want.as_slice() {
        return Err(LoadError::new(
            path,
            format!(
                "tensor '{file_name}' ({name}) has shape {shape:?}, the config needs {want:?} \
                 (row-major)"
            ),
        ));
    }
    Ok(())
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
    /// The tensor as the file stores it when that is GGML quantization blocks: the type
    /// and the blocks in canonical row order (q/k rows un-permuted, whole rows moved).
    /// None for float tensors and for sources without blocks.
    fn blocks(&self, _name: TensorName) -> Result<Option<(GgmlType, Vec<u8>)>, LoadError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Arch;
    use crate::model::synthetic::tiny_config;

    #[test]
    fn names_and_shapes() {
        let mut cfg = tiny_config(Arch::Qwen2, 4, 1, false);
        cfg.attention_bias = true;
        let names = tensor_names(&cfg);
        assert_eq!(names.len(), 3 + cfg.num_layers * 12);
        assert!(names.contains(&TensorName::LmHead));
        assert_eq!(
            expected_shape(&cfg, TensorName::Layer(0, LayerTensor::Wk)),
            vec![cfg.head_dim, cfg.hidden_size]
        );
        let e = check_shape("f", "w", &cfg, TensorName::FinalNorm, &[3]).unwrap_err();
        assert!(
            e.to_string().contains("'w' (final_norm) has shape [3]"),
            "{e}"
        );
    }
}
