//! The server's state and its exchange with the engine: each request's events come from
//! the engine's thread through an unbounded channel (the sink must not block). The
//! receiving end lives in the handler, or in the SSE body while streaming, so when a
//! client goes away the receiver is dropped, the sink returns false and the engine cancels
//! the request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::error::ApiError;
use super::openai::ModelCard;
use crate::engine::{Backend, CompletionRequest, Event, EventSink, FinishReason, Usage};

/// The error when a sink is dropped without `Done` or `Failed` (an engine bug).
pub(super) const ENGINE_DROPPED: &str = "the engine dropped the request before it finished";

/// What every handler shares.
#[derive(Clone)]
pub(super) struct AppState {
    pub(super) backend: Arc<dyn Backend>,
    /// `created` of the model card: when the server started
    pub(super) started: u64,
    pub(super) limits: super::Limits,
    pub(super) life: Arc<Life>,
}

/// Where the server is in its life: serving, or draining after a shutdown signal, and
/// how many completions are running (the accept loop waits for them to end).
#[derive(Default)]
pub(super) struct Life {
    draining: AtomicBool,
    running: AtomicUsize,
}

impl Life {
    pub(super) fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub(super) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(super) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Counts a completion as running until the guard is dropped (with its response, or
    /// with its stream).
    pub(super) fn run(self: &Arc<Self>) -> RunningGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        RunningGuard(self.clone())
    }
}

pub(super) struct RunningGuard(Arc<Life>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AppState {
    /// Requests may name the served model or no model at all.
    pub(super) fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            Some(m) if m != self.backend.model_id() => Err(ApiError::model_not_found(m)),
            _ => Ok(()),
        }
    }

    pub(super) fn model_card(&self) -> ModelCard {
        ModelCard {
            id: self.backend.model_id().to_string(),
            object: "model",
            created: self.started,
            owned_by: "headroom",
        }
    }
}

/// Queues `req` on the backend, with a sink that forwards its events into a channel.
pub(super) fn submit(
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
pub(super) struct Finished {
    pub(super) text: String,
    pub(super) finish: FinishReason,
    pub(super) usage: Usage,
}

/// Gathers the text of a request until it is done.
pub(super) async fn collect(mut events: UnboundedReceiver<Event>) -> Result<Finished, ApiError> {
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
