//! What every architecture's graph is wired between: the step's parameters, the
//! activation buffers (sized for the largest chunk), the paged KV pool with its per-step
//! metadata, and one constructor per op so that an architecture file lists its layer as
//! a sequence of named steps (see `model::llama`).

use super::error::ModelError;
use super::options::GpuModelOptions;
use super::weights::{GraphMatrix, WeightProvider};
use crate::gpu::{GpuContext, StorageFormat};
use crate::kv::{KvLayout, KvPool};
use crate::model::config::ModelConfig;
use crate::model::config::{local_rope_inv_freq, rope_attention_factor, rope_inv_freq};
use crate::model::source::TensorName;
use crate::ops::decode_attention::{AttentionIo, AttentionScratch, DecodeAttention};
use crate::ops::elementwise::{SiluMul, SoftcapLogits};
use crate::ops::embed::Embed;
use crate::ops::matmul::{Matmul, MatmulMode, WeightMatrix};
use crate::ops::matmul_prologue::{MatmulInputs, Prologue, PrologueMatmul};
use crate::ops::rmsnorm::{NormRows, RmsNorm};
use crate::ops::rope_kv::{HeadNorms, RopeKvAppend};
use crate::ops::sample::Sample;
use crate::ops::{Op, OutRow, StepParams};
use std::sync::Arc;

/// The activation rows of one forward pass, f32, `c` = the largest chunk of token rows.
pub struct Activations {
    /// `[c]` token ids in; the sampled ids out (one per logits row)
    pub tokens: wgpu::Buffer,
    /// `[c, hidden]` the residual stream
    pub x: wgpu::Buffer,
    /// `[c, hidden]` a normalised copy of x
    pub xn: wgpu::Buffer,
    /// `[c, (heads + 2 kv_heads) head_dim]` queries, keys and values
    pub qkv: wgpu::Buffer,
    /// `[c, heads head_dim]` attention outputs
    pub attn: wgpu::Buffer,
    /// `[c, 2 intermediate]` gate and up projections
    pub gate_up: wgpu::Buffer,
    /// `[c, intermediate]` act(gate) * up
    pub ffn_hidden: wgpu::Buffer,
    /// `[c, hidden]` a block's output before its post-norm adds it to x (gemma), where
    /// the model has post-norms
    pub branch: Option<wgpu::Buffer>,
    /// `[rows with logits, hidden]` the final norm of those rows
    pub x_last: wgpu::Buffer,
    /// `[rows with logits, vocab]`
    pub logits: wgpu::Buffer,
    /// `[rows with logits]` each one's source row and sampling settings (`ops::OutRow`)
    pub out_rows: wgpu::Buffer,
}

/// Everything a graph's ops are bound to.
pub struct Graph {
    pub gpu: Arc<GpuContext>,
    pub cfg: ModelConfig,
    /// how weight matrices are stored
    pub weights: StorageFormat,
    /// the per-step parameters (`ops::StepParams`)
    pub step: wgpu::Buffer,
    pub act: Activations,
    pub kv_layout: KvLayout,
    pub pool: KvPool,
    /// per-step query rows and block tables, read by RoPE/KV-append and attention
    pub meta: wgpu::Buffer,
    /// u32 offset of the block tables in `meta`
    pub table_base: u32,
    pub attention: Arc<AttentionScratch>,
    rope_inv_freq: wgpu::Buffer,
    /// the windowed layers' own RoPE frequencies (gemma3's local base)
    rope_inv_freq_local: Option<wgpu::Buffer>,
    /// bound where an op takes an optional buffer it does not use
    no_bias: wgpu::Buffer,
    /// where the RMSNorms into `act.xn` and SiLU·mul into `act.ffn_hidden` also write
    /// their output as 8-bit blocks for the integer-dot matmuls that read it (quantized
    /// weights on a `q8_dot` context; `ops::matmul`)
    x_blocks: Option<wgpu::Buffer>,
}

