//! Random-weight GGUF files of real model families' shapes, for speed runs that set
//! headroom beside llama.cpp on the same file (`headroom bench write-model`). The layout,
//! tensor names and metadata keys are llama.cpp's for each family (fused q/k/v and gate/up
//! for phi3, no output tensor where the embeddings are tied, gemma's soft-caps and window
//! keys); the tokenizer metadata is copied from a real GGUF, so both engines load the file
//! and tokenize a prompt. Matrices are random GGML blocks (as good as trained ones for
//! timing), norms ones and biases zeros. Written a tensor at a time: a 9B model never sits
//! in memory.

use super::config::{Arch, LongRope, ModelConfig, Variant};
use super::gguf_model::gguf_tensor_name;
use super::source::{expected_shape, stored_as, tensor_names, LayerTensor, LoadError, TensorName};
use super::weights::random_blocks;
use crate::formats::gguf::{GgufBuilder, GgufFile, MetaValue};
use crate::formats::quant::GgmlType;
use crate::gpu::quant_layout::QuantType;
use std::collections::HashSet;
use std::path::Path;

/// The shapes `family_shape` knows, with where each comes from, for messages and `--help`.
pub const FAMILY_SHAPES: &[(&str, &str)] = &[
    ("llama2-7b", "Llama-2-7B: MHA 32 x 128, FFN 11008"),
    (
        "mistral-7b",
        "Mistral-7B-v0.3: GQA 32/8 x 128, FFN 14336, rope base 1e6 (no window: llama.cpp's \
         converter drops it)",
    ),
    (
        "qwen3-8b",
        "Qwen3-8B: 36 layers, GQA 32/8 x 128, FFN 12288, q/k norms",
    ),
    (
        "gemma2-9b",
        "Gemma-2-9B: hidden 3584, 42 layers, GQA 16/8 x 256, FFN 14336, GeGLU, post-norms, \
         soft-caps 50/30, a window of 4096 on every other layer, tied embeddings",
    ),
    (
        "gemma3-12b",
        "Gemma-3-12B (text): hidden 3840, 48 layers, GQA 16/8 x 256, FFN 15360, q/k norms, a \
         window of 1024 on 5 layers of 6 (base 1e4), global layers base 1e6 scaled by 8",
    ),
    (
        "phi3-mini",
        "Phi-3.5-mini: hidden 3072, MHA 32 x 96, FFN 8192, fused q/k/v and gate/up, LongRoPE",
    ),
];

/// The config of shape `name` (one of `FAMILY_SHAPES`) with a vocabulary of `vocab`.
pub fn family_shape(name: &str, vocab: usize) -> Option<ModelConfig> {
    // (arch, hidden, layers, heads, kv heads, head dim, ffn, rope base, eps)
    let (arch, hidden, layers, heads, kv, hd, ffn, theta, eps) = match name {
        "llama2-7b" => (Arch::Llama, 4096, 32, 32, 32, 128, 11008, 1e4, 1e-5),
        "mistral-7b" => (Arch::Llama, 4096, 32, 32, 8, 128, 14336, 1e6, 1e-5),
        "qwen3-8b" => (Arch::Qwen3, 4096, 36, 32, 8, 128, 12288, 1e6, 1e-6),
        "gemma2-9b" => (Arch::Gemma2, 3584, 42, 16, 8, 256, 14336, 1e4, 1e-6),
        "gemma3-12b" => (Arch::Gemma3, 3840, 48, 16, 8, 256, 15360, 1e6, 1e-6),
        "phi3-mini" => (Arch::Phi3, 3072, 32, 32, 32, 96, 8192, 1e4, 1e-5),
        _ => return None,
    };
    let mut cfg = ModelConfig {
        arch,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: ffn,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv,
        head_dim: hd,
        rms_norm_eps: eps,
        rope_theta: theta,
        rope_scaling: None,
        longrope: None,
        max_position_embeddings: 32768,
        tie_word_embeddings: arch.is_gemma(),
        attention_bias: false,
        qk_norm: matches!(arch, Arch::Qwen3 | Arch::Gemma3),
        sliding_window: None,
        variant: Variant::of_arch(arch, hidden),
    };
    match arch {
        Arch::Gemma2 => {
            cfg.sliding_window = Some(4096);
            cfg.variant.attn_softcap = Some(50.0);
            cfg.variant.final_softcap = Some(30.0);
            cfg.variant.attention_scale = Some(1.0 / (hd as f32).sqrt());
        }
        Arch::Gemma3 => {
            cfg.sliding_window = Some(1024);
            cfg.variant.rope_theta_local = Some(1e4);
            cfg.variant.rope_linear_factor = Some(8.0);
            cfg.variant.attention_scale = Some(1.0 / (hd as f32).sqrt());
        }
        Arch::Phi3 => {
            let half = hd / 2;
            let ramp = |top: f32| (0..half).map(move |i| 1.0 + top * i as f32 / half as f32);
            cfg.max_position_embeddings = 131072;
            cfg.longrope = Some(LongRope {
                short_factor: ramp(0.5).collect(),
                long_factor: ramp(29.0).collect(),
                original_max_position_embeddings: 4096,
                attention_factor: LongRope::default_attention_factor(131072, 4096),
            });
        }
        _ => {}
    }
    Some(cfg)
}

