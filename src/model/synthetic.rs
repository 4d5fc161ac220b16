//! Random-weight models for any attention variant (MHA/GQA/MQA, tied or not, biases), and
//! writers that turn any [`WeightSource`] into a GGUF file or an HF safetensors directory.

use super::config::{Arch, ModelConfig, Variant};
use super::gguf_model::{gguf_tensor_name, llama_cpp_permute_rows};
use super::hf::hf_tensor_name;
use super::source::{expected_shape, tensor_names};
use super::source::{HostTensor, LayerTensor, LoadError, TensorName, TensorSummary, WeightSource};
use crate::formats::gguf::{GgufBuilder, MetaType, MetaValue};
use crate::formats::quant::{quantize, GgmlType};
use half::{bf16, f16};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// A small config for tests: hidden 64, head_dim 64 / heads, FFN 128, 2 layers, vocab
/// 128, context 256; qwen2 gets attention biases.
pub fn tiny_config(arch: Arch, num_heads: usize, num_kv_heads: usize, tied: bool) -> ModelConfig {
    ModelConfig {
        arch,
        vocab_size: 128,
        hidden_size: 64,
        intermediate_size: 128,
        num_layers: 2,
        num_heads,
        num_kv_heads,
        head_dim: 64 / num_heads,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        longrope: None,
        max_position_embeddings: 256,
        tie_word_embeddings: tied,
        attention_bias: arch == Arch::Qwen2,
        qk_norm: arch == Arch::Qwen3,
        sliding_window: None,
        variant: Variant::of_arch(arch, 64),
    }
}

/// splitmix64: small, seeded, deterministic everywhere.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// uniform in [-a, a)
    fn uniform(&mut self, a: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
        (2.0 * u - 1.0) * a
    }
}

/// A model with random weights, held in memory in HF layout.
pub struct SyntheticModel {
    config: ModelConfig,
    tensors: HashMap<TensorName, HostTensor>,
    label: String,
}

impl SyntheticModel {
    /// Random weights for `config`, the same for the same seed. Matrices are uniform with
    /// unit output variance (±sqrt(3/in)), norms 1 ± 0.25, biases ±0.5, embeddings ±0.5.
    pub fn new(config: ModelConfig, seed: u64) -> Result<SyntheticModel, LoadError> {
        let label = format!("synthetic(seed {seed})");
        config
            .validate(&label)
            .map_err(|m| LoadError::new(&label, m))?;
        let mut rng = Rng(seed ^ 0x5EED_0000_0000_0000);
        let mut tensors = HashMap::new();
        for name in tensor_names(&config) {
            let shape = expected_shape(&config, name);
            let n: usize = shape.iter().product();
            let data: Vec<f32> = match name {
                name if name.is_norm() => (0..n).map(|_| 1.0 + rng.uniform(0.25)).collect(),
                TensorName::Layer(_, LayerTensor::Bq | LayerTensor::Bk | LayerTensor::Bv) => {
                    (0..n).map(|_| rng.uniform(0.5)).collect()
                }
                TensorName::TokenEmbedding | TensorName::LmHead => {
                    (0..n).map(|_| rng.uniform(0.5)).collect()
                }
                _ => {
                    let a = (3.0 / shape[1] as f32).sqrt();
                    (0..n).map(|_| rng.uniform(a)).collect()
                }
            };
            tensors.insert(name, HostTensor { shape, data });
        }
        Ok(SyntheticModel {
            config,
            tensors,
            label,
        })
    }

    /// Replaces a tensor's values (same length), e.g. to plant a known pattern.
    pub fn set(&mut self, name: TensorName, data: Vec<f32>) {
        let t = self.tensors.get_mut(&name).expect("tensor of this config");
        assert_eq!(t.data.len(), data.len(), "{name}: wrong length");
        t.data = data;
    }
}

impl WeightSource for SyntheticModel {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn path(&self) -> &str {
        &self.label
    }

    fn has(&self, name: TensorName) -> bool {
        self.tensors.contains_key(&name)
    }

    fn load(&self, name: TensorName) -> Result<HostTensor, LoadError> {
        self.tensors
            .get(&name)
            .cloned()
            .ok_or_else(|| LoadError::new(&self.label, format!("no tensor {name}")))
    }

    fn summaries(&self) -> Vec<TensorSummary> {
        tensor_names(&self.config)
            .into_iter()
            .map(|name| {
                let shape = expected_shape(&self.config, name);
                TensorSummary {
                    file_name: name.to_string(),
                    dtype: "F32".into(),
                    bytes: 4 * shape.iter().product::<usize>() as u64,
                    shape,
                }
            })
            .collect()
    }
}

