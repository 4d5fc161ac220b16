//! The OpenAI-compatible HTTP layer against a scripted backend: JSON shapes, SSE framing,
//! error bodies, metrics, cancellation when a client goes away, and the official `openai`
//! Python client (scripts/openai_client_check.py). Requests are written by hand over
//! TCP so that exactly what goes over the wire is checked.
//!
//! The backend is fake but the tokenizer is the default model's (skipped without the model,
//! except in CI).

mod common;

use common::http::{
    http, http_with, parse_response, send_request, serve_on_loopback, serve_on_loopback_until,
    serve_on_loopback_with, HttpResponse,
};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use headroom::engine::FinishReason;
use headroom::engine::{
    Backend, CompletionRequest, Event, EventSink, MetricsSnapshot, SubmitError, TokenLogprob, Usage,
};
use headroom::tokenizer::{ChatMessage, Tokenizer};
use serde_json::{json, Value};

const MODEL: &str = "test-org/fake-model";
const CONTEXT: usize = 256;
/// The fake generates at most this many words, then stops on its own ("stop").
const WORDS: usize = 5;

/// `top_k` values that pick a script other than the normal one.
const TOP_K_ENDLESS: u32 = 1001;
const TOP_K_FAIL: u32 = 1002;
const TOP_K_OVERLOADED: u32 = 1003;

/// A backend that answers from a script on its own thread, as the engine does.
struct FakeBackend {
    tokenizer: Tokenizer,
    /// the last request accepted
    last: Mutex<Option<CompletionRequest>>,
    /// every request accepted, in order
    all: Mutex<Vec<CompletionRequest>>,
    /// set when a sink returned false (the server dropped the receiver)
    cancelled: Arc<AtomicBool>,
    /// what `stopped` answers (a test sets it as a lost device would)
    stopped: Mutex<Option<String>>,
}

impl Backend for FakeBackend {
    fn model_id(&self) -> &str {
        MODEL
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn context(&self) -> usize {
        CONTEXT
    }

    fn submit(&self, req: CompletionRequest, sink: EventSink) -> Result<(), SubmitError> {
        if req.prompt_ids.is_empty() {
            return Err(SubmitError::Invalid("the prompt is empty".into()));
        }
        if req.prompt_ids.len() >= CONTEXT {
            return Err(SubmitError::Invalid(format!(
                "the prompt has {} tokens; the context holds {CONTEXT}",
                req.prompt_ids.len()
            )));
        }
        if req.sampling.top_k == TOP_K_OVERLOADED {
            return Err(SubmitError::Overloaded("the queue is full".into()));
        }
        *self.last.lock().unwrap() = Some(req.clone());
        self.all.lock().unwrap().push(req.clone());
        let cancelled = self.cancelled.clone();
        std::thread::spawn(move || play_script(req, sink, &cancelled));
        Ok(())
    }

    fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            running: 3,
            waiting: 2,
            kv_blocks_used: 40,
            kv_blocks_total: 100,
            kv_blocks_cached: 7,
            kv_block_size: 16,
            kv_bytes_per_token: 18432,
            requests_total: 11,
            requests_finished: 8,
            requests_preempted: 1,
            prompt_tokens_total: 400,
            prompt_tokens_cached: 100,
            generated_tokens_total: 900,
            steps_total: 321,
            draft_tokens_total: 40,
            draft_accepted_total: 30,
            decode_tokens_per_s: 12.5,
        }
    }

    fn stopped(&self) -> Option<String> {
        self.stopped.lock().unwrap().clone()
    }
}

/// The words the fake generates for a prompt: one per prompt id, cycling.
fn fake_words(prompt_ids: &[u32], max_tokens: usize) -> Vec<String> {
    (0..max_tokens.min(WORDS))
        .map(|i| format!(" w{}", prompt_ids[i % prompt_ids.len()] % 100))
        .collect()
}

fn fake_text(prompt_ids: &[u32], max_tokens: usize) -> String {
    fake_words(prompt_ids, max_tokens).concat()
}

/// The fake's log-probability of token `id` at its `k`-th position, with `top`
/// alternatives (ids `id + 1..`, each less likely).
fn fake_logprob(id: u32, k: usize, top: usize) -> TokenLogprob {
    let logprob = -0.25 - k as f32 / 8.0;
    TokenLogprob {
        id,
        logprob,
        top: (0..top)
            .map(|j| (id + 1 + j as u32, logprob - 1.0 - j as f32))
            .collect(),
    }
}

/// The ids the fake "generates": the prompt's, cycling (so the logprobs name real tokens).
fn fake_ids(prompt_ids: &[u32], max_tokens: usize) -> Vec<u32> {
    (0..max_tokens.min(WORDS))
        .map(|i| prompt_ids[i % prompt_ids.len()])
        .collect()
}

/// What the fake's cached-token count is for a prompt.
fn fake_cached(prompt_len: usize) -> usize {
    prompt_len / 2
}