/// llama.cpp's `general.file_type` of a file whose matrices are `ty`.
fn file_type(ty: QuantType) -> u32 {
    match ty {
        QuantType::Q4_0 => 2,
        QuantType::Q4_1 => 3,
        QuantType::Q8_0 => 7,
        QuantType::Q5_0 => 8,
        QuantType::Q5_1 => 9,
        QuantType::Q4_K => 15,
        QuantType::Q5_K => 17,
        QuantType::Q6_K => 18,
    }
}

/// The metadata llama.cpp reads for `cfg`, under `name`, with `vocab`'s tokenizer keys.
fn metadata(cfg: &ModelConfig, ty: QuantType, name: &str, vocab: &GgufFile) -> GgufBuilder {
    let arch = cfg.arch.name();
    let mut b = GgufBuilder::default();
    let u32v = |v: usize| MetaValue::U32(v as u32);
    // llama.cpp sets token attributes by model name, and for a name with "phi3" in it
    // looks up Phi-3's own special tokens, which another vocabulary lacks
    let general = format!("headroom random {name}").replace("phi3", "p3");
    b.meta("general.architecture", MetaValue::String(arch.into()))
        .meta("general.name", MetaValue::String(general))
        .meta("general.file_type", MetaValue::U32(file_type(ty)))
        .meta("general.quantization_version", MetaValue::U32(2));
    let key = |k: &str| format!("{arch}.{k}");
    let keys = [
        ("context_length", u32v(cfg.max_position_embeddings)),
        ("embedding_length", u32v(cfg.hidden_size)),
        ("block_count", u32v(cfg.num_layers)),
        ("feed_forward_length", u32v(cfg.intermediate_size)),
        ("attention.head_count", u32v(cfg.num_heads)),
        ("attention.head_count_kv", u32v(cfg.num_kv_heads)),
        ("attention.key_length", u32v(cfg.head_dim)),
        ("attention.value_length", u32v(cfg.head_dim)),
        ("rope.dimension_count", u32v(cfg.head_dim)),
        ("rope.freq_base", MetaValue::F32(cfg.rope_theta)),
        (
            "attention.layer_norm_rms_epsilon",
            MetaValue::F32(cfg.rms_norm_eps),
        ),
        ("vocab_size", u32v(cfg.vocab_size)),
    ];
    for (k, v) in keys {
        b.meta(&key(k), v);
    }
    let v = &cfg.variant;
    if let Some(w) = cfg.sliding_window {
        b.meta(&key("attention.sliding_window"), u32v(w));
    }
    if let Some(c) = v.attn_softcap {
        b.meta(&key("attn_logit_softcapping"), MetaValue::F32(c));
    }
    if let Some(c) = v.final_softcap {
        b.meta(&key("final_logit_softcapping"), MetaValue::F32(c));
    }
    if let Some(t) = v.rope_theta_local {
        b.meta(&key("rope.freq_base_swa"), MetaValue::F32(t));
    }
    if let Some(f) = v.rope_linear_factor {
        b.meta(
            &key("rope.scaling.type"),
            MetaValue::String("linear".into()),
        );
        b.meta(&key("rope.scaling.factor"), MetaValue::F32(f));
    }
    if let Some(r) = &cfg.longrope {
        b.meta(
            &key("rope.scaling.original_context_length"),
            u32v(r.original_max_position_embeddings),
        );
        b.meta(
            &key("rope.scaling.attn_factor"),
            MetaValue::F32(r.attention_factor),
        );
    }
    for (k, v) in vocab.metadata() {
        if k.starts_with("tokenizer.") {
            b.meta(k, v.clone());
        }
    }
    b
}

