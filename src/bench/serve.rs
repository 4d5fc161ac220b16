//! `headroom bench serve`: the serving engine in-process under concurrent requests.
//!
//! Two parts, one engine:
//! 1. throughput: for each concurrency c, c requests with unique prompts arrive at once
//!    and each generates a fixed number of tokens; aggregate decode tokens/s is taken
//!    from the engine's own step records, over the steps where all c sequences were
//!    decoding (no prefill rows in the step);
//! 2. time to first token: requests whose prompts share a long prefix (a "system
//!    prompt") mixed with unique ones, one at a time so each TTFT is the engine's alone;
//!    the first request of a prefix is cold, later ones hit the prefix cache. Mean and
//!    p99 are reported for hits and misses separately.
//!
//! Prompts are token ids drawn from a seeded generator (the engine does not care what
//! they say); no end-of-sequence id stops generation, so every request runs its length.

use super::attention::parse_sizes;
use super::{BenchError, OutputArgs};
use crate::bench::plot::{write_png, Panel, Series};
use crate::engine::{default_model_path, FinishReason};
use crate::engine::{open_engine, LoadOptions};
use crate::engine::{Backend, CompletionRequest, Event, Usage};
use crate::engine::{Engine, EngineOptions};
use crate::gpu::StorageFormat;
use crate::metrics::StepRecord;
use crate::model::gpu_model::GpuModelOptions;
use crate::ops::sample::SamplingParams;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchServeArgs {
    /// GGUF file or HF directory (default: the default model)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// concurrent sequences to measure throughput at
    #[arg(long, default_value = "1,4,16,64")]
    pub concurrency: String,
    /// prompt tokens of each throughput request
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,
    /// tokens each throughput request generates
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// tokens of the shared prefix in the TTFT part
    #[arg(long, default_value_t = 2048)]
    pub prefix_tokens: usize,
    /// unique tokens after the prefix (the question)
    #[arg(long, default_value_t = 16)]
    pub suffix_tokens: usize,
    /// requests in the TTFT part
    #[arg(long, default_value_t = 24)]
    pub ttft_requests: usize,
    /// of which share a prefix (the rest are unique prompts of the same length)
    #[arg(long, default_value_t = 0.75)]
    pub shared_fraction: f64,
    /// distinct shared prefixes
    #[arg(long, default_value_t = 2)]
    pub prefixes: usize,
    /// positions per sequence
    #[arg(long, default_value_t = 4096)]
    pub context: usize,
    /// token rows per forward pass (prefill chunk; `serve`'s default)
    #[arg(long, default_value_t = 512)]
    pub max_chunk: usize,
    /// bytes of KV pool, e.g. 2G (default: see `headroom serve --help`)
    #[arg(long, value_parser = crate::engine::parse_bytes)]
    pub kv_memory: Option<u64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// how weight matrices are stored on the GPU: native (a GGUF's quantized blocks as
    /// stored, as `serve` does) or f16
    #[arg(long, value_enum, default_value = "native")]
    pub weights: BenchWeights,
    /// the same as `--weights native` (the default; kept for recorded commands)
    #[arg(long, hide = true)]
    pub native_weights: bool,
    /// --csv, --json, and --plot: throughput against running sequences
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long, env = "HEADROOM_ADAPTER")]
    pub adapter: Option<String>,
}

/// How `bench serve` stores weight matrices.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchWeights {
    Native,
    F16,
}

/// Throughput at one concurrency.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Throughput {
    pub concurrency: usize,
    /// generated tokens per second over the steps where every sequence was decoding
    pub decode_tokens_per_s: f64,
    /// the same per sequence
    pub per_sequence_tokens_per_s: f64,
    pub decode_steps: usize,
    /// mean step time of those steps (host wall clock: from the schedule to the samples
    /// handed on)
    pub step_ms: f64,
    /// the GPU's share of it: the mean of those steps' timestamped compute passes, where
    /// the adapter has timestamps (the rest is the host's: preparing, recording and
    /// submitting the step, reading its samples back, handing them on)
    pub gpu_ms: Option<f64>,
    /// all generated tokens over the whole run, first submit to last token
    pub end_to_end_tokens_per_s: f64,
    pub peak_kv_blocks: usize,
    pub peak_kv_mib: f64,
}

