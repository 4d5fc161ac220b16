//! The llama-family forward pass on the GPU: weights uploaded once, activations and the KV
//! cache allocated once, every kernel bound once; a step records them into one compute
//! pass, submits once and reads back only the sampled token id.
//!
//! Per layer (x is the residual stream, [T, hidden]):
//!   xn = rmsnorm(x) ; qkv = xn Wqkv^T (+b) ; rope(q, k), append k, v to the cache
//!   attn = attention(q, cache) ; x += attn Wo^T
//!   xn = rmsnorm(x) ; gu = xn [Wgate|Wup]^T ; h = silu(g) * u ; x += h Wdown^T
//! Head: rmsnorm(last row) -> lm_head -> sample.

mod report;
pub use report::{softmax_in_place, AttentionProbe, KernelTime, StepProbe, StepReport};

use super::source::{LayerTensor, LoadError, TensorName, WeightSource};
use super::ModelConfig;
use crate::gpu::{GpuContext, GpuError, ReadbackBuffer, StorageFormat};
use crate::kv::{KvLayout, KvPool, QueryRow, StepMeta};
use crate::ops::decode_attention::{AttentionIo, AttentionScratch, DecodeAttention};
use crate::ops::elementwise::SiluMul;
use crate::ops::embed::Embed;
use crate::ops::matmul::{Matmul, MatmulMode, WeightMatrix};
use crate::ops::rmsnorm::{NormRows, RmsNorm};
use crate::ops::rope_kv::RopeKvAppend;
use crate::ops::sample::{Sample, SamplingParams};
use crate::ops::{Cost, Op, OutRow, StepParams, StepShape};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("{0}")]
    Invalid(String),
}

/// Storage choices and sizes for a loaded model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuModelOptions {
    /// how weight matrices are stored (f16 halves the bytes every token reads)
    pub weights: StorageFormat,
    /// how the KV cache is stored
    pub kv: StorageFormat,
    /// positions the KV cache holds
    pub context: usize,
    /// most tokens in one forward pass (longer prompts are prefilled in chunks)
    pub max_chunk: usize,
    /// positions per block of the paged KV cache
    pub kv_block_size: usize,
}

impl Default for GpuModelOptions {
    fn default() -> Self {
        GpuModelOptions {
            weights: StorageFormat::F16,
            kv: StorageFormat::F16,
            context: 4096,
            max_chunk: 256,
            kv_block_size: 16,
        }
    }
}

/// How the KV cache is shared among sequences.
#[derive(Clone, Copy, Debug)]
enum KvCapacity {
    /// `n` sequences of `options.context` positions, each owning a fixed run of blocks
    /// (generate, chat, benchmarks)
    Sequences(usize),
    /// a pool of `blocks` blocks that the caller hands out step by step (the serving
    /// engine), at most `max_batch` sequences sampled per step
    Paged { blocks: usize, max_batch: usize },
}

/// One sequence's share of a [`GpuModel::forward`] step.
#[derive(Clone, Copy, Debug)]
pub struct SequencePart<'a> {
    /// ids at positions `pos0..` (a prefill chunk, or the one token to decode)
    pub tokens: &'a [u32],
    /// positions 0..pos0 are already in the sequence's blocks
    pub pos0: usize,
    /// the sequence's blocks in order, covering at least positions 0..pos0 + tokens.len()
    pub table: &'a [u32],
    /// draw the token after the last one with these settings, as the sequence's
    /// `counter`-th draw
    pub sample: Option<(SamplingParams, u32)>,
}

/// Where a forward pass takes its input tokens from.
pub enum StepInput<'a> {
    /// these ids (a prompt chunk)
    Tokens(&'a [u32]),
    /// the id the previous step sampled, already on the GPU
    Sampled,
}

/// Most decode steps submitted back to back before one readback.
pub const MAX_STEPS_PER_READBACK: usize = 32;

pub struct GpuModel {
    pub gpu: Arc<GpuContext>,
    pub config: ModelConfig,
    pub options: GpuModelOptions,
    step: wgpu::Buffer,
    tokens: wgpu::Buffer,
    logits: wgpu::Buffer,
    layers: Vec<Box<dyn Op>>,
    head: Vec<Box<dyn Op>>,
    /// per-step query rows and block tables, read by RoPE/KV-append and attention
    meta: wgpu::Buffer,
    attention: Arc<AttentionScratch>,
    /// each sequence's block table: sequence s owns blocks s * n .. (s + 1) * n of the
    /// pool, n = ceil(context / block size) (empty for a paged model: see `forward`)
    block_tables: Vec<Vec<u32>>,
    /// sequences the KV cache holds side by side (1 unless built for batched decode; 0
    /// for a paged model)
    sequences: usize,
    /// most rows that get logits in one step
    max_out_rows: usize,
    /// per logits row: its source row and sampling settings (`ops::OutRow`)
    out_rows: wgpu::Buffer,
    pub kv_layout: KvLayout,
    pool: KvPool,
    readback: ReadbackBuffer,
    /// one slot per decode step of `decode_steps`
    readback_ring: ReadbackBuffer,
    /// one slot per row of a batched decode step
    batch_readback: ReadbackBuffer,
    /// the fused q|k|v activation rows (the attention probe copies queries out of it)
    qkv: wgpu::Buffer,
    /// timestamp queries for reported steps; None without timestamps
    clock: Option<report::StepClock>,
    /// bytes of all weights on the GPU
    pub weight_bytes: u64,
    /// bytes of the whole KV cache
    pub kv_cache_bytes: u64,
}

