//! A model on the GPU: weights uploaded once, activations and the KV cache allocated once,
//! every kernel bound once. The architecture's file (`model::llama`) lists the ops; a step
//! (`step.rs`) writes the step's rows and block tables, records every op into one compute
//! pass, submits once and reads back only the sampled token ids.

mod report;
mod step;

pub use report::{softmax_in_place, AttentionProbe, KernelTime, StepProbe, StepReport};
pub use step::{PartLogits, PendingChain, PreparedStep, SequencePart, MAX_STEPS_PER_READBACK};

pub use super::error::ModelError;
use super::graph::Graph;
pub use super::options::GpuModelOptions;
use super::source::WeightSource;
use super::weights::{FileWeights, WeightProvider};
use super::{llama, ModelConfig};
use crate::gpu::{GpuContext, GpuError, ReadbackBuffer};
use crate::kv::{KvLayout, KvPool};
use crate::ops::decode_attention::AttentionScratch;
use crate::ops::Op;
use std::sync::Arc;
#[cfg(not(target_arch = "wasm32"))]
use {super::weights::RandomWeights, crate::gpu::quant_layout::QuantType};

/// How the KV cache is shared among sequences.
#[derive(Clone, Copy, Debug)]
enum KvCapacity {
    /// `n` sequences of `options.context` positions, each owning a fixed run of blocks
    /// (generate, chat, benchmarks): see [`GpuModel::sequence_table`]
    Sequences(usize),
    /// a pool of `blocks` blocks that the caller hands out step by step (the serving
    /// engine), at most `max_batch` sequences sampled per step
    Paged { blocks: usize, max_batch: usize },
}

pub struct GpuModel {
    pub gpu: Arc<GpuContext>,
    pub config: ModelConfig,
    pub options: GpuModelOptions,
    /// the per-step parameters (`ops::StepParams`)
    step: wgpu::Buffer,
    /// token ids in, sampled ids out
    tokens: wgpu::Buffer,
    logits: wgpu::Buffer,
    /// the embedding and every layer's ops, in order
    layers: Vec<Box<dyn Op>>,
    /// final norm, lm_head, sampling
    head: Vec<Box<dyn Op>>,
    /// per-step query rows and block tables, read by RoPE/KV-append and attention
    meta: wgpu::Buffer,
    attention: Arc<AttentionScratch>,
    /// sequence s owns blocks s * n .. (s + 1) * n of the pool, n = ceil(context / block
    /// size) (none for a paged model: its caller hands out blocks)
    block_tables: Vec<Vec<u32>>,
    /// most rows that get logits in one step
    max_out_rows: usize,
    /// per logits row: its source row and sampling settings (`ops::OutRow`)
    out_rows: wgpu::Buffer,
    pub kv_layout: KvLayout,
    pool: KvPool,
    /// sampled ids of up to `MAX_STEPS_PER_READBACK` steps of `max_out_rows` rows, twice:
    /// a chain can be read while the next one runs (`submit_chain`)
    readback: [ReadbackBuffer; 2],
    /// which of them a pending chain holds
    readback_busy: std::sync::Mutex<[bool; 2]>,
    /// the fused q|k|v activation rows (the attention probe copies queries out of it)
    qkv: wgpu::Buffer,
    /// timestamp queries for reported steps; None without timestamps
    clock: Option<report::StepClock>,
    /// bytes of all weights on the GPU
    pub weight_bytes: u64,
    /// the same, by how they are stored ("Q4_1", "f16", "f32", ...)
    pub weight_bytes_by_format: Vec<(&'static str, u64)>,
    /// bytes of the whole KV cache
    pub kv_cache_bytes: u64,
    /// host time spent preparing, encoding and submitting decode-chain steps, and their
    /// count (`host_time`)
    host_ns: std::sync::atomic::AtomicU64,
    host_steps: std::sync::atomic::AtomicU64,
}

/// Logits rows a model of fixed sequences keeps at least: a verified draft of one
/// sequence takes one per token (`engine::generate`'s speculative decoding).
pub const MIN_LOGITS_ROWS: usize = 8;

impl GpuModel {
    /// Uploads every weight of `src` and builds the kernels, with a KV cache for one
    /// sequence (`sequence_table(0)`). `progress(done, total, what)` is called after each
    /// layer.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(
        gpu: Arc<GpuContext>,
        src: &dyn WeightSource,
        options: GpuModelOptions,
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<GpuModel, ModelError> {
        Self::load_sequences(gpu, src, options, 1, progress)
    }

