//! The serving engine on the default model (lavapipe in CI): sequences batched together
//! give the tokens each gives alone, prefix-cache hits give the tokens of a cold run, a
//! pool too small for everyone preempts and recomputes without changing any output, and
//! a client that goes away frees its blocks.

mod common;

use common::default_model;
use common::http::{http, serve_on_loopback, HttpResponse};
use headroom::engine::FinishReason;
use headroom::engine::{open_engine, LoadOptions};
use headroom::engine::{Backend, CompletionRequest, Event, SubmitError, TokenLogprob, Usage};
use headroom::engine::{Engine, EngineOptions};
use headroom::model::gpu_model::GpuModelOptions;
use headroom::ops::sample::SamplingParams;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The default model in an engine with a KV pool of `kv_memory` bytes, prefill chunks of
/// `max_chunk` rows, up to 8 running sequences, and prefix caching on or off.
fn engine_with(kv_memory: u64, max_chunk: usize, prefix_caching: bool) -> Option<Engine> {
    let path = default_model()?;
    let e = open_engine(&LoadOptions {
        model: path,
        adapter: None,
        gpu: GpuModelOptions {
            context: 512,
            max_chunk,
            ..Default::default()
        },
        kv_memory: Some(kv_memory),
        draft_model: None,
        engine: EngineOptions {
            model_id: "smollm2".into(),
            max_running: 8,
            prefix_caching,
            ..Default::default()
        },
    })
    .expect("engine starts");
    Some(e)
}

fn engine(kv_memory: u64, max_chunk: usize) -> Option<Engine> {
    engine_with(kv_memory, max_chunk, true)
}

/// Each request alone, in turn, on a fresh engine without prefix caching: the reference
/// that batched, cached and preempted runs are held to.
fn solo(reqs: &[CompletionRequest]) -> Vec<Outcome> {
    let e = engine_with(8 * 512 * KV_BYTES_PER_TOKEN, 64, false).expect("the model is there");
    let outcomes = reqs
        .iter()
        .map(|r| run_all(&e, vec![r.clone()]).remove(0))
        .collect();
    let m = settled(&e);
    assert_eq!(m.prompt_tokens_cached, 0, "prefix caching is off: {m:?}");
    outcomes
}

/// `request`, sampled at temperature 0.8 with top-p 0.95 and its own seed.
fn sampled(e: &Engine, text: &str, max_tokens: usize, seed: u32) -> CompletionRequest {
    CompletionRequest {
        sampling: SamplingParams {
            temperature: 0.8,
            top_k: 0,
            top_p: 0.95,
            seed,
        },
        ..request(e, text, max_tokens)
    }
}

fn request(e: &Engine, text: &str, max_tokens: usize) -> CompletionRequest {
    let tok = e.tokenizer();
    CompletionRequest {
        prompt_ids: tok.encode(text, true).unwrap(),
        max_tokens,
        sampling: SamplingParams::default(),
        stop_ids: vec![],
        stop_strings: vec![],
        skip_special: true,
        probe_attention: false,
        logprobs: None,
        prompt_logprobs: false,
        speculate: true,
    }
}

/// What one request produced.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    ids: Vec<u32>,
    /// of them, those drafted and confirmed in one step
    drafted: usize,
    text: String,
    finish: FinishReason,
    usage: Usage,
    /// of the generated tokens, where asked
    logprobs: Vec<TokenLogprob>,
    /// of the prompt's tokens after the first, where asked
    prompt_logprobs: Option<Vec<TokenLogprob>>,
}

