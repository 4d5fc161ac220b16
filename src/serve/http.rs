//! The OpenAI-compatible HTTP server over any [`Backend`]: `/v1/completions`,
//! `/v1/chat/completions` (whole or streamed as server-sent events), `/v1/models`,
//! `/health` and Prometheus `/metrics`.
//!
//! Each request's events come from the engine's thread through an unbounded channel (the
//! sink must not block). The receiving end lives in the handler, or in the SSE body while
//! streaming, so when a client goes away the receiver is dropped, the sink returns false
//! and the engine cancels the request.

use std::convert::Infallible;
use std::fmt::Display;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{stream, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::api::{
    Backend, CompletionRequest, Event, EventSink, MetricsSnapshot, SubmitError, Usage,
};
use super::openai::{
    AssistantMessage, ChatBody, ChatChoice, ChatChunkChoice, ChatDelta, ChatMessageBody,
    CompletionBody, CompletionResponse, ErrorBody, ErrorDetail, ModelCard, ModelList,
    SamplingFields, TextChoice, UsageBody,
};
use crate::engine::FinishReason;
use crate::ops::sample::SamplingParams;
use crate::tokenizer::{ChatMessage, Tokenizer};

/// `max_tokens` of `/v1/completions` when the request has none (OpenAI's default).
const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;
/// OpenAI accepts at most this many stop strings.
const MAX_STOP_STRINGS: usize = 4;
/// OpenAI's range for `temperature`.
const MAX_TEMPERATURE: f64 = 2.0;
/// The error when a sink is dropped without `Done` or `Failed` (an engine bug).
const ENGINE_DROPPED: &str = "the engine dropped the request before it finished";

/// The routes of the server, answering for `backend`.
pub fn router(backend: Arc<dyn Backend>) -> Router {
    let state = AppState {
        backend,
        started: unix_seconds(),
    };
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(list_models))
        // `{*id}` so that ids with a slash ("org/name") work unencoded too
        .route("/v1/models/{*id}", get(get_model))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(unknown_route)
        .with_state(state)
}

/// Serves [`router`] on `listener` until the process ends.
pub async fn serve(
    backend: Arc<dyn Backend>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    axum::serve(listener, router(backend)).await
}

#[derive(Clone)]
struct AppState {
    backend: Arc<dyn Backend>,
    /// `created` of the model card: when the server started
    started: u64,
}