fn play_script(req: CompletionRequest, mut sink: EventSink, cancelled: &AtomicBool) {
    let mut send = |event: Event| {
        let listening = sink(event);
        if !listening {
            cancelled.store(true, Ordering::SeqCst);
        }
        listening
    };
    let delta = |text: &str| Event::Delta {
        text: text.to_string(),
        ids: vec![1],
        logprobs: vec![],
        drafted: false,
    };
    match req.sampling.top_k {
        TOP_K_ENDLESS => {
            // Ticks until nobody listens (bounded, so a failed test leaks no thread).
            for _ in 0..1000 {
                if !send(delta(" tick")) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        TOP_K_FAIL => {
            send(delta(" partial"));
            send(Event::Failed("device lost".into()));
        }
        _ => {
            let top = req.logprobs.unwrap_or(0);
            if req.prompt_logprobs {
                let scored = req.prompt_ids[1..]
                    .iter()
                    .enumerate()
                    .map(|(k, &id)| fake_logprob(id, k, top))
                    .collect();
                if !send(Event::PromptLogprobs(scored)) {
                    return;
                }
            }
            let words = fake_words(&req.prompt_ids, req.max_tokens);
            let ids = fake_ids(&req.prompt_ids, req.max_tokens);
            for (k, (word, &id)) in words.iter().zip(&ids).enumerate() {
                let word = Event::Delta {
                    text: word.clone(),
                    ids: vec![id],
                    logprobs: req
                        .logprobs
                        .map(|_| fake_logprob(id, k, top))
                        .into_iter()
                        .collect(),
                    drafted: false,
                };
                // An empty delta, as for an incomplete character: never a chunk of its own.
                let empty = Event::Delta {
                    text: String::new(),
                    ids: vec![],
                    logprobs: vec![],
                    drafted: false,
                };
                if !send(word) || !send(empty) {
                    return;
                }
            }
            let finish = if req.max_tokens > WORDS {
                FinishReason::Stop
            } else {
                FinishReason::Length
            };
            let usage = Usage {
                prompt_tokens: req.prompt_ids.len(),
                completion_tokens: words.len(),
                cached_tokens: fake_cached(req.prompt_ids.len()),
            };
            send(Event::Done { finish, usage });
        }
    }
}

// ---------------------------------------------------------------------------------------
// The server under test

/// The default model's tokenizer (None where `common::default_model` skips).
fn tokenizer() -> Option<Tokenizer> {
    static TOKENIZER: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| {
            let path = common::default_model()?;
            Some(
                headroom::engine::open(&path)
                    .expect("open the default model")
                    .tokenizer,
            )
        })
        .clone()
}

/// A server on a free port with its own runtime; dropping it stops the server.
struct Server {
    addr: SocketAddr,
    backend: Arc<FakeBackend>,
    _runtime: tokio::runtime::Runtime,
}

fn fake_backend() -> Option<Arc<FakeBackend>> {
    Some(Arc::new(FakeBackend {
        tokenizer: tokenizer()?,
        last: Mutex::new(None),
        all: Mutex::new(Vec::new()),
        cancelled: Arc::new(AtomicBool::new(false)),
        stopped: Mutex::new(None),
    }))
}

fn start() -> Option<Server> {
    let backend = fake_backend()?;
    let (addr, runtime) = serve_on_loopback(backend.clone());
    Some(Server {
        addr,
        backend,
        _runtime: runtime,
    })
}

impl Server {
    fn get(&self, path: &str) -> HttpResponse {
        http(self.addr, "GET", path, "")
    }

    fn post(&self, path: &str, body: &Value) -> HttpResponse {
        http(self.addr, "POST", path, &body.to_string())
    }

    fn last_request(&self) -> CompletionRequest {
        self.backend
            .last
            .lock()
            .unwrap()
            .clone()
            .expect("a request reached the backend")
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.backend.tokenizer
    }

    /// Waits up to `limit` for a sink to have returned false.
    fn saw_cancel_within(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.backend.cancelled.load(Ordering::SeqCst) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn health_and_models() {
    let Some(server) = start() else { return };
    let health = server.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), json!({"status": "ok"}));

    let models = server.get("/v1/models");
    assert_eq!(models.status, 200);
    let body = models.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let card = &body["data"][0];
    assert_eq!(card["id"], MODEL);
    assert_eq!(card["object"], "model");
    assert!(card["created"].as_u64().is_some());
    assert!(card["owned_by"].is_string());

    let one = server.get(&format!("/v1/models/{MODEL}"));
    assert_eq!(one.status, 200);
    assert_eq!(one.json(), *card);
    let encoded = server.get("/v1/models/test-org%2Ffake-model");
    assert_eq!(encoded.status, 200, "{}", encoded.body);

    let unknown = server.get("/v1/models/no-such-model");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error()["code"], "model_not_found");
}

