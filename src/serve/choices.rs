//! The `n` choices of one request as one stream of events. Choice 0 is submitted at once;
//! the others once choice 0 has sent its first event, when its prompt is in the KV cache,
//! so they take the prompt's full blocks from the prefix cache instead of computing them
//! again, and decode as rows of their own. Each choice draws with its own seed (the
//! request's plus its index), so sampled choices differ and a seeded request repeats.

use std::sync::Arc;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::error::ApiError;
use crate::engine::{Backend, CompletionRequest, Event, EventSink};

/// The error when a sink is dropped without `Done` or `Failed` (an engine bug).
const ENGINE_DROPPED: &str = "the engine dropped the request before it finished";

/// The events of every choice of a request, tagged with the choice's index.
pub(super) struct Choices {
    backend: Arc<dyn Backend>,
    rx: UnboundedReceiver<(u32, Event)>,
    /// the sending side while choices are still to be submitted (dropped after, so the
    /// stream ends when every sink is gone)
    tx: Option<UnboundedSender<(u32, Event)>>,
    /// choices 1.. until choice 0 has begun
    later: Vec<CompletionRequest>,
}

impl Choices {
    /// Submits choice 0 of `n` for `req`.
    pub(super) fn submit(
        backend: Arc<dyn Backend>,
        req: CompletionRequest,
        n: usize,
    ) -> Result<Choices, ApiError> {
        let (tx, rx) = unbounded_channel();
        let later = (1..n)
            .map(|i| {
                let mut r = req.clone();
                r.sampling.seed = r.sampling.seed.wrapping_add(i as u32);
                // the prompt's log-probabilities are the same for every choice
                r.prompt_logprobs = false;
                r
            })
            .collect();
        submit_choice(backend.as_ref(), req, 0, &tx)?;
        Ok(Choices {
            backend,
            rx,
            tx: (n > 1).then_some(tx),
            later,
        })
    }

    /// The next event of any choice, submitting the later choices when choice 0 sends its
    /// first. An error ends the request: a later choice refused, or the engine dropping a
    /// request without finishing it.
    pub(super) async fn next(&mut self) -> Result<(u32, Event), ApiError> {
        let Some((index, event)) = self.rx.recv().await else {
            return Err(ApiError::server(ENGINE_DROPPED));
        };
        if index == 0 {
            if let Some(tx) = self.tx.take() {
                for (i, req) in std::mem::take(&mut self.later).into_iter().enumerate() {
                    submit_choice(self.backend.as_ref(), req, i as u32 + 1, &tx)?;
                }
            }
        }
        Ok((index, event))
    }
}

/// Queues one choice, its events tagged with `index`.
fn submit_choice(
    backend: &dyn Backend,
    req: CompletionRequest,
    index: u32,
    tx: &UnboundedSender<(u32, Event)>,
) -> Result<(), ApiError> {
    let tx = tx.clone();
    // `send` fails only once the receiver is dropped: the client is gone.
    let sink: EventSink = Box::new(move |event| tx.send((index, event)).is_ok());
    backend.submit(req, sink)?;
    Ok(())
}