/// How [`write_gguf`] stores tensors. Norms, biases and rope factors are always F32,
/// like llama.cpp.
#[derive(Clone, Debug)]
pub struct GgufWriteOptions {
    pub version: u32,
    /// the projection matrices: F32, F16, BF16, Q8_0, Q4_0 or Q4_1
    pub matrix_type: GgmlType,
    /// token embedding and lm_head
    pub embedding_type: GgmlType,
}

impl Default for GgufWriteOptions {
    fn default() -> Self {
        GgufWriteOptions {
            version: 3,
            matrix_type: GgmlType::F32,
            embedding_type: GgmlType::F32,
        }
    }
}

/// The GGUF of `src` as llama.cpp's converter would write it (metadata keys, tensor
/// names, q/k rows permuted for llama, llama-3 scaling as `rope_freqs.weight`), before
/// serialization, so tests can corrupt it.
pub fn gguf_builder(
    src: &dyn WeightSource,
    opts: &GgufWriteOptions,
) -> Result<GgufBuilder, LoadError> {
    let cfg = src.config();
    refuse_fused(src)?;
    let arch = cfg.arch.name();
    let mut b = GgufBuilder {
        version: opts.version,
        ..Default::default()
    };
    let u32v = |v: usize| MetaValue::U32(v as u32);
    b.meta("general.architecture", MetaValue::String(arch.into()))
        .meta(
            "general.name",
            MetaValue::String("headroom synthetic".into()),
        )
        .meta(&format!("{arch}.block_count"), u32v(cfg.num_layers))
        .meta(
            &format!("{arch}.context_length"),
            u32v(cfg.max_position_embeddings),
        )
        .meta(&format!("{arch}.embedding_length"), u32v(cfg.hidden_size))
        .meta(
            &format!("{arch}.feed_forward_length"),
            u32v(cfg.intermediate_size),
        )
        .meta(&format!("{arch}.attention.head_count"), u32v(cfg.num_heads))
        .meta(
            &format!("{arch}.attention.head_count_kv"),
            u32v(cfg.num_kv_heads),
        )
        .meta(
            &format!("{arch}.rope.freq_base"),
            MetaValue::F32(cfg.rope_theta),
        )
        .meta(
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
            MetaValue::F32(cfg.rms_norm_eps),
        )
        .meta(&format!("{arch}.rope.dimension_count"), u32v(cfg.head_dim))
        .meta(&format!("{arch}.vocab_size"), u32v(cfg.vocab_size));
    if let Some(w) = cfg.sliding_window {
        b.meta(&format!("{arch}.attention.sliding_window"), u32v(w));
    }
    if cfg.head_dim * cfg.num_heads != cfg.hidden_size {
        b.meta(&format!("{arch}.attention.key_length"), u32v(cfg.head_dim));
        b.meta(
            &format!("{arch}.attention.value_length"),
            u32v(cfg.head_dim),
        );
    }
    b.meta(
        "tokenizer.ggml.tokens",
        MetaValue::Array(
            MetaType::String,
            (0..cfg.vocab_size)
                .map(|i| MetaValue::String(format!("<t{i}>")))
                .collect(),
        ),
    );
    for name in tensor_names(cfg) {
        let t = src.load(name)?;
        let mut data = t.data;
        let ty = match name {
            TensorName::TokenEmbedding | TensorName::LmHead => opts.embedding_type,
            TensorName::Layer(
                _,
                LayerTensor::Wq
                | LayerTensor::Wk
                | LayerTensor::Wv
                | LayerTensor::Wo
                | LayerTensor::WGate
                | LayerTensor::WUp
                | LayerTensor::WDown,
            ) => opts.matrix_type,
            _ => GgmlType::F32,
        };
        if cfg.arch == Arch::Llama {
            let cols = if t.shape.len() == 2 { t.shape[1] } else { 1 };
            match name {
                TensorName::Layer(_, LayerTensor::Wq | LayerTensor::Bq) => {
                    data = llama_cpp_permute_rows(&data, cfg.num_heads, cols)
                }
                TensorName::Layer(_, LayerTensor::Wk | LayerTensor::Bk) => {
                    data = llama_cpp_permute_rows(&data, cfg.num_kv_heads, cols)
                }
                _ => {}
            }
        }
        let bytes =
            quantize(ty, &data).map_err(|e| LoadError::new(src.path(), format!("{name}: {e}")))?;
        let dims: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
        b.tensor(&gguf_tensor_name(name), &dims, ty, bytes);
    }
    if cfg.rope_scaling.is_some() {
        // llama.cpp's per-frequency divisors: plain / scaled inverse frequency
        let scaled = super::config::llama3_rope_inv_freq(cfg);
        let mut plain_cfg = cfg.clone();
        plain_cfg.rope_scaling = None;
        let plain = super::config::llama3_rope_inv_freq(&plain_cfg);
        let factors: Vec<f32> = plain.iter().zip(&scaled).map(|(p, s)| p / s).collect();
        let bytes = quantize(GgmlType::F32, &factors).expect("f32");
        b.tensor(
            "rope_freqs.weight",
            &[factors.len() as u64],
            GgmlType::F32,
            bytes,
        );
    }
    Ok(b)
}