/// What a tensor of the file holds.
enum Fill {
    Blocks { rows: usize, cols: usize },
    Values(Vec<f32>),
}

/// The file's tensors in llama.cpp's order: name, ggml dims, type, bytes, contents.
fn tensors(cfg: &ModelConfig, ty: QuantType) -> Vec<(String, Vec<u64>, GgmlType, u64, Fill)> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    if let Some(r) = &cfg.longrope {
        for (name, f) in [
            ("rope_factors_long.weight", &r.long_factor),
            ("rope_factors_short.weight", &r.short_factor),
        ] {
            let dims = vec![f.len() as u64];
            out.push((
                name.into(),
                dims,
                GgmlType::F32,
                4 * f.len() as u64,
                Fill::Values(f.clone()),
            ));
        }
    }
    for name in tensor_names(cfg) {
        let stored = stored_as(cfg, name).0;
        if !seen.insert(stored) {
            continue;
        }
        let shape = expected_shape(cfg, stored);
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        let n: usize = shape.iter().product();
        let (gty, bytes, fill) = match stored {
            s if s.is_norm() => (GgmlType::F32, 4 * n as u64, Fill::Values(vec![1.0; n])),
            TensorName::Layer(_, LayerTensor::Bq | LayerTensor::Bk | LayerTensor::Bv) => {
                (GgmlType::F32, 4 * n as u64, Fill::Values(vec![0.0; n]))
            }
            _ => {
                let (rows, cols) = (shape[0], shape[1]);
                let bytes = (n / ty.block_values()) as u64 * ty.ggml().type_size() as u64;
                (ty.ggml(), bytes, Fill::Blocks { rows, cols })
            }
        };
        out.push((gguf_tensor_name(stored), dims, gty, bytes, fill));
    }
    out
}

