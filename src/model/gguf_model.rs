//! A llama.cpp GGUF model as a [`WeightSource`]: config from metadata, llama.cpp tensor
//! names, dequantization, and undoing the converter's q/k row permutation.

use super::config::llama3_rope_inv_freq;
use super::config::{Arch, Llama3RopeScaling, LongRope, ModelConfig, Variant};
use super::source::{check_layer_count, check_shape, expected_shape, tensor_names};
use super::source::{rows_of, stored_as};
use super::source::{HostTensor, LayerTensor, LoadError, TensorName, TensorSummary, WeightSource};
use crate::formats::gguf::{GgufFile, TensorInfo};
use crate::formats::quant::GgmlType;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

/// The llama.cpp name of a tensor, e.g. `blk.3.attn_q.weight`.
pub fn gguf_tensor_name(name: TensorName) -> String {
    match name {
        TensorName::TokenEmbedding => "token_embd.weight".into(),
        TensorName::FinalNorm => "output_norm.weight".into(),
        TensorName::LmHead => "output.weight".into(),
        TensorName::Layer(i, t) => {
            let s = match t {
                LayerTensor::AttnNorm => "attn_norm.weight",
                LayerTensor::Wq => "attn_q.weight",
                LayerTensor::Wk => "attn_k.weight",
                LayerTensor::Wv => "attn_v.weight",
                LayerTensor::Bq => "attn_q.bias",
                LayerTensor::Bk => "attn_k.bias",
                LayerTensor::Bv => "attn_v.bias",
                LayerTensor::QNorm => "attn_q_norm.weight",
                LayerTensor::KNorm => "attn_k_norm.weight",
                LayerTensor::Wqkv => "attn_qkv.weight",
                // phi3's fused gate and up
                LayerTensor::WGateUp => "ffn_up.weight",
                LayerTensor::Wo => "attn_output.weight",
                LayerTensor::FfnNorm => "ffn_norm.weight",
                LayerTensor::PostAttnNorm => "post_attention_norm.weight",
                LayerTensor::PostFfnNorm => "post_ffw_norm.weight",
                LayerTensor::WGate => "ffn_gate.weight",
                LayerTensor::WUp => "ffn_up.weight",
                LayerTensor::WDown => "ffn_down.weight",
            };
            format!("blk.{i}.{s}")
        }
    }
}

/// llama.cpp's convert_hf_to_gguf permutes the rows of q/k (weights and biases) of the
/// llama architecture: per head, `reshape(2, head_dim/2).swapaxes` turns rotate-half
/// pairs (j, j + head_dim/2) into adjacent rows (2j, 2j+1). This applies that (HF -> GGUF)
/// to `data`, row-major `[n_heads * head_dim, cols]`.
pub fn llama_cpp_permute_rows(data: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    permute_rows(data, n_heads, cols, true)
}

/// The inverse of [`llama_cpp_permute_rows`] (GGUF -> HF).
pub fn llama_cpp_unpermute_rows(data: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    permute_rows(data, n_heads, cols, false)
}