#[test]
fn completion_returns_text_finish_reason_and_usage() {
    let Some(server) = start() else { return };
    let prompt = "The capital of France is";
    let r = server.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": prompt, "max_tokens": 3, "temperature": 0,
                "seed": 7, "stop": ["\n\n", ""], "user": "someone", "frequency_penalty": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let body = r.json();

    let ids = server.tokenizer().encode(prompt, true).unwrap();
    let req = server.last_request();
    assert_eq!(req.prompt_ids, ids);
    assert_eq!(req.max_tokens, 3);
    assert_eq!(req.sampling.temperature, 0.0);
    assert_eq!(req.sampling.top_p, 1.0);
    assert_eq!(req.sampling.top_k, 0);
    assert_eq!(req.sampling.seed, 7);
    assert_eq!(req.stop_ids, server.tokenizer().eos_ids());
    assert_eq!(req.stop_strings, vec!["\n\n".to_string()]);
    assert!(req.skip_special);

    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(body["object"], "text_completion");
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["model"], MODEL);
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1);
    assert_eq!(
        choices[0],
        json!({"index": 0, "text": fake_text(&ids, 3), "finish_reason": "length", "logprobs": null})
    );
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": ids.len(), "completion_tokens": 3, "total_tokens": ids.len() + 3,
               "prompt_tokens_details": {"cached_tokens": fake_cached(ids.len())}})
    );
}

#[test]
fn completion_defaults_and_prompt_forms() {
    let Some(server) = start() else { return };
    // No model, no max_tokens: OpenAI's defaults (16 tokens, temperature 1).
    let r = server.post("/v1/completions", &json!({"prompt": ["Hello"]}));
    assert_eq!(r.status, 200, "{}", r.body);
    let req = server.last_request();
    assert_eq!(
        req.prompt_ids,
        server.tokenizer().encode("Hello", true).unwrap()
    );
    assert_eq!(req.max_tokens, 16);
    assert_eq!(req.sampling.temperature, 1.0);
    assert!(req.stop_strings.is_empty());
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");

    for (prompt, ids) in [
        (json!([5, 6, 7]), vec![5, 6, 7]),
        (json!([[8, 9]]), vec![8, 9]),
    ] {
        let r = server.post("/v1/completions", &json!({"prompt": prompt, "stop": "x"}));
        assert_eq!(r.status, 200, "{}", r.body);
        let req = server.last_request();
        assert_eq!(req.prompt_ids, ids);
        assert_eq!(req.stop_strings, vec!["x".to_string()]);
        assert_eq!(r.json()["usage"]["prompt_tokens"], ids.len());
    }

    // Without a seed each request gets its own.
    server.post("/v1/completions", &json!({"prompt": "a"}));
    let first = server.last_request().sampling.seed;
    server.post("/v1/completions", &json!({"prompt": "a"}));
    assert_ne!(first, server.last_request().sampling.seed);
}

#[test]
fn chat_completion_uses_the_template() {
    let Some(server) = start() else { return };
    let r = server.post(
        "/v1/chat/completions",
        &json!({"model": MODEL, "max_completion_tokens": 2, "temperature": 0.5, "top_p": 0.9,
                "top_k": 40, "logprobs": false, "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                                 {"type": "text", "text": "there"}]}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let tok = server.tokenizer();
    let messages = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi there"),
    ];
    let ids = tok
        .encode(&tok.apply_chat(&messages, true).unwrap(), false)
        .unwrap();
    let req = server.last_request();
    assert_eq!(req.prompt_ids, ids);
    assert_eq!(req.max_tokens, 2);
    assert_eq!(req.sampling.temperature, 0.5);
    assert_eq!(req.sampling.top_p, 0.9);
    assert_eq!(req.sampling.top_k, 40);

    let body = r.json();
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL);
    assert_eq!(
        body["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": fake_text(&ids, 2)},
                "finish_reason": "length", "logprobs": null}])
    );
    assert_eq!(body["usage"]["prompt_tokens"], ids.len());
    assert_eq!(body["usage"]["completion_tokens"], 2);
    assert_eq!(body["usage"]["total_tokens"], ids.len() + 2);

    // Without a limit the reply may fill the rest of the context.
    let r = server.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi there"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let req = server.last_request();
    assert_eq!(req.max_tokens, CONTEXT - req.prompt_ids.len());
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
}

