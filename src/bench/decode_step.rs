//! `headroom bench decode-step`: whole decode steps of a synthetic model (a model file's
//! shape, random weights made on the GPU), B sequences at once, against the prediction
//! that a step costs what it reads: (weight bytes + B x N x KV bytes per token) / copy
//! bandwidth, with the copy bandwidth probed in the same run.
//!
//! For Llama-2-7B with MHA (32 KV heads of 128, f16) every cached token costs
//! 2 x 32 layers x 32 x 128 x 2 bytes = 512 KiB per step that reads it, against 13.5 GB of
//! weights read once per step for the whole batch: at B = 64 and N = 1024 the KV cache
//! (32 GiB) outweighs the weights; with 8 (GQA) or 1 (MQA) KV heads it shrinks 4x or 32x.

use super::attention::parse_sizes;
use super::BenchError;
use crate::formats::date::UtcTime;
use crate::gpu::quant_layout::QuantType;
use crate::gpu::timing::{GpuTimer, TimingSource};
use crate::gpu::{GpuContext, GpuOptions, StorageFormat};
use crate::metrics::presets::{llama2_tiny, Preset, PRESETS};
use crate::metrics::probe::{probe_copy_bandwidth, BandwidthProbe};
use crate::model::gpu_model::{GpuModel, GpuModelOptions, PartLogits, SequencePart, StepProbe};
use crate::model::ModelConfig;
use crate::ops::sample::SamplingParams;
use std::path::PathBuf;
use std::sync::Arc;

const GIB: f64 = (1u64 << 30) as f64;

#[derive(clap::Args, Clone, Debug)]
pub struct DecodeStepArgs {
    /// the model shape (random weights made on the GPU): llama2-7b, llama3-8b, smollm2-135m
    #[arg(long, default_value = "llama2-7b")]
    pub synthetic: String,
    /// KV heads: 32 = MHA, 8 = GQA, 1 = MQA (comma-separated: each in turn)
    #[arg(long, default_value = "32")]
    pub kv_heads: String,
    /// sequences decoded together in one step (comma-separated)
    #[arg(long, default_value = "1,16,64")]
    pub batch: String,
    /// positions each sequence attends over in the step: the new token and N - 1 cached
    /// ones (comma-separated; K = 1024 suffix allowed)
    #[arg(long, default_value = "512,1024,2048,4096")]
    pub context: String,
    /// new tokens each sequence brings to the step: 1 is a decode step, more a prefill
    /// chunk of that many tokens ending at the context's last position
    #[arg(long, default_value_t = 1)]
    pub tokens: usize,
    /// how weights are stored
    #[arg(long, value_enum, default_value = "f16")]
    pub weights: Format,
    /// how the KV cache is stored
    #[arg(long, value_enum, default_value = "f16")]
    pub kv: Format,
    /// timed steps per shape (median reported)
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// untimed steps per shape before them
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// and untimed steps until this much time has gone by (the H200 runs every kernel
    /// ~3x slow for the first ~200 ms after the weights' upload)
    #[arg(long, default_value_t = 500)]
    pub warmup_ms: u64,
    /// size of the copy-bandwidth probe (GiB; clamped to the binding limit)
    #[arg(long, default_value_t = 1.0)]
    pub probe_gib: f64,
    /// skip shapes whose weights + KV cache + activations are estimated above this
    #[arg(long, default_value_t = 70.0)]
    pub max_memory_gib: f64,
    /// positions per KV block
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// time submit + wait on the host clock even where GPU timestamps exist
    #[arg(long)]
    pub wall_clock: bool,
    /// seed of the random weights
    #[arg(long, default_value_t = 1)]
    pub seed: u32,
    /// also write the results as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// make the matrices random blocks of this GGML type, kept as blocks on the GPU
    /// (the token embedding too); --weights then covers nothing but the norms
    #[arg(long, value_enum)]
    pub quant: Option<Quant>,
    /// adapter name substring (default: the high-performance adapter)
    #[arg(long, env = "HEADROOM_ADAPTER")]
    pub adapter: Option<String>,
    /// after each shape, time every kernel family on its own (one compute pass per
    /// kernel) and print its GPU time and declared bytes
    #[arg(long)]
    pub profile: bool,
}