/// Writes `cfg` (a `family_shape`) as a GGUF of random `ty` blocks at `path`, with the
/// tokenizer of `vocab` (its token count must be `cfg.vocab_size`); returns the file's
/// bytes. `name` goes into `general.name`.
pub fn write_random_gguf(
    path: &Path,
    cfg: &ModelConfig,
    ty: QuantType,
    name: &str,
    vocab: &GgufFile,
) -> Result<u64, LoadError> {
    let here = path.display().to_string();
    let err = |m: String| LoadError::new(&here, m);
    cfg.validate(&here).map_err(err)?;
    let tokens = vocab.array_len("tokenizer.ggml.tokens")?.unwrap_or(0);
    if tokens != cfg.vocab_size {
        return Err(err(format!(
            "the vocabulary file {} has {tokens} tokens, the config {}",
            vocab.path(),
            cfg.vocab_size
        )));
    }
    let tensors = tensors(cfg, ty);
    for (name, dims, gty, _, _) in &tensors {
        if *gty != GgmlType::F32 && !(dims[0] as usize).is_multiple_of(ty.block_values()) {
            return Err(err(format!(
                "tensor '{name}' rows of {} values are not whole {} blocks",
                dims[0],
                ty.name()
            )));
        }
    }
    let infos: Vec<_> = tensors
        .iter()
        .map(|(n, d, t, b, _)| (n.clone(), d.clone(), *t, *b))
        .collect();
    let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    let mut out = std::io::BufWriter::with_capacity(8 << 20, file);
    let data = |i: usize| match &tensors[i].4 {
        Fill::Values(v) => bytemuck::cast_slice(v).to_vec(),
        Fill::Blocks { rows, cols } => {
            // values within ±sqrt(3 / cols): each projection keeps its input's scale
            let bound = (3.0 / *cols as f32).sqrt();
            let blocks = rows * cols / ty.block_values();
            random_blocks(ty, blocks, bound, i as u32 + 1)
        }
    };
    metadata(cfg, ty, name, vocab)
        .write_streamed(&mut out, &infos, data)
        .and_then(|_| std::io::Write::flush(&mut out))
        .map_err(|e| err(e.to_string()))?;
    Ok(std::fs::metadata(path)
        .map_err(|e| err(e.to_string()))?
        .len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gguf_model::GgufModel;
    use crate::model::synthetic::{gguf_builder, GgufWriteOptions, SyntheticModel};
    use crate::model::WeightSource;

    /// Every family's shape, shrunk to a few small layers, written and read back: the
    /// loader finds every tensor with its shape and type and the same config (what the
    /// file can say: gemma's query scale is llama.cpp's rule), and the tokenizer keys.
    #[test]
    fn every_family_shape_round_trips_through_the_gguf_loader() {
        let vocab_src = SyntheticModel::new(
            crate::model::synthetic::tiny_config(Arch::Llama, 4, 2, false),
            1,
        )
        .unwrap();
        let vocab_bytes = gguf_builder(&vocab_src, &GgufWriteOptions::default())
            .unwrap()
            .to_bytes();
        let vocab = GgufFile::from_bytes("vocab.gguf", vocab_bytes).unwrap();
        let dir = std::env::temp_dir().join(format!("headroom-random-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for &(name, _) in FAMILY_SHAPES {
            let mut cfg = family_shape(name, 128).unwrap();
            // a few layers of the real widths would be 100s of MB: shrink
            cfg.num_layers = 7;
            cfg.hidden_size = 128;
            cfg.intermediate_size = 96;
            cfg.num_heads = 4;
            cfg.num_kv_heads = if cfg.arch == Arch::Phi3 { 4 } else { 2 };
            cfg.head_dim = 32;
            if let Some(r) = cfg.longrope.as_mut() {
                r.short_factor.truncate(16);
                r.long_factor.truncate(16);
            }
            if cfg.arch.is_gemma() {
                cfg.variant.embedding_scale = Some((128f32).sqrt());
                cfg.variant.attention_scale = Some(1.0 / 32f32.sqrt());
            }
            let path = dir.join(format!("{name}.gguf"));
            let bytes = write_random_gguf(&path, &cfg, QuantType::Q4_0, name, &vocab).unwrap();
            assert_eq!(bytes, std::fs::metadata(&path).unwrap().len());
            let m = GgufModel::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.config(), &cfg, "{name}: the config read back");
            let (wq, _) = stored_as(&cfg, TensorName::Layer(0, LayerTensor::Wq));
            let info = m.tensor_info(wq).unwrap();
            assert_eq!(info.ggml_type, GgmlType::Q4_0, "{name}");
            assert_eq!(
                m.gguf().array_len("tokenizer.ggml.tokens").unwrap(),
                Some(128),
                "{name}"
            );
            std::fs::remove_file(&path).ok();
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