#[test]
fn chat_stream_sends_role_deltas_finish_usage_and_done() {
    let Some(server) = start() else { return };
    let r = server.post(
        "/v1/chat/completions",
        &json!({"model": MODEL, "max_tokens": 4, "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "Tell me a story"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let ids = server.last_request().prompt_ids;
    let data = r.sse_data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // role, 4 words, finish, usage
    assert_eq!(chunks.len(), 7, "{data:?}");
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for chunk in &chunks {
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], MODEL);
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let words: Vec<&str> = chunks[1..5]
        .iter()
        .map(|c| {
            assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
            c["choices"][0]["delta"]["content"].as_str().unwrap()
        })
        .collect();
    assert_eq!(words, fake_words(&ids, 4));
    assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[6]["choices"], json!([]));
    assert_eq!(chunks[6]["usage"]["completion_tokens"], 4);
    assert_eq!(chunks[6]["usage"]["prompt_tokens"], ids.len());
}

#[test]
fn completion_stream_without_usage() {
    let Some(server) = start() else { return };
    let r = server.post(
        "/v1/completions",
        &json!({"prompt": "One two", "max_tokens": 10, "stream": true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let ids = server.last_request().prompt_ids;
    let data = r.sse_data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks.len(), WORDS + 1, "{data:?}");
    let mut text = String::new();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "text_completion");
        assert!(chunk.get("usage").is_none());
        text.push_str(chunk["choices"][0]["text"].as_str().unwrap());
    }
    assert_eq!(text, fake_text(&ids, 10));
    assert_eq!(chunks[WORDS]["choices"][0]["finish_reason"], "stop");
}

#[test]
fn bad_requests_get_openai_errors() {
    let Some(server) = start() else { return };
    let chat = |extra: Value| {
        let mut body = json!({"messages": [{"role": "user", "content": "Hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let cases = [
        ("/v1/chat/completions", chat(json!({"n": 0})), "n"),
        ("/v1/chat/completions", chat(json!({"n": 17})), "n"),
        (
            "/v1/chat/completions",
            chat(json!({"logprobs": 3})),
            "logprobs",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"top_logprobs": 2})),
            "top_logprobs",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"logprobs": true, "top_logprobs": 21})),
            "top_logprobs",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"temperature": -1})),
            "temperature",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"temperature": 2.5})),
            "temperature",
        ),
        ("/v1/chat/completions", chat(json!({"top_p": 0})), "top_p"),
        (
            "/v1/chat/completions",
            chat(json!({"max_tokens": 0})),
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"max_completion_tokens": -3})),
            "max_completion_tokens",
        ),
        // the prompt and max_tokens together beyond the context of 256
        (
            "/v1/chat/completions",
            chat(json!({"max_tokens": CONTEXT})),
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"max_completion_tokens": CONTEXT - 1})),
            "max_completion_tokens",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"stop": ["a", "b", "c", "d", "e"]})),
            "stop",
        ),
        ("/v1/chat/completions", chat(json!({"stop": 3})), "stop"),
        ("/v1/chat/completions", json!({"messages": []}), "messages"),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "x"}}]}]}),
            "messages",
        ),
        ("/v1/completions", json!({"prompt": ["a", "b"]}), "prompt"),
        ("/v1/completions", json!({"prompt": []}), "prompt"),
        ("/v1/completions", json!({"prompt": [1, -2]}), "prompt"),
        (
            "/v1/completions",
            json!({"prompt": [1, 99999999]}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"prompt": {"text": "a"}}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "max_tokens": CONTEXT}),
            "max_tokens",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "logprobs": 21}),
            "logprobs",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "logprobs": true}),
            "logprobs",
        ),
        ("/v1/completions", json!({"prompt": "a", "n": -1}), "n"),
    ];
    for (path, body, param) in cases {
        let r = server.post(path, &body);
        assert_eq!(r.status, 400, "{body} -> {}", r.body);
        let error = r.error();
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert_eq!(error["param"], param, "{body} -> {error}");
    }
    let only_one = server.post("/v1/completions", &json!({"prompt": ["a", "b"]}));
    assert_eq!(only_one.error()["message"], "only one prompt per request");

    // Unreadable bodies: 400 with serde's message, not axum's 422 text.
    for raw in [
        "{not json",
        "",
        r#"{"prompt": "a", "temperature": "hot"}"#,
        r#"{"max_tokens": 4}"#,
    ] {
        let r = http(server.addr, "POST", "/v1/completions", raw);
        assert_eq!(r.status, 400, "{raw} -> {}", r.body);
        assert_eq!(r.error()["type"], "invalid_request_error");
    }

    // A prompt longer than the context.
    let long = "word ".repeat(CONTEXT * 2);
    let r = server.post("/v1/completions", &json!({"prompt": long}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.error()["message"].as_str().unwrap().contains("context"));

    let r = server.post("/v1/completions", &json!({"model": "gpt-4", "prompt": "a"}));
    assert_eq!(r.status, 404);
    let error = r.error();
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");

    let r = server.post(
        "/v1/completions",
        &json!({"prompt": "a", "top_k": TOP_K_OVERLOADED}),
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.error()["type"], "server_error");

    let r = server.get("/v1/nothing-here");
    assert_eq!(r.status, 404);
    assert!(r.error()["message"]
        .as_str()
        .unwrap()
        .contains("/v1/nothing-here"));

    let r = server.get("/v1/completions");
    assert_eq!(r.status, 405);
    r.error();
}

#[test]
fn engine_failure_is_a_500_or_a_stream_error() {
    let Some(server) = start() else { return };
    let body = json!({"prompt": "a", "top_k": TOP_K_FAIL});
    let r = server.post("/v1/completions", &body);
    assert_eq!(r.status, 500, "{}", r.body);
    let error = r.error();
    assert_eq!(error["type"], "server_error");
    assert_eq!(error["message"], "device lost");

    let r = server.post(
        "/v1/completions",
        &json!({"prompt": "a", "top_k": TOP_K_FAIL, "stream": true}),
    );
    assert_eq!(r.status, 200);
    let data = r.sse_data();
    assert_eq!(data.len(), 2, "{data:?}");
    let last: Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(last["error"]["message"], "device lost");
}

