//! `headroom bench speculate`: speculative decoding by prompt lookup against plain decoding,
//! one engine, one request at a time, the same greedy request alternately with and without
//! speculation. Decode tokens/s is taken from the first token to the last (prefill apart),
//! and the two runs must give the same ids: speculation changes the speed only.
//!
//! Two workloads by default: `copy` (a passage the reply repeats: drafts from the prompt
//! are right) and `chat` (an open question: they rarely are, and speculation must turn
//! itself off).
//!
//! The outputs are compared, not required to match: a verification step computes its rows
//! together, and on a GPU the decode attention's split of the context depends on how many
//! rows a step has, so logits can differ in their last bits from a one-row step's and a
//! near tie can go the other way (so can batching requests together). Where they differ,
//! `first_difference` says at which token.

use super::BenchError;
use crate::engine::{default_model_path, open_engine, LoadOptions};
use crate::engine::{Backend, CompletionRequest, Engine, EngineOptions, Event, FinishReason};
use crate::gpu::StorageFormat;
use crate::model::gpu_model::GpuModelOptions;
use crate::ops::sample::SamplingParams;
use crate::tokenizer::ChatMessage;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct BenchSpeculateArgs {
    /// GGUF file or HF directory (default: the default model)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// workloads to run: copy, chat
    #[arg(long, default_value = "copy,chat")]
    pub workloads: String,
    /// tokens each request generates (stop tokens end it earlier)
    #[arg(long, default_value_t = 256)]
    pub gen_tokens: usize,
    /// measured pairs of runs per workload, after one warm-up pair
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// most draft tokens per step
    #[arg(long, default_value_t = crate::engine::DEFAULT_DRAFT_TOKENS)]
    pub draft_tokens: usize,
    /// 0 is greedy (the two runs must then agree); above it both runs sample with the
    /// same seed, and only their speed and acceptance compare
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1)]
    pub seed: u32,
    #[arg(long, default_value_t = 4096)]
    pub context: usize,
    /// write the results as JSON
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long, env = "HEADROOM_ADAPTER")]
    pub adapter: Option<String>,
}

/// The passage of the copy workload.
const PASSAGE: &str = "The lighthouse stood on a rock a mile from the shore. Every evening \
    the keeper climbed its one hundred and twelve steps, trimmed the wick, wound the clock \
    that turned the lens, and wrote the weather in a book: the wind, the sea, the ships that \
    passed and the time they passed. In winter the spray froze on the windows and he \
    scraped it away with a knife. In summer the gulls nested on the gallery and he let them \
    be. He kept the book for forty years, and when he left, the last page said only: calm \
    sea, light wind from the west, no ships.";

/// One workload's result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SpeculateResult {
    pub workload: String,
    pub prompt_tokens: usize,
    /// tokens of the plain runs (the speculative ones' may differ where sampled)
    pub generated_tokens: usize,
    /// median decode tokens/s of the runs
    pub plain_tokens_per_s: f64,
    pub speculative_tokens_per_s: f64,
    pub speedup: f64,
    /// drafted tokens the model confirmed, of all drafted
    pub acceptance: f64,
    pub drafted_tokens: u64,
    /// forward passes per generated token with speculation (1 without)
    pub steps_per_token: f64,
    pub identical: bool,
    /// where the two outputs first differ, if they do (greedy: see the module's note;
    /// sampled: expected, the draws use the seed's numbers differently)
    pub first_difference: Option<usize>,
}

/// The chat prompt of a workload.
fn workload_prompt(name: &str) -> Result<String, BenchError> {
    match name {
        "copy" => Ok(format!(
            "Repeat the following passage word for word, and nothing else.\n\n{PASSAGE}"
        )),
        "chat" => Ok(
            "Write a short story about a lighthouse keeper who finds a message in \
                      a bottle. Describe the sea, the weather and what the message says."
                .into(),
        ),
        other => Err(BenchError(format!(
            "unknown workload {other:?} (copy, chat)"
        ))),
    }
}