/// Submits every request at once and collects their outcomes (in request order).
fn run_all(e: &Engine, reqs: Vec<CompletionRequest>) -> Vec<Outcome> {
    let mut rxs = Vec::new();
    for r in reqs {
        let (tx, rx) = mpsc::channel();
        e.submit(r, Box::new(move |ev| tx.send(ev).is_ok()))
            .unwrap();
        rxs.push(rx);
    }
    rxs.into_iter()
        .map(|rx| {
            let (mut ids, mut text, mut logprobs) = (vec![], String::new(), vec![]);
            let mut prompt_logprobs = None;
            let mut drafted = 0;
            loop {
                match rx.recv_timeout(Duration::from_secs(600)).unwrap() {
                    Event::Delta {
                        text: t,
                        ids: i,
                        logprobs: l,
                        drafted: d,
                    } => {
                        assert!(l.is_empty() || l.len() == i.len(), "one logprob per id");
                        if d {
                            drafted += i.len();
                        }
                        text += &t;
                        ids.extend(i);
                        logprobs.extend(l);
                    }
                    Event::PromptLogprobs(p) => {
                        assert!(ids.is_empty(), "prompt logprobs after a token");
                        assert!(prompt_logprobs.replace(p).is_none(), "sent twice");
                    }
                    Event::Done { finish, usage } => {
                        return Outcome {
                            ids,
                            drafted,
                            text,
                            finish,
                            usage,
                            logprobs,
                            prompt_logprobs,
                        }
                    }
                    Event::Failed(m) => panic!("request failed: {m}"),
                    Event::Attention(_) => panic!("attention sent without probe_attention"),
                }
            }
        })
        .collect()
}

