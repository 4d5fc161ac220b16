//! The llama-family forward pass on the GPU: weights uploaded once, activations and the KV
//! cache allocated once, every kernel bound once; a step records them into one compute
//! pass, submits once and reads back only the sampled token id.
//!
//! Per layer (x is the residual stream, [T, hidden]):
//!   xn = rmsnorm(x) ; qkv = xn Wqkv^T (+b) ; rope(q, k), append k, v to the cache
//!   attn = attention(q, cache) ; x += attn Wo^T
//!   xn = rmsnorm(x) ; gu = xn [Wgate|Wup]^T ; h = silu(g) * u ; x += h Wdown^T
//! Head: rmsnorm(last row) -> lm_head -> sample.

use super::source::{LayerTensor, LoadError, TensorName, WeightSource};
use super::ModelConfig;
use crate::gpu::{GpuContext, GpuError, ReadbackBuffer, StorageFormat};
use crate::kv::{KvLayout, KvPool, QueryRow, StepMeta};
use crate::ops::decode_attention::{AttentionIo, AttentionScratch, DecodeAttention};
use crate::ops::elementwise::SiluMul;
use crate::ops::embed::Embed;
use crate::ops::matmul::{Matmul, MatmulMode, WeightMatrix};
use crate::ops::rmsnorm::RmsNorm;
use crate::ops::rope_kv::RopeKvAppend;
use crate::ops::sample::{Sample, SamplingParams};
use crate::ops::{Cost, Op, StepParams, StepShape};
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
    /// the single sequence's block table (blocks 0, 1, 2, ... of the pool)
    block_table: Vec<u32>,
    pub kv_layout: KvLayout,
    _pool: KvPool,
    readback: ReadbackBuffer,
    /// one slot per decode step of `decode_steps`
    readback_ring: ReadbackBuffer,
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