/// One TTFT request.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TtftSample {
    pub shared_prefix: bool,
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
    pub ttft_ms: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TtftSummary {
    pub cached: bool,
    pub requests: usize,
    pub mean_ms: f64,
    pub p99_ms: f64,
}

/// A seeded stream of ordinary token ids.
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // ids 1000..17000: plain word pieces in BPE vocabularies of this size
        1000 + ((self.0 >> 33) % 16000) as u32
    }

    fn take(&mut self, n: usize) -> Vec<u32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn request(prompt_ids: Vec<u32>, max_tokens: usize) -> CompletionRequest {
    CompletionRequest {
        prompt_ids,
        max_tokens,
        sampling: SamplingParams::default(),
        stop_ids: vec![],
        stop_strings: vec![],
        skip_special: true,
        probe_attention: false,
        logprobs: None,
        prompt_logprobs: false,
        // plain decode: random prompts give drafts only where greedy output loops
        speculate: false,
    }
}

/// Submits a request; returns a receiver of (event, arrival time).
fn submit(
    e: &Engine,
    req: CompletionRequest,
) -> Result<mpsc::Receiver<(Event, Instant)>, BenchError> {
    let (tx, rx) = mpsc::channel();
    e.submit(
        req,
        Box::new(move |ev| tx.send((ev, Instant::now())).is_ok()),
    )
    .map_err(|e| BenchError(format!("submit: {e}")))?;
    Ok(rx)
}

/// Waits for a request's end: (first token time, usage).
fn finish(rx: mpsc::Receiver<(Event, Instant)>) -> Result<(Instant, Usage), BenchError> {
    let mut first = None;
    loop {
        let (ev, at) = rx
            .recv_timeout(Duration::from_secs(1800))
            .map_err(|_| BenchError("a request never finished".into()))?;
        match ev {
            Event::Delta { ids, .. } if !ids.is_empty() => {
                first.get_or_insert(at);
            }
            Event::Delta { .. } => {}
            Event::Done { finish, usage } => {
                if finish == FinishReason::Cancelled {
                    return Err(BenchError("a request was cancelled".into()));
                }
                let first = first.ok_or_else(|| BenchError("no token came".into()))?;
                return Ok((first, usage));
            }
            Event::Failed(m) => return Err(BenchError(format!("request failed: {m}"))),
            Event::Attention(_) | Event::PromptLogprobs(_) => {}
        }
    }
}