/// Waits until the engine has published its state after the last request ended.
fn settled(e: &Engine) -> headroom::engine::MetricsSnapshot {
    for _ in 0..500 {
        let m = e.metrics();
        if m.running == 0 && m.waiting == 0 {
            return m;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the engine did not settle: {:?}", e.metrics());
}

/// KV bytes per token of SmolLM2-135M with an f16 cache: 30 layers x 3 KV heads x 64
/// x (K + V) x 2 bytes.
const KV_BYTES_PER_TOKEN: u64 = 30 * 3 * 64 * 2 * 2;

const PROMPTS: [&str; 4] = [
    "The capital of France is a city that many people visit every year because",
    "Here is a short list of prime numbers, written out in words: two, three, five,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village at the edge of a great forest, there lived",
];

#[test]
fn batched_sequences_give_the_tokens_of_solo_runs_and_cache_hits_those_of_cold_runs() {
    // room for everyone: 8 sequences of 512 positions
    let Some(e) = engine(8 * 512 * KV_BYTES_PER_TOKEN, 64) else {
        return;
    };
    let n = 12;
    // each prompt greedy and sampled with a seed of its own
    let reqs: Vec<CompletionRequest> = PROMPTS
        .iter()
        .map(|p| request(&e, p, n))
        .chain(
            PROMPTS
                .iter()
                .enumerate()
                .map(|(i, p)| sampled(&e, p, n, 100 + i as u32)),
        )
        .collect();
    let solo = solo(&reqs);
    for (o, r) in solo.iter().zip(&reqs) {
        assert_eq!(o.finish, FinishReason::Length, "{r:?}");
        assert_eq!(o.ids.len(), n);
        assert_eq!(o.text, e.tokenizer().decode_with(&o.ids, true));
    }
    assert!(
        (0..PROMPTS.len()).any(|i| solo[i].ids != solo[i + PROMPTS.len()].ids),
        "sampling at temperature 0.8 changed nothing"
    );
    // all eight at once, and again: the second round hits the prefix cache
    for round in 0..2 {
        let together = run_all(&e, reqs.clone());
        for (i, (t, s)) in together.iter().zip(&solo).enumerate() {
            assert_eq!(t.ids, s.ids, "round {round}, request {i}: batched != solo");
            assert_eq!(t.text, s.text);
            // round 0 is cold (a prompt's second request may find its first's blocks);
            // round 1 finds every full prompt block computed before
            let full_blocks = (t.usage.prompt_tokens - 1) / 16 * 16;
            let cached = t.usage.cached_tokens;
            assert!(
                cached == full_blocks || (round == 0 && cached == 0),
                "round {round}, request {i}: {cached} cached tokens of {full_blocks}"
            );
        }
    }
    let m = settled(&e);
    assert_eq!(m.kv_bytes_per_token, KV_BYTES_PER_TOKEN);
    assert!(m.prompt_tokens_cached > 0 && m.prefix_hit_rate() > 0.0);
    assert_eq!(m.kv_blocks_used, 0, "finished sequences hold no blocks");
    // a prompt that shares only its beginning reuses only those blocks
    let long = format!("{} {}", PROMPTS[3], PROMPTS[0]);
    let cold = run_all(&e, vec![request(&e, &long, 4)]).remove(0);
    assert!(cold.usage.cached_tokens > 0 && cold.usage.cached_tokens < cold.usage.prompt_tokens);
}

#[test]
fn a_small_pool_preempts_and_recomputes_without_changing_outputs() {
    // 14 blocks of 16 tokens for four sequences that grow to about 5 blocks each
    let Some(e) = engine(14 * 16 * KV_BYTES_PER_TOKEN, 32) else {
        return;
    };
    let n = 40;
    for seeded in [false, true] {
        let reqs: Vec<CompletionRequest> = PROMPTS
            .iter()
            .enumerate()
            .map(|(i, p)| CompletionRequest {
                // plain decoding: drafts would finish some early and spare the pool
                // (speculation_gives_the_greedy_ids_of_plain_decoding preempts with them)
                speculate: false,
                ..match seeded {
                    false => request(&e, p, n),
                    true => sampled(&e, p, n, 7 + i as u32),
                }
            })
            .collect();
        let before = e.metrics().requests_preempted;
        let together = run_all(&e, reqs.clone());
        let m = settled(&e);
        assert!(
            m.requests_preempted > before,
            "the pool was meant to run out: {m:?}"
        );
        for (i, (t, s)) in together.iter().zip(solo(&reqs)).enumerate() {
            assert_eq!(
                t.ids, s.ids,
                "sampled {seeded}, prompt {i}: preempted != solo"
            );
            assert_eq!(t.finish, s.finish, "prompt {i}");
            assert!(!t.ids.is_empty());
        }
    }
}

#[test]
fn stops_errors_and_a_vanished_client() {
    let Some(e) = engine(64 * 16 * KV_BYTES_PER_TOKEN, 64) else {
        return;
    };
    // a stop string cuts the text before it
    let base = run_all(&e, vec![request(&e, PROMPTS[1], 16)]).remove(0);
    let words: Vec<&str> = base.text.split_whitespace().collect();
    assert!(words.len() > 3, "{:?}", base.text);
    let stop = words[2].to_string();
    let mut r = request(&e, PROMPTS[1], 16);
    r.stop_strings = vec![stop.clone()];
    let cut = run_all(&e, vec![r]).remove(0);
    assert_eq!(cut.finish, FinishReason::Stop);
    assert_eq!(cut.text, base.text[..base.text.find(&stop).unwrap()]);
    // a stop id ends generation without its text
    let mut r = request(&e, PROMPTS[1], 16);
    r.stop_ids = vec![base.ids[3]];
    let first = base.ids.iter().position(|&i| i == base.ids[3]).unwrap();
    let cut = run_all(&e, vec![r]).remove(0);
    assert_eq!(
        (cut.finish, &cut.ids[..]),
        (FinishReason::Stop, &base.ids[..first])
    );

    // requests that can never run are refused at once
    let mut r = request(&e, "hello", 4);
    r.prompt_ids = vec![1; 600];
    assert!(
        matches!(e.submit(r, Box::new(|_| true)), Err(SubmitError::Invalid(m)) if m.contains("context"))
    );
    let mut r = request(&e, "hello", 4);
    r.prompt_ids.clear();
    assert!(matches!(
        e.submit(r, Box::new(|_| true)),
        Err(SubmitError::Invalid(_))
    ));
    let mut r = request(&e, "hello", 4);
    r.prompt_ids = vec![u32::MAX];
    assert!(
        matches!(e.submit(r, Box::new(|_| true)), Err(SubmitError::Invalid(m)) if m.contains("vocabulary"))
    );

    // a client that stops listening after two tokens: the sequence ends, blocks freed
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    e.submit(
        request(&e, PROMPTS[2], 200),
        Box::new(move |ev| {
            let n = s.fetch_add(1, Ordering::SeqCst) + 1;
            if matches!(ev, Event::Done { .. }) {
                let _ = done_tx.send(());
            }
            n < 2
        }),
    )
    .unwrap();
    // the engine drops the sink with the sequence: the channel closes without Done
    assert!(done_rx.recv_timeout(Duration::from_secs(600)).is_err());
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "no event after the client left"
    );
    let m = settled(&e);
    assert_eq!(m.kv_blocks_used, 0, "{m:?}");
}

/// A request with `probe_attention` gets its prompt's attention map before its first token,
/// and the same tokens as without it.
#[test]
fn attention_probe_arrives_first_and_changes_nothing() {
    let Some(e) = engine(64 << 20, 64) else {
        return;
    };
    let plain = request(&e, "The capital of France is", 3);
    let mut probed = plain.clone();
    probed.probe_attention = true;
    let want = run_all(&e, vec![plain]).remove(0);
    let (tx, rx) = mpsc::channel();
    e.submit(probed.clone(), Box::new(move |ev| tx.send(ev).is_ok()))
        .unwrap();
    let first = rx.recv_timeout(Duration::from_secs(600)).unwrap();
    let Event::Attention(map) = first else {
        panic!("first event is not the attention map: {first:?}")
    };
    assert_eq!(map.positions, probed.prompt_ids.len());
    assert_eq!((map.layers, map.heads, map.kv_heads), (30, 9, 3));
    for l in 0..map.layers {
        for h in 0..map.heads {
            let sum: f32 = map.head(l, h).iter().sum();
            assert!((sum - 1.0).abs() < 1e-3, "layer {l} head {h}: {sum}");
        }
    }
    let mut ids = vec![];
    loop {
        match rx.recv_timeout(Duration::from_secs(600)).unwrap() {
            Event::Delta { ids: i, .. } => ids.extend(i),
            Event::Done { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ids, want.ids);
}

/// Log-probabilities: a greedy token is its row's most likely one; alternatives come most
/// likely first and are probabilities; and the prompt's log-probabilities (its rows
/// computed in chunks, beside another request's decode rows) score a continuation as the
/// decode steps that generated it did.
#[test]
fn logprobs_rank_greedy_tokens_first_and_prompt_rows_score_them_as_decoding_did() {
    // chunks of 16 rows: the scored prompt spans several steps
    let Some(e) = engine(64 << 20, 16) else {
        return;
    };
    let generated = 6;
    let mut greedy = request(&e, PROMPTS[0], generated);
    greedy.logprobs = Some(4);
    let base = run_all(&e, vec![greedy]).remove(0);
    assert_eq!(base.ids.len(), generated);
    assert_eq!(base.logprobs.len(), generated);
    assert!(base.prompt_logprobs.is_none());
    for (t, &id) in base.logprobs.iter().zip(&base.ids) {
        assert_eq!(t.id, id);
        assert_eq!(t.top.len(), 4);
        assert_eq!(
            t.top[0],
            (id, t.logprob),
            "greedy takes the most likely token"
        );
        assert!(t.top.windows(2).all(|w| w[0].1 >= w[1].1), "{:?}", t.top);
        let mass: f32 = t.top.iter().map(|(_, lp)| lp.exp()).sum();
        assert!(t.logprob <= 0.0 && mass <= 1.0 + 1e-4, "{t:?}");
    }

    // the prompt followed by what greedy decoding made, scored as a prompt, beside a
    // request that only decodes
    let mut scored = request(&e, PROMPTS[0], 1);
    let prompt_len = scored.prompt_ids.len();
    scored.prompt_ids.extend(&base.ids);
    scored.logprobs = Some(2);
    scored.prompt_logprobs = true;
    assert!(scored.prompt_ids.len() > 16, "spans more than one chunk");
    let other = request(&e, PROMPTS[1], 8);
    let mut out = run_all(&e, vec![other, scored.clone()]);
    let got = out.remove(1);
    let prompt = got.prompt_logprobs.expect("prompt logprobs sent");
    assert_eq!(prompt.len(), scored.prompt_ids.len() - 1);
    for (t, &id) in prompt.iter().zip(&scored.prompt_ids[1..]) {
        assert_eq!(t.id, id);
        assert_eq!(t.top.len(), 2);
        assert!(t.logprob <= t.top[0].1 + 1e-6, "{t:?}");
    }
    let continuation = &prompt[prompt_len - 1..];
    for (k, (p, d)) in continuation.iter().zip(&base.logprobs).enumerate() {
        assert_eq!(p.top[0].0, d.id, "token {k}: still the most likely");
        // seen on lavapipe: up to 1.5e-4 (prefill and decode kernels round differently)
        let diff = (p.logprob - d.logprob).abs();
        assert!(
            diff < 2e-3,
            "token {k}: prefill {} vs decode {}",
            p.logprob,
            d.logprob
        );
    }
    assert_eq!(got.logprobs.len(), got.ids.len());
    // the prompt was computed whole: nothing taken from the cache
    assert_eq!(got.usage.cached_tokens, 0);
}

/// The text of a whole completion, or of a stream's deltas; and the finish reason.
fn completion_text(r: &HttpResponse, stream: bool) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.body);
    if !stream {
        let c = &r.json()["choices"][0];
        return (
            c["text"].as_str().unwrap().to_string(),
            c["finish_reason"].as_str().unwrap().to_string(),
        );
    }
    let (mut text, mut finish) = (String::new(), String::new());
    for data in r.sse_data() {
        let data = data.as_str();
        if data == "[DONE]" {
            break;
        }
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        let c = &v["choices"][0];
        text += c["text"].as_str().unwrap_or("");
        if let Some(f) = c["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    (text, finish)
}

/// Stop strings through the HTTP server and the real engine, whole and streamed: the text
/// ends before a stop string; and text held back because it could begin a stop string is
/// sent after all when `max_tokens` ends the request.
#[test]
fn stop_strings_over_http_cut_the_text_and_flush_held_text_at_max_tokens() {
    let Some(e) = engine(64 * 16 * KV_BYTES_PER_TOKEN, 64) else {
        return;
    };
    let n = 16;
    let mut r = request(&e, PROMPTS[1], n);
    r.stop_ids = e.tokenizer().eos_ids().to_vec();
    let base = run_all(&e, vec![r]).remove(0);
    assert_eq!(base.finish, FinishReason::Length, "{:?}", base.text);
    let words: Vec<&str> = base.text.split_whitespace().collect();
    assert!(words.len() > 3, "{:?}", base.text);
    let stop = words[2].to_string();
    let cut = base.text[..base.text.find(&stop).unwrap()].to_string();
    // a stop string that begins with the text's last characters and goes on as the text
    // never does: the engine holds that tail back until max_tokens ends the request
    let tail: String = base
        .text
        .chars()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let pending = format!("{tail}\u{1}never");

    let (addr, _runtime) = serve_on_loopback(Arc::new(e));
    for stream in [false, true] {
        let ask = |stop: &str| {
            let body = serde_json::json!({"prompt": PROMPTS[1], "max_tokens": n,
                "temperature": 0, "stop": [stop], "stream": stream});
            completion_text(
                &http(addr, "POST", "/v1/completions", &body.to_string()),
                stream,
            )
        };
        assert_eq!(ask(&stop), (cut.clone(), "stop".into()), "stream {stream}");
        assert_eq!(
            ask(&pending),
            (base.text.clone(), "length".into()),
            "stream {stream}: the held-back tail {tail:?} is sent at max_tokens"
        );
    }
}

/// `n` choices over HTTP on the real engine: choices after the first take the prompt's full
/// KV blocks from the prefix cache, and each choice is what a request alone with the
/// choice's seed (the request's plus its index) gives.
#[test]
fn n_choices_share_the_prompt_blocks_and_each_equals_its_seed_alone() {
    let Some(e) = engine(64 << 20, 64) else {
        return;
    };
    let prompt = format!("{} {}", PROMPTS[0], PROMPTS[1]);
    let max_tokens = 5;
    let prompt_len = request(&e, &prompt, 1).prompt_ids.len();
    assert!(
        prompt_len > 32,
        "the prompt fills at least two blocks: {prompt_len}"
    );
    let e = Arc::new(e);
    let (addr, _runtime) = serve_on_loopback(e.clone());
    let body = serde_json::json!({"prompt": prompt, "max_tokens": max_tokens, "n": 3,
        "temperature": 0.8, "top_p": 0.95, "seed": 40});
    let r = http(addr, "POST", "/v1/completions", &body.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    // a cold prompt: choice 0 computed it, the two others took its full blocks
    let full_blocks = (prompt_len - 1) / 16 * 16;
    assert_eq!(settled(&e).prompt_tokens_cached, 2 * full_blocks as u64);
    let solo: Vec<Outcome> = (0..3)
        .map(|i| run_all(&e, vec![sampled(&e, &prompt, max_tokens, 40 + i)]).remove(0))
        .collect();
    let v = r.json();
    for (i, want) in solo.iter().enumerate() {
        assert_eq!(v["choices"][i]["index"], i);
        assert_eq!(v["choices"][i]["text"], want.text.as_str(), "choice {i}");
    }
    assert_ne!(solo[0].ids, solo[1].ids, "seeds 40 and 41 draw differently");
    assert_eq!(
        v["usage"]["completion_tokens"],
        solo.iter().map(|o| o.ids.len()).sum::<usize>()
    );
}

/// The engine of `faults_engine`, with the GPU context it runs on.
fn faults_engine() -> Option<(Engine, Arc<headroom::gpu::GpuContext>)> {
    use headroom::engine::{open, upload_paged};
    use headroom::gpu::{GpuContext, GpuOptions};
    let path = default_model()?;
    let (gpu_tx, gpu_rx) = mpsc::channel();
    let options = EngineOptions {
        model_id: "smollm2".into(),
        max_running: 8,
        ..Default::default()
    };
    let e = Engine::start(options, move || {
        let files = open(&path)?;
        // a context of its own: this test destroys its device
        let gpu = GpuContext::new_blocking(&GpuOptions::default())?;
        gpu_tx.send(gpu.clone()).unwrap();
        let options = GpuModelOptions {
            context: 512,
            max_chunk: 64,
            ..Default::default()
        };
        let model = headroom::gpu::block_on(upload_paged(
            gpu,
            files.weights.as_ref(),
            &options,
            Some(64 << 20),
            8,
            0,
            &mut |_, _, _| {},
        ))?;
        Ok((model, files.tokenizer))
    })
    .expect("engine starts");
    Some((e, gpu_rx.recv().unwrap()))
}

/// Submits `req` and returns its events' receiver once its first token has come.
fn started(e: &Engine, req: CompletionRequest) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    e.submit(req, Box::new(move |ev| tx.send(ev).is_ok()))
        .unwrap();
    match rx.recv_timeout(Duration::from_secs(600)).unwrap() {
        Event::Delta { .. } => rx,
        other => panic!("expected a token first, got {other:?}"),
    }
}

/// The message of the `Failed` that ends `rx`'s request (tokens before it are skipped).
fn failure(rx: &mpsc::Receiver<Event>) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(600)).unwrap() {
            Event::Delta { .. } => {}
            Event::Failed(message) => return message,
            other => panic!("expected the request to fail, got {other:?}"),
        }
    }
}

