//! The llama-family decoder (Llama 2/3, SmolLM, TinyLlama, Mistral with its sliding
//! window, Qwen2 with its q/k/v biases, Qwen3 with its q/k norms, Phi-3, Gemma 2 and 3) as
//! a list of ops, top to bottom:
//!
//! ```text
//! x = embed(tokens) * embedding_scale                  // gemma: sqrt(hidden)
//! for each layer:
//!     qkv = Wqkv · rmsnorm(x) + bqkv
//!     o = Wo · attention(rope(headnorm(qkv)), cache)   // headnorm: qwen3's and gemma3's,
//!                                                      // in RoPE's kernel; keys, values
//!                                                      // appended
//!     x += o                  (gemma: x += rmsnorm(o), its post-attention norm)
//!     f = Wdown · (act(Wgate · xn) * (Wup · xn)),  xn = rmsnorm(x)
//!     x += f                  (gemma: x += rmsnorm(f))
//! logits = lm_head · rmsnorm(x)  (rows that sample only; gemma2 soft-caps them)
//! token = sample(logits)
//! ```
//!
//! act is SiLU, or gemma's tanh-GELU. Attention sees each query's sliding window only on
//! the layers that have one, its scores soft-capped where the model says (gemma2).
//! q/k/v and gate/up are each one matrix (stacked by rows), so a llama layer is nine
//! kernels; at decode with quantized weights the two RMSNorms and the activation run
//! inside the matmuls that read them (`ops::matmul_prologue`), so six. Gemma's post-norms
//! add two.

use super::error::ModelError;
use super::graph::Graph;
use super::source::{LayerTensor, TensorName};
use super::weights::{GraphMatrix, WeightProvider};
use crate::ops::matmul::WeightMatrix;
use crate::ops::Op;
use std::collections::BTreeMap;

/// The ops of a built model: the layers (embedding first), then the head.
pub struct BuiltGraph {
    pub layers: Vec<Box<dyn Op>>,
    pub head: Vec<Box<dyn Op>>,
    /// bytes of all weights on the GPU, by how they are stored ("Q4_1", "f16", ...)
    pub weight_bytes: BTreeMap<&'static str, u64>,
}

/// Adds a matrix's bytes to the tally by format.
fn tally(bytes: &mut BTreeMap<&'static str, u64>, m: &WeightMatrix) {
    *bytes.entry(m.format.name()).or_default() += m.bytes();
}

/// One decoder layer's weights as the GPU holds them.
struct LayerWeights {
    attn_norm: wgpu::Buffer,
    /// `[(heads + 2 kv_heads) head_dim, hidden]`
    qkv: WeightMatrix,
    /// q|k|v biases (qwen2)
    qkv_bias: Option<wgpu::Buffer>,
    /// `[q_norm | k_norm]`, `head_dim` each (qwen3)
    qk_norm: Option<wgpu::Buffer>,
    /// `[hidden, heads head_dim]`
    o: WeightMatrix,
    ffn_norm: wgpu::Buffer,
    /// gemma's norms of the attention's and the MLP's outputs
    post_norms: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// `[2 intermediate, hidden]`
    gate_up: WeightMatrix,
    /// `[hidden, intermediate]`
    down: WeightMatrix,
}

impl LayerWeights {
    fn load(g: &Graph, w: &mut dyn WeightProvider, l: usize) -> Result<Self, ModelError> {
        let c = &g.cfg;
        let (h, d, inter) = (c.hidden_size, c.head_dim, c.intermediate_size);
        let (q, kv) = (c.num_heads * d, c.num_kv_heads * d);
        let t = |t| TensorName::Layer(l, t);
        use LayerTensor::*;
        Ok(LayerWeights {
            attn_norm: g.vector(w, &[t(AttnNorm)], &[h])?,
            qkv: g.matrix(w, GraphMatrix::Qkv(l), &[q, kv, kv], h)?,
            qkv_bias: match c.attention_bias {
                true => Some(g.vector(w, &[t(Bq), t(Bk), t(Bv)], &[q, kv, kv])?),
                false => None,
            },
            qk_norm: match c.qk_norm {
                true => Some(g.vector(w, &[t(QNorm), t(KNorm)], &[d, d])?),
                false => None,
            },
            o: g.matrix(w, GraphMatrix::Wo(l), &[h], q)?,
            ffn_norm: g.vector(w, &[t(FfnNorm)], &[h])?,
            post_norms: match c.variant.post_norms {
                true => Some((
                    g.vector(w, &[t(PostAttnNorm)], &[h])?,
                    g.vector(w, &[t(PostFfnNorm)], &[h])?,
                )),
                false => None,
            },
            gate_up: g.matrix(w, GraphMatrix::GateUp(l), &[inter, inter], h)?,
            down: g.matrix(w, GraphMatrix::Down(l), &[h], inter)?,
        })
    }