fn measure_throughput(
    e: &Engine,
    c: usize,
    a: &BenchServeArgs,
    ids: &mut Ids,
    bytes_per_block: u64,
) -> Result<Throughput, BenchError> {
    let first_step = e.steps_run();
    let t0 = Instant::now();
    let rxs = (0..c)
        .map(|_| submit(e, request(ids.take(a.prompt_tokens), a.gen_tokens)))
        .collect::<Result<Vec<_>, _>>()?;
    // sample the pool while the requests run
    let mut peak_blocks = 0;
    let mut pending: Vec<_> = rxs.into_iter().map(Some).collect();
    let mut generated = 0usize;
    let mut last = t0;
    while pending.iter().any(Option::is_some) {
        peak_blocks = peak_blocks.max(e.metrics().kv_blocks_used);
        for slot in pending.iter_mut() {
            let Some(rx) = slot.as_ref() else { continue };
            while let Ok((ev, at)) = rx.try_recv() {
                match ev {
                    Event::Delta { ids, .. } => generated += ids.len(),
                    Event::Done { .. } => {
                        last = last.max(at);
                        *slot = None;
                        break;
                    }
                    Event::Failed(m) => return Err(BenchError(format!("request failed: {m}"))),
                    Event::Attention(_) | Event::PromptLogprobs(_) => {}
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let steps: Vec<StepRecord> = e
        .step_records_since(first_step)
        .iter()
        .filter(|s| s.prefill_tokens == 0 && s.running == c && s.sampled == c)
        .cloned()
        .collect();
    let secs: f64 = steps.iter().map(|s| s.seconds).sum();
    let tokens: usize = steps.iter().map(|s| s.sampled).sum();
    let rate = if secs > 0.0 {
        tokens as f64 / secs
    } else {
        0.0
    };
    Ok(Throughput {
        concurrency: c,
        decode_tokens_per_s: rate,
        per_sequence_tokens_per_s: rate / c as f64,
        decode_steps: steps.len(),
        step_ms: if steps.is_empty() {
            0.0
        } else {
            1e3 * secs / steps.len() as f64
        },
        gpu_ms: mean_gpu_ms(&steps),
        end_to_end_tokens_per_s: generated as f64 / (last - t0).as_secs_f64().max(1e-9),
        peak_kv_blocks: peak_blocks,
        peak_kv_mib: (peak_blocks as u64 * bytes_per_block) as f64 / (1u64 << 20) as f64,
    })
}

/// The mean GPU time of `steps` in ms, where every one of them has it.
fn mean_gpu_ms(steps: &[StepRecord]) -> Option<f64> {
    let times: Option<Vec<f64>> = steps.iter().map(|s| s.gpu_s).collect();
    let times = times.filter(|t| !t.is_empty())?;
    Some(1e3 * times.iter().sum::<f64>() / times.len() as f64)
}

fn measure_ttft(
    e: &Engine,
    a: &BenchServeArgs,
    ids: &mut Ids,
) -> Result<Vec<TtftSample>, BenchError> {
    let prefixes: Vec<Vec<u32>> = (0..a.prefixes.max(1))
        .map(|_| ids.take(a.prefix_tokens))
        .collect();
    let mut out = Vec::new();
    for r in 0..a.ttft_requests {
        // a deterministic mix: request r shares a prefix when its slot falls below the fraction
        let shared = ((r as f64 + 0.5) / a.ttft_requests as f64) < a.shared_fraction
            || a.shared_fraction >= 1.0;
        let mut prompt = if shared {
            prefixes[r % prefixes.len()].clone()
        } else {
            ids.take(a.prefix_tokens)
        };
        prompt.extend(ids.take(a.suffix_tokens));
        let n = prompt.len();
        let t0 = Instant::now();
        let rx = submit(e, request(prompt, 1))?;
        let (first, usage) = finish(rx)?;
        out.push(TtftSample {
            shared_prefix: shared,
            prompt_tokens: n,
            cached_tokens: usage.cached_tokens,
            ttft_ms: 1e3 * (first - t0).as_secs_f64(),
        });
    }
    Ok(out)
}

fn summarize(samples: &[TtftSample]) -> Vec<TtftSummary> {
    [false, true]
        .into_iter()
        .filter_map(|cached| {
            let mut t: Vec<f64> = samples
                .iter()
                .filter(|s| (s.cached_tokens > 0) == cached)
                .map(|s| s.ttft_ms)
                .collect();
            if t.is_empty() {
                return None;
            }
            t.sort_by(f64::total_cmp);
            let p99 = t[((t.len() as f64 * 0.99).ceil() as usize).clamp(1, t.len()) - 1];
            Some(TtftSummary {
                cached,
                requests: t.len(),
                mean_ms: t.iter().sum::<f64>() / t.len() as f64,
                p99_ms: p99,
            })
        })
        .collect()
}

pub fn run(a: &BenchServeArgs) -> Result<(), BenchError> {
    let levels = parse_sizes(&a.concurrency, "--concurrency")?;
    let most = levels.iter().copied().max().unwrap_or(1);
    if a.prefix_tokens + a.suffix_tokens >= a.context || a.prompt_tokens + a.gen_tokens > a.context
    {
        return Err(BenchError(format!(
            "prompts and generations must fit --context {}",
            a.context
        )));
    }
    let opts = LoadOptions {
        model: a.model.clone().unwrap_or_else(default_model_path),
        adapter: a.adapter.clone(),
        gpu: GpuModelOptions {
            weights: StorageFormat::F16,
            quantized: a.native_weights || a.weights == BenchWeights::Native,
            quantize: None,
            kv: StorageFormat::F16,
            context: a.context,
            max_chunk: a.max_chunk.max(most),
            kv_block_size: 16,
        },
        kv_memory: a.kv_memory,
        draft_model: None,
        engine: EngineOptions {
            model_id: "bench".into(),
            max_running: most,
            ..Default::default()
        },
    };
    let e = open_engine(&opts).map_err(|e| BenchError(e.to_string()))?;
    let m = e.metrics();
    let bytes_per_block = m.kv_bytes_per_token * m.kv_block_size as u64;
    eprintln!(
        "model: {} | KV pool {} blocks of {} tokens ({:.0} MiB, {} bytes per token)",
        opts.model.display(),
        m.kv_blocks_total,
        m.kv_block_size,
        (m.kv_blocks_total as u64 * bytes_per_block) as f64 / (1u64 << 20) as f64,
        m.kv_bytes_per_token
    );
    let mut ids = Ids(a.seed);
    // warm-up: pipelines compiled, buffers touched
    finish(submit(&e, request(ids.take(a.prompt_tokens), 8))?)?;

    println!(
        "{:>11} {:>14} {:>12} {:>8} {:>9} {:>8} {:>12} {:>10}",
        "concurrent",
        "decode tok/s",
        "per seq",
        "steps",
        "step ms",
        "GPU ms",
        "e2e tok/s",
        "KV MiB"
    );
    let mut throughput = Vec::new();
    for &c in &levels {
        let t = measure_throughput(&e, c, a, &mut ids, bytes_per_block)?;
        let gpu_ms = t.gpu_ms.map_or("-".to_string(), |g| format!("{g:.2}"));
        println!(
            "{:>11} {:>14.1} {:>12.1} {:>8} {:>9.2} {:>8} {:>12.1} {:>10.1}",
            t.concurrency,
            t.decode_tokens_per_s,
            t.per_sequence_tokens_per_s,
            t.decode_steps,
            t.step_ms,
            gpu_ms,
            t.end_to_end_tokens_per_s,
            t.peak_kv_mib
        );
        throughput.push(t);
    }

    let samples = measure_ttft(&e, a, &mut ids)?;
    let summary = summarize(&samples);
    println!(
        "\ntime to first token, {}-token prompts ({} + {} unique), one request at a time:",
        a.prefix_tokens + a.suffix_tokens,
        a.prefix_tokens,
        a.suffix_tokens
    );
    for s in &summary {
        println!(
            "  {:<24} {:>3} requests  mean {:>8.2} ms  p99 {:>8.2} ms",
            if s.cached {
                "prefix-cache hit"
            } else {
                "cold (no cached prefix)"
            },
            s.requests,
            s.mean_ms,
            s.p99_ms
        );
    }
    if let [cold, hit] = &summary[..] {
        println!(
            "  cached / cold speedup (mean): {:.1}x",
            cold.mean_ms / hit.mean_ms
        );
    }
    let m = e.metrics();
    println!(
        "prefix hit rate over the run: {:.1}% of prompt tokens; {} preemptions",
        100.0 * m.prefix_hit_rate(),
        m.requests_preempted
    );

    if let Some(p) = &a.out.csv {
        let mut s = String::from("concurrency,decode_tokens_per_s,per_sequence_tokens_per_s,decode_steps,step_ms,gpu_ms,end_to_end_tokens_per_s,peak_kv_mib\n");
        for t in &throughput {
            s += &format!(
                "{},{:.2},{:.2},{},{:.4},{},{:.2},{:.2}\n",
                t.concurrency,
                t.decode_tokens_per_s,
                t.per_sequence_tokens_per_s,
                t.decode_steps,
                t.step_ms,
                t.gpu_ms.map_or(String::new(), |g| format!("{g:.4}")),
                t.end_to_end_tokens_per_s,
                t.peak_kv_mib
            );
        }
        std::fs::write(p, s)?;
    }
    if let Some(p) = &a.out.json {
        let doc = serde_json::json!({
            "model": opts.model.display().to_string(),
            "args": format!("{a:?}"),
            "kv_bytes_per_token": m.kv_bytes_per_token,
            "kv_blocks_total": m.kv_blocks_total,
            "throughput": throughput,
            "ttft_samples": samples,
            "ttft": summary,
            "metrics": m,
        });
        std::fs::write(p, serde_json::to_string_pretty(&doc).unwrap_or_default())?;
    }
    if let Some(p) = &a.out.plot {
        let points = |f: fn(&Throughput) -> f64| -> Vec<(f64, f64)> {
            throughput
                .iter()
                .map(|t| (t.concurrency as f64, f(t)))
                .collect()
        };
        let panel = Panel {
            title: "aggregate decode throughput".into(),
            x_label: "running sequences".into(),
            y_label: "tokens/s".into(),
            log_x: true,
            log_y: true,
            series: vec![
                Series::solid("all sequences", points(|t| t.decode_tokens_per_s)),
                Series::solid("per sequence", points(|t| t.per_sequence_tokens_per_s)),
            ],
        };
        write_png(p, 900, 500, "headroom bench serve", &[panel])
            .map_err(|e| BenchError(e.to_string()))?;
    }
    Ok(())
}