/// GGML block types the matrices can be made in (random blocks, kept on the GPU).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_1")]
    Q4_1,
    #[value(name = "q5_0")]
    Q5_0,
    #[value(name = "q5_1")]
    Q5_1,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_k")]
    Q4K,
    #[value(name = "q5_k")]
    Q5K,
    #[value(name = "q6_k")]
    Q6K,
}

impl From<Quant> for QuantType {
    fn from(q: Quant) -> Self {
        match q {
            Quant::Q4_0 => QuantType::Q4_0,
            Quant::Q4_1 => QuantType::Q4_1,
            Quant::Q5_0 => QuantType::Q5_0,
            Quant::Q5_1 => QuantType::Q5_1,
            Quant::Q8_0 => QuantType::Q8_0,
            Quant::Q4K => QuantType::Q4_K,
            Quant::Q5K => QuantType::Q5_K,
            Quant::Q6K => QuantType::Q6_K,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    F16,
    F32,
}

impl From<Format> for StorageFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::F16 => StorageFormat::F16,
            Format::F32 => StorageFormat::F32,
        }
    }
}

/// The config of preset `name` (a `metrics::presets` key of a llama-architecture model)
/// with `kv_heads` KV heads.
pub fn preset(name: &str, kv_heads: usize) -> Result<ModelConfig, BenchError> {
    let cfg = match name {
        // undocumented: for smoke tests on software adapters
        "tiny" => llama2_tiny(kv_heads),
        _ => Preset::by_key(name)
            .and_then(|p| p.llama_config(kv_heads))
            .ok_or_else(|| {
                let known: Vec<&str> = PRESETS
                    .iter()
                    .filter(|p| p.llama_config(p.heads).is_some())
                    .map(|p| p.key)
                    .collect();
                BenchError(format!(
                    "unknown --synthetic preset {name:?} (known: {})",
                    known.join(", ")
                ))
            })?,
    };
    cfg.validate(name)
        .map_err(|e| BenchError(format!("--kv-heads {kv_heads}: {e}")))?;
    Ok(cfg)
}

/// Bytes of every weight of `cfg` stored as `format` (norms in f32), as the model
/// allocates them.
pub fn weight_bytes(cfg: &ModelConfig, format: StorageFormat) -> u64 {
    let (h, d) = (cfg.hidden_size, cfg.head_dim);
    let per_layer = (cfg.num_heads + 2 * cfg.num_kv_heads) * d * h
        + h * cfg.num_heads * d
        + 3 * cfg.intermediate_size * h;
    let heads = if cfg.tie_word_embeddings { 1 } else { 2 };
    let matrices = cfg.num_layers * per_layer + heads * cfg.vocab_size * h;
    (matrices * format.bytes_per_element()) as u64 + (2 * cfg.num_layers * h * 4) as u64
}

/// Estimated bytes on the GPU for `batch` sequences of capacity `context`: weights, the
/// KV pool (whole blocks), activations and a margin for the attention scratch.
pub fn memory_estimate(
    cfg: &ModelConfig,
    weights: StorageFormat,
    kv_bytes_per_token: u64,
    batch: usize,
    context: usize,
    block_size: usize,
) -> u64 {
    let kv = (batch * context.div_ceil(block_size) * block_size) as u64 * kv_bytes_per_token;
    let (h, d) = (cfg.hidden_size, cfg.head_dim);
    let row = 2 * h
        + (cfg.num_heads + 2 * cfg.num_kv_heads) * d
        + cfg.num_heads * d
        + 3 * cfg.intermediate_size
        + h
        + cfg.vocab_size;
    let activations = (batch * row * 4) as u64;
    weight_bytes(cfg, weights) + kv + activations + (64 << 20)
}

/// KV bytes per cached token (all layers, K and V) for `cfg` stored as `format`.
pub fn kv_bytes_per_token(cfg: &ModelConfig, format: StorageFormat) -> u64 {
    cfg.kv_bytes_per_token(format.bytes_per_element()) as u64
}