#[test]
fn metrics_are_prometheus_text() {
    let Some(server) = start() else { return };
    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let expected = [
        ("requests_running", "gauge", "3"),
        ("requests_waiting", "gauge", "2"),
        ("kv_blocks_used", "gauge", "40"),
        ("kv_blocks_capacity", "gauge", "100"),
        ("kv_blocks_cached", "gauge", "7"),
        ("kv_block_size_tokens", "gauge", "16"),
        ("kv_bytes_per_token", "gauge", "18432"),
        ("requests_total", "counter", "11"),
        ("requests_finished_total", "counter", "8"),
        ("requests_preempted_total", "counter", "1"),
        ("prompt_tokens_total", "counter", "400"),
        ("prompt_tokens_cached_total", "counter", "100"),
        ("generated_tokens_total", "counter", "900"),
        ("steps_total", "counter", "321"),
        ("draft_tokens_total", "counter", "40"),
        ("draft_accepted_tokens_total", "counter", "30"),
        ("decode_tokens_per_second", "gauge", "12.5"),
        ("prefix_cache_hit_rate", "gauge", "0.25"),
    ];
    let lines: Vec<&str> = r.body.lines().collect();
    for (name, kind, value) in expected {
        let name = format!("headroom_{name}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("# HELP {name} "))),
            "{name}"
        );
        assert!(
            lines.contains(&format!("# TYPE {name} {kind}").as_str()),
            "{name}"
        );
        assert!(
            lines.contains(&format!("{name} {value}").as_str()),
            "{name}: {}",
            r.body
        );
    }
    assert_eq!(lines.len(), expected.len() * 3);
}

#[test]
fn client_leaving_a_stream_cancels_the_request() {
    let Some(server) = start() else { return };
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = json!({"prompt": "a", "stream": true, "top_k": TOP_K_ENDLESS}).to_string();
    send_request(&mut stream, "POST", "/v1/completions", &body);
    // Read until the first text chunk has arrived, then hang up.
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("tick") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(!server.backend.cancelled.load(Ordering::SeqCst));
    drop(stream);
    assert!(
        server.saw_cancel_within(Duration::from_secs(2)),
        "the sink still reported a listener after the client left"
    );
}

#[test]
fn client_leaving_a_whole_request_cancels_it() {
    let Some(server) = start() else { return };
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let body = json!({"prompt": "a", "top_k": TOP_K_ENDLESS}).to_string();
    send_request(&mut stream, "POST", "/v1/completions", &body);
    let start = Instant::now();
    while server.backend.last.lock().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the request never arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(!server.backend.cancelled.load(Ordering::SeqCst));
    drop(stream);
    assert!(
        server.saw_cancel_within(Duration::from_secs(2)),
        "the sink still reported a listener after the client left"
    );
}

// ---------------------------------------------------------------------------------------
// The official Python client

/// `target/openai-venv/bin/python` with the `openai` package, made on first use; None (with
/// a note) when there is no python3 outside CI.
fn openai_python() -> Option<PathBuf> {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let venv = target.join("openai-venv");
    let python = venv.join("bin/python");
    let has_openai = |python: &Path| {
        Command::new(python)
            .args(["-c", "import openai"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_openai(&python) {
        return Some(python);
    }
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "python3 is missing");
        eprintln!("skipping: no python3");
        return None;
    }
    let pip: Vec<String> = if succeeds(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    ) {
        vec![python.display().to_string(), "-m".into(), "pip".into()]
    } else {
        // Debian without python3-venv has no ensurepip: make the venv without pip and
        // install into it with the system's pip.
        run_checked(
            Command::new("python3")
                .args(["-m", "venv", "--clear", "--without-pip"])
                .arg(&venv),
        );
        vec![
            "python3".into(),
            "-m".into(),
            "pip".into(),
            "--python".into(),
            python.display().to_string(),
        ]
    };
    run_checked(Command::new(&pip[0]).args(&pip[1..]).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "openai>=1.40,<3",
    ]));
    assert!(
        has_openai(&python),
        "openai is not importable after pip install"
    );
    Some(python)
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn run_checked(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn official_openai_python_client() {
    let Some(server) = start() else { return };
    let Some(python) = openai_python() else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/openai_client_check.py");
    let out = Command::new(python)
        .arg(script)
        .arg(format!("http://{}/v1", server.addr))
        .args(["--max-tokens", "4"])
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "openai_client_check.py failed:\n{report}"
    );
    eprintln!("{report}");
}