/// The writers here store q/k/v and gate/up as separate tensors, which phi3's files do not.
fn refuse_fused(src: &dyn WeightSource) -> Result<(), LoadError> {
    let arch = src.config().arch;
    let what = match arch {
        a if a.fused_tensors() => "fused q/k/v and gate/up",
        a if a.is_gemma() => "gemma's norms, soft-caps and window pattern",
        _ => return Ok(()),
    };
    Err(LoadError::new(
        src.path(),
        format!("writing a {} model ({what}) is not supported", arch.name()),
    ))
}

/// Writes `src` as a GGUF file (see [`gguf_builder`]).
pub fn write_gguf(
    path: &Path,
    src: &dyn WeightSource,
    opts: &GgufWriteOptions,
) -> Result<(), LoadError> {
    let bytes = gguf_builder(src, opts)?.to_bytes();
    std::fs::write(path, bytes)
        .map_err(|e| LoadError::new(path.display().to_string(), e.to_string()))
}

/// Element type of a written safetensors file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HfDtype {
    F32,
    F16,
    BF16,
}

impl HfDtype {
    fn name(self) -> &'static str {
        match self {
            HfDtype::F32 => "F32",
            HfDtype::F16 => "F16",
            HfDtype::BF16 => "BF16",
        }
    }

    fn size(self) -> usize {
        match self {
            HfDtype::F32 => 4,
            _ => 2,
        }
    }

    fn encode(self, x: &[f32], out: &mut Vec<u8>) {
        out.reserve(x.len() * self.size());
        match self {
            HfDtype::F32 => x
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            HfDtype::F16 => x
                .iter()
                .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_bits().to_le_bytes())),
            HfDtype::BF16 => x
                .iter()
                .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_bits().to_le_bytes())),
        }
    }
}

/// An f32 as the JSON number of its shortest decimal form (1e-5, not 9.99999974e-6).
fn json_f32(x: f32) -> serde_json::Value {
    let v: f64 = format!("{x}").parse().expect("f32 formats as a number");
    serde_json::json!(v)
}

/// The HF `config.json` of a config.
pub fn hf_config_json(cfg: &ModelConfig, dtype: HfDtype) -> serde_json::Value {
    let (model_type, class) = match (cfg.arch, cfg.sliding_window) {
        (Arch::Llama, None) => ("llama", "LlamaForCausalLM"),
        (Arch::Llama, Some(_)) => ("mistral", "MistralForCausalLM"),
        (Arch::Qwen2, _) => ("qwen2", "Qwen2ForCausalLM"),
        (Arch::Qwen3, _) => ("qwen3", "Qwen3ForCausalLM"),
        (Arch::Phi3, _) => ("phi3", "Phi3ForCausalLM"),
        (Arch::Gemma2, _) => ("gemma2", "Gemma2ForCausalLM"),
        (Arch::Gemma3, _) => ("gemma3_text", "Gemma3ForCausalLM"),
    };
    let torch_dtype = match dtype {
        HfDtype::F32 => "float32",
        HfDtype::F16 => "float16",
        HfDtype::BF16 => "bfloat16",
    };
    let mut v = serde_json::json!({
        "architectures": [class],
        "model_type": model_type,
        "hidden_act": "silu",
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "rms_norm_eps": json_f32(cfg.rms_norm_eps),
        "rope_theta": json_f32(cfg.rope_theta),
        "max_position_embeddings": cfg.max_position_embeddings,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "torch_dtype": torch_dtype,
        "rope_scaling": null,
    });
    if cfg.arch != Arch::Qwen2 {
        v["attention_bias"] = cfg.attention_bias.into();
    }
    if let Some(w) = cfg.sliding_window {
        v["sliding_window"] = w.into();
    }
    if let Some(s) = cfg.rope_scaling {
        v["rope_scaling"] = serde_json::json!({
            "rope_type": "llama3",
            "factor": json_f32(s.factor),
            "low_freq_factor": json_f32(s.low_freq_factor),
            "high_freq_factor": json_f32(s.high_freq_factor),
            "original_max_position_embeddings": s.original_max_position_embeddings,
        });
    }
    v
}