/// One measured shape.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepResult {
    pub kv_heads: usize,
    pub attention: &'static str,
    pub batch: usize,
    /// positions each row attends over
    pub context: usize,
    /// median time of one decode step (all B rows)
    pub step_ms: f64,
    pub step_min_ms: f64,
    /// median host time from submit to the end of wait for the same steps
    pub wall_ms: f64,
    /// B / step time
    pub tokens_per_s: f64,
    /// step time / B
    pub ms_per_token: f64,
    /// every weight on the GPU
    pub weight_bytes: u64,
    /// the weights one step reads: all but the token embedding table, of which it reads
    /// only B rows (counted here)
    pub weight_bytes_read: u64,
    /// B x N x KV bytes per token
    pub kv_bytes: u64,
    pub kv_bytes_per_token: u64,
    /// everything the kernels read and write by their own cost model (activations,
    /// split partials and logits included)
    pub model_bytes: u64,
    /// arithmetic of the step by the kernels' cost model
    pub flops: u64,
    /// kernel dispatches of the step
    pub dispatches: u32,
    /// flops / step time / 1e12
    pub tflops: f64,
    /// (weight bytes read + KV bytes) / copy bandwidth
    pub predicted_ms: f64,
    /// step_ms / predicted_ms (1 = at the copy roofline)
    pub measured_over_predicted: f64,
    /// (weight bytes read + KV bytes) / step time
    pub effective_gbps: f64,
    pub timing: String,
    /// every timed step in run order (ms): shows whether slow steps come in a stretch
    pub samples_ms: Vec<f64>,
}

/// A whole run, as `--json` writes it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub adapter: String,
    pub driver: String,
    pub unix_time: u64,
    pub date_utc: String,
    pub command: String,
    pub preset: String,
    pub weights: &'static str,
    pub kv: &'static str,
    /// what the kernels use, knobs from the environment included
    pub gpu_features: crate::gpu::GpuFeatures,
    pub block_size: usize,
    pub runs: usize,
    pub timing: String,
    pub copy_bandwidth_gbps: f64,
    pub probe: BandwidthProbe,
    pub results: Vec<StepResult>,
    pub skipped: Vec<String>,
}