/// With API keys, `/v1/*` and (unless opened) `/metrics` answer only a listed key, sent as
/// `Authorization: Bearer KEY`; a missing or wrong key is a 401 in OpenAI's shape with
/// `WWW-Authenticate: Bearer`; `/health` stays open for load balancers.
#[test]
fn api_keys_guard_the_api_and_metrics_but_not_health() {
    let Some(backend) = fake_backend() else {
        return;
    };
    let body = json!({"model": MODEL, "prompt": "Hello", "max_tokens": 2}).to_string();
    for metrics_open in [false, true] {
        let keys = vec!["sk-first".to_string(), "sk-second".to_string()];
        let access = headroom::serve::Access::with_keys(keys, metrics_open).unwrap();
        let limits = Default::default();
        let (addr, _runtime) = serve_on_loopback_with(backend.clone(), access, limits);
        let with_key = |method: &str, path: &str, body: &str, key: &str| {
            let auth = format!("Bearer {key}");
            http_with(addr, method, path, body, &[("Authorization", &auth)])
        };
        assert_eq!(http(addr, "GET", "/health", "").status, 200);
        for (method, path, body) in [
            ("GET", "/v1/models", ""),
            ("POST", "/v1/completions", body.as_str()),
        ] {
            let refused = http(addr, method, path, body);
            assert_eq!(refused.status, 401, "{path} without a key");
            assert_eq!(refused.error()["code"], "invalid_api_key");
            assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
            assert_eq!(with_key(method, path, body, "sk-firs").status, 401);
            assert_eq!(with_key(method, path, body, "sk-second!").status, 401);
            assert_eq!(
                with_key(method, path, body, "sk-second").status,
                200,
                "{path}"
            );
            assert_eq!(
                with_key(method, path, body, "sk-first").status,
                200,
                "{path}"
            );
        }
        let metrics = http(addr, "GET", "/metrics", "").status;
        assert_eq!(metrics, if metrics_open { 200 } else { 401 });
        assert_eq!(with_key("GET", "/metrics", "", "sk-first").status, 200);
    }
}

/// A body over `--max-body-bytes` is a 413 in OpenAI's error shape; one just under it is
/// served.
#[test]
fn a_body_over_the_limit_is_refused_with_413() {
    let Some(backend) = fake_backend() else {
        return;
    };
    let limits = limits(|l| l.max_body_bytes = 2000);
    let (addr, _runtime) = serve_on_loopback_with(backend, headroom::serve::Access::open(), limits);
    // a prompt padded with spaces to a body of exactly `len` bytes
    let body = |len: usize| {
        let base = json!({"model": MODEL, "prompt": "Hello", "max_tokens": 2}).to_string();
        let pad = " ".repeat(len - base.len());
        json!({"model": MODEL, "prompt": format!("Hello{pad}"), "max_tokens": 2}).to_string()
    };
    let (under, over) = (body(1990), body(2010));
    assert_eq!((under.len(), over.len()), (1990, 2010));
    assert_eq!(http(addr, "POST", "/v1/completions", &under).status, 200);
    let refused = http(addr, "POST", "/v1/completions", &over);
    assert_eq!(refused.status, 413);
    assert_eq!(refused.error()["type"], "invalid_request_error");
}

// ---------------------------------------------------------------------------------------
// Limits on time and connections, and the graceful shutdown

/// `Limits` with the defaults but for what a test sets.
fn limits(f: impl FnOnce(&mut headroom::serve::Limits)) -> headroom::serve::Limits {
    let mut l = headroom::serve::Limits::default();
    f(&mut l);
    l
}

/// Reads until the server closes the connection or `limit` passes; true if it closed.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A client that starts a request's headers and never finishes them is disconnected after
/// the header timeout, and so is one idle after its request; a prompt client is served.
#[test]
fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let Some(backend) = fake_backend() else {
        return;
    };
    let l = limits(|l| l.header_timeout = Duration::from_millis(300));
    let (addr, _runtime) = serve_on_loopback_with(backend, headroom::serve::Access::open(), l);
    let start = Instant::now();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let mut idle = TcpStream::connect(addr).unwrap();
    assert_eq!(http(addr, "GET", "/health", "").status, 200);
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)),
        "a half-sent header held its connection"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)),
        "an idle connection stayed open"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "closed before the timeout"
    );
}