/// Reads a canonical tensor and checks its element count.
fn load(src: &dyn WeightSource, name: TensorName, numel: usize) -> Result<Vec<f32>, ModelError> {
    let t = src.load(name)?;
    if t.data.len() != numel {
        return Err(LoadError::new(
            src.path(),
            format!(
                "{name}: expected {numel} elements, found {} (shape {:?})",
                t.data.len(),
                t.shape
            ),
        )
        .into());
    }
    Ok(t.data)
}

/// A weight matrix of the model graph as the GPU holds it (q/k/v and gate/up fused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GraphMatrix {
    /// `[vocab, hidden]`
    Embedding,
    /// `[(heads + 2 kv_heads) head_dim, hidden]`: Wq, Wk, Wv stacked
    Qkv(usize),
    /// `[hidden, heads head_dim]`
    Wo(usize),
    /// `[2 intermediate, hidden]`: Wgate, Wup stacked
    GateUp(usize),
    /// `[hidden, intermediate]`
    Down(usize),
    /// `[vocab, hidden]` (untied heads only)
    LmHead,
}

impl GraphMatrix {
    fn label(self) -> String {
        match self {
            GraphMatrix::Embedding => "token_embedding".into(),
            GraphMatrix::Qkv(l) => format!("layers.{l}.wqkv"),
            GraphMatrix::Wo(l) => format!("layers.{l}.wo"),
            GraphMatrix::GateUp(l) => format!("layers.{l}.w_gate_up"),
            GraphMatrix::Down(l) => format!("layers.{l}.w_down"),
            GraphMatrix::LmHead => "lm_head".into(),
        }
    }

    /// The canonical tensors stacked (by rows) into this matrix.
    fn tensors(self) -> Vec<TensorName> {
        use LayerTensor::*;
        let lt = |l, ts: &[LayerTensor]| ts.iter().map(|&t| TensorName::Layer(l, t)).collect();
        match self {
            GraphMatrix::Embedding => vec![TensorName::TokenEmbedding],
            GraphMatrix::Qkv(l) => lt(l, &[Wq, Wk, Wv]),
            GraphMatrix::Wo(l) => lt(l, &[Wo]),
            GraphMatrix::GateUp(l) => lt(l, &[WGate, WUp]),
            GraphMatrix::Down(l) => lt(l, &[WDown]),
            GraphMatrix::LmHead => vec![TensorName::LmHead],
        }
    }

    /// A small number per matrix, for seeds.
    fn index(self) -> u32 {
        match self {
            GraphMatrix::Embedding => 0,
            GraphMatrix::LmHead => 1,
            GraphMatrix::Qkv(l) => 2 + 4 * l as u32,
            GraphMatrix::Wo(l) => 3 + 4 * l as u32,
            GraphMatrix::GateUp(l) => 4 + 4 * l as u32,
            GraphMatrix::Down(l) => 5 + 4 * l as u32,
        }
    }
}

/// Where the graph builder takes its weights from: a model file (uploaded from the host)
/// or pseudo-random values made on the GPU.
trait WeightProvider {
    /// Where the weights come from, for messages.
    fn name(&self) -> String;
    /// Matrix `m`, `[rows, cols]`, stored as `format`.
    fn matrix(
        &mut self,
        gpu: &GpuContext,
        m: GraphMatrix,
        rows: usize,
        cols: usize,
        format: StorageFormat,
    ) -> Result<WeightMatrix, ModelError>;
    /// A vector of `n` values: norm weights and q/k/v biases.
    fn vector(&mut self, name: TensorName, n: usize) -> Result<Vec<f32>, ModelError>;
}

/// The weights of a model file.
struct FileWeights<'a>(&'a dyn WeightSource);

impl WeightProvider for FileWeights<'_> {
    fn name(&self) -> String {
        self.0.path().to_string()
    }

    fn matrix(
        &mut self,
        gpu: &GpuContext,
        m: GraphMatrix,
        rows: usize,
        cols: usize,
        format: StorageFormat,
    ) -> Result<WeightMatrix, ModelError> {
        let c = self.0.config();
        let kv = c.num_kv_heads * c.head_dim;
        // the stacked tensors' rows: q heads | k heads | v heads, and gate | up
        let parts = match m {
            GraphMatrix::Qkv(_) => vec![c.num_heads * c.head_dim, kv, kv],
            GraphMatrix::GateUp(_) => vec![c.intermediate_size; 2],
            _ => vec![rows],
        };
        debug_assert_eq!(parts.iter().sum::<usize>(), rows, "{m:?}");
        let mut data = Vec::with_capacity(rows * cols);
        for (name, n) in m.tensors().into_iter().zip(parts) {
            data.extend(load(self.0, name, n * cols)?);
        }
        Ok(WeightMatrix::upload(
            gpu,
            &m.label(),
            &data,
            rows,
            cols,
            format,
        )?)
    }

    fn vector(&mut self, name: TensorName, n: usize) -> Result<Vec<f32>, ModelError> {
        load(self.0, name, n)
    }
}