pub fn run(a: &DecodeStepArgs) -> Result<(), BenchError> {
    let kv_heads = parse_sizes(&a.kv_heads, "--kv-heads")?;
    let mut batches = parse_sizes(&a.batch, "--batch")?;
    let mut contexts = parse_sizes(&a.context, "--context")?;
    batches.sort_unstable();
    batches.dedup();
    contexts.sort_unstable();
    contexts.dedup();
    let configs = kv_heads
        .iter()
        .map(|&k| preset(&a.synthetic, k))
        .collect::<Result<Vec<_>, _>>()?;
    if a.runs == 0 || a.block_size == 0 || a.tokens == 0 {
        return Err(BenchError(
            "--runs, --block-size and --tokens must be > 0".into(),
        ));
    }
    if let Some(&n) = contexts.iter().find(|&&n| n < a.tokens) {
        return Err(BenchError(format!(
            "--context {n} is shorter than --tokens {}",
            a.tokens
        )));
    }
    let (wf, kf): (StorageFormat, StorageFormat) = (a.weights.into(), a.kv.into());
    let gpu = GpuContext::new_blocking(&GpuOptions {
        adapter: a.adapter.clone(),
        ..Default::default()
    })?;
    eprintln!(
        "adapter: {} (timestamps: {}, subgroups: {}, max binding {:.2} GiB)",
        gpu.adapter_name(),
        gpu.features.timestamps,
        gpu.features.subgroups,
        gpu.max_binding() as f64 / GIB
    );

    let probe_bytes = (a.probe_gib.max(0.0) * GIB) as u64;
    let probe = probe_copy_bandwidth(&gpu, probe_bytes)?;
    let bw = probe.gbps_read_write;
    let timer = if a.wall_clock {
        GpuTimer::wall_clock(a.runs.max(a.warmup).max(1) as u32)
    } else {
        GpuTimer::new(&gpu, a.runs.max(a.warmup).max(1) as u32)
    };
    let timing = match timer.source() {
        TimingSource::Timestamps => "GPU timestamps around one compute pass holding the whole \
             step (each step submitted alone and waited for; host wall clock where a \
             timestamp pair is unusable, per shape)"
            .to_string(),
        TimingSource::WallClock => "host wall clock around submit + wait of one step \
             (includes submission and wake-up latency)"
            .to_string(),
    };
    println!(
        "copy bandwidth: {bw:.1} GB/s (read + write, {:.2} GiB copy, {})",
        probe.bytes_copied as f64 / GIB,
        probe.source.name()
    );
    println!("timing: {timing}");
    println!(
        "model: {} with random {} weights, {} KV cache; N = positions each row attends over",
        a.synthetic,
        a.quant.map_or(wf.name(), |q| QuantType::from(q).name()),
        kf.name()
    );

    let mut results = Vec::new();
    let mut skipped = Vec::new();
    let mut header_done = false;
    for cfg in &configs {
        let kvh = cfg.num_kv_heads;
        let bpt = kv_bytes_per_token(cfg, kf);
        println!(
            "{} ({kvh} KV heads): weights {:.2} GB, KV {:.1} KiB per cached token",
            cfg.attention_kind(),
            weight_bytes(cfg, wf) as f64 / 1e9,
            bpt as f64 / 1024.0
        );
        for &b in &batches {
            // the contexts that fit the memory budget at this batch
            let mut fit = Vec::new();
            for &n in &contexts {
                let est = memory_estimate(cfg, wf, bpt, b, n, a.block_size);
                if est as f64 > a.max_memory_gib * GIB {
                    skipped.push(format!(
                        "kv_heads {kvh} B={b} N={n}: needs about {:.1} GiB > --max-memory-gib {}",
                        est as f64 / GIB,
                        a.max_memory_gib
                    ));
                    println!("skipped: {}", skipped.last().unwrap());
                } else {
                    fit.push(n);
                }
            }
            // one model per (KV heads, batch), sized for the longest context that fits;
            // where it cannot be built, the longest context is dropped and it is retried
            while let Some(&cap) = fit.last() {
                let quant = a.quant.map(QuantType::from);
                let shape = StepSize {
                    batch: b,
                    tokens: a.tokens,
                    context: cap,
                };
                let model = match build(&gpu, cfg, (wf, quant), kf, shape, a.block_size, a.seed) {
                    Ok(m) => m,
                    Err(e) => {
                        skipped.push(format!("kv_heads {kvh} B={b} N={cap}: {e}"));
                        println!("skipped: {}", skipped.last().unwrap());
                        fit.pop();
                        continue;
                    }
                };
                if !header_done {
                    print_header();
                    header_done = true;
                }
                for &n in &fit {
                    match measure(&gpu, &timer, &model, b, n, a, bw) {
                        Ok(r) => {
                            print_row(&r);
                            results.push(r);
                        }
                        Err(e) => {
                            skipped.push(format!("kv_heads {kvh} B={b} N={n}: {e}"));
                            println!("skipped: {}", skipped.last().unwrap());
                        }
                    }
                }
                drop(model);
                gpu.wait()?;
                break;
            }
        }
    }
    println!(
        "W GB: weights one step reads (all but the unread rows of the token embedding); \
         KV GB: B x N x KV bytes per token; model GB: all bytes the kernels move by their \
         cost model; pred ms = (W + KV bytes) / copy bandwidth; ratio = step ms / pred ms; \
         GB/s = (W + KV bytes) / step ms; tok/s = B x --tokens / step ms"
    );

    if let Some(p) = &a.json {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let report = Report {
            adapter: gpu.adapter_name(),
            driver: format!(
                "{} {}",
                gpu.adapter_info.driver, gpu.adapter_info.driver_info
            ),
            unix_time: now,
            date_utc: UtcTime::from_unix(now as i64).iso8601(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            preset: a.synthetic.clone(),
            weights: a.quant.map_or(wf.name(), |q| QuantType::from(q).name()),
            kv: kf.name(),
            gpu_features: gpu.features.clone(),
            block_size: a.block_size,
            runs: a.runs,
            timing,
            copy_bandwidth_gbps: bw,
            probe,
            results,
            skipped,
        };
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| BenchError(format!("JSON: {e}")))?;
        std::fs::write(p, text).map_err(|e| BenchError(format!("writing {}: {e}", p.display())))?;
    }
    Ok(())
}

/// The sequences of a measured step: `batch` of them, each bringing `tokens` new tokens,
/// the last at position `context` - 1.
#[derive(Clone, Copy)]
struct StepSize {
    batch: usize,
    tokens: usize,
    context: usize,
}