impl Graph {
    /// Allocates the activations for chunks of `options.max_chunk` rows (at most
    /// `out_rows` of them with logits), a KV pool of `pool_blocks` blocks for
    /// `options.context` positions per sequence, and the attention's scratch.
    pub fn new(
        gpu: Arc<GpuContext>,
        cfg: &ModelConfig,
        options: &GpuModelOptions,
        pool_blocks: usize,
        out_rows: usize,
    ) -> Result<Graph, ModelError> {
        let kv_layout = options.kv_layout(cfg);
        let context = options.context;
        let (h, inter, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_heads, cfg.num_kv_heads);
        let qkv_width = (nh + 2 * nkv) * d;
        let c = options.max_chunk;
        let f32b = 4u64;
        let rows = |n: usize, width: usize| (n * width) as u64 * f32b;
        let step = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: std::mem::size_of::<StepParams>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let act = Activations {
            tokens: gpu.storage("tokens", rows(c, 1))?,
            x: gpu.storage("x", rows(c, h))?,
            xn: gpu.storage("xn", rows(c, h))?,
            qkv: gpu.storage("qkv", rows(c, qkv_width))?,
            attn: gpu.storage("attn", rows(c, nh * d))?,
            gate_up: gpu.storage("gate_up", rows(c, 2 * inter))?,
            ffn_hidden: gpu.storage("ffn_hidden", rows(c, inter))?,
            branch: match cfg.variant.post_norms {
                true => Some(gpu.storage("branch", rows(c, h))?),
                false => None,
            },
            x_last: gpu.storage("x_last", rows(out_rows, h))?,
            logits: gpu.storage("logits", rows(out_rows, cfg.vocab_size))?,
            out_rows: gpu.storage(
                "out_rows",
                (out_rows * std::mem::size_of::<OutRow>()) as u64,
            )?,
        };
        let pool = KvPool::new(&gpu, kv_layout, pool_blocks)?;
        // every token row of a step has a row of metadata; a prefill chunk's rows share
        // one block table, so c tables of a whole context always fit
        let table_words = c * context.div_ceil(kv_layout.block_size);
        let meta = gpu.storage("step_meta", ((4 * c + table_words + 4) * 4) as u64)?;
        let x_blocks_on = options.quantized && gpu.features.q8_dot;
        let attention = Arc::new(
            AttentionScratch::new(
                &gpu,
                nh,
                &kv_layout,
                cfg.attention_scale(),
                c,
                context,
                qkv_width,
                nh * d,
            )?
            .with_output_blocks(x_blocks_on),
        );
        let upload = |label, freq: Vec<f32>| gpu.storage_init(label, bytemuck::cast_slice(&freq));
        let rope_inv_freq = upload("rope_inv_freq", rope_inv_freq(cfg, context))?;
        let rope_inv_freq_local = match local_rope_inv_freq(cfg) {
            Some(freq) => Some(upload("rope_inv_freq_local", freq)?),
            None => None,
        };
        let no_bias = gpu.storage("no_bias", 16)?;
        let widest = cfg.hidden_size.max(cfg.intermediate_size);
        let x_blocks = match x_blocks_on {
            true => Some(crate::ops::matmul::q8_scratch(&gpu, widest)?),
            false => None,
        };
        Ok(Graph {
            cfg: cfg.clone(),
            weights: options.weights,
            step,
            act,
            kv_layout,
            pool,
            meta,
            table_base: 4 * c as u32,
            attention,
            rope_inv_freq,
            rope_inv_freq_local,
            no_bias,
            x_blocks,
            gpu,
        })
    }

    /// Weight matrix `m` stacked from tensors of `parts` rows each, `cols` wide.
    pub fn matrix(
        &self,
        w: &mut dyn WeightProvider,
        m: GraphMatrix,
        parts: &[usize],
        cols: usize,
    ) -> Result<WeightMatrix, ModelError> {
        m.upload(w, &self.gpu, parts, cols, self.weights)
    }

    /// A vector of `n` weights (norm weights, biases) on the GPU, f32.
    pub fn vector(
        &self,
        w: &mut dyn WeightProvider,
        names: &[TensorName],
        n: &[usize],
    ) -> Result<wgpu::Buffer, ModelError> {
        let mut v = Vec::new();
        for (&name, &len) in names.iter().zip(n) {
            v.extend(w.vector(name, len)?);
        }
        Ok(self
            .gpu
            .storage_init(&names[0].to_string(), bytemuck::cast_slice(&v))?)
    }

    /// x = table[token] for every token row (times gemma's embedding scale).
    pub fn embed(&self, table: &WeightMatrix) -> Box<dyn Op> {
        let a = &self.act;
        let scale = self.cfg.variant.embedding_scale.unwrap_or(1.0);
        Box::new(Embed::scaled(
            &self.gpu, &self.step, table, &a.tokens, &a.x, scale,
        ))
    }