    /// Adds the layer's bytes to the tally by format (norm weights are f32).
    fn tally(&self, bytes: &mut BTreeMap<&'static str, u64>, hidden: usize) {
        for m in [&self.qkv, &self.o, &self.gate_up, &self.down] {
            tally(bytes, m);
        }
        let head_norms = self.qk_norm.as_ref().map_or(0, |b| b.size());
        let post_norms = self
            .post_norms
            .as_ref()
            .map_or(0, |(a, f)| a.size() + f.size());
        *bytes.entry("f32").or_default() += 2 * hidden as u64 * 4 + head_norms + post_norms;
    }
}

/// Layer `l`: the attention block, then the MLP block, each added to the residual x
/// (through its post-norm where the model has them).
fn layer(g: &Graph, w: &LayerWeights, l: usize) -> Result<Vec<Box<dyn Op>>, ModelError> {
    let a = &g.act;
    let mut ops = vec![
        g.norm_matmul(
            &w.attn_norm,
            &a.x,
            &a.xn,
            &w.qkv,
            w.qkv_bias.as_ref(),
            &a.qkv,
        ),
        g.rope_kv_append(l, w.qk_norm.as_ref()),
        g.attention(l)?,
    ];
    let ffn_in = |g: &Graph| g.norm_matmul(&w.ffn_norm, &a.x, &a.xn, &w.gate_up, None, &a.gate_up);
    match (&w.post_norms, &a.branch) {
        (Some((post_attn, post_ffn)), Some(branch)) => ops.extend([
            g.matmul(&w.o, None, &a.attn, branch),
            g.norm_add(post_attn, branch),
            ffn_in(g),
            g.gated_matmul(&w.down, branch, false),
            g.norm_add(post_ffn, branch),
        ]),
        _ => ops.extend([
            g.matmul_add(&w.o, &a.attn, &a.x),
            ffn_in(g),
            g.gated_matmul(&w.down, &a.x, true),
        ]),
    }
    Ok(ops)
}

/// Loads every weight from `w` and lists the model's ops. `progress(done, total, what)`
/// after the embedding, each layer, the final norm and the head; the browser paints
/// between them.
pub async fn build(
    g: &Graph,
    w: &mut dyn WeightProvider,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<BuiltGraph, ModelError> {
    let c = &g.cfg;
    let (h, vocab) = (c.hidden_size, c.vocab_size);
    let total = 3 + c.num_layers;
    let mut done = 0;
    let mut step = |what: &str| {
        done += 1;
        progress(done, total, what);
    };

    let embedding = g.matrix(w, GraphMatrix::Embedding, &[vocab], h)?;
    let mut weight_bytes = BTreeMap::new();
    tally(&mut weight_bytes, &embedding);
    let mut layers = vec![g.embed(&embedding)];
    step("token_embedding");
    crate::gpu::yield_now().await;

    for l in 0..c.num_layers {
        let lw = LayerWeights::load(g, w, l)?;
        lw.tally(&mut weight_bytes, h);
        layers.extend(layer(g, &lw, l)?);
        step(&format!("layer {l}"));
        crate::gpu::yield_now().await;
    }

    let final_norm = g.vector(w, &[TensorName::FinalNorm], &[h])?;
    step("final_norm");
    crate::gpu::yield_now().await;
    let lm_head = match c.tie_word_embeddings {
        true => embedding,
        false => g.matrix(w, GraphMatrix::LmHead, &[vocab], h)?,
    };
    if !c.tie_word_embeddings {
        tally(&mut weight_bytes, &lm_head);
    }
    let mut head = vec![g.rmsnorm_logit_rows(&final_norm), g.logits(&lm_head)];
    head.extend(c.variant.final_softcap.map(|cap| g.softcap_logits(cap)));
    head.push(g.sample());
    step("lm_head");
    Ok(BuiltGraph {
        layers,
        head,
        weight_bytes,
    })
}