/// Faults: a GPU error in a step (out of memory, say; injected here) fails the requests of
/// that step with it and the engine serves on; a lost device fails what runs, later
/// requests are refused as stopped, and `/health` says why.
#[test]
fn a_gpu_error_fails_its_step_and_a_lost_device_stops_the_engine() {
    let Some((e, gpu)) = faults_engine() else {
        return;
    };
    let long = request(&e, PROMPTS[2], 400);
    let rx = started(&e, long.clone());
    gpu.faults
        .record_error("Out of Memory (injected by the test)".into());
    let message = failure(&rx);
    assert!(message.contains("injected by the test"), "{message}");
    let after = run_all(&e, vec![request(&e, PROMPTS[0], 4)]).remove(0);
    assert_eq!(after.ids.len(), 4, "the engine serves on");
    assert!(e.stopped().is_none());
    assert_eq!(
        settled(&e).kv_blocks_used,
        0,
        "the failed request's blocks are back"
    );

    let rx = started(&e, long.clone());
    gpu.device.destroy();
    let message = failure(&rx);
    assert!(message.contains("lost"), "{message}");
    for _ in 0..500 {
        if e.stopped().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let why = e.stopped().expect("the engine has stopped");
    assert!(why.contains("lost"), "{why}");
    let refused = e.submit(long, Box::new(|_| true));
    assert!(
        matches!(refused, Err(SubmitError::Stopped(ref m)) if m.contains("lost")),
        "{refused:?}"
    );
    let (addr, _runtime) = serve_on_loopback(Arc::new(e));
    let health = http(addr, "GET", "/health", "");
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "stopped");
    assert!(health.json()["reason"].as_str().unwrap().contains("lost"));
}

