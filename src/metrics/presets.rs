//! The one table of model shapes that the explorer starts from and the synthetic-model
//! benchmarks build: real models' sizes, from their config files.

use super::attention::{AttentionKind, AttentionShape};
use crate::model::{Arch, ModelConfig};

/// A real model's shape.
#[derive(Clone, Copy, Debug)]
pub struct Preset {
    pub name: &'static str,
    /// the name `bench decode-step --synthetic` takes
    pub key: &'static str,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub kind: AttentionKind,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub rope_theta: f32,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

/// Models people know.
pub const PRESETS: [Preset; 4] = [
    Preset {
        name: "SmolLM2-135M",
        key: "smollm2-135m",
        layers: 30,
        heads: 9,
        head_dim: 64,
        kind: AttentionKind::Gqa { group: 3 },
        hidden_size: 576,
        intermediate_size: 1536,
        vocab_size: 49152,
        rope_theta: 100000.0,
        max_position_embeddings: 8192,
        tie_word_embeddings: true,
    },
    Preset {
        name: "Llama-2-7B",
        key: "llama2-7b",
        layers: 32,
        heads: 32,
        head_dim: 128,
        kind: AttentionKind::Mha,
        hidden_size: 4096,
        intermediate_size: 11008,
        vocab_size: 32000,
        rope_theta: 10000.0,
        max_position_embeddings: 4096,
        tie_word_embeddings: false,
    },
    Preset {
        name: "Llama-3-8B",
        key: "llama3-8b",
        layers: 32,
        heads: 32,
        head_dim: 128,
        kind: AttentionKind::Gqa { group: 4 },
        hidden_size: 4096,
        intermediate_size: 14336,
        vocab_size: 128256,
        rope_theta: 500000.0,
        max_position_embeddings: 8192,
        tie_word_embeddings: false,
    },
    Preset {
        name: "DeepSeek-V2-Lite",
        key: "deepseek-v2-lite",
        layers: 27,
        heads: 16,
        head_dim: 128,
        kind: AttentionKind::Mla {
            rank: 512,
            rope: 64,
        },
        hidden_size: 2048,
        intermediate_size: 10944,
        vocab_size: 102400,
        rope_theta: 10000.0,
        max_position_embeddings: 163840,
        tie_word_embeddings: false,
    },
];

impl Preset {
    /// The preset whose `key` is `key`.
    pub fn by_key(key: &str) -> Option<&'static Preset> {
        PRESETS.iter().find(|p| p.key == key)
    }

    /// Its attention at `batch` sequences of `context` positions.
    pub fn shape(&self, batch: usize, context: usize) -> AttentionShape {
        AttentionShape {
            kind: self.kind,
            layers: self.layers,
            heads: self.heads,
            head_dim: self.head_dim,
            batch,
            context,
        }
    }

    /// A llama-architecture config of this shape with `kv_heads` KV heads (the preset's
    /// own count for the real model); None for MLA models, which the llama graph does not
    /// build.
    pub fn llama_config(&self, kv_heads: usize) -> Option<ModelConfig> {
        if matches!(self.kind, AttentionKind::Mla { .. }) {
            return None;
        }
        Some(ModelConfig {
            arch: Arch::Llama,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.layers,
            num_heads: self.heads,
            num_kv_heads: kv_heads,
            head_dim: self.head_dim,
            rms_norm_eps: 1e-5,
            rope_theta: self.rope_theta,
            rope_scaling: None,
            longrope: None,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: false,
            qk_norm: false,
            sliding_window: None,
            variant: Default::default(),
        })
    }
}

/// Llama-2-7B's shape with `kv_heads` KV heads (32: the real model, MHA): hidden 4096,
/// 32 layers of 32 heads of 128, FFN 11008, vocabulary 32000, untied head.
pub fn llama2_7b(kv_heads: usize) -> ModelConfig {
    PRESETS[1]
        .llama_config(kv_heads)
        .expect("Llama-2-7B is a llama model")
}

/// A Llama-2 shaped model small enough for a software rasterizer (smoke tests of the
/// benchmarks: `--synthetic tiny`): 32 heads of 8, hidden 256, 2 layers, FFN 688,
/// vocabulary 1000, so the same `--kv-heads` values work.
pub fn llama2_tiny(kv_heads: usize) -> ModelConfig {
    ModelConfig {
        vocab_size: 1000,
        hidden_size: 256,
        intermediate_size: 688,
        num_layers: 2,
        head_dim: 8,
        ..llama2_7b(kv_heads)
    }
}

/// The small config of the GPU tests: hidden 64, 2 layers of 4 heads of 16 with
/// `kv_heads` KV heads, FFN 128, vocabulary 97.
pub fn tiny_config(kv_heads: usize) -> ModelConfig {
    ModelConfig {
        vocab_size: 97,
        hidden_size: 64,
        intermediate_size: 128,
        num_layers: 2,
        num_heads: 4,
        head_dim: 16,
        max_position_embeddings: 256,
        ..llama2_7b(kv_heads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_agree_with_their_attention_kind() {
        for p in PRESETS {
            assert!(
                p.heads.is_multiple_of(p.shape(1, 1).kv_heads()),
                "{}",
                p.name
            );
            if let Some(cfg) = p.llama_config(p.shape(1, 1).kv_heads()) {
                cfg.validate(p.name).unwrap();
                assert_eq!(cfg.hidden_size, p.hidden_size);
            }
        }
        assert!(PRESETS[3].llama_config(1).is_none());
        assert_eq!(Preset::by_key("llama2-7b").unwrap().name, "Llama-2-7B");
    }
}