/// Pseudo-random weights made on the GPU: matrices uniform in ±1/sqrt(cols) (so every
/// projection shrinks the activations' scale a little and nothing overflows), norm
/// weights 1, biases 0.
struct RandomWeights {
    seed: u32,
}

impl WeightProvider for RandomWeights {
    fn name(&self) -> String {
        format!("synthetic(seed {})", self.seed)
    }

    fn matrix(
        &mut self,
        gpu: &GpuContext,
        m: GraphMatrix,
        rows: usize,
        cols: usize,
        format: StorageFormat,
    ) -> Result<WeightMatrix, ModelError> {
        let seed = (self.seed ^ 0x5eed_5eed).wrapping_mul(0x2545_f491) ^ m.index();
        Ok(WeightMatrix::random(
            gpu,
            &m.label(),
            rows,
            cols,
            format,
            seed,
            1.0 / (cols as f32).sqrt(),
        )?)
    }

    fn vector(&mut self, name: TensorName, n: usize) -> Result<Vec<f32>, ModelError> {
        let norm = matches!(
            name,
            TensorName::FinalNorm
                | TensorName::Layer(_, LayerTensor::AttnNorm | LayerTensor::FfnNorm)
        );
        Ok(vec![if norm { 1.0 } else { 0.0 }; n])
    }
}

impl GpuModel {
    /// Uploads every weight of `src` and builds the kernels. `progress(done, total, what)`
    /// is called after each tensor.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(
        gpu: Arc<GpuContext>,
        src: &dyn WeightSource,
        options: GpuModelOptions,
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<GpuModel, ModelError> {
        let cfg = src.config().clone();
        let kv = KvCapacity::Sequences(1);
        crate::gpu::block_on(Self::build(
            gpu,
            cfg,
            options,
            kv,
            &mut FileWeights(src),
            progress,
        ))
    }

    /// As `load`, with a KV pool of `blocks` blocks that the caller hands out to
    /// sequences step by step (see [`forward`](Self::forward)), and at most `max_batch`
    /// sequences sampled per step (at most `options.max_chunk`). Async: in the browser the
    /// page paints (and the progress shows) between layers; natively, `gpu::block_on` it.
    pub async fn load_paged(
        gpu: Arc<GpuContext>,
        src: &dyn WeightSource,
        options: GpuModelOptions,
        blocks: usize,
        max_batch: usize,
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<GpuModel, ModelError> {
        let cfg = src.config().clone();
        let kv = KvCapacity::Paged { blocks, max_batch };
        Self::build(gpu, cfg, options, kv, &mut FileWeights(src), progress).await
    }

    /// The same model graph as `load`, for `config`, with pseudo-random weights made on the
    /// GPU (nothing is uploaded but the norm weights): matrices uniform in ±1/sqrt(in
    /// features), norm weights 1, biases 0; the same for the same seed. The KV cache holds
    /// `sequences` sequences of `options.context` positions each, side by side, for
    /// [`decode_batch`](Self::decode_batch); `options.max_chunk` must be at least the
    /// batch. Out-of-memory and other device errors while building come back as errors.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn synthetic(
        gpu: Arc<GpuContext>,
        config: ModelConfig,
        options: GpuModelOptions,
        sequences: usize,
        seed: u32,
    ) -> Result<GpuModel, ModelError> {
        let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let built = crate::gpu::block_on(Self::build(
            gpu.clone(),
            config,
            options,
            KvCapacity::Sequences(sequences),
            &mut RandomWeights { seed },
            &mut |_, _, _| {},
        ));
        let invalid = crate::gpu::block_on(invalid.pop());
        let oom = crate::gpu::block_on(oom.pop());
        if let Some(e) = oom.or(invalid) {
            return Err(ModelError::Gpu(GpuError::Other(format!(
                "building a synthetic model: {e}"
            ))));
        }
        let model = built?;
        gpu.wait()?;
        Ok(model)
    }