/// A prompt that asks for text it holds: prompt lookup drafts from it.
const COPY_PROMPT: &str = "Copy the list exactly.\nList: apples, pears, plums, cherries, \
    grapes, lemons, limes, melons, mangoes, peaches.\nCopy: apples, pears, plums,";

/// Speculative decoding (prompt lookup, verified in one step) changes the speed, never the
/// text: greedy requests give the ids they give without it, batched beside each other and
/// beside sampled requests, and in a pool small enough to preempt drafting sequences.
#[test]
fn speculation_gives_the_greedy_ids_of_plain_decoding() {
    for kv_tokens in [8 * 512, 112] {
        let Some(e) = engine(kv_tokens * KV_BYTES_PER_TOKEN, 64) else {
            return;
        };
        let n = 16;
        let greedy: Vec<CompletionRequest> = [COPY_PROMPT, PROMPTS[1], PROMPTS[2]]
            .iter()
            .map(|p| request(&e, p, n))
            .collect();
        let plain: Vec<CompletionRequest> = greedy
            .iter()
            .map(|r| CompletionRequest {
                speculate: false,
                ..r.clone()
            })
            .collect();
        let want: Vec<Outcome> = plain
            .iter()
            .map(|r| run_all(&e, vec![r.clone()]).remove(0))
            .collect();
        let before = settled(&e);
        assert_eq!(before.draft_tokens_total, 0, "plain requests never draft");
        let mut reqs = greedy.clone();
        reqs.push(sampled(&e, PROMPTS[0], n, 7));
        let got = run_all(&e, reqs);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.ids, w.ids, "pool of {kv_tokens} tokens, request {i}");
            assert_eq!(g.text, w.text);
            assert_eq!(g.usage.completion_tokens, n);
            assert_eq!(
                w.drafted, 0,
                "a request that does not speculate drafts nothing"
            );
        }
        let m = settled(&e);
        assert!(
            m.draft_accepted_total > 0,
            "nothing was drafted and kept: {m:?}"
        );
        assert!(m.draft_accepted_total <= m.draft_tokens_total);
        // the events mark the confirmed draft tokens they carry: the copy reply has some,
        // and no request more than the engine confirmed
        let marked: usize = got.iter().map(|g| g.drafted).sum();
        if kv_tokens != 112 {
            assert!(
                got[0].drafted > 0,
                "the copy reply's events mark no drafted token"
            );
        }
        assert!(
            marked as u64 <= m.draft_accepted_total,
            "{marked} tokens marked, {} confirmed",
            m.draft_accepted_total
        );
        assert_eq!(m.kv_blocks_used, 0);
        if kv_tokens == 112 {
            assert!(m.requests_preempted > 0, "the small pool preempted: {m:?}");
        }
        // fewer steps than tokens: drafts were confirmed several at a time
        eprintln!(
            "pool {kv_tokens}: {} of {} drafted tokens confirmed",
            m.draft_accepted_total, m.draft_tokens_total
        );
    }
}

