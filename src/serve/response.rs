//! Shaping replies: whole completions and chat completions, and their server-sent event
//! streams.

use std::convert::Infallible;

use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{stream, Stream, StreamExt};
use serde::Serialize;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::error::ApiError;
use super::ids::{request_id, unix_seconds};
use super::openai::{
    AssistantMessage, ChatChoice, ChatChunkChoice, ChatDelta, CompletionResponse, SamplingFields,
    TextChoice, UsageBody,
};
use super::state::{AppState, Finished, RunningGuard, ENGINE_DROPPED};
use crate::engine::FinishReason;
use crate::engine::{Event, Usage};

#[derive(Clone, Copy)]
pub(super) enum Endpoint {
    Completions,
    Chat,
}

/// What every response and chunk of one request shares.
pub(super) struct Reply {
    pub(super) endpoint: Endpoint,
    pub(super) id: String,
    pub(super) created: u64,
    pub(super) model: String,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
}

impl Reply {
    pub(super) fn new(endpoint: Endpoint, state: &AppState, s: &SamplingFields) -> Self {
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

    pub(super) fn response<C>(
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

    pub(super) fn chunk_object(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Completions => "text_completion",
            Endpoint::Chat => "chat.completion.chunk",
        }
    }

    /// The non-streaming response.
    pub(super) fn whole(&self, done: Finished) -> Response {
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
    pub(super) fn chunk(
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
    pub(super) fn opening(&self) -> Vec<SseEvent> {
        match self.endpoint {
            Endpoint::Completions => Vec::new(),
            Endpoint::Chat => vec![self.chunk(String::new(), Some("assistant"), None)],
        }
    }

    /// The chunk for new text; none while the engine holds back an incomplete character.
    pub(super) fn delta(&self, text: String) -> Vec<SseEvent> {
        if text.is_empty() {
            Vec::new()
        } else {
            vec![self.chunk(text, None, None)]
        }
    }

    /// The finish reason, the usage if asked for, and `[DONE]`.
    pub(super) fn closing(&self, finish: FinishReason, usage: Usage) -> Vec<SseEvent> {
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
/// either `[DONE]` or an error object (the engine's, or the deadline's: `deadline` is
/// when, and the limit it came from). `running` is held until the stream ends.
pub(super) fn event_stream(
    events: UnboundedReceiver<Event>,
    reply: Reply,
    deadline: Option<(Instant, Duration)>,
    running: RunningGuard,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let opening = stream::iter(reply.opening());
    // The state is None once the request has ended; the receiver is dropped right then
    // (which cancels the request in the engine).
    let rest = stream::unfold(Some((events, reply, running)), move |state| async move {
        let (mut events, reply, running) = state?;
        let next = match deadline {
            Some((at, limit)) => tokio::select! {
                event = events.recv() => Ok(event),
                _ = tokio::time::sleep_until(at) => Err(limit),
            },
            None => Ok(events.recv().await),
        };
        let step = match next {
            Ok(Some(Event::Delta { text, .. })) => {
                (reply.delta(text), Some((events, reply, running)))
            }
            Ok(Some(Event::Done { finish, usage })) => (reply.closing(finish, usage), None),
            Ok(Some(Event::Failed(message))) => {
                (vec![error_event(ApiError::server(message))], None)
            }
            Ok(Some(Event::Attention(_))) => (Vec::new(), Some((events, reply, running))),
            Ok(None) => (vec![error_event(ApiError::server(ENGINE_DROPPED))], None),
            Err(limit) => (vec![error_event(ApiError::deadline(limit))], None),
        };
        Some(step)
    });
    opening.chain(rest.flat_map(stream::iter)).map(Ok)
}

pub(super) fn json_event(value: &impl Serialize) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(value).expect("response types serialize"))
}

pub(super) fn error_event(error: ApiError) -> SseEvent {
    json_event(&error.body())
}

/// OpenAI's `finish_reason`: a full context ends a reply like `max_tokens` does.
pub(super) fn finish_reason(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length | FinishReason::Context => "length",
    }
}