    /// Builds the graph (weights from `weights`, activations, KV cache as `kv` says,
    /// kernels).
    async fn build(
        gpu: Arc<GpuContext>,
        cfg: ModelConfig,
        options: GpuModelOptions,
        kv: KvCapacity,
        weights: &mut dyn WeightProvider,
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<GpuModel, ModelError> {
        let source = weights.name();
        cfg.validate(&source).map_err(ModelError::Invalid)?;
        if !cfg.head_dim.is_multiple_of(8) || cfg.head_dim > 256 {
            return Err(ModelError::Invalid(format!(
                "{}: head_dim {} is not supported (multiples of 8 up to 256)",
                source, cfg.head_dim
            )));
        }
        if options.context == 0 || options.max_chunk == 0 || options.kv_block_size == 0 {
            return Err(ModelError::Invalid(
                "context, chunk size and KV block size must be > 0".into(),
            ));
        }
        // sequences with fixed block runs, pool blocks, most logits rows per step
        let n_blocks = options.context.div_ceil(options.kv_block_size);
        let (sequences, pool_blocks, out_rows) = match kv {
            KvCapacity::Sequences(n) => (n, n * n_blocks, n),
            KvCapacity::Paged { blocks, max_batch } => (0, blocks, max_batch),
        };
        if pool_blocks == 0 || out_rows == 0 {
            return Err(ModelError::Invalid(
                "the KV cache must hold at least one sequence".into(),
            ));
        }
        let (h, inter, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_heads, cfg.num_kv_heads);
        let qkv_rows = (nh + 2 * nkv) * d;
        let c = options.max_chunk;
        // rows that get logits in one step: one per sequence of a batched step
        let out_rows = out_rows.min(c);
        let f32b = 4u64;
        let total = 3 + cfg.num_layers;
        let mut done = 0;

        // activations, sized for the largest chunk
        let step = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: std::mem::size_of::<StepParams>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let tokens = gpu.storage("tokens", (c as u64) * 4)?;
        let x = gpu.storage("x", (c * h) as u64 * f32b)?;
        let xn = gpu.storage("xn", (c * h) as u64 * f32b)?;
        let qkv = gpu.storage("qkv", (c * qkv_rows) as u64 * f32b)?;
        let attn = gpu.storage("attn", (c * nh * d) as u64 * f32b)?;
        let gu = gpu.storage("gate_up", (c * 2 * inter) as u64 * f32b)?;
        let hbuf = gpu.storage("ffn_hidden", (c * inter) as u64 * f32b)?;
        let x_last = gpu.storage("x_last", (out_rows * h) as u64 * f32b)?;
        let logits = gpu.storage("logits", (out_rows * cfg.vocab_size) as u64 * f32b)?;
        let out_rows_buf = gpu.storage(
            "out_rows",
            (out_rows * std::mem::size_of::<OutRow>()) as u64,
        )?;
        let dummy = gpu.storage("no_bias", 16)?;
        let inv_freq = gpu.storage_init(
            "rope_inv_freq",
            bytemuck::cast_slice(&super::config::llama3_rope_inv_freq(&cfg)),
        )?;

        let wf = options.weights;
        let embed = weights.matrix(&gpu, GraphMatrix::Embedding, cfg.vocab_size, h, wf)?;
        done += 1;
        progress(done, total, "token_embedding");
        crate::gpu::yield_now().await;
        let mut weight_bytes = embed.bytes();

        let mut layers: Vec<Box<dyn Op>> =
            vec![Box::new(Embed::new(&gpu, &step, &embed, &tokens, &x))];
        let kv_layout = KvLayout {
            layers: cfg.num_layers,
            kv_heads: nkv,
            key_dim: d,
            value_dim: d,
            block_size: options.kv_block_size,
            format: options.kv,
            latent: false,
        };
        // sequence s owns blocks s * n_blocks .. (s + 1) * n_blocks of the pool
        let pool = KvPool::new(&gpu, kv_layout, pool_blocks)?;
        let kv_cache_bytes = pool.bytes();
        let block_tables: Vec<Vec<u32>> = (0..sequences)
            .map(|s| ((s * n_blocks) as u32..((s + 1) * n_blocks) as u32).collect())
            .collect();
        // every sequence of a step has a row; a prefill chunk's rows share one table
        let table_words = c * n_blocks;
        let meta = gpu.storage("step_meta", ((4 * c + table_words + 4) * 4) as u64)?;
        let table_base = 4 * c as u32;
        let attention = Arc::new(AttentionScratch::new(
            &gpu,
            nh,
            &kv_layout,
            1.0 / (d as f32).sqrt(),
            c,
            options.context,
            qkv_rows,
            nh * d,
        )?);
        for l in 0..cfg.num_layers {
            let lt = |t| TensorName::Layer(l, t);
            let mut norm = |t, what: &str| -> Result<wgpu::Buffer, ModelError> {
                Ok(gpu.storage_init(
                    &format!("layers.{l}.{what}"),
                    bytemuck::cast_slice(&weights.vector(lt(t), h)?),
                )?)
            };
            let attn_norm = norm(LayerTensor::AttnNorm, "attn_norm")?;
            let ffn_norm = norm(LayerTensor::FfnNorm, "ffn_norm")?;
            let wqkv = weights.matrix(&gpu, GraphMatrix::Qkv(l), qkv_rows, h, wf)?;
            let bqkv = if cfg.attention_bias {
                let mut b = weights.vector(lt(LayerTensor::Bq), nh * d)?;
                b.extend(weights.vector(lt(LayerTensor::Bk), nkv * d)?);
                b.extend(weights.vector(lt(LayerTensor::Bv), nkv * d)?);
                Some(gpu.storage_init(&format!("layers.{l}.bqkv"), bytemuck::cast_slice(&b))?)
            } else {
                None
            };
            let wo = weights.matrix(&gpu, GraphMatrix::Wo(l), h, nh * d, wf)?;
            let wgu = weights.matrix(&gpu, GraphMatrix::GateUp(l), 2 * inter, h, wf)?;
            let wdown = weights.matrix(&gpu, GraphMatrix::Down(l), h, inter, wf)?;
            weight_bytes +=
                wqkv.bytes() + wo.bytes() + wgu.bytes() + wdown.bytes() + 2 * h as u64 * f32b;
            let layer_pool = &pool.layers[l];

            let plain = MatmulMode::default();
            let residual = MatmulMode {
                accumulate: true,
                ..plain
            };
            layers.push(Box::new(RmsNorm::new(
                &gpu,
                &step,
                h,
                cfg.rms_norm_eps,
                &attn_norm,
                &x,
                &xn,
                NormRows::All,
            )));
            layers.push(Box::new(Matmul::new(
                &gpu,
                &step,
                &wqkv,
                bqkv.as_ref(),
                &xn,
                &qkv,
                plain,
                &dummy,
            )));
            layers.push(Box::new(RopeKvAppend::new(
                &gpu,
                &step,
                nh,
                nkv,
                d,
                &qkv,
                &inv_freq,
                &meta,
                table_base,
                &kv_layout,
                pool.blocks_per_binding,
                layer_pool,
            )));
            layers.push(Box::new(DecodeAttention::new(
                &gpu,
                &attention,
                pool.blocks_per_binding,
                &AttentionIo {
                    meta: &meta,
                    q: &qkv,
                    out: &attn,
                    pool: layer_pool,
                },
            )?));
            layers.push(Box::new(Matmul::new(
                &gpu, &step, &wo, None, &attn, &x, residual, &dummy,
            )));
            layers.push(Box::new(RmsNorm::new(
                &gpu,
                &step,
                h,
                cfg.rms_norm_eps,
                &ffn_norm,
                &x,
                &xn,
                NormRows::All,
            )));
            layers.push(Box::new(Matmul::new(
                &gpu, &step, &wgu, None, &xn, &gu, plain, &dummy,
            )));
            layers.push(Box::new(SiluMul::new(&gpu, &step, inter, &gu, &hbuf)));
            layers.push(Box::new(Matmul::new(
                &gpu, &step, &wdown, None, &hbuf, &x, residual, &dummy,
            )));
            done += 1;
            progress(done, total, &format!("layer {l}"));
            crate::gpu::yield_now().await;
        }

        let final_norm = gpu.storage_init(
            "final_norm",
            bytemuck::cast_slice(&weights.vector(TensorName::FinalNorm, h)?),
        )?;
        done += 1;
        progress(done, total, "final_norm");
        crate::gpu::yield_now().await;
        let lm_head_owned;
        let lm_head = if cfg.tie_word_embeddings {
            &embed
        } else {
            lm_head_owned = weights.matrix(&gpu, GraphMatrix::LmHead, cfg.vocab_size, h, wf)?;
            weight_bytes += lm_head_owned.bytes();
            &lm_head_owned
        };
        let logits_mode = MatmulMode {
            accumulate: false,
            logits_rows: true,
        };
        let head: Vec<Box<dyn Op>> = vec![
            Box::new(RmsNorm::new(
                &gpu,
                &step,
                h,
                cfg.rms_norm_eps,
                &final_norm,
                &x,
                &x_last,
                NormRows::Logits(&out_rows_buf),
            )),
            Box::new(Matmul::new(
                &gpu,
                &step,
                lm_head,
                None,
                &x_last,
                &logits,
                logits_mode,
                &dummy,
            )),
            Box::new(Sample::new(
                &gpu,
                &step,
                cfg.vocab_size,
                &logits,
                &tokens,
                &out_rows_buf,
            )),
        ];
        done += 1;
        progress(done, total, "lm_head");
        let readback = ReadbackBuffer::new(&gpu, "sampled", 4);
        let readback_ring =
            ReadbackBuffer::new(&gpu, "sampled_ring", 4 * MAX_STEPS_PER_READBACK as u64);
        let batch_readback = ReadbackBuffer::new(&gpu, "sampled_batch", 4 * out_rows as u64);
        let clock = report::StepClock::new(&gpu, layers.len() + head.len());
        Ok(GpuModel {
            gpu,
            config: cfg,
            options,
            step,
            tokens,
            logits,
            layers,
            head,
            meta,
            attention,
            block_tables,
            sequences,
            max_out_rows: out_rows,
            out_rows: out_rows_buf,
            kv_layout,
            pool,
            readback,
            readback_ring,
            batch_readback,
            qkv,
            clock,
            weight_bytes,
            kv_cache_bytes,
        })
    }

    /// Runs the layers over `input` at positions `pos0..`, then samples the next token
    /// from the last row. Returns the sampled id.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn step(
        &self,
        input: StepInput<'_>,
        pos0: usize,
        sampling: &SamplingParams,
        counter: u32,
    ) -> Result<u32, ModelError> {
        self.step_sequence(0, input, pos0, sampling, counter)
    }

