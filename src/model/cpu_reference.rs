//! A plain f32 forward pass on the CPU, llama2.c style: the test oracle for the GPU path.
//! Dot products accumulate in f64. One token at a time, with a KV cache.

use super::config::{layer_rope_inv_freq, rope_attention_factor, Activation, ModelConfig};
use super::source::{tensor_names, LayerTensor, LoadError, TensorName, WeightSource};
use std::collections::HashMap;

/// y = W x for W row-major `[rows, x.len()]`, f64 accumulation.
fn matmul(w: &[f32], x: &[f32]) -> Vec<f32> {
    w.chunks_exact(x.len())
        .map(|row| dot(row, x) as f32)
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// x * w / sqrt(mean(x^2) + eps)
fn rmsnorm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = dot(x, x) / x.len() as f64;
    let scale = 1.0 / (ms + eps as f64).sqrt();
    x.iter()
        .zip(w)
        .map(|(&x, &w)| (x as f64 * scale) as f32 * w)
        .collect()
}

/// Rotate-half RoPE on one head in place: pairs (i, i + head_dim/2).
fn rope(head: &mut [f32], pos: usize, inv_freq: &[f32]) {
    let half = head.len() / 2;
    for i in 0..half {
        let angle = pos as f64 * inv_freq[i] as f64;
        let (sin, cos) = angle.sin_cos();
        let (x1, x2) = (head[i] as f64, head[i + half] as f64);
        head[i] = (x1 * cos - x2 * sin) as f32;
        head[i + half] = (x2 * cos + x1 * sin) as f32;
    }
}