impl GpuModel {
    /// Uploads every weight of `src` and builds the kernels. `progress(done, total, what)`
    /// is called after each tensor.
    pub fn load(
        gpu: Arc<GpuContext>,
        src: &dyn WeightSource,
        options: GpuModelOptions,
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<GpuModel, ModelError> {
        let cfg = src.config().clone();
        cfg.validate(src.path()).map_err(ModelError::Invalid)?;
        if !cfg.head_dim.is_multiple_of(8) || cfg.head_dim > 256 {
            return Err(ModelError::Invalid(format!(
                "{}: head_dim {} is not supported (multiples of 8 up to 256)",
                src.path(),
                cfg.head_dim
            )));
        }
        if options.context == 0 || options.max_chunk == 0 || options.kv_block_size == 0 {
            return Err(ModelError::Invalid(
                "context, chunk size and KV block size must be > 0".into(),
            ));
        }
        let (h, inter, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_heads, cfg.num_kv_heads);
        let qkv_rows = (nh + 2 * nkv) * d;
        let c = options.max_chunk;
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
        let x_last = gpu.storage("x_last", h as u64 * f32b)?;
        let logits = gpu.storage("logits", cfg.vocab_size as u64 * f32b)?;
        let dummy = gpu.storage("no_bias", 16)?;
        let inv_freq = gpu.storage_init(
            "rope_inv_freq",
            bytemuck::cast_slice(&super::cpu_reference::llama3_rope_inv_freq(&cfg)),
        )?;

        let wf = options.weights;
        let embed_data = load(src, TensorName::TokenEmbedding, cfg.vocab_size * h)?;
        let embed =
            WeightMatrix::upload(&gpu, "token_embedding", &embed_data, cfg.vocab_size, h, wf)?;
        drop(embed_data);
        done += 1;
        progress(done, total, "token_embedding");
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
        let n_blocks = options.context.div_ceil(options.kv_block_size);
        let pool = KvPool::new(&gpu, kv_layout, n_blocks)?;
        let kv_cache_bytes = pool.bytes();
        let block_table: Vec<u32> = (0..n_blocks as u32).collect();
        let meta = gpu.storage("step_meta", ((4 * c + n_blocks + 4) * 4) as u64)?;
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
            let norm = |t, what: &str| -> Result<wgpu::Buffer, ModelError> {
                Ok(gpu.storage_init(
                    &format!("layers.{l}.{what}"),
                    bytemuck::cast_slice(&load(src, lt(t), h)?),
                )?)
            };
            let attn_norm = norm(LayerTensor::AttnNorm, "attn_norm")?;
            let ffn_norm = norm(LayerTensor::FfnNorm, "ffn_norm")?;
            let mut wqkv = load(src, lt(LayerTensor::Wq), nh * d * h)?;
            wqkv.extend(load(src, lt(LayerTensor::Wk), nkv * d * h)?);
            wqkv.extend(load(src, lt(LayerTensor::Wv), nkv * d * h)?);
            let wqkv =
                WeightMatrix::upload(&gpu, &format!("layers.{l}.wqkv"), &wqkv, qkv_rows, h, wf)?;
            let bqkv = if cfg.attention_bias {
                let mut b = load(src, lt(LayerTensor::Bq), nh * d)?;
                b.extend(load(src, lt(LayerTensor::Bk), nkv * d)?);
                b.extend(load(src, lt(LayerTensor::Bv), nkv * d)?);
                Some(gpu.storage_init(&format!("layers.{l}.bqkv"), bytemuck::cast_slice(&b))?)
            } else {
                None
            };
            let wo = WeightMatrix::upload(
                &gpu,
                &format!("layers.{l}.wo"),
                &load(src, lt(LayerTensor::Wo), h * nh * d)?,
                h,
                nh * d,
                wf,
            )?;
            let mut wgu = load(src, lt(LayerTensor::WGate), inter * h)?;
            wgu.extend(load(src, lt(LayerTensor::WUp), inter * h)?);
            let wgu = WeightMatrix::upload(
                &gpu,
                &format!("layers.{l}.w_gate_up"),
                &wgu,
                2 * inter,
                h,
                wf,
            )?;
            let wdown = WeightMatrix::upload(
                &gpu,
                &format!("layers.{l}.w_down"),
                &load(src, lt(LayerTensor::WDown), h * inter)?,
                h,
                inter,
                wf,
            )?;
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
                false,
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
                false,
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
        }

        let final_norm = gpu.storage_init(
            "final_norm",
            bytemuck::cast_slice(&load(src, TensorName::FinalNorm, h)?),
        )?;
        done += 1;
        progress(done, total, "final_norm");
        let lm_head_owned;
        let lm_head = if cfg.tie_word_embeddings {
            &embed
        } else {
            lm_head_owned = WeightMatrix::upload(
                &gpu,
                "lm_head",
                &load(src, TensorName::LmHead, cfg.vocab_size * h)?,
                cfg.vocab_size,
                h,
                wf,
            )?;
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
                true,
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
            Box::new(Sample::new(&gpu, &step, cfg.vocab_size, &logits, &tokens)),
        ];
        done += 1;
        progress(done, total, "lm_head");
        let readback = ReadbackBuffer::new(&gpu, "sampled", 4);
        let readback_ring =
            ReadbackBuffer::new(&gpu, "sampled_ring", 4 * MAX_STEPS_PER_READBACK as u64);
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
            block_table,
            kv_layout,
            _pool: pool,
            readback,
            readback_ring,
            weight_bytes,
            kv_cache_bytes,
        })
    }

    /// Runs the layers over `input` at positions `pos0..`, then samples the next token
    /// from the last row. Returns the sampled id.
    pub fn step(
        &self,
        input: StepInput<'_>,
        pos0: usize,
        sampling: &SamplingParams,
        counter: u32,
    ) -> Result<u32, ModelError> {
        let mut enc = self.encode_step(input, pos0, sampling, counter)?;
        self.readback.copy_from(&mut enc, &self.tokens, 4);
        self.gpu.queue.submit([enc.finish()]);
        let bytes = self.readback.read(&self.gpu, 4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// `count` decode steps from the previously sampled token at positions `pos0..`,
    /// submitted back to back (each feeds the next on the GPU) with a single readback at
    /// the end, so the host never waits between them. Returns the `count` sampled ids.
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
            let mut enc =
                self.encode_step(StepInput::Sampled, pos0 + i, sampling, counter0 + i as u32)?;
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

    /// Checks the input, writes the step parameters and records one forward pass.
    fn encode_step(
        &self,
        input: StepInput<'_>,
        pos0: usize,
        sampling: &SamplingParams,
        counter: u32,
    ) -> Result<wgpu::CommandEncoder, ModelError> {
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
            if let Some(bad) = ids.iter().find(|&&t| t as usize >= self.config.vocab_size) {
                return Err(ModelError::Invalid(format!(
                    "token id {bad} is outside the vocabulary of {}",
                    self.config.vocab_size
                )));
            }
            self.gpu
                .queue
                .write_buffer(&self.tokens, 0, bytemuck::cast_slice(ids));
        }
        let params = StepParams {
            n_tokens: n_tokens as u32,
            pos0: pos0 as u32,
            out_row0: n_tokens as u32 - 1,
            n_out_rows: 1,
            temperature: sampling.temperature,
            top_k: sampling.top_k,
            top_p: sampling.top_p,
            seed: sampling.seed,
            counter,
            _pad: [0; 3],
        };
        self.gpu
            .queue
            .write_buffer(&self.step, 0, bytemuck::bytes_of(&params));
        let shape = StepShape::single(n_tokens as u32, pos0 as u32);
        let rows: Vec<QueryRow> = (0..n_tokens as u32)
            .map(|t| QueryRow {
                context_len: pos0 as u32 + t + 1,
                table: &self.block_table,
                q_row: t,
                out_row: t,
            })
            .collect();
        let meta = StepMeta::new(&rows, self.options.max_chunk);
        self.gpu
            .queue
            .write_buffer(&self.meta, 0, bytemuck::cast_slice(&meta.words));
        self.attention.prepare(&self.gpu, &meta);
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
            for op in self.layers.iter().chain(self.head.iter()) {
                op.record(&mut pass, &shape);
            }
        }
        Ok(enc)
    }

    /// The logits of the last step's last row (for tests and inspection).
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