    /// As [`step`](Self::step), for sequence `seq` of a model whose KV cache holds several
    /// (see [`synthetic`](Self::synthetic)): prefills or extends that sequence's cache
    /// alone. `step` is `step_sequence(0, ..)`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn step_sequence(
        &self,
        seq: usize,
        input: StepInput<'_>,
        pos0: usize,
        sampling: &SamplingParams,
        counter: u32,
    ) -> Result<u32, ModelError> {
        let mut enc = self.encode_step(seq, input, pos0, sampling, counter)?;
        self.readback.copy_from(&mut enc, &self.tokens, 4);
        self.gpu.queue.submit([enc.finish()]);
        let bytes = self.readback.read(&self.gpu, 4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// `count` decode steps from the previously sampled token at positions `pos0..`,
    /// submitted back to back (each feeds the next on the GPU) with a single readback at
    /// the end, so the host never waits between them. Returns the `count` sampled ids.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn decode_steps(
        &self,
        pos0: usize,
        count: usize,
        sampling: &SamplingParams,
        counter0: u32,
    ) -> Result<Vec<u32>, ModelError> {
        if count == 0 || count > MAX_STEPS_PER_READBACK {
            return Err(ModelError::Invalid(format!(
                "decode_steps takes 1..={MAX_STEPS_PER_READBACK} steps, got {count}"
            )));
        }
        for i in 0..count {
            let mut enc = self.encode_step(
                0,
                StepInput::Sampled,
                pos0 + i,
                sampling,
                counter0 + i as u32,
            )?;
            enc.copy_buffer_to_buffer(
                &self.tokens,
                0,
                self.readback_ring.buffer(),
                4 * i as u64,
                4,
            );
            // params for this step are written before this submit and after the previous one
            self.gpu.queue.submit([enc.finish()]);
        }
        let bytes = self.readback_ring.read(&self.gpu, 4 * count as u64)?;
        Ok(bytemuck::cast_slice::<u8, u32>(&bytes).to_vec())
    }

    /// Sequences the KV cache holds side by side (the largest batch of `decode_batch`).
    pub fn sequences(&self) -> usize {
        self.sequences
    }

    /// The largest batch one `decode_batch` step takes: the sequences, at most the chunk.
    pub fn max_batch(&self) -> usize {
        self.sequences.min(self.options.max_chunk)
    }

    /// Most sequences one step samples (logits rows).
    pub fn max_sampled_rows(&self) -> usize {
        self.max_out_rows
    }

    /// Blocks in the KV pool.
    pub fn pool_blocks(&self) -> usize {
        self.pool.blocks
    }

    /// One forward pass over parts of several sequences at once, each with its own block
    /// table (a paged model, see [`load_paged`](Self::load_paged); the blocks are the
    /// caller's to hand out). A part is a prefill chunk or one token to decode: its tokens
    /// go to positions `pos0..`, each attends over its sequence's positions up to its own,
    /// and its keys and values are written into its table's blocks. Parts with `sample`
    /// get the next token drawn from the logits of their last row; the sampled ids come
    /// back in the order of those parts, read back at the end of the step.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(&self, parts: &[SequencePart<'_>]) -> Result<Vec<u32>, ModelError> {
        let (rows, outs, tokens) = self.check_parts(parts)?;
        self.write_tokens(&tokens)?;
        let max_context = self.write_step(0, &rows, &outs);
        let shape = StepShape {
            n_tokens: rows.len() as u32,
            pos0: 0,
            n_out_rows: outs.len() as u32,
            max_context,
        };
        let mut enc = self.encode_prepared(&shape);
        let bytes = 4 * outs.len() as u64;
        if bytes == 0 {
            self.gpu.queue.submit([enc.finish()]);
            return Ok(Vec::new());
        }
        self.batch_readback.copy_from(&mut enc, &self.tokens, bytes);
        self.gpu.queue.submit([enc.finish()]);
        let bytes = self.batch_readback.read(&self.gpu, bytes)?;
        Ok(bytemuck::cast_slice::<u8, u32>(&bytes).to_vec())
    }

    /// Checks the parts of a `forward` step; returns its query rows, logits rows and
    /// token ids.
    #[allow(clippy::type_complexity)]
    fn check_parts<'a>(
        &self,
        parts: &[SequencePart<'a>],
    ) -> Result<(Vec<QueryRow<'a>>, Vec<OutRow>, Vec<u32>), ModelError> {
        let bs = self.options.kv_block_size;
        let n: usize = parts.iter().map(|p| p.tokens.len()).sum();
        if n == 0 || n > self.options.max_chunk {
            return Err(ModelError::Invalid(format!(
                "a step takes 1..={} token rows, got {n}",
                self.options.max_chunk
            )));
        }
        let sampled = parts.iter().filter(|p| p.sample.is_some()).count();
        if sampled > self.max_out_rows {
            return Err(ModelError::Invalid(format!(
                "a step samples at most {} sequences, got {sampled}",
                self.max_out_rows
            )));
        }
        let mut rows = Vec::with_capacity(n);
        let mut outs = Vec::with_capacity(sampled);
        let mut tokens = Vec::with_capacity(n);
        for (i, p) in parts.iter().enumerate() {
            let end = p.pos0 + p.tokens.len();
            if p.tokens.is_empty() || end > self.options.context {
                return Err(ModelError::Invalid(format!(
                    "part {i}: {} tokens at position {} do not fit the context of {}",
                    p.tokens.len(),
                    p.pos0,
                    self.options.context
                )));
            }
            if p.table.len() * bs < end {
                return Err(ModelError::Invalid(format!(
                    "part {i}: {} blocks of {bs} do not cover position {}",
                    p.table.len(),
                    end - 1
                )));
            }
            if let Some(b) = p.table.iter().find(|&&b| b as usize >= self.pool.blocks) {
                return Err(ModelError::Invalid(format!(
                    "part {i}: block {b} is outside the pool of {}",
                    self.pool.blocks
                )));
            }
            for t in 0..p.tokens.len() {
                let row = rows.len() as u32;
                rows.push(QueryRow {
                    context_len: (p.pos0 + t + 1) as u32,
                    table: p.table,
                    q_row: row,
                    out_row: row,
                });
            }
            tokens.extend_from_slice(p.tokens);
            if let Some((sampling, counter)) = &p.sample {
                sampling.validate().map_err(ModelError::Invalid)?;
                outs.push(OutRow::new(rows.len() as u32 - 1, sampling, *counter));
            }
        }
        Ok((rows, outs, tokens))
    }

    /// One decode step of `contexts.len()` sequences at once (B token rows in one forward
    /// pass, every weight read once for all of them): row i is the next token of sequence
    /// i, whose KV cache already holds `contexts[i]` positions; its key and value are
    /// appended at position `contexts[i]` and it attends over `contexts[i] + 1` positions.
    /// `input` is either the B token ids, or `StepInput::Sampled`: the ids the previous
    /// batched step sampled (rows 0..B of the token buffer; after a single-sequence step
    /// only row 0 holds one). Returns the B sampled ids (row i with sampling counter
    /// `counter`, seeded per row).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn decode_batch(
        &self,
        input: StepInput<'_>,
        contexts: &[usize],
        sampling: &SamplingParams,
        counter: u32,
    ) -> Result<Vec<u32>, ModelError> {
        let shape = self.prepare_decode_batch(input, contexts, sampling, counter)?;
        let mut enc = self.encode_prepared(&shape);
        let bytes = 4 * contexts.len() as u64;
        self.batch_readback.copy_from(&mut enc, &self.tokens, bytes);
        self.gpu.queue.submit([enc.finish()]);
        let bytes = self.batch_readback.read(&self.gpu, bytes)?;
        Ok(bytemuck::cast_slice::<u8, u32>(&bytes).to_vec())
    }

    /// Checks a batched decode step (see [`decode_batch`](Self::decode_batch)) and writes
    /// its parameters, token ids, query rows and block tables to the GPU, without
    /// recording anything; returns the shape to record it with
    /// ([`record_step`](Self::record_step)). The written state stays until the next
    /// step is prepared, so the same step can be recorded and submitted again (benchmarks
    /// do: each run appends the same positions again and samples into the same rows).
    pub fn prepare_decode_batch(
        &self,
        input: StepInput<'_>,
        contexts: &[usize],
        sampling: &SamplingParams,
        counter: u32,
    ) -> Result<StepShape, ModelError> {
        let b = contexts.len();
        if b == 0 || b > self.sequences {
            return Err(ModelError::Invalid(format!(
                "a batched decode step takes 1..={} sequences (the KV cache holds {}), got {b}",
                self.sequences, self.sequences
            )));
        }
        if b > self.options.max_chunk {
            return Err(ModelError::Invalid(format!(
                "a batch of {b} is over the {} token rows of one forward pass (max_chunk)",
                self.options.max_chunk
            )));
        }
        if let Some((i, &n)) = contexts
            .iter()
            .enumerate()
            .find(|(_, &n)| n >= self.options.context)
        {
            return Err(ModelError::Invalid(format!(
                "sequence {i}: position {n} is past the context of {} tokens",
                self.options.context
            )));
        }
        match input {
            StepInput::Tokens(ids) => {
                if ids.len() != b {
                    return Err(ModelError::Invalid(format!(
                        "a batched decode step of {b} sequences takes {b} token ids, got {}",
                        ids.len()
                    )));
                }
                self.write_tokens(ids)?;
            }
            StepInput::Sampled => {}
        }
        // row i draws with seed + i, so rows of one setting differ
        let outs: Vec<OutRow> = (0..b as u32)
            .map(|i| {
                let row = SamplingParams {
                    seed: sampling.seed.wrapping_add(i),
                    ..*sampling
                };
                OutRow::new(i, &row, counter)
            })
            .collect();
        let rows: Vec<QueryRow> = contexts
            .iter()
            .enumerate()
            .map(|(i, &n)| QueryRow {
                context_len: n as u32 + 1,
                table: &self.block_tables[i],
                q_row: i as u32,
                out_row: i as u32,
            })
            .collect();
        let max_context = self.write_step(0, &rows, &outs);
        Ok(StepShape {
            n_tokens: b as u32,
            pos0: 0,
            n_out_rows: b as u32,
            max_context,
        })
    }

    /// Records every kernel of a prepared step into `pass` (e.g. a pass that
    /// `gpu::timing::GpuTimer` times). The step must have been prepared last.
    pub fn record_step(&self, pass: &mut wgpu::ComputePass<'_>, shape: &StepShape) {
        for op in self.layers.iter().chain(self.head.iter()) {
            op.record(pass, shape);
        }
    }

    /// Fills the whole KV cache, every sequence's blocks, with pseudo-random values
    /// uniform in ±1 made on the GPU (benchmarks: a cache that holds data, without
    /// prefilling). Submits without waiting.
    pub fn fill_kv_random(&self, seed: u32) -> Result<(), ModelError> {
        let format = self.kv_layout.format;
        let eb = format.bytes_per_element() as u64;
        for (l, layer) in self.pool.layers.iter().enumerate() {
            for (i, buf) in layer.k.iter().chain(layer.v.iter()).enumerate() {
                // whole words: an even number of f16 values
                let values = (buf.size() / eb) & !1;
                let s = seed ^ ((4 * l + i) as u32 + 1).wrapping_mul(0x9e37_79b9);
                crate::gpu::fill::fill_random(&self.gpu, buf, format, values, s, 1.0)?;
            }
        }
        Ok(())
    }

    /// The logits of rows 0..rows of the last step (a batched step has one row per
    /// sequence; other steps one row).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn logits_rows(&self, rows: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        let most = self.max_batch().max(1);
        if rows == 0 || rows > most {
            return Err(ModelError::Invalid(format!(
                "the logits buffer holds 1..={most} rows, asked for {rows}"
            )));
        }
        let v = self.config.vocab_size;
        let all = self.gpu.read_f32(&self.logits, rows * v)?;
        Ok(all.chunks(v).map(<[f32]>::to_vec).collect())
    }

    /// What one batched decode step over these contexts reads, writes and computes
    /// (`contexts` as for `decode_batch`): every op at B rows, attention for each row
    /// over its own context (as if split for one query at a time, which only changes the
    /// small split-partials term).
    pub fn batch_step_cost(&self, contexts: &[usize]) -> Cost {
        let b = contexts.len() as u32;
        let shape = StepShape {
            n_tokens: b,
            pos0: 0,
            n_out_rows: b,
            max_context: contexts.iter().map(|&n| n as u32 + 1).max().unwrap_or(0),
        };
        self.layers
            .iter()
            .chain(self.head.iter())
            .fold(Cost::default(), |acc, op| {
                if op.name() == "attention" {
                    contexts.iter().fold(acc, |acc, &n| {
                        acc + op.cost(&StepShape::single(1, n as u32))
                    })
                } else {
                    acc + op.cost(&shape)
                }
            })
    }

    fn write_tokens(&self, ids: &[u32]) -> Result<(), ModelError> {
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= self.config.vocab_size) {
            return Err(ModelError::Invalid(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab_size
            )));
        }
        self.gpu
            .queue
            .write_buffer(&self.tokens, 0, bytemuck::cast_slice(ids));
        Ok(())
    }

    /// Writes the step parameters, the query rows and block tables, the logits rows, and
    /// the attention's parameters; returns the longest context.
    fn write_step(&self, pos0: u32, rows: &[QueryRow<'_>], outs: &[OutRow]) -> u32 {
        let params = StepParams {
            n_tokens: rows.len() as u32,
            pos0,
            n_out_rows: outs.len() as u32,
            _pad: 0,
        };
        self.gpu
            .queue
            .write_buffer(&self.step, 0, bytemuck::bytes_of(&params));
        self.gpu
            .queue
            .write_buffer(&self.out_rows, 0, bytemuck::cast_slice(outs));
        let meta = StepMeta::new(rows, self.options.max_chunk);
        self.gpu
            .queue
            .write_buffer(&self.meta, 0, bytemuck::cast_slice(&meta.words));
        self.attention.prepare(&self.gpu, &meta);
        meta.max_context
    }

    /// An encoder holding one compute pass with the prepared step recorded.
    fn encode_prepared(&self, shape: &StepShape) -> wgpu::CommandEncoder {
        let mut enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: None,
            });
            self.record_step(&mut pass, shape);
        }
        enc
    }

    /// Checks the input, writes the step parameters and records one forward pass of
    /// sequence `seq`.
    fn encode_step(
        &self,
        seq: usize,
        input: StepInput<'_>,
        pos0: usize,
        sampling: &SamplingParams,
        counter: u32,
    ) -> Result<wgpu::CommandEncoder, ModelError> {
        if seq >= self.sequences {
            return Err(ModelError::Invalid(format!(
                "sequence {seq} is not in the KV cache (it holds {})",
                self.sequences
            )));
        }
        let n_tokens = match input {
            StepInput::Tokens(ids) => ids.len(),
            StepInput::Sampled => 1,
        };
        if n_tokens == 0 || n_tokens > self.options.max_chunk {
            return Err(ModelError::Invalid(format!(
                "a step takes 1..={} tokens, got {n_tokens}",
                self.options.max_chunk
            )));
        }
        if pos0 + n_tokens > self.options.context {
            return Err(ModelError::Invalid(format!(
                "position {} is past the context of {} tokens",
                pos0 + n_tokens,
                self.options.context
            )));
        }
        if let StepInput::Tokens(ids) = input {
            self.write_tokens(ids)?;
        }
        let out = OutRow::new(n_tokens as u32 - 1, sampling, counter);
        let shape = StepShape::single(n_tokens as u32, pos0 as u32);
        let table = &self.block_tables[seq];
        let rows: Vec<QueryRow> = (0..n_tokens as u32)
            .map(|t| QueryRow {
                context_len: pos0 as u32 + t + 1,
                table,
                q_row: t,
                out_row: t,
            })
            .collect();
        self.write_step(pos0 as u32, &rows, &[out]);
        Ok(self.encode_prepared(&shape))
    }

    /// The logits of the last step's last row (for tests and inspection).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn last_logits(&self) -> Result<Vec<f32>, ModelError> {
        Ok(self.gpu.read_f32(&self.logits, self.config.vocab_size)?)
    }

    /// What one step of this shape reads, writes and computes, summed over its kernels.
    pub fn step_cost(&self, shape: &StepShape) -> Cost {
        self.layers
            .iter()
            .chain(self.head.iter())
            .fold(Cost::default(), |acc, op| acc + op.cost(shape))
    }
}