impl AppState {
    /// Requests may name the served model or no model at all.
    fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            Some(m) if m != self.backend.model_id() => Err(ApiError::model_not_found(m)),
            _ => Ok(()),
        }
    }

    fn model_card(&self) -> ModelCard {
        ModelCard {
            id: self.backend.model_id().to_string(),
            object: "model",
            created: self.started,
            owned_by: "headroom",
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors

/// An error response: a status and OpenAI's `{"error": {...}}` body.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    detail: ErrorDetail,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: ErrorDetail {
                message: message.into(),
                kind,
                param: None,
                code: None,
            },
        }
    }

    /// A 400 about the request field `param`.
    fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).param(param)
    }

    /// A 400 about the request as a whole (unreadable body, prompt too long, ...).
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    fn model_not_found(model: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{model}` does not exist."),
        )
        .param("model")
        .code("model_not_found")
    }

    /// The engine failed after accepting the request.
    fn server(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    fn param(mut self, param: &'static str) -> Self {
        self.detail.param = Some(param);
        self
    }

    fn code(mut self, code: &'static str) -> Self {
        self.detail.code = Some(code);
        self
    }

    fn body(self) -> ErrorBody {
        ErrorBody { error: self.detail }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        let message = e.to_string();
        match e {
            SubmitError::Invalid(_) => ApiError::bad_request(message),
            SubmitError::Overloaded(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                    .code("overloaded")
            }
            SubmitError::Stopped(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                    .code("engine_stopped")
            }
        }
    }
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("Invalid URL ({method} {})", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("Method not allowed ({method} {})", uri.path()),
    )
}

// ---------------------------------------------------------------------------------------
// Small endpoints

async fn health() -> Json<Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![state.model_card()],
    })
}

async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    if id == state.backend.model_id() {
        Ok(Json(state.model_card()))
    } else {
        Err(ApiError::model_not_found(&id))
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = render_metrics(&state.backend.metrics());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// Completions

async fn completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: CompletionBody = parse_body(body)?;
    state.check_model(body.model.as_deref())?;
    check_one_choice(&body.sampling)?;
    if body.echo == Some(true) {
        return Err(ApiError::invalid("echo", "echo is not supported"));
    }
    check_no_logprobs(body.logprobs.as_ref())?;
    let tokenizer = state.backend.tokenizer();
    let prompt_ids = prompt_ids(tokenizer, &body.prompt)?;
    let max_tokens =
        max_tokens(body.max_tokens, "max_tokens")?.unwrap_or(DEFAULT_COMPLETION_MAX_TOKENS);
    let req = completion_request(tokenizer, prompt_ids, max_tokens, &body.sampling)?;
    let reply = Reply::new(Endpoint::Completions, &state, &body.sampling);
    run(state.backend.as_ref(), req, reply).await
}

async fn chat_completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: ChatBody = parse_body(body)?;
    state.check_model(body.model.as_deref())?;
    check_one_choice(&body.sampling)?;
    check_no_logprobs(body.logprobs.as_ref())?;
    let messages = chat_messages(&body.messages)?;
    let tokenizer = state.backend.tokenizer();
    // The rendered template already holds the special tokens (BOS included where wanted).
    let prompt_ids = tokenizer
        .apply_chat(&messages, true)
        .and_then(|text| tokenizer.encode(&text, false))
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    let max_tokens = match body.max_completion_tokens {
        Some(n) => max_tokens(Some(n), "max_completion_tokens")?,
        None => max_tokens(body.max_tokens, "max_tokens")?,
    };
    // Without a limit a chat reply may fill the context, as with OpenAI.
    let max_tokens = max_tokens.unwrap_or_else(|| {
        state
            .backend
            .context()
            .saturating_sub(prompt_ids.len())
            .max(1)
    });
    let req = completion_request(tokenizer, prompt_ids, max_tokens, &body.sampling)?;
    let reply = Reply::new(Endpoint::Chat, &state, &body.sampling);
    run(state.backend.as_ref(), req, reply).await
}

/// Submits `req` and answers with the whole completion, or with a stream of its chunks.
async fn run(
    backend: &dyn Backend,
    req: CompletionRequest,
    reply: Reply,
) -> Result<Response, ApiError> {
    let events = submit(backend, req)?;
    if reply.stream {
        let sse = Sse::new(event_stream(events, reply)).keep_alive(KeepAlive::default());
        return Ok(sse.into_response());
    }
    let done = collect(events).await?;
    Ok(reply.whole(done))
}

/// Queues `req` on the backend, with a sink that forwards its events into a channel.
fn submit(
    backend: &dyn Backend,
    req: CompletionRequest,
) -> Result<UnboundedReceiver<Event>, ApiError> {
    let (tx, rx) = unbounded_channel();
    // `send` fails only once the receiver is dropped: the client is gone.
    let sink: EventSink = Box::new(move |event| tx.send(event).is_ok());
    backend.submit(req, sink)?;
    Ok(rx)
}

/// A finished completion.
struct Finished {
    text: String,
    finish: FinishReason,
    usage: Usage,
}

/// Gathers the text of a request until it is done.
async fn collect(mut events: UnboundedReceiver<Event>) -> Result<Finished, ApiError> {
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Delta { text: t, .. } => text.push_str(&t),
            Event::Done { finish, usage } => {
                return Ok(Finished {
                    text,
                    finish,
                    usage,
                })
            }
            Event::Failed(message) => return Err(ApiError::server(message)),
            Event::Attention(_) => {}
        }
    }
    Err(ApiError::server(ENGINE_DROPPED))
}

/// OpenAI's `finish_reason`: a full context ends a reply like `max_tokens` does.
fn finish_reason(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length | FinishReason::Context => "length",
    }
}

// ---------------------------------------------------------------------------------------
// Request checking

/// Parses a JSON body; malformed JSON and wrong types are a 400 with serde's message.
fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes =
        body.map_err(|e| ApiError::new(e.status(), "invalid_request_error", e.body_text()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
}

fn check_one_choice(s: &SamplingFields) -> Result<(), ApiError> {
    match s.n {
        None | Some(1) => Ok(()),
        Some(n) => Err(ApiError::invalid(
            "n",
            format!("only n = 1 is supported, got {n}"),
        )),
    }
}

/// `logprobs` may be absent, null or false: they are not computed.
fn check_no_logprobs(logprobs: Option<&Value>) -> Result<(), ApiError> {
    match logprobs {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(()),
        Some(_) => Err(ApiError::invalid("logprobs", "logprobs are not supported")),
    }
}

/// A request's token limit, if it sets one; it must be at least 1.
fn max_tokens(value: Option<i64>, param: &'static str) -> Result<Option<usize>, ApiError> {
    match value {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Some(n) => Err(ApiError::invalid(
            param,
            format!("{param} must be at least 1, got {n}"),
        )),
    }
}

/// The request for the backend: sampling fields checked, generation ending at the model's
/// stop tokens, special tokens kept out of the text.
fn completion_request(
    tokenizer: &Tokenizer,
    prompt_ids: Vec<u32>,
    max_tokens: usize,
    s: &SamplingFields,
) -> Result<CompletionRequest, ApiError> {
    Ok(CompletionRequest {
        prompt_ids,
        max_tokens,
        sampling: sampling_params(s)?,
        stop_ids: tokenizer.eos_ids().to_vec(),
        stop_strings: stop_strings(s.stop.as_ref())?,
        skip_special: true,
        probe_attention: false,
    })
}

/// OpenAI's defaults: temperature 1, top-p 1; a random seed unless one is given.
fn sampling_params(s: &SamplingFields) -> Result<SamplingParams, ApiError> {
    let temperature = s.temperature.unwrap_or(1.0);
    if !(0.0..=MAX_TEMPERATURE).contains(&temperature) {
        return Err(ApiError::invalid(
            "temperature",
            format!("temperature must be between 0 and {MAX_TEMPERATURE}, got {temperature}"),
        ));
    }
    let top_p = s.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            "top_p",
            format!("top_p must be in (0, 1], got {top_p}"),
        ));
    }
    Ok(SamplingParams {
        temperature: temperature as f32,
        top_k: s.top_k.unwrap_or(0),
        top_p: top_p as f32,
        // Any integer is a valid OpenAI seed; its low 32 bits seed the sampler.
        seed: s.seed.map_or_else(random_seed, |seed| seed as u32),
    })
}

/// `stop`: a string or up to four strings; empty strings stop nothing and are dropped.
fn stop_strings(stop: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::invalid("stop", "stop must be a string or an array of strings");
    let stops: Vec<String> = match stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    if stops.len() > MAX_STOP_STRINGS {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "at most {MAX_STOP_STRINGS} stop strings are allowed, got {}",
                stops.len()
            ),
        ));
    }
    Ok(stops.into_iter().filter(|s| !s.is_empty()).collect())
}

/// The prompt of `/v1/completions` as token ids: text is encoded (with BOS where the model
/// wants it); ids are taken as they are but must be in the vocabulary.
fn prompt_ids(tokenizer: &Tokenizer, prompt: &Value) -> Result<Vec<u32>, ApiError> {
    let encode = |text: &str| {
        tokenizer
            .encode(text, true)
            .map_err(|e| ApiError::invalid("prompt", e.to_string()))
    };
    let shape = || {
        ApiError::invalid(
            "prompt",
            "prompt must be a string, an array of one string, or an array of token ids",
        )
    };
    let items = match prompt {
        Value::String(text) => return encode(text),
        Value::Array(items) => items,
        _ => return Err(shape()),
    };
    match items.first() {
        None => Err(ApiError::invalid("prompt", "prompt must not be empty")),
        Some(Value::Number(_)) => token_ids(tokenizer, items),
        Some(_) if items.len() > 1 => {
            Err(ApiError::invalid("prompt", "only one prompt per request"))
        }
        Some(Value::String(text)) => encode(text),
        Some(Value::Array(ids)) => token_ids(tokenizer, ids),
        Some(_) => Err(shape()),
    }
}

/// A flat array of token ids, each inside the vocabulary.
fn token_ids(tokenizer: &Tokenizer, items: &[Value]) -> Result<Vec<u32>, ApiError> {
    let vocab = tokenizer.vocab_size();
    items
        .iter()
        .map(|v| {
            v.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .filter(|&id| (id as usize) < vocab)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "prompt",
                        format!("token ids must be integers in [0, {vocab}), got {v}"),
                    )
                })
        })
        .collect()
}

/// The conversation as the chat template takes it; content parts are joined.
fn chat_messages(messages: &[ChatMessageBody]) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    messages
        .iter()
        .map(|m| {
            Ok(ChatMessage::new(
                m.role.as_str(),
                message_text(m.content.as_ref())?,
            ))
        })
        .collect()
}

/// A message's `content`: a string, null (an assistant turn with only tool calls) or an
/// array of `{"type": "text", "text": ...}` parts.
fn message_text(content: Option<&Value>) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => parts.iter().map(part_text).collect(),
        Some(_) => Err(ApiError::invalid(
            "messages",
            "message content must be a string or an array of content parts",
        )),
    }
}

fn part_text(part: &Value) -> Result<&str, ApiError> {
    match (
        part.get("type").and_then(Value::as_str),
        part.get("text").and_then(Value::as_str),
    ) {
        (Some("text"), Some(text)) => Ok(text),
        (Some("text"), None) => Err(ApiError::invalid(
            "messages",
            "a text content part needs a string `text`",
        )),
        (kind, _) => Err(ApiError::invalid(
            "messages",
            format!(
                "only text content parts are supported, got type {}",
                kind.unwrap_or("(none)")
            ),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Responses and streams

#[derive(Clone, Copy)]
enum Endpoint {
    Completions,
    Chat,
}

/// What every response and chunk of one request shares.
struct Reply {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
    stream: bool,
    include_usage: bool,
}

impl Reply {
    fn new(endpoint: Endpoint, state: &AppState, s: &SamplingFields) -> Self {
        let prefix = match endpoint {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        };
        Reply {
            endpoint,
            id: request_id(prefix),
            created: unix_seconds(),
            model: state.backend.model_id().to_string(),
            stream: s.stream.unwrap_or(false),
            include_usage: s
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        }
    }

    fn response<C>(
        &self,
        object: &'static str,
        choices: Vec<C>,
        usage: Option<UsageBody>,
    ) -> CompletionResponse<C> {
        CompletionResponse {
            id: self.id.clone(),
            object,
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }

    fn chunk_object(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Completions => "text_completion",
            Endpoint::Chat => "chat.completion.chunk",
        }
    }

    /// The non-streaming response.
    fn whole(&self, done: Finished) -> Response {
        let finish = finish_reason(done.finish);
        let usage = Some(UsageBody::from(done.usage));
        match self.endpoint {
            Endpoint::Completions => {
                let choice = TextChoice {
                    index: 0,
                    text: done.text,
                    finish_reason: Some(finish),
                    logprobs: None,
                };
                Json(self.response("text_completion", vec![choice], usage)).into_response()
            }
            Endpoint::Chat => {
                let choice = ChatChoice {
                    index: 0,
                    message: AssistantMessage {
                        role: "assistant",
                        content: done.text,
                    },
                    finish_reason: finish,
                    logprobs: None,
                };
                Json(self.response("chat.completion", vec![choice], usage)).into_response()
            }
        }
    }

    /// One stream chunk whose choice carries `text` (the role, for a chat's first chunk)
    /// and, on the last one, the finish reason.
    fn chunk(
        &self,
        text: String,
        role: Option<&'static str>,
        finish: Option<&'static str>,
    ) -> SseEvent {
        match self.endpoint {
            Endpoint::Completions => {
                let choice = TextChoice {
                    index: 0,
                    text,
                    finish_reason: finish,
                    logprobs: None,
                };
                json_event(&self.response(self.chunk_object(), vec![choice], None))
            }
            Endpoint::Chat => {
                // The closing chunk's delta is empty; every other one has content.
                let content = finish.is_none().then_some(text);
                let choice = ChatChunkChoice {
                    index: 0,
                    delta: ChatDelta { role, content },
                    finish_reason: finish,
                    logprobs: None,
                };
                json_event(&self.response(self.chunk_object(), vec![choice], None))
            }
        }
    }

    /// A chat stream starts by naming the role.
    fn opening(&self) -> Vec<SseEvent> {
        match self.endpoint {
            Endpoint::Completions => Vec::new(),
            Endpoint::Chat => vec![self.chunk(String::new(), Some("assistant"), None)],
        }
    }

    /// The chunk for new text; none while the engine holds back an incomplete character.
    fn delta(&self, text: String) -> Vec<SseEvent> {
        if text.is_empty() {
            Vec::new()
        } else {
            vec![self.chunk(text, None, None)]
        }
    }

    /// The finish reason, the usage if asked for, and `[DONE]`.
    fn closing(&self, finish: FinishReason, usage: Usage) -> Vec<SseEvent> {
        let mut events = vec![self.chunk(String::new(), None, Some(finish_reason(finish)))];
        if self.include_usage {
            let chunk =
                self.response::<TextChoice>(self.chunk_object(), vec![], Some(usage.into()));
            events.push(json_event(&chunk));
        }
        events.push(SseEvent::default().data("[DONE]"));
        events
    }
}

/// The SSE events of one request: its chunks as the engine makes them, and at the end
/// either `[DONE]` or an error object.
fn event_stream(
    events: UnboundedReceiver<Event>,
    reply: Reply,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let opening = stream::iter(reply.opening());
    // The state is None once the request has ended; the receiver is dropped right then.
    let rest = stream::unfold(Some((events, reply)), |state| async move {
        let (mut events, reply) = state?;
        let step = match events.recv().await {
            Some(Event::Delta { text, .. }) => (reply.delta(text), Some((events, reply))),
            Some(Event::Done { finish, usage }) => (reply.closing(finish, usage), None),
            Some(Event::Failed(message)) => (vec![error_event(ApiError::server(message))], None),
            Some(Event::Attention(_)) => (Vec::new(), Some((events, reply))),
            None => (vec![error_event(ApiError::server(ENGINE_DROPPED))], None),
        };
        Some(step)
    });
    opening.chain(rest.flat_map(stream::iter)).map(Ok)
}

fn json_event(value: &impl Serialize) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(value).expect("response types serialize"))
}

fn error_event(error: ApiError) -> SseEvent {
    json_event(&error.body())
}

// ---------------------------------------------------------------------------------------
// Metrics

/// The engine's counters in Prometheus' text format.
fn render_metrics(m: &MetricsSnapshot) -> String {
    let (gauge, counter) = ("gauge", "counter");
    let float = |v: f64| PromFloat(v).to_string();
    // name, type, value, help: kept as a table, which rustfmt would spread over 80 lines
    #[rustfmt::skip]
    let metrics = [
        ("requests_running", gauge, m.running.to_string(),
            "Sequences in the running batch."),
        ("requests_waiting", gauge, m.waiting.to_string(),
            "Requests waiting to run."),
        ("kv_blocks_used", gauge, m.kv_blocks_used.to_string(),
            "KV blocks in use."),
        ("kv_blocks_capacity", gauge, m.kv_blocks_total.to_string(),
            "KV blocks in the pool."),
        ("kv_blocks_cached", gauge, m.kv_blocks_cached.to_string(),
            "Free KV blocks holding a reusable prefix."),
        ("kv_block_size_tokens", gauge, m.kv_block_size.to_string(),
            "Tokens per KV block."),
        ("kv_bytes_per_token", gauge, m.kv_bytes_per_token.to_string(),
            "KV bytes per token."),
        ("requests_total", counter, m.requests_total.to_string(),
            "Requests accepted."),
        ("requests_finished_total", counter, m.requests_finished.to_string(),
            "Requests finished."),
        ("requests_preempted_total", counter, m.requests_preempted.to_string(),
            "Running requests preempted."),
        ("prompt_tokens_total", counter, m.prompt_tokens_total.to_string(),
            "Prompt tokens accepted."),
        ("prompt_tokens_cached_total", counter, m.prompt_tokens_cached.to_string(),
            "Prompt tokens from the prefix cache."),
        ("generated_tokens_total", counter, m.generated_tokens_total.to_string(),
            "Tokens generated."),
        ("steps_total", counter, m.steps_total.to_string(),
            "Forward passes run."),
        ("decode_tokens_per_second", gauge, float(m.decode_tokens_per_s),
            "Tokens generated per second, recently."),
        ("prefix_cache_hit_rate", gauge, float(m.prefix_hit_rate()),
            "Share of prompt tokens from the cache."),
    ];
    let mut out = String::new();
    for (name, kind, value, help) in metrics {
        let name = format!("headroom_{name}");
        out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    }
    out
}

/// A float as Prometheus writes it (`NaN`, `+Inf`, `-Inf` where Rust writes `NaN`, `inf`).
struct PromFloat(f64);

impl Display for PromFloat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Ids, seeds, time

/// Numbers requests within this process.
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// A unique id such as `chatcmpl-19a2b3c4d5e-7`: start time in ms (hex) and a serial.
fn request_id(prefix: &str) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "{prefix}-{millis:x}-{}",
        SERIAL.fetch_add(1, Ordering::Relaxed)
    )
}

/// A seed for requests without one: std's randomly keyed hasher over a fresh serial.
fn random_seed() -> u32 {
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one(serial) as u32
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