/// The synthetic model for `shape`, with a KV cache full of random values.
fn build(
    gpu: &Arc<GpuContext>,
    cfg: &ModelConfig,
    (weights, quant): (StorageFormat, Option<QuantType>),
    kv: StorageFormat,
    shape: StepSize,
    block_size: usize,
    seed: u32,
) -> Result<GpuModel, BenchError> {
    let StepSize {
        batch,
        tokens,
        context,
    } = shape;
    let options = GpuModelOptions {
        weights,
        quantized: quant.is_some(),
        quantize: None,
        kv,
        context,
        max_chunk: batch * tokens,
        kv_block_size: block_size,
    };
    let t0 = std::time::Instant::now();
    let model = GpuModel::synthetic_blocks(gpu.clone(), cfg.clone(), options, batch, seed, quant)
        .map_err(|e| BenchError(e.to_string()))?;
    model
        .fill_kv_random(seed ^ 0x4b56)
        .map_err(|e| BenchError(e.to_string()))?;
    gpu.wait()?;
    eprintln!(
        "built {} B={batch} capacity {context}: {:.2} GB weights, {:.2} GiB KV cache ({:.1} s)",
        cfg.attention_kind(),
        model.weight_bytes as f64 / 1e9,
        model.kv_cache_bytes as f64 / GIB,
        t0.elapsed().as_secs_f64()
    );
    Ok(model)
}

