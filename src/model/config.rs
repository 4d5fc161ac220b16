//! The model's shape and hyper-parameters, independent of the file format it came from.

use serde::Serialize;

/// Architectures headroom runs, all llama-family decoders: qwen2 adds q/k/v biases,
/// qwen3 an RMSNorm of each query and key head before RoPE, phi3 stores q/k/v and
/// gate/up fused and scales RoPE by LongRoPE. Mistral is llama with a sliding window
/// (`ModelConfig::sliding_window`); llama.cpp converts it as llama. Gemma 2 and 3 turn on
/// most of [`Variant`]: GeGLU, norms after each block, scaled embeddings, soft-capping,
/// windows on some layers only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Phi3,
    Gemma2,
    Gemma3,
}

impl Arch {
    /// Maps a GGUF `general.architecture` or HF `model_type` string.
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "llama" | "mistral" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            "phi3" => Some(Arch::Phi3),
            "gemma2" => Some(Arch::Gemma2),
            "gemma3" | "gemma3_text" => Some(Arch::Gemma3),
            _ => None,
        }
    }

    /// The GGUF `general.architecture` (and metadata key prefix).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Phi3 => "phi3",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3",
        }
    }

    /// Gemma's: every RMSNorm multiplies by (1 + w) where transformers stores w (GGUF
    /// files hold 1 + w already), and the embeddings are scaled by sqrt(hidden).
    pub fn is_gemma(self) -> bool {
        matches!(self, Arch::Gemma2 | Arch::Gemma3)
    }

    /// llama.cpp's hard-coded sliding-window pattern: every `n`th layer global, the rest
    /// windowed (Gemma 2: 2, Gemma 3: 6); None where a window is on every layer.
    pub fn global_layer_period(self) -> Option<usize> {
        match self {
            Arch::Gemma2 => Some(2),
            Arch::Gemma3 => Some(6),
            _ => None,
        }
    }

    /// Whether files store q/k/v as one tensor and gate/up as one (phi3).
    pub fn fused_tensors(self) -> bool {
        self == Arch::Phi3
    }

    /// The names `from_name` accepts, for messages.
    pub const SUPPORTED: &'static str = "llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3";
}

/// The gated MLP's activation (its kernel's: `ops::elementwise`).
pub use crate::ops::elementwise::Activation;

/// Where a family departs from the llama decoder, each off by default (Gemma 2 and 3 turn
/// most of them on).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Variant {
    pub activation: Activation,
    /// each block's output is RMS-normalised (its own weights) before the residual add:
    /// gemma's post_attention_norm and post_ffw_norm
    pub post_norms: bool,
    /// the embeddings are multiplied by this (gemma: sqrt(hidden))
    pub embedding_scale: Option<f32>,
    /// attention scores are q.k times this instead of 1/sqrt(head_dim) (gemma's
    /// query_pre_attn_scalar^-1/2)
    pub attention_scale: Option<f32>,
    /// scores = cap * tanh(scores / cap), before the softmax (gemma2)
    pub attn_softcap: Option<f32>,
    /// logits = cap * tanh(logits / cap) (gemma2)
    pub final_softcap: Option<f32>,
    /// the sliding window is on every layer but each `n`th (layers l with (l + 1) % n ==
    /// 0 are global); None: on every layer
    pub global_layer_period: Option<usize>,
    /// the RoPE base of the windowed layers where it differs from `rope_theta`
    /// (gemma3's local layers; they take no RoPE scaling)
    pub rope_theta_local: Option<f32>,
    /// linear RoPE scaling: positions divided by this (gemma3's global layers)
    pub rope_linear_factor: Option<f32>,
}