/// A connection that has had one `/health` answered and stays open (keep-alive).
fn answered_and_kept_alive(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    // the answer is small: its headers and the JSON body's closing brace
    while !String::from_utf8_lossy(&seen).ends_with('}') {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    stream
}

/// Beyond `max_connections` a connection waits, unserved, until an open one closes.
#[test]
fn connections_over_the_cap_wait_for_one_to_close() {
    let Some(backend) = fake_backend() else {
        return;
    };
    let l = limits(|l| l.max_connections = 2);
    let (addr, _runtime) = serve_on_loopback_with(backend, headroom::serve::Access::open(), l);
    // two connections the server has certainly accepted: each has been answered once and
    // is kept alive
    let held: Vec<TcpStream> = (0..2).map(|_| answered_and_kept_alive(addr)).collect();
    let mut third = TcpStream::connect(addr).unwrap();
    send_request(&mut third, "GET", "/health", "");
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    assert!(third.read(&mut buf).is_err(), "served beyond the cap");
    drop(held);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut raw = Vec::new();
    third.read_to_end(&mut raw).unwrap();
    assert_eq!(parse_response(&String::from_utf8(raw).unwrap()).status, 200);
}

/// A completion past `request_timeout` is cancelled in the engine: a 504 for a whole
/// reply, an error event that ends a stream.
#[test]
fn completions_past_the_request_timeout_are_cancelled() {
    let Some(backend) = fake_backend() else {
        return;
    };
    let l = limits(|l| l.request_timeout = Some(Duration::from_millis(300)));
    let (addr, _runtime) =
        serve_on_loopback_with(backend.clone(), headroom::serve::Access::open(), l);
    let endless = json!({"prompt": "a", "top_k": TOP_K_ENDLESS});
    let start = Instant::now();
    let whole = http(addr, "POST", "/v1/completions", &endless.to_string());
    assert_eq!(whole.status, 504, "{}", whole.body);
    assert_eq!(whole.error()["code"], "timeout");
    assert!(start.elapsed() >= Duration::from_millis(250));
    let mut streamed = endless.clone();
    streamed["stream"] = json!(true);
    let stream = http(addr, "POST", "/v1/completions", &streamed.to_string());
    assert_eq!(stream.status, 200);
    let events = stream.sse_data();
    assert!(events.iter().any(|e| e.contains("tick")), "{events:?}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "timeout", "{events:?}");
    let start = Instant::now();
    while !backend.cancelled.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the engine request was not cancelled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A full queue is a 503 that says when to retry.
#[test]
fn an_overloaded_engine_is_a_503_with_retry_after() {
    let Some(server) = start() else { return };
    let r = server.post(
        "/v1/completions",
        &json!({"prompt": "a", "top_k": TOP_K_OVERLOADED}),
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.error()["code"], "overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
}

/// After the shutdown signal: `/health` says draining, new completions get a 503, the
/// running stream goes on until the grace is over, and then the server stops.
#[test]
fn shutdown_drains_within_the_grace_then_stops() {
    let Some(backend) = fake_backend() else {
        return;
    };
    let grace = Duration::from_millis(800);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let l = limits(|l| l.shutdown_grace = grace);
    let (addr, runtime, task) = serve_on_loopback_until(backend, l, rx);
    let mut running = TcpStream::connect(addr).unwrap();
    let body = json!({"prompt": "a", "stream": true, "top_k": TOP_K_ENDLESS}).to_string();
    send_request(&mut running, "POST", "/v1/completions", &body);
    running
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    assert!(running.read(&mut buf).unwrap() > 0);
    tx.send(()).unwrap();
    let signalled = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    let health = http(addr, "GET", "/health", "");
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (503, json!("draining"))
    );
    let refused = http(
        addr,
        "POST",
        "/v1/completions",
        &json!({"prompt": "a"}).to_string(),
    );
    assert_eq!(refused.status, 503);
    assert_eq!(refused.error()["code"], "shutting_down");
    assert!(refused.header("retry-after").is_some());
    // the stream still runs
    assert!(running.read(&mut buf).unwrap() > 0);
    assert!(!task.is_finished());
    let stopped =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await });
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    let took = signalled.elapsed();
    assert!(
        took >= grace && took < grace + Duration::from_secs(2),
        "stopped after {took:?}"
    );
}

/// With nothing running, the shutdown signal stops the server at once.
#[test]
fn shutdown_with_nothing_running_stops_at_once() {
    let Some(backend) = fake_backend() else {
        return;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let l = limits(|l| l.shutdown_grace = Duration::from_secs(30));
    let (addr, runtime, task) = serve_on_loopback_until(backend, l, rx);
    assert_eq!(http(addr, "GET", "/health", "").status, 200);
    tx.send(()).unwrap();
    let stopped =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(3), task).await });
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
}

/// A backend that can serve no more (its device lost) makes `/health` a 503 that says why,
/// while the server itself stays up.
#[test]
fn health_says_when_the_backend_has_stopped() {
    let Some(server) = start() else { return };
    assert_eq!(server.get("/health").status, 200);
    *server.backend.stopped.lock().unwrap() = Some("device error: the GPU was lost".into());
    let health = server.get("/health");
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "stopped");
    assert_eq!(health.json()["reason"], "device error: the GPU was lost");
    assert_eq!(server.get("/v1/models").status, 200);
}

impl Server {
    /// Every request the backend accepted since the last call.
    fn take_requests(&self) -> Vec<CompletionRequest> {
        std::mem::take(&mut *self.backend.all.lock().unwrap())
    }
}

