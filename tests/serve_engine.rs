//! The serving engine on the default model (lavapipe in CI): sequences batched together
//! give the tokens each gives alone, prefix-cache hits give the tokens of a cold run, a
//! pool too small for everyone preempts and recomputes without changing any output, and
//! a client that goes away frees its blocks.

use headroom::engine::{default_model_path, FinishReason};
use headroom::engine::{open_engine, LoadOptions};
use headroom::engine::{Backend, CompletionRequest, Event, SubmitError, Usage};
use headroom::engine::{Engine, EngineOptions};
use headroom::model::gpu_model::GpuModelOptions;
use headroom::ops::sample::SamplingParams;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn engine(kv_memory: u64, max_chunk: usize) -> Engine {
    let path = default_model_path();
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-model.sh",
        path.display()
    );
    open_engine(&LoadOptions {
        model: path,
        adapter: None,
        gpu: GpuModelOptions {
            context: 512,
            max_chunk,
            ..Default::default()
        },
        kv_memory: Some(kv_memory),
        engine: EngineOptions {
            model_id: "smollm2".into(),
            max_running: 8,
            ..Default::default()
        },
    })
    .expect("engine starts")
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
    }
}

/// What one request produced.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    ids: Vec<u32>,
    text: String,
    finish: FinishReason,
    usage: Usage,
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
            let (mut ids, mut text) = (vec![], String::new());
            loop {
                match rx.recv_timeout(Duration::from_secs(600)).unwrap() {
                    Event::Delta { text: t, ids: i } => {
                        text += &t;
                        ids.extend(i);
                    }
                    Event::Done { finish, usage } => {
                        return Outcome {
                            ids,
                            text,
                            finish,
                            usage,
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
    let e = engine(8 * 512 * KV_BYTES_PER_TOKEN, 64);
    let n = 12;
    let solo: Vec<Outcome> = PROMPTS
        .iter()
        .map(|p| run_all(&e, vec![request(&e, p, n)]).remove(0))
        .collect();
    for (o, p) in solo.iter().zip(PROMPTS) {
        assert_eq!(o.finish, FinishReason::Length, "{p}");
        assert_eq!(o.ids.len(), n);
        assert_eq!(o.text, e.tokenizer().decode_with(&o.ids, true));
    }
    // all four at once, and again: the second round hits the prefix cache
    for round in 0..2 {
        let together = run_all(&e, PROMPTS.iter().map(|p| request(&e, p, n)).collect());
        for (i, (t, s)) in together.iter().zip(&solo).enumerate() {
            assert_eq!(t.ids, s.ids, "round {round}, prompt {i}: batched != solo");
            assert_eq!(t.text, s.text);
            let full_blocks = (t.usage.prompt_tokens - 1) / 16 * 16;
            assert_eq!(
                t.usage.cached_tokens, full_blocks,
                "round {round}, prompt {i}: every full prompt block was computed before"
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
    let e = engine(14 * 16 * KV_BYTES_PER_TOKEN, 32);
    let n = 48;
    let reqs = || {
        PROMPTS
            .iter()
            .map(|p| request(&e, p, n))
            .collect::<Vec<_>>()
    };
    let together = run_all(&e, reqs());
    let m = e.metrics();
    assert!(
        m.requests_preempted > 0,
        "the pool was meant to run out: {m:?}"
    );
    // each alone (no preemption possible with one sequence)
    for (i, r) in reqs().into_iter().enumerate() {
        let solo = run_all(&e, vec![r]).remove(0);
        assert_eq!(solo.ids, together[i].ids, "prompt {i}");
        assert_eq!(solo.finish, together[i].finish, "prompt {i}");
        assert!(!solo.ids.is_empty());
    }
}

#[test]
fn stops_errors_and_a_vanished_client() {
    let e = engine(64 * 16 * KV_BYTES_PER_TOKEN, 64);
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
    let e = engine(64 << 20, 64);
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