/// Times `a.runs` decode steps of `batch` rows, each attending over `context` positions.
fn measure(
    gpu: &GpuContext,
    timer: &GpuTimer,
    model: &GpuModel,
    batch: usize,
    context: usize,
    a: &DecodeStepArgs,
    copy_gbps: f64,
) -> Result<StepResult, BenchError> {
    let err = |e: crate::model::gpu_model::ModelError| BenchError(e.to_string());
    // each row's cache holds context - tokens positions; the step adds the rest
    let tokens = a.tokens;
    let ids: Vec<u32> = (0..(batch * tokens) as u32)
        .map(|i| (i * 7919 + 1) % model.config.vocab_size as u32)
        .collect();
    let greedy = SamplingParams::default();
    let parts = (0..batch)
        .map(|i| {
            Ok(SequencePart {
                tokens: &ids[i * tokens..(i + 1) * tokens],
                pos0: context - tokens,
                table: model.sequence_table(i)?,
                sample: Some((greedy, 0)),
                logits: PartLogits::None,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    // one real step first (checks the whole path end to end, and the ids it samples)
    let sampled = model.forward(&parts).map_err(err)?;
    if sampled.len() != batch {
        return Err(BenchError(format!(
            "{} ids for {batch} rows",
            sampled.len()
        )));
    }
    // then the same step again and again: every run appends the same positions and
    // samples into the same rows, so the work is identical
    let step = model.prepare(&parts).map_err(err)?;
    timer.warm_up_for(gpu, "decode step", a.warmup_ms as f64 / 1e3, &mut |pass| {
        model.record(pass, &step)
    })?;
    let m = timer.measure(gpu, "decode step", a.warmup, a.runs, 1, &mut |pass| {
        model.record(pass, &step)
    })?;
    if a.profile {
        print_profile(model, &parts)?;
    }
    let logits = model.logits_rows(1).map_err(err)?;
    if !logits[0].iter().all(|v| v.is_finite()) {
        return Err(BenchError("the step's logits are not finite".into()));
    }
    let bpt = model.kv_layout.bytes_per_token();
    let kv_bytes = (batch * context) as u64 * bpt;
    let cost = model.step_cost(&step.context_lens(), step.sampled);
    let dispatches = model.step_dispatches(&step.context_lens(), step.sampled);
    let cfg = &model.config;
    // the embedding is stored as the matrices are (blocks where they are quantized)
    let embedding = match a.quant {
        Some(q) => QuantType::from(q).bytes_for(cfg.vocab_size * cfg.hidden_size),
        None => {
            (cfg.vocab_size * cfg.hidden_size * model.options.weights.bytes_per_element()) as u64
        }
    };
    let unread_rows = (cfg.vocab_size - (batch * tokens).min(cfg.vocab_size)) as u64;
    let embedding_unread = embedding * unread_rows / cfg.vocab_size as u64;
    let weights_read = model.weight_bytes - embedding_unread;
    let moved = weights_read + kv_bytes;
    let predicted = moved as f64 / (copy_gbps * 1e9);
    let mut wall = m.wall_samples.clone();
    wall.sort_by(f64::total_cmp);
    Ok(StepResult {
        kv_heads: model.config.num_kv_heads,
        attention: model.config.attention_kind(),
        batch,
        context,
        step_ms: m.median_s * 1e3,
        step_min_ms: m.min_s * 1e3,
        wall_ms: wall[wall.len() / 2] * 1e3,
        tokens_per_s: (batch * tokens) as f64 / m.median_s,
        ms_per_token: m.median_s * 1e3 / (batch * tokens) as f64,
        weight_bytes: model.weight_bytes,
        weight_bytes_read: weights_read,
        kv_bytes,
        kv_bytes_per_token: bpt,
        model_bytes: cost.bytes_read + cost.bytes_written,
        flops: cost.flops,
        dispatches,
        tflops: cost.flops as f64 / m.median_s / 1e12,
        predicted_ms: predicted * 1e3,
        measured_over_predicted: m.median_s / predicted,
        effective_gbps: moved as f64 / m.median_s / 1e9,
        timing: match m.source {
            TimingSource::Timestamps => "timestamps".into(),
            TimingSource::WallClock if m.timestamp_failures > 0 => format!(
                "wall clock ({} timestamp pairs unusable)",
                m.timestamp_failures
            ),
            TimingSource::WallClock => "wall clock".into(),
        },
        samples_ms: m.samples.iter().map(|s| s * 1e3).collect(),
    })
}

/// Each kernel family's GPU time in one step of `parts`, timed alone (`StepProbe`).
fn print_profile(model: &GpuModel, parts: &[SequencePart<'_>]) -> Result<(), BenchError> {
    let probe = StepProbe {
        kernel_times: true,
        attention_of: None,
    };
    let report = model
        .forward_report(parts, probe)
        .map_err(|e| BenchError(e.to_string()))?;
    let total: f64 = report.kernels.iter().map(|k| k.seconds).sum();
    if report.kernels.is_empty() {
        println!("  profile: no timestamps on this adapter");
    }
    for k in &report.kernels {
        println!(
            "  profile {:<16} {:>9.1} us {:>5.1}% {:>9.3} GB {:>8.1} GB/s",
            k.family,
            k.seconds * 1e6,
            100.0 * k.seconds / total,
            k.bytes as f64 / 1e9,
            k.bytes as f64 / k.seconds / 1e9
        );
    }
    Ok(())
}

fn print_header() {
    println!(
        "{:>4} {:>4} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>7} {:>5}",
        "kvh",
        "B",
        "N",
        "step ms",
        "wall ms",
        "ms/tok",
        "tok/s",
        "W GB",
        "KV GB",
        "model GB",
        "pred ms",
        "ratio",
        "GB/s",
        "TFLOP/s",
        "disp"
    );
}

fn print_row(r: &StepResult) {
    println!(
        "{:>4} {:>4} {:>6} {:>9.3} {:>9.3} {:>9.3} {:>9.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7.2} {:>8.1} {:>7.2} {:>5}{}",
        r.kv_heads,
        r.batch,
        r.context,
        r.step_ms,
        r.wall_ms,
        r.ms_per_token,
        r.tokens_per_s,
        r.weight_bytes_read as f64 / 1e9,
        r.kv_bytes as f64 / 1e9,
        r.model_bytes as f64 / 1e9,
        r.predicted_ms,
        r.measured_over_predicted,
        r.effective_gbps,
        r.tflops,
        r.dispatches,
        if r.timing == "timestamps" {
            String::new()
        } else {
            format!("  [{}]", r.timing)
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::presets::llama2_7b;

    #[test]
    fn llama2_7b_has_the_issue_arithmetic() {
        let mha = llama2_7b(32);
        // 2 (K, V) x 32 layers x 32 heads x 128 x 2 bytes = 512 KiB per cached token
        assert_eq!(kv_bytes_per_token(&mha, StorageFormat::F16), 512 * 1024);
        assert_eq!(
            kv_bytes_per_token(&llama2_7b(1), StorageFormat::F16),
            16 * 1024
        );
        // 6.74e9 parameters: 13.5 GB in f16
        let w = weight_bytes(&mha, StorageFormat::F16);
        assert!((13.4e9..13.6e9).contains(&(w as f64)), "{w}");
        assert!(preset("llama2-7b", 8).is_ok());
        assert!(preset("llama2-7b", 3).is_err());
        let e = preset("gpt2", 32).unwrap_err().0;
        assert!(e.contains("llama2-7b"), "{e}");
        let est = memory_estimate(&mha, StorageFormat::F16, 512 * 1024, 64, 2048, 16);
        assert!(est as f64 / GIB > 70.0, "{est}");
        let est = memory_estimate(&mha, StorageFormat::F16, 512 * 1024, 16, 4096, 16);
        assert!(est as f64 / GIB < 50.0, "{est}");
    }
}