/// `n` choices: each a request of its own with the next seed, its text under its index,
/// the usage counting the prompt once and every choice's tokens.
#[test]
fn n_choices_are_separate_requests_with_their_own_seeds() {
    let Some(server) = start() else { return };
    let r = server.post(
        "/v1/completions",
        &json!({"prompt": "One two three", "max_tokens": 3, "n": 3, "seed": 7,
                "temperature": 0.7}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let reqs = server.take_requests();
    let seeds: Vec<u32> = reqs.iter().map(|q| q.sampling.seed).collect();
    assert_eq!(seeds, [7, 8, 9]);
    assert!(reqs.iter().all(|q| q.prompt_ids == reqs[0].prompt_ids));
    let ids = &reqs[0].prompt_ids;
    let body = r.json();
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["text"], fake_text(ids, 3));
        assert_eq!(c["finish_reason"], "length");
    }
    assert_eq!(body["usage"]["prompt_tokens"], ids.len());
    assert_eq!(body["usage"]["completion_tokens"], 9);

    // streamed: every choice's chunks, a finish for each, one usage, one [DONE]
    let r = server.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "n": 2,
                "stream": true, "stream_options": {"include_usage": true}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let ids = server.take_requests()[0].prompt_ids.clone();
    let data = r.sse_data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for i in 0..2 {
        let mine: Vec<&Value> = chunks
            .iter()
            .filter(|c| c["choices"].get(0).is_some_and(|c| c["index"] == i))
            .collect();
        // role, 2 words, finish
        assert_eq!(mine.len(), 4, "choice {i}: {mine:?}");
        assert_eq!(mine[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = mine[1..3]
            .iter()
            .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(text, fake_text(&ids, 2));
        assert_eq!(mine[3]["choices"][0]["finish_reason"], "length");
    }
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 4);
    assert_eq!(usage["prompt_tokens"], ids.len());
}

/// `logprobs` in both endpoints' shapes, whole and streamed; `echo` repeats the prompt and,
/// with `logprobs`, scores its tokens after the first.
#[test]
fn logprobs_and_echo_in_openai_shapes() {
    let Some(server) = start() else { return };
    let tok = server.tokenizer().clone();
    let text_of = |id: u32| tok.decode_with(&[id], false);
    let prompt = "One two three";
    let r = server.post(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 3, "logprobs": 2, "echo": true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let req = server.take_requests().remove(0);
    assert_eq!((req.logprobs, req.prompt_logprobs), (Some(2), true));
    let ids = req.prompt_ids.clone();
    let c = &r.json()["choices"][0];
    assert_eq!(c["text"], format!("{prompt}{}", fake_text(&ids, 3)));
    let lp = &c["logprobs"];
    let generated = fake_ids(&ids, 3);
    let all: Vec<u32> = ids.iter().chain(&generated).copied().collect();
    let tokens: Vec<String> = all.iter().map(|&id| text_of(id)).collect();
    assert_eq!(lp["tokens"], json!(tokens));
    let logprobs = lp["token_logprobs"].as_array().unwrap();
    assert_eq!(logprobs[0], Value::Null);
    assert_eq!(lp["top_logprobs"][0], Value::Null);
    for k in 1..all.len() {
        // the fake's prompt scores count from the second token; its generated ones anew
        let want = match k < ids.len() {
            true => fake_logprob(all[k], k - 1, 2),
            false => fake_logprob(all[k], k - ids.len(), 2),
        };
        assert_eq!(
            logprobs[k].as_f64().unwrap() as f32,
            want.logprob,
            "token {k}"
        );
        let top = lp["top_logprobs"][k].as_object().unwrap();
        assert_eq!(top.len(), 2, "{top:?}");
        assert_eq!(
            top[&text_of(want.top[0].0)].as_f64().unwrap() as f32,
            want.top[0].1
        );
    }
    let offsets: Vec<usize> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let mut at = 0;
    for (k, t) in tokens.iter().enumerate() {
        assert_eq!(offsets[k], at, "offset of token {k}");
        at += t.chars().count();
    }

    // echo alone: the prompt first in the text and in the stream, no logprobs
    let r = server.post(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 2, "echo": true, "stream": true}),
    );
    let req = server.take_requests().remove(0);
    assert_eq!((req.logprobs, req.prompt_logprobs), (None, false));
    let first: Value = serde_json::from_str(&r.sse_data()[0]).unwrap();
    assert_eq!(first["choices"][0]["text"], prompt);
    assert_eq!(first["choices"][0]["logprobs"], Value::Null);

    // chat: a list of token objects with bytes and alternatives, per streamed chunk too
    let msg = json!([{"role": "user", "content": "Hi"}]);
    let r = server.post(
        "/v1/chat/completions",
        &json!({"messages": msg, "max_tokens": 2, "logprobs": true, "top_logprobs": 3}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let req = server.take_requests().remove(0);
    assert_eq!((req.logprobs, req.prompt_logprobs), (Some(3), false));
    let generated = fake_ids(&req.prompt_ids, 2);
    let content = r.json()["choices"][0]["logprobs"]["content"].clone();
    let content = content.as_array().unwrap();
    assert_eq!(content.len(), 2);
    for (k, (entry, &id)) in content.iter().zip(&generated).enumerate() {
        let want = fake_logprob(id, k, 3);
        assert_eq!(entry["token"], text_of(id));
        assert_eq!(entry["bytes"], json!(text_of(id).into_bytes()));
        assert_eq!(entry["logprob"].as_f64().unwrap() as f32, want.logprob);
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[2]["token"], text_of(want.top[2].0));
    }
    let r = server.post(
        "/v1/chat/completions",
        &json!({"messages": msg, "max_tokens": 2, "logprobs": true, "stream": true}),
    );
    let data = r.sse_data();
    let words: Vec<Value> = data[1..3]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap()["choices"][0].clone())
        .collect();
    for (w, &id) in words.iter().zip(&generated) {
        let content = w["logprobs"]["content"].as_array().unwrap();
        assert_eq!(content.len(), 1, "{w}");
        assert_eq!(content[0]["token"], text_of(id));
        assert_eq!(content[0]["top_logprobs"], json!([]));
    }
}