impl Variant {
    /// What the architecture itself fixes (gemma: GeGLU, post-norms, embeddings times
    /// sqrt(hidden), its window pattern); the rest stays off for the file to set.
    pub fn of_arch(arch: Arch, hidden_size: usize) -> Variant {
        match arch.is_gemma() {
            true => Variant {
                activation: Activation::GeluTanh,
                post_norms: true,
                // transformers rounds sqrt(hidden) to the activations' dtype (f32 here)
                embedding_scale: Some((hidden_size as f32).sqrt()),
                global_layer_period: arch.global_layer_period(),
                ..Variant::default()
            },
            false => Variant::default(),
        }
    }
}

/// Llama-3 style frequency-dependent RoPE scaling (`rope_scaling.rope_type == "llama3"`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Llama3RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: u32,
}

/// Phi-3's LongRoPE (`rope_type` "longrope"): per-frequency divisors, the long ones where
/// the context exceeds the original one, and a factor on every rotated query and key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LongRope {
    /// `head_dim / 2` divisors each
    pub short_factor: Vec<f32>,
    pub long_factor: Vec<f32>,
    pub original_max_position_embeddings: usize,
    /// multiplies cos and sin (so the scores by its square)
    pub attention_factor: f32,
}

impl LongRope {
    /// transformers' default attention factor: sqrt(1 + ln(s) / ln(original)) for a
    /// context stretched s = max_position / original times, 1 where not stretched.
    pub fn default_attention_factor(max_position: usize, original: usize) -> f32 {
        let s = max_position as f64 / original as f64;
        match s > 1.0 {
            true => (1.0 + s.ln() / (original as f64).ln()).sqrt() as f32,
            false => 1.0,
        }
    }
}

/// Everything the forward pass needs to know about a model's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    /// d_model
    pub hidden_size: usize,
    /// FFN inner width
    pub intermediate_size: usize,
    pub num_layers: usize,
    /// query heads
    pub num_heads: usize,
    /// key/value heads: == num_heads is MHA, 1 is MQA, between is GQA
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// phi3's LongRoPE
    pub longrope: Option<LongRope>,
    /// the context length the model was trained for
    pub max_position_embeddings: usize,
    /// lm_head shares the token embedding matrix
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases (qwen2)
    pub attention_bias: bool,
    /// each query and key head is RMS-normalised (weights `[head_dim]`, shared by the
    /// heads) before RoPE (qwen3)
    pub qk_norm: bool,
    /// sliding-window attention (mistral, gemma): the query at position p sees positions
    /// p - W + 1 ..= p only, on the layers `layer_window` names; None sees the whole context
    pub sliding_window: Option<usize>,
    /// gemma's departures from the llama block
    pub variant: Variant,
}

impl ModelConfig {
    /// Query heads per KV head (G).
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Bytes of K and V cached per token over all layers, at `bytes_per_element`.
    pub fn kv_bytes_per_token(&self, bytes_per_element: usize) -> usize {
        2 * self.num_layers * self.num_kv_heads * self.head_dim * bytes_per_element
    }

    /// The attention window of layer `layer`: the sliding window on every layer, or on all
    /// but each `global_layer_period`th.
    pub fn layer_window(&self, layer: usize) -> Option<usize> {
        match self.variant.global_layer_period {
            Some(n) if (layer + 1).is_multiple_of(n) => None,
            _ => self.sliding_window,
        }
    }

    /// Whether layer `layer` rotates by the local RoPE base (gemma3's windowed layers).
    pub fn local_rope(&self, layer: usize) -> bool {
        self.variant.rope_theta_local.is_some() && self.layer_window(layer).is_some()
    }

    /// What attention multiplies q.k by.
    pub fn attention_scale(&self) -> f32 {
        self.variant
            .attention_scale
            .unwrap_or(1.0 / (self.head_dim as f32).sqrt())
    }

