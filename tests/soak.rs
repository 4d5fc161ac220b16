//! A bounded soak of the whole server on the default model (lavapipe in CI): concurrent
//! clients on loopback send whole and streamed greedy completions, hang up mid-stream or
//! mid-request, and send bad requests, for a fixed time. Every greedy answer must equal the
//! same prompt's answer asked alone, every bad request must get its 4xx, and afterwards no
//! KV block is held, no file descriptor is left open and resident memory has not run away.
//!
//! CI runs it short; a longer run: `HEADROOM_SOAK_SECS=600 HEADROOM_SOAK_CLIENTS=64 cargo
//! test --release --test soak -- --nocapture` (it prints its counts and time to first token).

mod common;

use common::default_model;
use common::http::{http, send_request, serve_on_loopback};
use headroom::engine::{open_engine, Backend, EngineOptions, LoadOptions};
use headroom::model::gpu_model::GpuModelOptions;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROMPTS: [&str; 4] = [
    "The capital of France is a city that many people visit every year because",
    "Here is a short list of prime numbers, written out in words: two, three, five,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village at the edge of a great forest, there lived",
];
/// Tokens per answer: short, so that lavapipe turns many requests around.
const MAX_TOKENS: usize = 6;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn greedy(prompt: usize, stream: bool) -> String {
    json!({"prompt": PROMPTS[prompt], "max_tokens": MAX_TOKENS, "temperature": 0,
           "stream": stream})
    .to_string()
}

/// The text of a streamed completion, and the seconds to its first text chunk.
fn read_stream(addr: SocketAddr, body: &str) -> (String, f64) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    send_request(&mut stream, "POST", "/v1/completions", body);
    let mut raw = Vec::new();
    let mut first = None;
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if first.is_none() && String::from_utf8_lossy(&raw).contains("\"text\":\"") {
            first = Some(start.elapsed().as_secs_f64());
        }
    }
    let r = common::http::parse_response(&String::from_utf8(raw).unwrap());
    assert_eq!(r.status, 200, "{}", r.body);
    let events = r.sse_data();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let text = events[..events.len() - 1]
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_str(e).unwrap();
            v["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    (text, first.unwrap_or(f64::NAN))
}

/// Sends `body` and hangs up after `wait` (mid-stream or before a whole reply is done).
fn hang_up(addr: SocketAddr, body: &str, wait: Duration) {
    let mut stream = TcpStream::connect(addr).unwrap();
    send_request(&mut stream, "POST", "/v1/completions", body);
    std::thread::sleep(wait);
}

/// Requests the server must refuse, with the status each must get.
fn bad_request(rng: &mut StdRng) -> (String, u16) {
    match rng.random_range(0..4) {
        0 => ("{not json".into(), 400),
        1 => (json!({"prompt": "a", "max_tokens": -1}).to_string(), 400),
        2 => (json!({"prompt": "a", "model": "nope"}).to_string(), 404),
        _ => (
            json!({"prompt": "a", "max_tokens": 100000}).to_string(),
            400,
        ),
    }
}

#[derive(Default, Debug)]
struct Counts {
    whole: usize,
    streamed: usize,
    hung_up: usize,
    bad: usize,
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / 1048576.0
}

#[test]
fn concurrent_clients_get_solo_answers_and_leave_nothing_behind() {
    let Some(path) = default_model() else { return };
    let secs = env_or("HEADROOM_SOAK_SECS", 8);
    let clients = env_or("HEADROOM_SOAK_CLIENTS", 6) as usize;
    let engine = open_engine(&LoadOptions {
        model: path,
        adapter: None,
        gpu: GpuModelOptions {
            context: 256,
            max_chunk: 64,
            ..Default::default()
        },
        kv_memory: None,
        draft_model: None,
        engine: EngineOptions {
            model_id: "smollm2".into(),
            max_running: 16,
            ..Default::default()
        },
    })
    .expect("engine starts");
    let engine = Arc::new(engine);
    let (addr, _runtime) = serve_on_loopback(engine.clone());

    // each prompt alone, one after another: the answers everyone is held to
    let solo: Vec<String> = (0..PROMPTS.len())
        .map(|p| {
            let r = http(addr, "POST", "/v1/completions", &greedy(p, false));
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    let (fds, rss) = (open_fds(), resident_mib());

    let counts = Arc::new(Mutex::new(Counts::default()));
    let ttfts = Arc::new(Mutex::new(Vec::new()));
    let end = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (solo, counts, ttfts) = (solo.clone(), counts.clone(), ttfts.clone());
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(c as u64);
                while Instant::now() < end {
                    let p = rng.random_range(0..PROMPTS.len());
                    match rng.random_range(0..100) {
                        0..=34 => {
                            let r = http(addr, "POST", "/v1/completions", &greedy(p, false));
                            assert_eq!(r.status, 200, "{}", r.body);
                            let text = r.json()["choices"][0]["text"].as_str().unwrap().to_string();
                            assert_eq!(text, solo[p], "client {c}, prompt {p}, whole");
                            counts.lock().unwrap().whole += 1;
                        }
                        35..=59 => {
                            let (text, ttft) = read_stream(addr, &greedy(p, true));
                            assert_eq!(text, solo[p], "client {c}, prompt {p}, streamed");
                            ttfts.lock().unwrap().push(ttft);
                            counts.lock().unwrap().streamed += 1;
                        }
                        60..=84 => {
                            let wait = Duration::from_millis(rng.random_range(10..300));
                            hang_up(addr, &greedy(p, rng.random_bool(0.5)), wait);
                            counts.lock().unwrap().hung_up += 1;
                        }
                        _ => {
                            let (body, status) = bad_request(&mut rng);
                            let r = http(addr, "POST", "/v1/completions", &body);
                            assert_eq!(r.status, status, "{body} -> {}", r.body);
                            counts.lock().unwrap().bad += 1;
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a client failed");
    }

    // the engine settles with no block held (cached blocks are idle, not held)
    let settle = Instant::now();
    let m = loop {
        let m = engine.metrics();
        if m.running == 0 && m.waiting == 0 && m.kv_blocks_used == 0 {
            break m;
        }
        assert!(
            settle.elapsed() < Duration::from_secs(60),
            "the engine did not settle: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // every connection closed on the server's side too
    let settle = Instant::now();
    while open_fds() > fds && settle.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (fds_after, rss_after) = (open_fds(), resident_mib());
    let counts = counts.lock().unwrap();
    let mut t = ttfts.lock().unwrap().clone();
    t.sort_by(f64::total_cmp);
    let pct = |q: f64| t.get(((t.len() as f64 - 1.0) * q) as usize).copied();
    eprintln!(
        "soak: {secs} s, {clients} clients, {counts:?}; time to first token p50 {:?} s, p99 {:?} s; \
         {} requests finished by the engine; fds {fds} -> {fds_after}; resident {rss:.0} -> {rss_after:.0} MiB",
        pct(0.5),
        pct(0.99),
        m.requests_finished
    );
    assert!(counts.whole + counts.streamed > 0 && counts.hung_up > 0 && counts.bad > 0);
    assert!(
        fds_after <= fds,
        "file descriptors left open: {fds} -> {fds_after}"
    );
    assert!(
        rss_after - rss < 256.0,
        "resident memory grew {rss:.0} -> {rss_after:.0} MiB"
    );
}