    /// Where the op writing `activation` also stores it as 8-bit blocks (and the matmuls
    /// reading it read those): `act.xn` (RMSNorm), `act.ffn_hidden` (SiLU·mul) and
    /// `act.attn` (attention's merge), on a graph with `x_blocks`, where their rows are
    /// whole 32-value blocks (each head's, for attention).
    fn blocks_of(&self, activation: &wgpu::Buffer) -> Option<&wgpu::Buffer> {
        let (a, c) = (&self.act, &self.cfg);
        let whole = |n: usize| n.is_multiple_of(32);
        let written = (*activation == a.xn && whole(c.hidden_size))
            || (*activation == a.ffn_hidden && whole(c.intermediate_size))
            || (*activation == a.attn && self.attention.output_blocks);
        self.x_blocks.as_ref().filter(|_| written)
    }

    /// y = x / rms(x) * weight, every row.
    pub fn rmsnorm(
        &self,
        weight: &wgpu::Buffer,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Box<dyn Op> {
        let (h, eps) = (self.cfg.hidden_size, self.cfg.rms_norm_eps);
        let blocks = self.blocks_of(y);
        Box::new(RmsNorm::new_with_x_blocks(
            &self.gpu,
            &self.step,
            h,
            eps,
            weight,
            x,
            y,
            blocks,
            NormRows::All,
        ))
    }

    /// The final norm of the rows that get logits only (into `act.x_last`).
    pub fn rmsnorm_logit_rows(&self, weight: &wgpu::Buffer) -> Box<dyn Op> {
        let (h, eps, a) = (self.cfg.hidden_size, self.cfg.rms_norm_eps, &self.act);
        Box::new(RmsNorm::new(
            &self.gpu,
            &self.step,
            h,
            eps,
            weight,
            &a.x,
            &a.x_last,
            NormRows::Logits(&a.out_rows),
        ))
    }

    /// y = x W^T (+ bias).
    pub fn matmul(
        &self,
        w: &WeightMatrix,
        bias: Option<&wgpu::Buffer>,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Box<dyn Op> {
        Box::new(self.matmul_op(w, bias, x, y, MatmulMode::default()))
    }

    /// y (+)= rmsnorm(x) W^T (+ bias), RMSNorm by `norm` into `xn` where it runs on its own
    /// (`ops::matmul_prologue`).
    pub fn norm_matmul(
        &self,
        norm: &wgpu::Buffer,
        x: &wgpu::Buffer,
        xn: &wgpu::Buffer,
        w: &WeightMatrix,
        bias: Option<&wgpu::Buffer>,
        y: &wgpu::Buffer,
    ) -> Box<dyn Op> {
        let eps = self.cfg.rms_norm_eps;
        let prologue = Prologue::RmsNorm { weight: norm, eps };
        let first = self.rmsnorm(norm, x, xn);
        self.prologue_matmul(prologue, x, first, w, bias, xn, y, MatmulMode::default())
    }

    /// y (+)= act(gate) * up W^T, from `act.gate_up` (added to y with `accumulate`: the
    /// residual add fused); act(gate) * up into `act.ffn_hidden` where it runs on its own
    /// (`ops::matmul_prologue`).
    pub fn gated_matmul(
        &self,
        w: &WeightMatrix,
        y: &wgpu::Buffer,
        accumulate: bool,
    ) -> Box<dyn Op> {
        let a = &self.act;
        let mode = MatmulMode {
            accumulate,
            ..MatmulMode::default()
        };
        let first = self.gated_activation();
        let src = &a.gate_up;
        let prologue = Prologue::Gated(self.cfg.variant.activation);
        self.prologue_matmul(prologue, src, first, w, None, &a.ffn_hidden, y, mode)
    }

    /// x += rmsnorm(branch) (gemma's post-norms: each block's output normalised before
    /// the residual add).
    pub fn norm_add(&self, weight: &wgpu::Buffer, branch: &wgpu::Buffer) -> Box<dyn Op> {
        let (h, eps) = (self.cfg.hidden_size, self.cfg.rms_norm_eps);
        Box::new(RmsNorm::new(
            &self.gpu,
            &self.step,
            h,
            eps,
            weight,
            branch,
            &self.act.x,
            NormRows::AddAll,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn prologue_matmul(
        &self,
        prologue: Prologue<'_>,
        src: &wgpu::Buffer,
        first: Box<dyn Op>,
        w: &WeightMatrix,
        bias: Option<&wgpu::Buffer>,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        mode: MatmulMode,
    ) -> Box<dyn Op> {
        let matmul = self.matmul_op(w, bias, x, y, mode);
        let inputs = MatmulInputs {
            w,
            bias,
            y,
            mode,
            dummy: &self.no_bias,
        };
        Box::new(PrologueMatmul::new(
            &self.gpu, &self.step, prologue, src, first, matmul, &inputs,
        ))
    }

    /// y += x W^T (the residual add fused).
    pub fn matmul_add(&self, w: &WeightMatrix, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Box<dyn Op> {
        let mode = MatmulMode {
            accumulate: true,
            ..MatmulMode::default()
        };
        Box::new(self.matmul_op(w, None, x, y, mode))
    }

    /// logits = cap * tanh(logits / cap) (gemma2's final soft-capping), in place.
    pub fn softcap_logits(&self, cap: f32) -> Box<dyn Op> {
        let (a, vocab) = (&self.act, self.cfg.vocab_size);
        Box::new(SoftcapLogits::new(
            &self.gpu, &self.step, vocab, cap, &a.logits,
        ))
    }

    /// logits = x_last W^T for the rows that get logits.
    pub fn logits(&self, w: &WeightMatrix) -> Box<dyn Op> {
        let mode = MatmulMode {
            accumulate: false,
            logits_rows: true,
        };
        let a = &self.act;
        Box::new(self.matmul_op(w, None, &a.x_last, &a.logits, mode))
    }

    /// The matmul, reading x's 8-bit blocks where an earlier kernel writes them.
    fn matmul_op(
        &self,
        w: &WeightMatrix,
        bias: Option<&wgpu::Buffer>,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        mode: MatmulMode,
    ) -> Matmul {
        let x_blocks = self.blocks_of(x);
        Matmul::new_with_x_blocks(
            &self.gpu,
            &self.step,
            w,
            bias,
            x,
            x_blocks,
            y,
            mode,
            &self.no_bias,
        )
    }

    /// RoPE on the queries and keys in `act.qkv` (each head RMS-normalised first by
    /// `head_norms` = `[q_norm | k_norm]`, where given), then keys and values appended to
    /// layer `layer`'s blocks of the KV cache.
    pub fn rope_kv_append(&self, layer: usize, head_norms: Option<&wgpu::Buffer>) -> Box<dyn Op> {
        let c = &self.cfg;
        Box::new(RopeKvAppend::new(
            &self.gpu,
            &self.step,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim,
            &self.act.qkv,
            match (&self.rope_inv_freq_local, c.local_rope(layer)) {
                (Some(local), true) => local,
                _ => &self.rope_inv_freq,
            },
            &self.meta,
            self.table_base,
            &self.kv_layout,
            self.pool.blocks_per_binding,
            &self.pool.layers[layer],
            rope_attention_factor(c),
            head_norms.map(|weights| HeadNorms {
                weights,
                eps: c.rms_norm_eps,
            }),
        ))
    }

    /// attn = softmax(q K^T * scale) V over each row's context in layer `layer`'s
    /// cache, every KV head read once for its group of query heads.
    pub fn attention(&self, layer: usize) -> Result<Box<dyn Op>, ModelError> {
        let io = AttentionIo {
            meta: &self.meta,
            q: &self.act.qkv,
            out: &self.act.attn,
            out_blocks: self.blocks_of(&self.act.attn),
            pool: &self.pool.layers[layer],
            window: self.cfg.layer_window(layer),
            softcap: self.cfg.variant.attn_softcap,
        };
        Ok(Box::new(DecodeAttention::new(
            &self.gpu,
            &self.attention,
            self.pool.blocks_per_binding,
            &io,
        )?))
    }

    /// h = act(gate) * up (also as 8-bit blocks where the down matmul reads those).
    pub fn gated_activation(&self) -> Box<dyn Op> {
        let a = &self.act;
        Box::new(SiluMul::gated(
            &self.gpu,
            &self.step,
            self.cfg.variant.activation,
            self.cfg.intermediate_size,
            &a.gate_up,
            &a.ffn_hidden,
            self.blocks_of(&a.ffn_hidden),
        ))
    }

    /// The next token of every logits row, drawn with that row's settings, into
    /// `act.tokens`.
    pub fn sample(&self) -> Box<dyn Op> {
        let a = &self.act;
        Box::new(Sample::new(
            &self.gpu,
            &self.step,
            self.cfg.vocab_size,
            &a.logits,
            &a.tokens,
            &a.out_rows,
        ))
    }
}