    pub fn attention_kind(&self) -> &'static str {
        if self.num_kv_heads == self.num_heads {
            "MHA"
        } else if self.num_kv_heads == 1 {
            "MQA"
        } else {
            "GQA"
        }
    }

    /// Checks the relations the kernels rely on; `source` names the file for the message.
    pub fn validate(&self, source: &str) -> Result<(), String> {
        let fail = |what: String| Err(format!("{source}: invalid model config: {what}"));
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.num_layers == 0 {
            return fail("heads, kv heads and layers must be > 0".into());
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return fail(format!(
                "num_heads {} is not a multiple of num_kv_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if let Some(r) = &self.longrope {
            let half = self.head_dim / 2;
            if r.short_factor.len() != half || r.long_factor.len() != half {
                return fail(format!(
                    "longrope needs head_dim / 2 = {half} factors each, found {} short and {} \
                     long",
                    r.short_factor.len(),
                    r.long_factor.len()
                ));
            }
            if r.original_max_position_embeddings == 0 {
                return fail("longrope's original_max_position_embeddings is 0".into());
            }
        }
        if self.sliding_window == Some(0) {
            return fail("sliding_window must be > 0".into());
        }
        let v = &self.variant;
        if v.global_layer_period == Some(0) {
            return fail("the sliding-window pattern's period must be > 0".into());
        }
        let positive = [
            ("attn_logit_softcapping", v.attn_softcap),
            ("final_logit_softcapping", v.final_softcap),
            ("the attention scale", v.attention_scale),
            ("the embedding scale", v.embedding_scale),
            ("the local RoPE base", v.rope_theta_local),
            ("the linear RoPE factor", v.rope_linear_factor),
        ];
        for (what, value) in positive {
            if let Some(x) = value.filter(|x| !(x.is_finite() && *x > 0.0)) {
                return fail(format!("{what} must be a positive number, found {x}"));
            }
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return fail(format!("head_dim {} must be even and > 0", self.head_dim));
        }
        if self.hidden_size == 0 || self.intermediate_size == 0 || self.vocab_size == 0 {
            return fail("hidden_size, intermediate_size and vocab_size must be > 0".into());
        }
        if !self.hidden_size.is_multiple_of(4)
            || !self.intermediate_size.is_multiple_of(4)
            || !self.head_dim.is_multiple_of(4)
        {
            return fail(
                "hidden_size, intermediate_size and head_dim must be multiples of 4".into(),
            );
        }
        // The sizes the loaders and kernels multiply must fit a usize: a hostile file can
        // declare any u32 (GGUF) or u64 (config.json).
        let (h, hd) = (self.hidden_size, self.head_dim);
        let q = self.num_heads.checked_mul(hd);
        let products = [
            (
                "num_heads * head_dim * hidden_size",
                q.and_then(|q| q.checked_mul(h)),
            ),
            ("vocab_size * hidden_size", self.vocab_size.checked_mul(h)),
            (
                "intermediate_size * hidden_size",
                self.intermediate_size.checked_mul(h),
            ),
            (
                "KV bytes per token (2 * layers * kv heads * head_dim * 4)",
                [2, self.num_layers, self.num_kv_heads, hd, 4]
                    .into_iter()
                    .try_fold(1usize, usize::checked_mul),
            ),
        ];
        for (what, product) in products {
            if product.is_none() {
                return fail(format!("{what} overflows"));
            }
        }
        Ok(())
    }
}

/// RoPE inverse frequencies for a KV cache of `context` positions: llama-3 scaled where
/// the config has it, divided by LongRoPE's long factors where the context exceeds the
/// original one and by its short ones where not (llama.cpp's rule; transformers decides
/// per forward pass by the sequence's length, which is the same while a sequence stays on
/// one side of the original context).
pub fn rope_inv_freq(cfg: &ModelConfig, context: usize) -> Vec<f32> {
    let mut inv = llama3_rope_inv_freq(cfg);
    if let Some(f) = cfg.variant.rope_linear_factor {
        inv.iter_mut().for_each(|x| *x /= f);
    }
    match &cfg.longrope {
        None => inv,
        Some(r) => {
            let factors = match context > r.original_max_position_embeddings {
                true => &r.long_factor,
                false => &r.short_factor,
            };
            inv.iter().zip(factors).map(|(f, d)| f / d).collect()
        }
    }
}

/// The RoPE inverse frequencies of layer `layer`: the local base's on gemma3's windowed
/// layers (`local_rope_inv_freq`); `rope_inv_freq`'s elsewhere.
pub fn layer_rope_inv_freq(cfg: &ModelConfig, context: usize, layer: usize) -> Vec<f32> {
    match local_rope_inv_freq(cfg).filter(|_| cfg.local_rope(layer)) {
        Some(local) => local,
        None => rope_inv_freq(cfg, context),
    }
}

/// The windowed layers' own RoPE frequencies (the local base, unscaled), where any layer
/// uses them (gemma3).
pub fn local_rope_inv_freq(cfg: &ModelConfig) -> Option<Vec<f32>> {
    let theta = cfg.variant.rope_theta_local?;
    (0..cfg.num_layers)
        .any(|l| cfg.local_rope(l))
        .then(|| plain_inv_freq(theta, cfg.head_dim))
}

/// `theta^(-2i/head_dim)` for i < head_dim / 2.
fn plain_inv_freq(theta: f32, dim: usize) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| (1.0 / (theta as f64).powf((2 * i) as f64 / dim as f64)) as f32)
        .collect()
}