/// Speculative decoding with a draft model (here the default model drafting for itself,
/// so its drafts are mostly kept): greedy requests batched together, beside a sampled
/// one, and in a pool small enough to preempt them, give the ids they give without
/// speculation; the drafts come from the model (prompts that do not repeat themselves).
#[test]
fn a_draft_model_gives_the_greedy_ids_of_plain_decoding() {
    for kv_tokens in [8 * 512, 112] {
        let Some(path) = default_model() else { return };
        let e = open_engine(&LoadOptions {
            model: path.clone(),
            adapter: None,
            gpu: GpuModelOptions {
                context: 512,
                max_chunk: 64,
                ..Default::default()
            },
            kv_memory: Some(kv_tokens as u64 * KV_BYTES_PER_TOKEN),
            draft_model: Some(path),
            engine: EngineOptions {
                model_id: "smollm2".into(),
                max_running: 8,
                ..Default::default()
            },
        })
        .expect("engine starts");
        let n = 16;
        let greedy: Vec<CompletionRequest> =
            PROMPTS[..3].iter().map(|p| request(&e, p, n)).collect();
        let want: Vec<Outcome> = greedy
            .iter()
            .map(|r| {
                let plain = CompletionRequest {
                    speculate: false,
                    ..r.clone()
                };
                run_all(&e, vec![plain]).remove(0)
            })
            .collect();
        let mut reqs = greedy.clone();
        reqs.push(sampled(&e, PROMPTS[0], n, 7));
        let got = run_all(&e, reqs);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.ids, w.ids, "pool of {kv_tokens} tokens, request {i}");
        }
        let m = settled(&e);
        eprintln!(
            "pool {kv_tokens}: {} of {} drafted tokens confirmed",
            m.draft_accepted_total, m.draft_tokens_total
        );
        assert!(
            m.draft_accepted_total * 2 > m.draft_tokens_total && m.draft_tokens_total > 0,
            "the model's own drafts are mostly kept: {m:?}"
        );
        assert_eq!(m.kv_blocks_used, 0);
    }
}
