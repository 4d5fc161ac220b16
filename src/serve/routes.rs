//! The OpenAI-compatible HTTP server over any [`Backend`]: `/v1/completions`,
//! `/v1/chat/completions` (whole or streamed as server-sent events), `/v1/models`,
//! `/health` and Prometheus `/metrics`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::auth::{require_key, Access};
use super::choices::Choices;
use super::error::{method_not_allowed, unknown_route, ApiError};
use super::ids::unix_seconds;
use super::limits::Limits;
use super::listen::accept_loop;
use super::openai::{ChatBody, CompletionBody, ModelCard, ModelList};
use super::prepare::{self, Prepared};
use super::prometheus::render_metrics;
use super::request::parse_body;
use super::response::{event_stream, Endpoint, Reply};
use super::state::{collect, AppState, Life};
use crate::engine::Backend;

/// The routes of the server, answering anyone for `backend`.
pub fn router(backend: Arc<dyn Backend>) -> Router {
    router_with(backend, Access::open(), Limits::default())
}

/// The routes of the server, answering for `backend` those `access` admits: `/v1/*`
/// (and `/metrics` unless it is open) need a key where `access` has keys; bodies beyond
/// `limits` are refused (413).
pub fn router_with(backend: Arc<dyn Backend>, access: Access, limits: Limits) -> Router {
    routes(backend, access, limits, Arc::default())
}

fn routes(backend: Arc<dyn Backend>, access: Access, limits: Limits, life: Arc<Life>) -> Router {
    let state = AppState {
        backend,
        started: unix_seconds(),
        limits,
        life,
    };
    let metrics_open = access.metrics_open;
    let key = middleware::from_fn_with_state(Arc::new(access), require_key);
    let api = Router::new()
        .route("/v1/models", get(list_models))
        // `{*id}` so that ids with a slash ("org/name") work unencoded too
        .route("/v1/models/{*id}", get(get_model))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_while_draining,
        ))
        .route_layer(key.clone());
    let metrics_route = Router::new().route("/metrics", get(metrics));
    let metrics_route = match metrics_open {
        true => metrics_route,
        false => metrics_route.route_layer(key),
    };
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .merge(metrics_route)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(state)
}

/// Serves [`router`] on `listener` until the process ends.
pub async fn serve(
    backend: Arc<dyn Backend>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    serve_with(backend, listener, Access::open(), Limits::default()).await
}

/// Serves [`router_with`] on `listener` until the process ends.
pub async fn serve_with(
    backend: Arc<dyn Backend>,
    listener: tokio::net::TcpListener,
    access: Access,
    limits: Limits,
) -> std::io::Result<()> {
    serve_until(backend, listener, access, limits, std::future::pending()).await
}

/// Serves [`router_with`] on `listener`; once `shutdown` completes, new completions are
/// refused (503, `/health` says "draining") and it returns when the running ones have
/// ended or `limits.shutdown_grace` has passed.
pub async fn serve_until(
    backend: Arc<dyn Backend>,
    listener: tokio::net::TcpListener,
    access: Access,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let life = Arc::new(Life::default());
    let app = routes(backend, access, limits, life.clone());
    accept_loop(listener, app, limits, life, shutdown).await
}

/// "ok"; or a 503 "stopped" with the reason once the backend can serve no more (a lost
/// GPU device), or "draining" once a shutdown has begun: load balancers stop sending.
pub(super) async fn health(State(state): State<AppState>) -> Response {
    let unavailable = |body: serde_json::Value| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            Json(body),
        )
            .into_response()
    };
    if let Some(reason) = state.backend.stopped() {
        return unavailable(serde_json::json!({ "status": "stopped", "reason": reason }));
    }
    match state.life.draining() {
        false => Json(serde_json::json!({ "status": "ok" })).into_response(),
        true => unavailable(serde_json::json!({ "status": "draining" })),
    }
}

/// New completions get a 503 while the server drains.
async fn refuse_while_draining(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match state.life.draining() {
        false => next.run(request).await,
        true => ApiError::unavailable(
            "shutting_down",
            "the server is shutting down; retry on another replica or later",
            5,
        )
        .into_response(),
    }
}

pub(super) async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![state.model_card()],
    })
}

pub(super) async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    if id == state.backend.model_id() {
        Ok(Json(state.model_card()))
    } else {
        Err(ApiError::model_not_found(&id))
    }
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
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

pub(super) async fn completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: CompletionBody = parse_body(body)?;
    state.check_model(body.model.as_deref())?;
    let backend = &state.backend;
    let prepared = prepare::completion(backend.tokenizer(), backend.context(), &body)?;
    let reply = Reply::new(Endpoint::Completions, &state, &body.sampling);
    run(&state, prepared, reply).await
}

pub(super) async fn chat_completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: ChatBody = parse_body(body)?;
    state.check_model(body.model.as_deref())?;
    let backend = &state.backend;
    let prepared = prepare::chat(backend.tokenizer(), backend.context(), &body)?;
    let reply = Reply::new(Endpoint::Chat, &state, &body.sampling);
    run(&state, prepared, reply).await
}

/// Submits a prepared request's choices and answers with the whole completion, or with a
/// stream of its chunks, within the server's request deadline (past it the request is
/// cancelled: a 504, or an error event that ends the stream). The completion counts as
/// running until its response or stream ends.
pub(super) async fn run(
    state: &AppState,
    prepared: Prepared,
    mut reply: Reply,
) -> Result<Response, ApiError> {
    let running = state.life.run();
    let n = prepared.n;
    (reply.n, reply.logprobs, reply.echo) = (n, prepared.logprobs, prepared.echo);
    let events = Choices::submit(state.backend.clone(), prepared.req, n)?;
    let timeout = state.limits.request_timeout;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    if reply.stream {
        let stream = event_stream(events, reply, deadline.zip(timeout), running);
        return Ok(Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let done = match deadline.zip(timeout) {
        Some((at, limit)) => tokio::time::timeout_at(at, collect(events, n))
            .await
            .map_err(|_| ApiError::deadline(limit))??,
        None => collect(events, n).await?,
    };
    Ok(reply.whole(done))
}