    /// As `load`, with a KV cache for `sequences` sequences of the whole context each
    /// (`sequence_table(0..sequences)`): a draft model beside a serving engine's.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_sequences(
        gpu: Arc<GpuContext>,
        src: &dyn WeightSource,
        options: GpuModelOptions,
        sequences: usize,
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<GpuModel, ModelError> {
        let kv = KvCapacity::Sequences(sequences.max(1));
        crate::gpu::block_on(Self::load_within_memory(gpu, src, options, kv, progress))
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
        let kv = KvCapacity::Paged { blocks, max_batch };
        Self::load_within_memory(gpu, src, options, kv, progress).await
    }

    /// `build` over `src`'s weights; the GPU running out of memory on the way is an error
    /// that says how much the model and its KV cache asked for.
    async fn load_within_memory(
        gpu: Arc<GpuContext>,
        src: &dyn WeightSource,
        options: GpuModelOptions,
        kv: KvCapacity,
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<GpuModel, ModelError> {
        let cfg = src.config().clone();
        let kv_bytes = match kv {
            KvCapacity::Sequences(n) => n * options.context.div_ceil(options.kv_block_size),
            KvCapacity::Paged { blocks, .. } => blocks,
        } as u64
            * options.kv_block_size as u64
            * options.kv_layout(&cfg).bytes_per_token();
        let mut weights = FileWeights {
            src,
            quantized: options.quantized,
            quantize: options.quantize,
        };
        let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let built = Self::build(gpu.clone(), cfg, options, kv, &mut weights, progress).await;
        if let Some(e) = oom.pop().await {
            let file_bytes: u64 = src.summaries().iter().map(|t| t.bytes).sum();
            return Err(ModelError::Gpu(GpuError::Other(format!(
                "{} does not fit {}: its tensors take {:.2} GiB in the file and its KV cache \
                 {:.2} GiB, and the GPU ran out of memory ({e}); try a smaller --kv-memory or \
                 --context, or a more quantized file",
                src.path(),
                gpu.adapter_name(),
                file_bytes as f64 / (1u64 << 30) as f64,
                kv_bytes as f64 / (1u64 << 30) as f64,
            ))));
        }
        built
    }

    /// The same model graph as `load`, for `config`, with pseudo-random weights made on the
    /// GPU (nothing is uploaded but the norm weights): matrices uniform in ±1/sqrt(in
    /// features), norm weights 1, biases 0; the same for the same seed. The KV cache holds
    /// `sequences` sequences of `options.context` positions each, side by side
    /// (`sequence_table(s)`); `options.max_chunk` must be at least the batch. Out-of-memory
    /// and other device errors while building come back as errors.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn synthetic(
        gpu: Arc<GpuContext>,
        config: ModelConfig,
        options: GpuModelOptions,
        sequences: usize,
        seed: u32,
    ) -> Result<GpuModel, ModelError> {
        Self::synthetic_blocks(gpu, config, options, sequences, seed, None)
    }

