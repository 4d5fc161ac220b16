//! The server's state and its exchange with the engine: each request's events come from
//! the engine's thread through an unbounded channel (the sink must not block; see
//! `choices`). The receiving end lives in the handler, or in the SSE body while streaming,
//! so when a client goes away the receiver is dropped, the sink returns false and the
//! engine cancels the request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::choices::Choices;
use super::error::ApiError;
use super::openai::ModelCard;
use crate::engine::{Backend, Event, FinishReason, TokenLogprob, Usage};

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

/// A finished choice.
#[derive(Default)]
pub(super) struct Finished {
    pub(super) text: String,
    pub(super) finish: Option<FinishReason>,
    pub(super) usage: Usage,
    /// of the generated tokens, where asked
    pub(super) logprobs: Vec<TokenLogprob>,
}

/// Every choice of a request, finished, and the prompt's log-probabilities where asked.
pub(super) struct AllFinished {
    pub(super) choices: Vec<Finished>,
    pub(super) prompt_logprobs: Option<Vec<TokenLogprob>>,
}

/// Gathers the `n` choices of a request until all are done.
pub(super) async fn collect(mut choices: Choices, n: usize) -> Result<AllFinished, ApiError> {
    let mut done: Vec<Finished> = (0..n).map(|_| Finished::default()).collect();
    let mut prompt_logprobs = None;
    let mut open = n;
    while open > 0 {
        let (index, event) = choices.next().await?;
        let choice = &mut done[index as usize];
        match event {
            Event::Delta { text, logprobs, .. } => {
                choice.text.push_str(&text);
                choice.logprobs.extend(logprobs);
            }
            Event::PromptLogprobs(p) => prompt_logprobs = Some(p),
            Event::Done { finish, usage } => {
                choice.finish = Some(finish);
                choice.usage = usage;
                open -= 1;
            }
            Event::Failed(message) => return Err(ApiError::server(message)),
            Event::Attention(_) => {}
        }
    }
    Ok(AllFinished {
        choices: done,
        prompt_logprobs,
    })
}

/// The usage of a request's choices together: the prompt once, every choice's tokens.
pub(super) fn total_usage(choices: impl IntoIterator<Item = Usage>) -> Usage {
    let mut all = choices.into_iter();
    let first = all.next().unwrap_or_default();
    all.fold(first, |acc, u| Usage {
        completion_tokens: acc.completion_tokens + u.completion_tokens,
        ..acc
    })
}