/// What RoPE multiplies every rotated query and key by (LongRoPE's attention factor).
pub fn rope_attention_factor(cfg: &ModelConfig) -> f32 {
    cfg.longrope.as_ref().map_or(1.0, |r| r.attention_factor)
}

/// RoPE inverse frequencies, `head_dim / 2` of them: `theta^(-2i/head_dim)`, with
/// llama-3 scaling applied when the config has it (HF `_compute_llama3_parameters`).
pub fn llama3_rope_inv_freq(cfg: &ModelConfig) -> Vec<f32> {
    let dim = cfg.head_dim;
    let base = cfg.rope_theta as f64;
    let inv: Vec<f64> = (0..dim / 2)
        .map(|i| 1.0 / base.powf((2 * i) as f64 / dim as f64))
        .collect();
    let Some(s) = cfg.rope_scaling else {
        return inv.iter().map(|&f| f as f32).collect();
    };
    let (factor, low, high) = (
        s.factor as f64,
        s.low_freq_factor as f64,
        s.high_freq_factor as f64,
    );
    let old_ctx = s.original_max_position_embeddings as f64;
    let low_freq_wavelen = old_ctx / low;
    let high_freq_wavelen = old_ctx / high;
    inv.iter()
        .map(|&f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let scaled = if wavelen < high_freq_wavelen {
                f
            } else if wavelen > low_freq_wavelen {
                f / factor
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                (1.0 - smooth) * f / factor + smooth * f
            };
            scaled as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against numbers that Hugging Face transformers computed (tests/data/llama3_rope.json,
    /// made by scripts/make-rope-fixture.py; its provenance names the versions), not
    /// re-derived here: the GPU path and the CPU reference both use this function.
    #[test]
    fn llama3_rope_frequencies_match_transformers() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/llama3_rope.json");
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = doc["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 2);
        for c in cases {
            let f = |k: &str| c[k].as_f64().unwrap();
            let mut cfg = crate::model::synthetic::tiny_config(Arch::Llama, 4, 4, true);
            cfg.head_dim = f("head_dim") as usize;
            cfg.rope_theta = f("rope_theta") as f32;
            cfg.rope_scaling = Some(Llama3RopeScaling {
                factor: f("factor") as f32,
                low_freq_factor: f("low_freq_factor") as f32,
                high_freq_factor: f("high_freq_factor") as f32,
                original_max_position_embeddings: f("original_max_position_embeddings") as u32,
            });
            let want: Vec<f64> = c["inv_freq"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let got = llama3_rope_inv_freq(&cfg);
            assert_eq!(got.len(), want.len());
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - w).abs() <= 2e-6 * w.abs(),
                    "{}: inv_freq[{i}] = {g}, transformers {w}",
                    c["name"]
                );
            }
        }
    }
}