/// Rows of `data` (`cols` items each) moved between HF and llama.cpp order (see
/// [`llama_cpp_permute_rows`]); whole rows move, so it works on any item type, GGML blocks'
/// bytes included.
fn permute_rows<T: Copy + Default>(
    data: &[T],
    n_heads: usize,
    cols: usize,
    to_gguf: bool,
) -> Vec<T> {
    let rows = data.len() / cols;
    assert_eq!(rows * cols, data.len());
    assert_eq!(
        rows % (2 * n_heads),
        0,
        "rows must be n_heads * even head_dim"
    );
    let hd = rows / n_heads;
    let half = hd / 2;
    let mut out = vec![T::default(); data.len()];
    for h in 0..n_heads {
        for t in 0..2 {
            for j in 0..half {
                let hf_row = h * hd + t * half + j;
                let gguf_row = h * hd + 2 * j + t;
                let (src, dst) = if to_gguf {
                    (hf_row, gguf_row)
                } else {
                    (gguf_row, hf_row)
                };
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// A GGUF model file.
pub struct GgufModel {
    file: GgufFile,
    config: ModelConfig,
    rope_freqs: Option<Vec<f32>>,
}

impl std::fmt::Debug for GgufModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufModel")
            .field("file", &self.file)
            .field("config", &self.config)
            .finish()
    }
}

impl GgufModel {
    /// The heads whose rows llama.cpp's converter permuted in this tensor (llama q and k),
    /// None for every other tensor.
    fn permuted_heads(&self, name: TensorName) -> Option<usize> {
        if self.config.arch != Arch::Llama {
            return None;
        }
        match name {
            TensorName::Layer(_, LayerTensor::Wq | LayerTensor::Bq) => Some(self.config.num_heads),
            TensorName::Layer(_, LayerTensor::Wk | LayerTensor::Bk) => {
                Some(self.config.num_kv_heads)
            }
            _ => None,
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &Path) -> Result<GgufModel, LoadError> {
        Self::from_gguf(GgufFile::open(path)?)
    }

    /// Builds the config from the file's metadata and checks every tensor the config
    /// needs: present, a type headroom dequantizes, and the right shape.
    pub fn from_gguf(file: GgufFile) -> Result<GgufModel, LoadError> {
        let (config, rope_freqs) = config_from_gguf(&file)?;
        let path = file.path().to_string();
        let layers = format!("{}.block_count", config.arch.name());
        check_layer_count(&path, &layers, &config, file.tensors().len())?;
        for name in tensor_names(&config) {
            let name = stored_as(&config, name).0;
            let gname = gguf_tensor_name(name);
            let t = file.tensor(&gname).ok_or_else(|| {
                LoadError::new(&path, format!("missing tensor '{gname}' ({name})"))
            })?;
            if !t.ggml_type.can_dequantize() {
                return Err(LoadError::new(
                    &path,
                    format!(
                        "tensor '{gname}' has type {} (id {}), which headroom cannot \
                         dequantize (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, \
                         Q4_K, Q5_K, Q6_K)",
                        t.ggml_type,
                        t.ggml_type.id()
                    ),
                ));
            }
            check_shape(&path, &gname, &config, name, &t.shape())?;
        }
        Ok(GgufModel {
            file,
            config,
            rope_freqs,
        })
    }

    /// The underlying file, for the tokenizer (vocab metadata) and `inspect`.
    pub fn gguf(&self) -> &GgufFile {
        &self.file
    }

    /// llama.cpp's `rope_freqs.weight` (per-frequency divisors, `head_dim / 2`), when the
    /// file has one; the config's `rope_scaling` reproduces it.
    pub fn rope_freqs(&self) -> Option<&[f32]> {
        self.rope_freqs.as_deref()
    }

    /// The file's entry for a tensor (its quantized type and raw bytes, via `gguf()`).
    /// Note that llama q/k rows in the file are in llama.cpp's permuted order.
    pub fn tensor_info(&self, name: TensorName) -> Option<&TensorInfo> {
        self.file.tensor(&gguf_tensor_name(name))
    }
}

/// The [`Variant`] of a GGUF: the architecture's fixed parts, the soft-caps and local RoPE
/// base gemma files carry, and llama.cpp's query scale for gemma (1/sqrt(head_dim), but
/// 1/sqrt(hidden / heads) for the 27B models, which it tells by their layer count: the
/// converter does not write query_pre_attn_scalar).
fn gemma_variant(
    f: &GgufFile,
    arch: Arch,
    hidden: usize,
    num_heads: usize,
    head_dim: usize,
    rope_linear_factor: Option<f32>,
) -> Result<Variant, LoadError> {
    let key = |k: &str| format!("{}.{k}", arch.name());
    let mut v = Variant {
        rope_linear_factor,
        ..Variant::of_arch(arch, hidden)
    };
    if !arch.is_gemma() {
        return Ok(v);
    }
    // every n-th layer global (llama.cpp's set_swa_pattern; 0: every layer windowed)
    if let Some(n) = f.get_u32(&key("attention.sliding_window_pattern"))? {
        v.global_layer_period = (n != 0).then_some(n as usize);
    }
    v.attn_softcap = f
        .get_f32(&key("attn_logit_softcapping"))?
        .filter(|&c| c != 0.0);
    v.final_softcap = f
        .get_f32(&key("final_logit_softcapping"))?
        .filter(|&c| c != 0.0);
    let layers = f.get_u32(&key("block_count"))?.unwrap_or(0);
    let is_27b = matches!((arch, layers), (Arch::Gemma2, 46) | (Arch::Gemma3, 62));
    if is_27b && num_heads > 0 {
        let per_head = (hidden / num_heads) as f32;
        v.attention_scale = Some(1.0 / per_head.sqrt());
    } else {
        v.attention_scale = Some(1.0 / (head_dim as f32).sqrt());
    }
    if arch == Arch::Gemma3 {
        // llama.cpp's default where the file has no key
        v.rope_theta_local = Some(f.get_f32(&key("rope.freq_base_swa"))?.unwrap_or(10000.0));
    }
    Ok(v)
}

/// The [`ModelConfig`] of a GGUF, and the `rope_freqs.weight` factors if present.
pub fn config_from_gguf(f: &GgufFile) -> Result<(ModelConfig, Option<Vec<f32>>), LoadError> {
    let path = f.path();
    let err = |m: String| LoadError::new(path, m);
    let arch_name = f
        .get_str("general.architecture")?
        .ok_or_else(|| err("missing metadata 'general.architecture'".into()))?;
    let arch = match arch_name {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        "qwen3" => Arch::Qwen3,
        "phi3" => Arch::Phi3,
        "gemma2" => Arch::Gemma2,
        "gemma3" => Arch::Gemma3,
        other => {
            return Err(err(format!(
                "unknown architecture '{other}' (supported: llama, qwen2, qwen3, phi3, gemma2, \
                 gemma3)"
            )))
        }
    };
    let key = |k: &str| format!("{arch_name}.{k}");
    let req = |k: &str| -> Result<usize, LoadError> {
        let k = key(k);
        f.get_u32(&k)?
            .map(|v| v as usize)
            .ok_or_else(|| err(format!("missing metadata '{k}'")))
    };
    let hidden = req("embedding_length")?;
    let num_heads = req("attention.head_count")?;
    let num_kv_heads = match f.get_u32(&key("attention.head_count_kv"))? {
        Some(v) => v as usize,
        None => num_heads,
    };
    if num_heads == 0 {
        return Err(err(format!("'{}' is 0", key("attention.head_count"))));
    }
    let head_dim = match f.get_u32(&key("attention.key_length"))? {
        Some(v) => v as usize,
        None => {
            if hidden % num_heads != 0 {
                return Err(err(format!(
                    "embedding_length {hidden} is not a multiple of head_count {num_heads}"
                )));
            }
            hidden / num_heads
        }
    };
    if let Some(v) = f.get_u32(&key("attention.value_length"))? {
        if v as usize != head_dim {
            return Err(err(format!(
                "value_length {v} != key_length {head_dim} is not supported"
            )));
        }
    }
    if let Some(r) = f.get_u32(&key("rope.dimension_count"))? {
        if r as usize != head_dim {
            return Err(err(format!(
                "partial rotary embeddings (rope.dimension_count {r} != head_dim {head_dim}) \
                 are not supported"
            )));
        }
    }
    let rope_linear_factor = match f.get_str(&key("rope.scaling.type"))? {
        None | Some("none") => None,
        Some("linear") => {
            let k = key("rope.scaling.factor");
            match f.get_f32(&k)? {
                None => return Err(err(format!("linear rope scaling without '{k}'"))),
                Some(1.0) => None,
                Some(x) => Some(x),
            }
        }
        Some(t) => {
            return Err(err(format!(
                "rope scaling type '{t}' is not supported (linear, and llama-3 scaling stored \
                 as rope_freqs.weight)"
            )))
        }
    };
    let vocab_size = match f.array_len("tokenizer.ggml.tokens")? {
        Some(n) => n,
        None => match f.get_u32(&key("vocab_size"))? {
            Some(n) => n as usize,
            None => f
                .tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .ok_or_else(|| {
                    err("no vocab size: no tokenizer.ggml.tokens, vocab_size or token_embd".into())
                })? as usize,
        },
    };
    let eps_key = key("attention.layer_norm_rms_epsilon");
    let rms_norm_eps = f
        .get_f32(&eps_key)?
        .ok_or_else(|| err(format!("missing metadata '{eps_key}'")))?;
    let rope_theta = f.get_f32(&key("rope.freq_base"))?.unwrap_or(10000.0);
    let has_q_bias = f.tensor("blk.0.attn_q.bias").is_some();
    // llama.cpp writes the window for the families whose graph uses it; its converter
    // drops Mistral's (a Mistral GGUF runs without one, in llama.cpp as here)
    let sliding_window = match f.get_u32(&key("attention.sliding_window"))? {
        // llama.cpp's default for gemma2 files without the key
        None if arch == Arch::Gemma2 => Some(4096),
        None | Some(0) => None,
        Some(w) => Some(w as usize),
    };
    let mut cfg = ModelConfig {
        arch,
        vocab_size,
        hidden_size: hidden,
        intermediate_size: req("feed_forward_length")?,
        num_layers: req("block_count")?,
        num_heads,
        num_kv_heads,
        head_dim,
        rms_norm_eps,
        rope_theta,
        rope_scaling: None,
        longrope: None,
        max_position_embeddings: req("context_length")?,
        tie_word_embeddings: f.tensor("output.weight").is_none(),
        attention_bias: has_q_bias,
        qk_norm: matches!(arch, Arch::Qwen3 | Arch::Gemma3),
        sliding_window,
        variant: gemma_variant(f, arch, hidden, num_heads, head_dim, rope_linear_factor)?,
    };
    if arch == Arch::Qwen2 && !has_q_bias {
        return Err(err(
            "qwen2 model without attention biases (missing 'blk.0.attn_q.bias')".into(),
        ));
    }
    // phi3's LongRoPE: the two factor lists as tensors, the rest as metadata
    let factors = |name: &str| f.tensor(name).map(|t| f.dequantize(t)).transpose();
    cfg.longrope = match (
        factors("rope_factors_short.weight")?,
        factors("rope_factors_long.weight")?,
    ) {
        (None, None) => None,
        (Some(short_factor), Some(long_factor)) => {
            let original = req("rope.scaling.original_context_length")?;
            let attention_factor = match f.get_f32(&key("rope.scaling.attn_factor"))? {
                Some(a) => a,
                None => LongRope::default_attention_factor(cfg.max_position_embeddings, original),
            };
            Some(LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings: original,
                attention_factor,
            })
        }
        _ => {
            return Err(err(
                "rope_factors_short.weight and rope_factors_long.weight come together".into(),
            ))
        }
    };
    cfg.validate(path).map_err(|m| {
        // validate already names the file
        let m = m
            .strip_prefix(&format!("{path}: "))
            .unwrap_or(&m)
            .to_string();
        err(m)
    })?;

    let mut rope_freqs = None;
    if let Some(t) = f.tensor("rope_freqs.weight") {
        let factors = f.dequantize(t)?;
        if factors.len() != head_dim / 2 {
            return Err(err(format!(
                "rope_freqs.weight has {} values, expected head_dim/2 = {}",
                factors.len(),
                head_dim / 2
            )));
        }
        cfg.rope_scaling = fit_llama3_scaling(&cfg, &factors).map_err(err)?;
        rope_freqs = Some(factors);
    }
    Ok((cfg, rope_freqs))
}

/// llama.cpp stores llama-3 scaling as per-frequency divisors (`rope_freqs.weight`) and
/// drops the parameters; find llama-3 parameters that reproduce them, or explain.
fn fit_llama3_scaling(
    cfg: &ModelConfig,
    factors: &[f32],
) -> Result<Option<Llama3RopeScaling>, String> {
    if factors.iter().all(|&v| v == 1.0) {
        return Ok(None);
    }
    let factor = factors.iter().copied().fold(f32::MIN, f32::max);
    let mut probe = cfg.clone();
    probe.rope_scaling = None;
    let plain = llama3_rope_inv_freq(&probe);
    // the original context: Llama 3.x's 8192 first, then every power of two (small ones
    // in test models)
    let origins = std::iter::once(8192u32).chain((4..=20).map(|e| 1u32 << e));
    for orig in origins {
        for (low, high) in [
            (1.0f32, 4.0f32),
            (1.0, 2.0),
            (1.0, 8.0),
            (2.0, 4.0),
            (2.0, 8.0),
        ] {
            let s = Llama3RopeScaling {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: orig,
            };
            probe.rope_scaling = Some(s);
            let scaled = llama3_rope_inv_freq(&probe);
            let ok = plain.iter().zip(&scaled).zip(factors).all(|((p, s), f)| {
                let want = *p as f64 / *s as f64;
                (want - *f as f64).abs() <= 1e-3 * want
            });
            if ok {
                return Ok(Some(s));
            }
        }
    }
    Err(format!(
        "rope_freqs.weight (max factor {factor}) does not match llama-3 rope scaling with \
         any usual parameters; other frequency scalings are not supported"
    ))
}

impl WeightSource for GgufModel {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn path(&self) -> &str {
        self.file.path()
    }

    fn has(&self, name: TensorName) -> bool {
        match name {
            TensorName::LmHead if self.config.tie_word_embeddings => false,
            TensorName::Layer(i, _) if i >= self.config.num_layers => false,
            _ => self.tensor_info(stored_as(&self.config, name).0).is_some(),
        }
    }

    fn load(&self, name: TensorName) -> Result<HostTensor, LoadError> {
        let stored = stored_as(&self.config, name).0;
        if stored != name {
            return Ok(rows_of(&self.config, name, self.load(stored)?));
        }
        let gname = gguf_tensor_name(name);
        let t = self
            .file
            .tensor(&gname)
            .filter(|_| self.has(name))
            .ok_or_else(|| {
                LoadError::new(self.path(), format!("missing tensor '{gname}' ({name})"))
            })?;
        let shape = t.shape();
        check_shape(self.path(), &gname, &self.config, name, &shape)?;
        let mut data = self.file.dequantize(t)?;
        if let Some(heads) = self.permuted_heads(name) {
            let cols = if shape.len() == 2 { shape[1] } else { 1 };
            data = llama_cpp_unpermute_rows(&data, heads, cols);
        }
        Ok(HostTensor {
            shape: expected_shape(&self.config, name),
            data,
        })
    }

    fn blocks(&self, name: TensorName) -> Result<Option<(GgmlType, Vec<u8>)>, LoadError> {
        let (stored, rows) = stored_as(&self.config, name);
        if stored != name {
            let Some((ty, bytes)) = self.blocks(stored)? else {
                return Ok(None);
            };
            let row_bytes = bytes.len() / expected_shape(&self.config, stored)[0];
            let part = bytes[rows.start * row_bytes..rows.end * row_bytes].to_vec();
            return Ok(Some((ty, part)));
        }
        let gname = gguf_tensor_name(name);
        let Some(t) = self.file.tensor(&gname).filter(|_| self.has(name)) else {
            return Ok(None);
        };
        if t.ggml_type.block_size() == 1 {
            return Ok(None);
        }
        let shape = t.shape();
        check_shape(self.path(), &gname, &self.config, name, &shape)?;
        let mut bytes = self.file.tensor_data(t).to_vec();
        if let Some(heads) = self.permuted_heads(name) {
            let row_bytes = bytes.len() / shape[0];
            bytes = permute_rows(&bytes, heads, row_bytes, false);
        }
        Ok(Some((t.ggml_type, bytes)))
    }

    fn summaries(&self) -> Vec<TensorSummary> {
        self.file
            .tensors()
            .iter()
            .map(|t| TensorSummary {
                file_name: t.name.clone(),
                dtype: t.ggml_type.name().to_string(),
                shape: t.shape(),
                bytes: t.n_bytes,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::gguf::{GgufBuilder, MetaValue};
    use crate::formats::quant::GgmlType;
    use crate::model::synthetic::{gguf_builder, tiny_config, GgufWriteOptions, SyntheticModel};
    use std::path::PathBuf;

    fn smollm2() -> Option<PathBuf> {
        crate::engine::default_model_for_tests()
    }

    fn open_bytes(b: &GgufBuilder) -> Result<GgufModel, LoadError> {
        GgufModel::from_gguf(GgufFile::from_bytes("m.gguf", b.to_bytes())?)
    }

    fn err_of(b: &GgufBuilder) -> String {
        let e = open_bytes(b).expect_err("should fail").to_string();
        assert!(e.starts_with("m.gguf: "), "{e}");
        e
    }

    fn set_meta(b: &mut GgufBuilder, key: &str, v: Option<MetaValue>) {
        b.metadata.retain(|(k, _)| k != key);
        if let Some(v) = v {
            b.meta(key, v);
        }
    }

    #[test]
    fn permute_round_trip_and_layout() {
        // 2 heads of head_dim 4, 1 column: HF rows [a0 a1 b0 b1 | c0 c1 d0 d1] pair
        // (a0,b0),(a1,b1); GGUF interleaves them: [a0 b0 a1 b1 | c0 d0 c1 d1]
        let hf = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
        let g = llama_cpp_permute_rows(&hf, 2, 1);
        assert_eq!(g, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(llama_cpp_unpermute_rows(&g, 2, 1), hf);
        let m: Vec<f32> = (0..6 * 8 * 3).map(|i| i as f32).collect();
        let p = llama_cpp_permute_rows(&m, 6, 3);
        assert_ne!(p, m);
        assert_eq!(llama_cpp_unpermute_rows(&p, 6, 3), m);
    }

    /// synthetic -> GGUF (F32, q/k permuted like llama.cpp) -> GgufModel -> same tensors
    #[test]
    fn round_trip_synthetic_through_gguf() {
        for (arch, heads, kv, tied) in [
            (Arch::Llama, 4, 4, false),
            (Arch::Llama, 4, 2, true),
            (Arch::Llama, 4, 1, false),
            (Arch::Qwen2, 4, 2, true),
        ] {
            let src = SyntheticModel::new(tiny_config(arch, heads, kv, tied), 11).unwrap();
            for version in [2, 3] {
                let opts = GgufWriteOptions {
                    version,
                    ..Default::default()
                };
                let m = open_bytes(&gguf_builder(&src, &opts).unwrap()).unwrap();
                assert_eq!(m.config(), src.config());
                assert_eq!(m.gguf().version(), version);
                for name in tensor_names(src.config()) {
                    let a = src.load(name).unwrap();
                    let b = m.load(name).unwrap();
                    assert_eq!(a.shape, b.shape, "{name}");
                    assert_eq!(a.data, b.data, "{name} ({arch:?}, kv {kv})");
                }
                assert_eq!(m.has(TensorName::LmHead), !tied);
                assert!(!m.has(TensorName::Layer(99, LayerTensor::Wq)));
            }
        }
        // a llama file really stores permuted rows
        let src = SyntheticModel::new(tiny_config(Arch::Llama, 4, 2, false), 11).unwrap();
        let m = open_bytes(&gguf_builder(&src, &GgufWriteOptions::default()).unwrap()).unwrap();
        let info = m
            .tensor_info(TensorName::Layer(0, LayerTensor::Wq))
            .unwrap();
        let raw = m.gguf().dequantize(info).unwrap();
        assert_ne!(
            raw,
            src.load(TensorName::Layer(0, LayerTensor::Wq))
                .unwrap()
                .data
        );
    }

    #[test]
    fn round_trip_quantized() {
        let src = SyntheticModel::new(tiny_config(Arch::Llama, 4, 2, false), 5).unwrap();
        for ty in [GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_1] {
            let opts = GgufWriteOptions {
                matrix_type: ty,
                embedding_type: ty,
                ..Default::default()
            };
            let m = open_bytes(&gguf_builder(&src, &opts).unwrap()).unwrap();
            let name = TensorName::Layer(1, LayerTensor::Wk);
            let a = src.load(name).unwrap().data;
            let b = m.load(name).unwrap().data;
            let amax = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            let tol = match ty {
                GgmlType::F16 => amax * 1e-3,
                GgmlType::Q8_0 => amax / 127.0,
                _ => 2.0 * amax / 15.0,
            };
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= tol, "{ty}: {x} vs {y}");
            }
            assert_eq!(
                m.summaries()
                    .iter()
                    .find(|s| s.file_name == "blk.1.attn_k.weight")
                    .unwrap()
                    .dtype,
                ty.name()
            );
        }
    }

    #[test]
    fn llama3_rope_scaling_round_trips_through_rope_freqs() {
        let mut cfg = tiny_config(Arch::Llama, 2, 1, true);
        cfg.head_dim = 32;
        cfg.hidden_size = 64;
        cfg.rope_theta = 500000.0;
        cfg.rope_scaling = Some(Llama3RopeScaling {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        let src = SyntheticModel::new(cfg.clone(), 1).unwrap();
        let b = gguf_builder(&src, &GgufWriteOptions::default()).unwrap();
        assert!(b.tensors.iter().any(|t| t.0 == "rope_freqs.weight"));
        let m = open_bytes(&b).unwrap();
        assert_eq!(m.config().rope_scaling, cfg.rope_scaling);
        assert_eq!(m.rope_freqs().unwrap().len(), 16);
        // factors llama-3 cannot produce: a clear error, not silence
        let mut b = b;
        let i = b
            .tensors
            .iter()
            .position(|t| t.0 == "rope_freqs.weight")
            .unwrap();
        b.tensors[i].3 = (0..16)
            .flat_map(|k| (1.0 + k as f32).to_le_bytes())
            .collect();
        let e = err_of(&b);
        assert!(
            e.contains("rope_freqs.weight") && e.contains("does not match llama-3"),
            "{e}"
        );
    }

    #[test]
    fn config_errors() {
        let src = SyntheticModel::new(tiny_config(Arch::Llama, 4, 2, false), 2).unwrap();
        let base = gguf_builder(&src, &GgufWriteOptions::default()).unwrap();

        let mut b = base.clone();
        set_meta(
            &mut b,
            "general.architecture",
            Some(MetaValue::String("gpt2".into())),
        );
        let e = err_of(&b);
        assert!(
            e.contains(
                "unknown architecture 'gpt2' (supported: llama, qwen2, qwen3, phi3, gemma2, \
                 gemma3)"
            ),
            "{e}"
        );

        let mut b = base.clone();
        set_meta(&mut b, "llama.block_count", None);
        assert!(err_of(&b).contains("missing metadata 'llama.block_count'"));

        let mut b = base.clone();
        set_meta(
            &mut b,
            "llama.block_count",
            Some(MetaValue::String("2".into())),
        );
        assert!(err_of(&b).contains("'llama.block_count' should be u32"));

        let mut b = base.clone();
        set_meta(
            &mut b,
            "llama.rope.scaling.type",
            Some(MetaValue::String("yarn".into())),
        );
        assert!(err_of(&b).contains("rope scaling type 'yarn'"));

        // heads not dividing: validate's message
        let mut b = base.clone();
        set_meta(
            &mut b,
            "llama.attention.head_count_kv",
            Some(MetaValue::U32(3)),
        );
        assert!(err_of(&b).contains("not a multiple of num_kv_heads 3"));

        // missing tensor
        let mut b = base.clone();
        b.tensors.retain(|t| t.0 != "blk.1.ffn_up.weight");
        let e = err_of(&b);
        assert!(
            e.contains("missing tensor 'blk.1.ffn_up.weight' (layers.1.WUp)"),
            "{e}"
        );

        // shape mismatch
        let mut b = base.clone();
        let t = b
            .tensors
            .iter_mut()
            .find(|t| t.0 == "blk.0.attn_v.weight")
            .unwrap();
        t.1 = vec![t.1[1], t.1[0]];
        let e = err_of(&b);
        assert!(
            e.contains("tensor 'blk.0.attn_v.weight'") && e.contains("has shape"),
            "{e}"
        );

        // a type headroom does not dequantize
        let mut b = base.clone();
        let t = b
            .tensors
            .iter_mut()
            .find(|t| t.0 == "blk.0.ffn_down.weight")
            .unwrap();
        let n: u64 = t.1.iter().product();
        t.2 = GgmlType::Q2_K;
        t.1 = vec![256, n / 256];
        t.3 = vec![0; (n / 256 * 84) as usize];
        let e = err_of(&b);
        assert!(
            e.contains("'blk.0.ffn_down.weight' has type Q2_K (id 10)"),
            "{e}"
        );
    }

    /// The real SmolLM2 file: config, and the un-permuted q/k rows against values that
    /// scripts/make-quant-vectors.py computed with python's gguf + numpy reshapes.
    #[test]
    fn smollm2_config_and_unpermute_cross_check() {
        let Some(path) = smollm2() else { return };
        let m = GgufModel::open(&path).unwrap();
        let c = m.config();
        assert_eq!(c.arch, Arch::Llama);
        assert_eq!(
            (c.num_layers, c.hidden_size, c.intermediate_size),
            (30, 576, 1536)
        );
        assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (9, 3, 64));
        assert_eq!((c.vocab_size, c.max_position_embeddings), (49152, 8192));
        assert_eq!((c.rope_theta, c.rms_norm_eps), (100000.0, 1e-5));
        assert!(c.tie_word_embeddings && !c.attention_bias && c.rope_scaling.is_none());
        assert_eq!(m.gguf().version(), 3);
        assert_eq!(m.summaries().len(), 272);
        let emb = m.tensor_info(TensorName::TokenEmbedding).unwrap();
        assert_eq!(emb.ggml_type, GgmlType::Q8_0);

        let json = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/smollm2_attn_qk.json"),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for (gname, name) in [
            ("blk.0.attn_q.weight", TensorName::Layer(0, LayerTensor::Wq)),
            ("blk.0.attn_k.weight", TensorName::Layer(0, LayerTensor::Wk)),
        ] {
            let e = &v[gname];
            let t = m.load(name).unwrap();
            let shape: Vec<usize> = e["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape, shape);
            let cols = shape[1];
            let rows = e["rows"].as_array().unwrap();
            let cs = e["cols"].as_array().unwrap();
            for (ri, r) in rows.iter().enumerate() {
                for (ci, c) in cs.iter().enumerate() {
                    let (r, c) = (r.as_u64().unwrap() as usize, c.as_u64().unwrap() as usize);
                    let want = e["values"][ri][ci].as_f64().unwrap() as f32;
                    let got = t.data[r * cols + c];
                    assert!(
                        (got - want).abs() <= 1e-6,
                        "{gname}[{r},{c}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