/// One run: (ids, decode seconds from the first token to the last, steps it took).
fn run_once(e: &Engine, req: CompletionRequest) -> Result<(Vec<u32>, f64, u64), BenchError> {
    let (tx, rx) = mpsc::channel();
    let steps0 = e.steps_run();
    e.submit(
        req,
        Box::new(move |ev| tx.send((ev, Instant::now())).is_ok()),
    )
    .map_err(|e| BenchError(format!("submit: {e}")))?;
    let (mut ids, mut first, mut last) = (Vec::new(), None, None);
    loop {
        let (ev, at) = rx
            .recv_timeout(Duration::from_secs(1800))
            .map_err(|_| BenchError("a request never finished".into()))?;
        match ev {
            Event::Delta { ids: new, .. } if !new.is_empty() => {
                first.get_or_insert(at);
                last = Some(at);
                ids.extend(new);
            }
            Event::Done { finish, .. } => {
                if finish == FinishReason::Cancelled {
                    return Err(BenchError("a request was cancelled".into()));
                }
                break;
            }
            Event::Failed(m) => return Err(BenchError(format!("request failed: {m}"))),
            _ => {}
        }
    }
    let (first, last) = first
        .zip(last)
        .ok_or_else(|| BenchError("no token came".into()))?;
    Ok((ids, (last - first).as_secs_f64(), e.steps_run() - steps0))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: &BenchSpeculateArgs) -> Result<(), BenchError> {
    let opts = LoadOptions {
        model: a.model.clone().unwrap_or_else(default_model_path),
        adapter: a.adapter.clone(),
        gpu: GpuModelOptions {
            weights: StorageFormat::F16,
            quantized: true,
            quantize: None,
            kv: StorageFormat::F16,
            context: a.context,
            max_chunk: 512,
            kv_block_size: 16,
        },
        kv_memory: None,
        draft_model: None,
        engine: EngineOptions {
            model_id: "bench".into(),
            max_running: 1,
            draft_tokens: a.draft_tokens,
            ..Default::default()
        },
    };
    let e = open_engine(&opts).map_err(|e| BenchError(e.to_string()))?;
    eprintln!(
        "model: {} | draft tokens: {}",
        opts.model.display(),
        a.draft_tokens
    );
    let tok = e.tokenizer();
    println!(
        "{:>9} {:>7} {:>8} {:>11} {:>11} {:>8} {:>11} {:>10} {:>9}",
        "workload",
        "prompt",
        "tokens",
        "plain t/s",
        "spec t/s",
        "speedup",
        "acceptance",
        "steps/tok",
        "differ from"
    );
    let mut results = Vec::new();
    for name in a
        .workloads
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let text = tok
            .apply_chat(&[ChatMessage::new("user", &workload_prompt(name)?)], true)
            .map_err(|e| BenchError(e.to_string()))?;
        let prompt_ids = tok
            .encode(&text, false)
            .map_err(|e| BenchError(e.to_string()))?;
        let req = |speculate: bool| CompletionRequest {
            prompt_ids: prompt_ids.clone(),
            max_tokens: a.gen_tokens,
            sampling: SamplingParams {
                temperature: a.temperature,
                seed: a.seed,
                ..SamplingParams::default()
            },
            stop_ids: tok.eos_ids().to_vec(),
            stop_strings: vec![],
            skip_special: true,
            probe_attention: false,
            logprobs: None,
            prompt_logprobs: false,
            speculate,
        };
        let (mut plain, mut spec) = (Vec::new(), Vec::new());
        let (mut first_difference, mut generated, mut spec_steps) = (None, 0, 0u64);
        let mut spec_tokens = 0;
        let m0 = e.metrics();
        for repeat in 0..=a.repeats {
            let (ids_plain, s_plain, _) = run_once(&e, req(false))?;
            let (ids_spec, s_spec, steps) = run_once(&e, req(true))?;
            if ids_plain != ids_spec {
                let at = ids_plain
                    .iter()
                    .zip(&ids_spec)
                    .take_while(|(a, b)| a == b)
                    .count();
                first_difference = Some(first_difference.map_or(at, |f: usize| f.min(at)));
            }
            if repeat == 0 {
                continue; // warm-up
            }
            // sampled runs may end at different lengths: each its own rate
            let decoded = |ids: &[u32]| ids.len().saturating_sub(1) as f64;
            plain.push(decoded(&ids_plain) / s_plain.max(1e-9));
            spec.push(decoded(&ids_spec) / s_spec.max(1e-9));
            generated = ids_plain.len();
            spec_steps += steps;
            spec_tokens += ids_spec.len();
        }
        let m1 = e.metrics();
        let drafted = m1.draft_tokens_total - m0.draft_tokens_total;
        let confirmed = m1.draft_accepted_total - m0.draft_accepted_total;
        let (p, s) = (median(&mut plain), median(&mut spec));
        let r = SpeculateResult {
            workload: name.to_string(),
            prompt_tokens: prompt_ids.len(),
            generated_tokens: generated,
            plain_tokens_per_s: p,
            speculative_tokens_per_s: s,
            speedup: s / p,
            acceptance: confirmed as f64 / drafted.max(1) as f64,
            drafted_tokens: drafted,
            steps_per_token: spec_steps as f64 / spec_tokens.max(1) as f64,
            identical: first_difference.is_none(),
            first_difference,
        };
        println!(
            "{:>9} {:>7} {:>8} {:>11.1} {:>11.1} {:>7.2}x {:>11.2} {:>10.2} {:>12}",
            r.workload,
            r.prompt_tokens,
            r.generated_tokens,
            r.plain_tokens_per_s,
            r.speculative_tokens_per_s,
            r.speedup,
            r.acceptance,
            r.steps_per_token,
            r.first_difference
                .map_or("-".to_string(), |at| format!("token {at}"))
        );
        results.push(r);
    }
    if let Some(path) = &a.json {
        let json = serde_json::json!({
            "adapter": e.adapter(),
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "date_utc": crate::formats::date::UtcTime::from_unix(super::now_unix()).iso8601(),
            "draft_tokens": a.draft_tokens,
            "temperature": a.temperature,
            "seed": a.seed,
            "results": results,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json).unwrap())?;
    }
    Ok(())
}