fn softmax(x: &mut [f64]) {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation (PyTorch's `gelu(approximate="tanh")`), in f64.
fn gelu_tanh(x: f32) -> f32 {
    let x = x as f64;
    let inner = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
    (0.5 * x * (1.0 + inner.tanh())) as f32
}

/// cap * tanh(x / cap) where a cap is given.
fn softcap(x: f64, cap: Option<f32>) -> f64 {
    cap.map_or(x, |c| c as f64 * (x / c as f64).tanh())
}

/// The CPU model: every weight as f32, and a KV cache per layer.
pub struct CpuModel {
    cfg: ModelConfig,
    weights: HashMap<TensorName, Vec<f32>>,
    /// per layer (gemma3's windowed layers have their own base)
    inv_freq: Vec<Vec<f32>>,
    /// multiplies every rotated query and key (LongRoPE)
    rope_scale: f32,
    /// per layer: `[cached tokens, kv_heads * head_dim]`
    k_cache: Vec<Vec<f32>>,
    v_cache: Vec<Vec<f32>>,
    /// the last `forward`'s attention weights, `[layer][head][position]`
    last_attention: Vec<f32>,
}

impl CpuModel {
    /// Loads (dequantizes) every tensor of `src`.
    pub fn new(src: &dyn WeightSource) -> Result<Self, LoadError> {
        let cfg = src.config().clone();
        let mut weights = HashMap::new();
        for name in tensor_names(&cfg) {
            weights.insert(name, src.load(name)?.data);
        }
        Ok(CpuModel {
            // the KV cache of a model run at its full context
            inv_freq: (0..cfg.num_layers)
                .map(|l| layer_rope_inv_freq(&cfg, cfg.max_position_embeddings, l))
                .collect(),
            rope_scale: rope_attention_factor(&cfg),
            k_cache: vec![Vec::new(); cfg.num_layers],
            v_cache: vec![Vec::new(); cfg.num_layers],
            last_attention: Vec::new(),
            cfg,
            weights,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Tokens in the KV cache.
    pub fn cached_tokens(&self) -> usize {
        self.k_cache[0].len() / (self.cfg.num_kv_heads * self.cfg.head_dim)
    }

    /// Empties the KV cache.
    pub fn reset(&mut self) {
        self.k_cache.iter_mut().for_each(Vec::clear);
        self.v_cache.iter_mut().for_each(Vec::clear);
    }

    /// The softmax weights of the last `forward`'s token over its positions (itself
    /// included), `[layer][head][position]`.
    pub fn last_attention(&self) -> &[f32] {
        &self.last_attention
    }

    fn w(&self, name: TensorName) -> &[f32] {
        &self.weights[&name]
    }

    fn lw(&self, layer: usize, t: LayerTensor) -> &[f32] {
        self.w(TensorName::Layer(layer, t))
    }

    /// Runs `token` at position `pos` and returns the logits `[vocab]`. Positions before
    /// `pos` must be in the cache; a smaller `pos` than cached rewinds the cache to it.
    pub fn forward(&mut self, token: u32, pos: usize) -> Vec<f32> {
        let cfg = self.cfg.clone();
        let (hd, n_heads, n_kv) = (cfg.head_dim, cfg.num_heads, cfg.num_kv_heads);
        let kv_dim = n_kv * hd;
        let group = cfg.group_size();
        assert!(
            pos <= self.cached_tokens(),
            "forward at pos {pos} with only {} tokens cached",
            self.cached_tokens()
        );
        assert!((token as usize) < cfg.vocab_size, "token {token} >= vocab");
        for l in 0..cfg.num_layers {
            self.k_cache[l].truncate(pos * kv_dim);
            self.v_cache[l].truncate(pos * kv_dim);
        }

        // x: [hidden], the residual stream
        let h = cfg.hidden_size;
        let t = token as usize;
        let mut x = self.w(TensorName::TokenEmbedding)[t * h..(t + 1) * h].to_vec();
        if let Some(s) = cfg.variant.embedding_scale {
            x.iter_mut().for_each(|v| *v *= s);
        }
        self.last_attention.clear();

        for l in 0..cfg.num_layers {
            // attention
            let xb = rmsnorm(&x, self.lw(l, LayerTensor::AttnNorm), cfg.rms_norm_eps);
            let mut q = matmul(self.lw(l, LayerTensor::Wq), &xb); // [heads * hd]
            let mut k = matmul(self.lw(l, LayerTensor::Wk), &xb); // [kv_heads * hd]
            let mut v = matmul(self.lw(l, LayerTensor::Wv), &xb); // [kv_heads * hd]
            if cfg.attention_bias {
                add(&mut q, self.lw(l, LayerTensor::Bq));
                add(&mut k, self.lw(l, LayerTensor::Bk));
                add(&mut v, self.lw(l, LayerTensor::Bv));
            }
            if cfg.qk_norm {
                let eps = cfg.rms_norm_eps;
                let (qn, kn) = (
                    self.lw(l, LayerTensor::QNorm),
                    self.lw(l, LayerTensor::KNorm),
                );
                for head in q.chunks_exact_mut(hd) {
                    head.copy_from_slice(&rmsnorm(head, qn, eps));
                }
                for head in k.chunks_exact_mut(hd) {
                    head.copy_from_slice(&rmsnorm(head, kn, eps));
                }
            }
            for head in q.chunks_exact_mut(hd).chain(k.chunks_exact_mut(hd)) {
                rope(head, pos, &self.inv_freq[l]);
                head.iter_mut().for_each(|v| *v *= self.rope_scale);
            }
            self.k_cache[l].extend_from_slice(&k);
            self.v_cache[l].extend_from_slice(&v);

            let n_ctx = pos + 1;
            // the first position the window lets this query see
            let first = match cfg.layer_window(l) {
                Some(w) => n_ctx.saturating_sub(w),
                None => 0,
            };
            let scale = cfg.attention_scale() as f64;
            let mut att_out = vec![0f32; n_heads * hd]; // [heads * hd]
            for hq in 0..n_heads {
                let kvh = hq / group;
                let qh = &q[hq * hd..(hq + 1) * hd];
                // scores: [n_ctx]
                let mut scores: Vec<f64> = (first..n_ctx)
                    .map(|s| {
                        let ks = &self.k_cache[l][s * kv_dim + kvh * hd..][..hd];
                        softcap(dot(qh, ks) * scale, cfg.variant.attn_softcap)
                    })
                    .collect();
                softmax(&mut scores);
                // positions outside the window get weight 0
                self.last_attention.extend(std::iter::repeat_n(0.0, first));
                self.last_attention.extend(scores.iter().map(|&p| p as f32));
                for d in 0..hd {
                    let mut acc = 0f64;
                    for (i, p) in scores.iter().enumerate() {
                        let s = first + i;
                        acc += p * self.v_cache[l][s * kv_dim + kvh * hd + d] as f64;
                    }
                    att_out[hq * hd + d] = acc as f32;
                }
            }
            let o = matmul(self.lw(l, LayerTensor::Wo), &att_out);
            add(&mut x, &self.post_norm(l, LayerTensor::PostAttnNorm, o));

            // feed-forward: down(act(gate(x)) * up(x))
            let xb = rmsnorm(&x, self.lw(l, LayerTensor::FfnNorm), cfg.rms_norm_eps);
            let gate = matmul(self.lw(l, LayerTensor::WGate), &xb); // [intermediate]
            let up = matmul(self.lw(l, LayerTensor::WUp), &xb); // [intermediate]
            let act: Vec<f32> = match cfg.variant.activation {
                Activation::Silu => gate.iter().zip(&up).map(|(&g, &u)| silu(g) * u).collect(),
                Activation::GeluTanh => gate
                    .iter()
                    .zip(&up)
                    .map(|(&g, &u)| gelu_tanh(g) * u)
                    .collect(),
            };
            let down = matmul(self.lw(l, LayerTensor::WDown), &act);
            add(&mut x, &self.post_norm(l, LayerTensor::PostFfnNorm, down));
        }

        let x = rmsnorm(&x, self.w(TensorName::FinalNorm), cfg.rms_norm_eps);
        let head = if cfg.tie_word_embeddings {
            TensorName::TokenEmbedding
        } else {
            TensorName::LmHead
        };
        let cap = cfg.variant.final_softcap;
        matmul(self.w(head), &x) // [vocab]
            .into_iter()
            .map(|v| softcap(v as f64, cap) as f32)
            .collect()
    }

    /// A block's output as it is added to the residual: through its post-norm `norm`
    /// where the model has them (gemma).
    fn post_norm(&self, layer: usize, norm: LayerTensor, y: Vec<f32>) -> Vec<f32> {
        match self.cfg.variant.post_norms {
            true => rmsnorm(&y, self.lw(layer, norm), self.cfg.rms_norm_eps),
            false => y,
        }
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{llama3_rope_inv_freq, Arch, Llama3RopeScaling};
    use crate::model::synthetic::{tiny_config, SyntheticModel};

    #[test]
    fn plain_inv_freq() {
        let mut cfg = tiny_config(Arch::Llama, 2, 2, true);
        cfg.head_dim = 8;
        cfg.rope_theta = 10000.0;
        let f = llama3_rope_inv_freq(&cfg);
        let want = [1.0, 0.1, 0.01, 0.001];
        for (a, b) in f.iter().zip(want) {
            assert!((a - b).abs() < 1e-7 * b.max(1e-3) * 10.0, "{a} vs {b}");
        }
    }

    /// Values from HF transformers' `_compute_llama3_parameters` (Llama 3.1: theta 500000,
    /// head_dim 128, factor 8, low 1, high 4, original 8192), computed by hand from its
    /// formula at three representative indices.
    #[test]
    fn llama3_scaling_bands() {
        let mut cfg = tiny_config(Arch::Llama, 2, 2, true);
        cfg.head_dim = 128;
        cfg.rope_theta = 500000.0;
        cfg.rope_scaling = Some(Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        let scaled = llama3_rope_inv_freq(&cfg);
        cfg.rope_scaling = None;
        let plain = llama3_rope_inv_freq(&cfg);
        let two_pi = 2.0 * std::f64::consts::PI;
        for i in 0..64 {
            let wavelen = two_pi / plain[i] as f64;
            let ratio = plain[i] as f64 / scaled[i] as f64;
            if wavelen < 8192.0 / 4.0 {
                assert!((ratio - 1.0).abs() < 1e-6, "high freq {i} unscaled");
            } else if wavelen > 8192.0 {
                assert!((ratio - 8.0).abs() < 1e-5, "low freq {i} scaled by 8");
            } else {
                let smooth = (8192.0 / wavelen - 1.0) / 3.0;
                let want = 1.0 / ((1.0 - smooth) / 8.0 + smooth);
                assert!(
                    (ratio - want).abs() < 1e-5,
                    "mid freq {i}: {ratio} vs {want}"
                );
                assert!(ratio > 1.0 && ratio < 8.0);
            }
        }
        // index 0 is high frequency, index 63 low
        assert_eq!(scaled[0], plain[0]);
        assert!((plain[63] / scaled[63] - 8.0).abs() < 1e-4);
    }

    #[test]
    fn rope_rotates_pairs_half_apart() {
        let mut head = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        rope(&mut head, 1, &[std::f32::consts::FRAC_PI_2, 0.0, 0.0, 1.0]);
        // pair (0, 4): (1, 0) rotated by pi/2 -> (0, 1)
        assert!(head[0].abs() < 1e-6 && (head[4] - 1.0).abs() < 1e-6);
        // pair (2, 6): angle 0, unchanged
        assert_eq!((head[2], head[6]), (0.0, 1.0));
        // position 0 is the identity
        let mut h2 = [0.3f32, -0.7, 0.1, 0.9];
        rope(&mut h2, 0, &[1.0, 0.5]);
        assert_eq!(h2, [0.3, -0.7, 0.1, 0.9]);
    }

    /// With one layer and a window of 4, the logits at position p depend on tokens
    /// p-3..=p only, and the attention weights outside the window are 0.
    #[test]
    fn a_sliding_window_hides_older_positions() {
        let mut cfg = tiny_config(Arch::Llama, 4, 2, false);
        cfg.num_layers = 1;
        cfg.sliding_window = Some(4);
        let src = SyntheticModel::new(cfg, 9).unwrap();
        let run = |first: u32| {
            let mut m = CpuModel::new(&src).unwrap();
            let toks = [first, 17, 3, 99, 42, 7];
            let logits: Vec<Vec<f32>> = toks
                .iter()
                .enumerate()
                .map(|(p, &t)| m.forward(t, p))
                .collect();
            (logits, m.last_attention().to_vec())
        };
        let (a, att) = run(5);
        let (b, _) = run(6);
        // position 3 still sees token 0; positions 4 and 5 do not
        assert_ne!(a[3], b[3]);
        assert_eq!(a[4..], b[4..]);
        // the last token's weights per head: 6 positions, the first 2 outside the window
        for head in att.chunks_exact(6) {
            assert_eq!(&head[..2], &[0.0, 0.0]);
            assert!((head[2..].iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    /// Attention over a cache must equal attention recomputed from scratch, and rewinding
    /// must reproduce the same logits.
    #[test]
    fn kv_cache_and_rewind_are_consistent() {
        for (arch, heads, kv, tied) in [
            (Arch::Llama, 4, 4, true),
            (Arch::Llama, 4, 2, false),
            (Arch::Qwen2, 4, 1, true),
            (Arch::Qwen3, 4, 2, false),
        ] {
            let src = SyntheticModel::new(tiny_config(arch, heads, kv, tied), 3).unwrap();
            let mut m = CpuModel::new(&src).unwrap();
            let toks = [5u32, 17, 3, 99, 42];
            let logits: Vec<Vec<f32>> = toks
                .iter()
                .enumerate()
                .map(|(p, &t)| m.forward(t, p))
                .collect();
            for l in &logits {
                assert_eq!(l.len(), src.config().vocab_size);
                assert!(l.iter().all(|v| v.is_finite()));
                assert!(l.iter().any(|&v| v != l[0]));
            }
            assert_eq!(m.cached_tokens(), 5);
            // rewind to 2 and replay
            let again = m.forward(toks[2], 2);
            assert_eq!(again, logits[2]);
            assert_eq!(m.cached_tokens(), 3);
            m.reset();
            assert_eq!(m.forward(toks[0], 0), logits[0]);
        }
    }

    /// The real SmolLM2 GGUF against a numpy float64 forward pass (HF semantics) written
    /// by scripts/make-quant-vectors.py; and it says " Paris" after "The capital of
    /// France is", which only works with q/k correctly un-permuted.
    #[test]
    fn smollm2_matches_numpy_reference() {
        let Some(path) = crate::engine::default_model_for_tests() else {
            return;
        };
        let src = crate::model::gguf_model::GgufModel::open(&path).unwrap();
        let mut m = CpuModel::new(&src).unwrap();
        let json = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/smollm2_logits.json"),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let ids = |x: &serde_json::Value| -> Vec<usize> {
            x.as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as usize)
                .collect()
        };
        let vals = |x: &serde_json::Value| -> Vec<f64> {
            x.as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_f64().unwrap())
                .collect()
        };
        let mut last = Vec::new();
        for (pos, step) in v["steps"].as_array().unwrap().iter().enumerate() {
            let logits = m.forward(step["token"].as_u64().unwrap() as u32, pos);
            for (key_ids, key_vals) in [("top5_ids", "top5_logits"), ("probe_ids", "probe_logits")]
            {
                for (i, want) in ids(&step[key_ids]).into_iter().zip(vals(&step[key_vals])) {
                    let got = logits[i] as f64;
                    assert!(
                        (got - want).abs() < 2e-3 * want.abs().max(1.0),
                        "pos {pos} id {i}: {got} vs {want}"
                    );
                }
            }
            last = logits;
        }
        let argmax = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .unwrap();
        let vocab = src
            .gguf()
            .get_string_array("tokenizer.ggml.tokens")
            .unwrap()
            .unwrap();
        assert_eq!(vocab[argmax], "\u{120}Paris");
    }

    /// With one layer, a single token at pos 0 attends only to itself: attention output
    /// is V, so logits can be computed independently here.
    #[test]
    fn first_token_matches_hand_computation() {
        let cfg = tiny_config(Arch::Qwen2, 4, 2, false);
        let mut cfg1 = cfg.clone();
        cfg1.num_layers = 1;
        cfg1.attention_bias = true;
        let src = SyntheticModel::new(cfg1.clone(), 9).unwrap();
        let mut m = CpuModel::new(&src).unwrap();
        let got = m.forward(7, 0);

        let ld = |n| src.load(n).unwrap().data;
        let lt = |t| ld(TensorName::Layer(0, t));
        let h = cfg1.hidden_size;
        let mut x = ld(TensorName::TokenEmbedding)[7 * h..8 * h].to_vec();
        let xb = rmsnorm(&x, &lt(LayerTensor::AttnNorm), cfg1.rms_norm_eps);
        let mut v = matmul(&lt(LayerTensor::Wv), &xb);
        add(&mut v, &lt(LayerTensor::Bv));
        // each query head of group g reads kv head g's V
        let hd = cfg1.head_dim;
        let mut att = Vec::new();
        for hq in 0..cfg1.num_heads {
            let kvh = hq / cfg1.group_size();
            att.extend_from_slice(&v[kvh * hd..(kvh + 1) * hd]);
        }
        add(&mut x, &matmul(&lt(LayerTensor::Wo), &att));
        let xb = rmsnorm(&x, &lt(LayerTensor::FfnNorm), cfg1.rms_norm_eps);
        let g = matmul(&lt(LayerTensor::WGate), &xb);
        let u = matmul(&lt(LayerTensor::WUp), &xb);
        let a: Vec<f32> = g
            .iter()
            .zip(&u)
            .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        add(&mut x, &matmul(&lt(LayerTensor::WDown), &a));
        let x = rmsnorm(&x, &ld(TensorName::FinalNorm), cfg1.rms_norm_eps);
        let want = matmul(&ld(TensorName::LmHead), &x);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}