    /// As [`synthetic`](Self::synthetic), with the matrices random GGML blocks of `quant`
    /// (made on the host, kept as blocks on the GPU) where it is given.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn synthetic_blocks(
        gpu: Arc<GpuContext>,
        config: ModelConfig,
        options: GpuModelOptions,
        sequences: usize,
        seed: u32,
        quant: Option<QuantType>,
    ) -> Result<GpuModel, ModelError> {
        let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let built = crate::gpu::block_on(Self::build(
            gpu.clone(),
            config,
            options,
            KvCapacity::Sequences(sequences),
            &mut RandomWeights { seed, quant },
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

    /// Checks the config and options, allocates the graph's buffers and the KV cache, and
    /// has the architecture's file list its ops over weights from `weights`.
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
        // fixed block runs per sequence, or a pool handed out by the caller
        let n_blocks = options.context.div_ceil(options.kv_block_size);
        let (sequences, pool_blocks, out_rows) = match kv {
            // room for a sequence's speculative draft (`engine::generate`)
            KvCapacity::Sequences(n) => (n, n * n_blocks, n.max(MIN_LOGITS_ROWS)),
            KvCapacity::Paged { blocks, max_batch } => (0, blocks, max_batch),
        };
        if pool_blocks == 0 || out_rows == 0 {
            return Err(ModelError::Invalid(
                "the KV cache must hold at least one sequence".into(),
            ));
        }
        // rows that get logits in one step: one per sequence of a batched step
        let out_rows = out_rows.min(options.max_chunk);
        let kv_layout = options.kv_layout(&cfg);
        let graph = Graph::new(gpu.clone(), &cfg, &options, pool_blocks, out_rows)?;
        // every architecture headroom runs is the llama decoder with its variations
        let built = llama::build(&graph, weights, progress).await?;
        let block_tables: Vec<Vec<u32>> = (0..sequences)
            .map(|s| ((s * n_blocks) as u32..((s + 1) * n_blocks) as u32).collect())
            .collect();
        let readback = ["sampled 0", "sampled 1"].map(|label| {
            ReadbackBuffer::new(&gpu, label, (4 * out_rows * MAX_STEPS_PER_READBACK) as u64)
        });
        let clock = report::StepClock::new(&gpu, built.layers.len() + built.head.len());
        let Graph {
            step,
            act,
            pool,
            meta,
            attention,
            ..
        } = graph;
        Ok(GpuModel {
            gpu,
            config: cfg,
            options,
            step,
            tokens: act.tokens,
            logits: act.logits,
            layers: built.layers,
            head: built.head,
            meta,
            attention,
            block_tables,
            max_out_rows: out_rows,
            out_rows: act.out_rows,
            kv_layout,
            kv_cache_bytes: pool.bytes(),
            pool,
            readback,
            readback_busy: Default::default(),
            qkv: act.qkv,
            clock,
            weight_bytes: built.weight_bytes.values().sum(),
            weight_bytes_by_format: built.weight_bytes.into_iter().collect(),
            host_ns: Default::default(),
            host_steps: Default::default(),
        })
    }

    /// The blocks of sequence `seq` of a model built for a fixed number of sequences
    /// (`load`: one; `synthetic`: as many as asked), covering the whole context.
    pub fn sequence_table(&self, seq: usize) -> Result<&[u32], ModelError> {
        self.block_tables
            .get(seq)
            .map(Vec::as_slice)
            .ok_or_else(|| {
                ModelError::Invalid(format!(
                    "sequence {seq} is not in the KV cache (it holds {})",
                    self.block_tables.len()
                ))
            })
    }

    /// Sequences with a fixed run of blocks (see [`sequence_table`](Self::sequence_table);
    /// 0 for a paged model).
    pub fn sequences(&self) -> usize {
        self.block_tables.len()
    }

    /// Most sequences one step samples (logits rows).
    pub fn max_sampled_rows(&self) -> usize {
        self.max_out_rows
    }

    /// The positions before each query that a step may read, where every layer attends
    /// over a sliding window (the window and the kernels' rounding of its start): a
    /// sequence's KV blocks before them can go back to the pool.
    pub fn kv_window(&self) -> Option<usize> {
        let c = &self.config;
        // prefill attention loads keys from a window's start rounded down to its key tile
        // (masked, but read)
        let rounding = self.attention.prefill.map_or(0, |p| p.keys);
        (0..c.num_layers)
            .map(|l| c.layer_window(l))
            .try_fold(usize::MAX, |w, lw| lw.map(|lw| w.min(lw)))
            .filter(|_| c.num_layers > 0)
            .map(|w| w + rounding)
    }

    /// Blocks in the KV pool.
    pub fn pool_blocks(&self) -> usize {
        self.pool.blocks
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
}