/// Writes `src` as a Hugging Face model directory: `config.json` and `model.safetensors`
/// (or, with `shards > 1`, `model-0000i-of-0000n.safetensors` and
/// `model.safetensors.index.json`), tensors in `dtype`. Streams one tensor at a time, so
/// a real model (e.g. the SmolLM2 GGUF) can be converted without holding all of it.
pub fn write_hf_dir(
    dir: &Path,
    src: &dyn WeightSource,
    dtype: HfDtype,
    shards: usize,
) -> Result<(), LoadError> {
    let io = |p: &Path, e: std::io::Error| LoadError::new(p.display().to_string(), e.to_string());
    refuse_fused(src)?;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let cfg = src.config();
    let config_path = dir.join("config.json");
    let json = serde_json::to_string_pretty(&hf_config_json(cfg, dtype)).expect("json");
    std::fs::write(&config_path, json).map_err(|e| io(&config_path, e))?;

    let names = tensor_names(cfg);
    let shards = shards.clamp(1, names.len());
    let per = names.len().div_ceil(shards);
    let mut weight_map = serde_json::Map::new();
    let mut total = 0usize;
    for (i, chunk) in names.chunks(per).enumerate() {
        let file = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, shards)
        };
        let path = dir.join(&file);
        total += write_safetensors(&path, src, chunk, dtype)?;
        for n in chunk {
            weight_map.insert(hf_tensor_name(cfg.arch, *n), file.clone().into());
        }
    }
    if shards > 1 {
        let index = serde_json::json!({
            "metadata": { "total_size": total },
            "weight_map": weight_map,
        });
        let p = dir.join("model.safetensors.index.json");
        std::fs::write(&p, serde_json::to_string_pretty(&index).expect("json"))
            .map_err(|e| io(&p, e))?;
    }
    Ok(())
}

/// Streams the named tensors of `src` into one safetensors file; returns the data bytes.
fn write_safetensors(
    path: &Path,
    src: &dyn WeightSource,
    names: &[TensorName],
    dtype: HfDtype,
) -> Result<usize, LoadError> {
    let cfg = src.config();
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
    let mut offset = 0usize;
    for &n in names {
        let shape = expected_shape(cfg, n);
        let bytes = shape.iter().product::<usize>() * dtype.size();
        header.insert(
            hf_tensor_name(cfg.arch, n),
            serde_json::json!({
                "dtype": dtype.name(),
                "shape": shape,
                "data_offsets": [offset, offset + bytes],
            }),
        );
        offset += bytes;
    }
    let mut head = serde_json::to_vec(&header).expect("json");
    head.resize(head.len().next_multiple_of(8), b' ');

    let label = path.display().to_string();
    let io = |e: std::io::Error| LoadError::new(&label, e.to_string());
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    w.write_all(&(head.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&head).map_err(io)?;
    let mut buf = Vec::new();
    for &n in names {
        let t = src.load(n)?;
        buf.clear();
        dtype.encode(&t.data, &mut buf);
        w.write_all(&buf).map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sane() {
        let cfg = tiny_config(Arch::Qwen2, 4, 2, false);
        let a = SyntheticModel::new(cfg.clone(), 1).unwrap();
        let b = SyntheticModel::new(cfg.clone(), 1).unwrap();
        let c = SyntheticModel::new(cfg.clone(), 2).unwrap();
        let n = TensorName::Layer(1, LayerTensor::WDown);
        assert_eq!(a.load(n).unwrap().data, b.load(n).unwrap().data);
        assert_ne!(a.load(n).unwrap().data, c.load(n).unwrap().data);
        for name in tensor_names(&cfg) {
            let t = a.load(name).unwrap();
            assert_eq!(t.shape, expected_shape(&cfg, name));
            assert!(t.data.iter().all(|v| v.is_finite() && v.abs() < 1.6));
        }
        assert!(a.has(TensorName::Layer(0, LayerTensor::Bq)));
        assert!(a.has(TensorName::LmHead));
        let bad = tiny_config(Arch::Llama, 4, 3, true);
        assert!(SyntheticModel::new(bad, 1).is_err());
    }

    #[test]
    fn config_json_numbers_are_short() {
        let v = hf_config_json(&tiny_config(Arch::Llama, 4, 2, true), HfDtype::BF16);
        let s = v.to_string();
        assert!(
            s.contains("\"rms_norm_eps\":1e-5") || s.contains("\"rms_norm_eps\":0.00001"),
            "{s}"
        );
        assert_eq!(v["torch_dtype"], "bfloat16");
    }
}
