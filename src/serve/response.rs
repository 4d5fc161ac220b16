//! Shaping replies: whole completions and chat completions, and their server-sent event
//! streams.

use std::convert::Infallible;

use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{stream, Stream, StreamExt};
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

use super::choices::Choices;
use super::error::ApiError;
use super::ids::{request_id, unix_seconds};
use super::logprobs::{chat_logprobs, push_text_logprobs};
use super::openai::{
    AssistantMessage, ChatChoice, ChatChunkChoice, ChatDelta, ChatLogprobs, CompletionResponse,
    SamplingFields, TextChoice, TextLogprobs, UsageBody,
};
use super::state::{total_usage, AllFinished, AppState, RunningGuard};
use crate::engine::{Backend, Event, FinishReason, TokenLogprob, Usage};
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

#[derive(Clone, Copy)]
pub(super) enum Endpoint {
    Completions,
    Chat,
}

/// The prompt a completion repeats before its text (`echo`).
pub(super) struct Echo {
    pub(super) text: String,
    pub(super) ids: Vec<u32>,
}

/// What every response and chunk of one request shares, and where each choice's stream
/// stands.
pub(super) struct Reply {
    pub(super) endpoint: Endpoint,
    pub(super) id: String,
    pub(super) created: u64,
    pub(super) model: String,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
    /// choices asked for
    pub(super) n: usize,
    /// log-probabilities in the reply (the engine computes them where asked)
    pub(super) logprobs: bool,
    pub(super) echo: Option<Echo>,
    backend: Arc<dyn Backend>,
    /// per choice while streaming: characters of text its logprobs' offsets have passed
    offsets: Vec<usize>,
    /// per choice while streaming: its usage once done
    usage: Vec<Option<Usage>>,
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
            n: 1,
            logprobs: false,
            echo: None,
            backend: state.backend.clone(),
            offsets: Vec::new(),
            usage: Vec::new(),
        }
    }

    fn tokenizer(&self) -> &Tokenizer {
        self.backend.tokenizer()
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
    pub(super) fn whole(&self, done: AllFinished) -> Response {
        let usage = Some(UsageBody::from(total_usage(
            done.choices.iter().map(|c| c.usage),
        )));
        let prompt = self.echo.as_ref().zip(done.prompt_logprobs.as_deref());
        match self.endpoint {
            Endpoint::Completions => {
                let choices = done
                    .choices
                    .into_iter()
                    .zip(0..)
                    .map(|(c, index)| {
                        let echoed = self.echo.as_ref().map_or("", |e| e.text.as_str());
                        let logprobs = self.logprobs.then(|| {
                            let mut out = TextLogprobs::default();
                            let prompt = prompt.map(|(e, lp)| (e.ids.as_slice(), lp));
                            let mut offset = 0;
                            push_text_logprobs(
                                &mut out,
                                self.tokenizer(),
                                prompt,
                                &c.logprobs,
                                &mut offset,
                            );
                            out
                        });
                        TextChoice {
                            index,
                            text: format!("{echoed}{}", c.text),
                            finish_reason: Some(finish_reason(c.finish)),
                            logprobs,
                        }
                    })
                    .collect();
                Json(self.response("text_completion", choices, usage)).into_response()
            }
            Endpoint::Chat => {
                let choices = done
                    .choices
                    .into_iter()
                    .zip(0..)
                    .map(|(c, index)| ChatChoice {
                        index,
                        logprobs: self
                            .logprobs
                            .then(|| chat_logprobs(self.tokenizer(), &c.logprobs)),
                        message: AssistantMessage {
                            role: "assistant",
                            content: c.text,
                        },
                        finish_reason: finish_reason(c.finish),
                    })
                    .collect();
                Json(self.response("chat.completion", choices, usage)).into_response()
            }
        }
    }

    /// One stream chunk for choice `index` carrying `text` (the role, for a chat's first
    /// chunk), the log-probabilities of its tokens and, on the last one, the finish reason.
    fn chunk(
        &self,
        index: u32,
        text: String,
        role: Option<&'static str>,
        logprobs: Option<Logprobs>,
        finish: Option<&'static str>,
    ) -> SseEvent {
        match self.endpoint {
            Endpoint::Completions => {
                let choice = TextChoice {
                    index,
                    text,
                    finish_reason: finish,
                    logprobs: logprobs.and_then(Logprobs::text),
                };
                json_event(&self.response(self.chunk_object(), vec![choice], None))
            }
            Endpoint::Chat => {
                // The closing chunk's delta is empty; every other one has content.
                let content = finish.is_none().then_some(text);
                let choice = ChatChunkChoice {
                    index,
                    delta: ChatDelta { role, content },
                    finish_reason: finish,
                    logprobs: logprobs.and_then(Logprobs::chat),
                };
                json_event(&self.response(self.chunk_object(), vec![choice], None))
            }
        }
    }

    /// A chat stream starts by naming the role of each choice; a completion stream that
    /// echoes its prompt starts with it, unless it waits for the prompt's logprobs.
    pub(super) fn opening(&mut self) -> Vec<SseEvent> {
        self.offsets = vec![0; self.n];
        self.usage = vec![None; self.n];
        match self.endpoint {
            Endpoint::Chat => (0..self.n as u32)
                .map(|i| self.chunk(i, String::new(), Some("assistant"), None, None))
                .collect(),
            Endpoint::Completions if self.echo.is_some() && !self.logprobs => self.echo_chunks(&[]),
            Endpoint::Completions => Vec::new(),
        }
    }

    /// The echoed prompt of every choice, with the prompt's log-probabilities where asked.
    fn echo_chunks(&mut self, prompt_logprobs: &[TokenLogprob]) -> Vec<SseEvent> {
        let Some(echo) = &self.echo else {
            return Vec::new();
        };
        let text = echo.text.clone();
        let ids = echo.ids.clone();
        let backend = self.backend.clone();
        (0..self.n)
            .map(|i| {
                let logprobs = self.logprobs.then(|| {
                    let mut out = TextLogprobs::default();
                    push_text_logprobs(
                        &mut out,
                        backend.tokenizer(),
                        Some((&ids, prompt_logprobs)),
                        &[],
                        &mut self.offsets[i],
                    );
                    Logprobs::Text(out)
                });
                self.chunk(i as u32, text.clone(), None, logprobs, None)
            })
            .collect()
    }

    /// The chunk for new text and its tokens' log-probabilities; none while the engine
    /// holds back an incomplete character and there are no log-probabilities to send.
    fn delta(&mut self, index: u32, text: String, tokens: &[TokenLogprob]) -> Vec<SseEvent> {
        let logprobs = (self.logprobs && !tokens.is_empty()).then(|| match self.endpoint {
            Endpoint::Completions => {
                let mut out = TextLogprobs::default();
                let offset = &mut self.offsets[index as usize];
                push_text_logprobs(&mut out, self.backend.tokenizer(), None, tokens, offset);
                Logprobs::Text(out)
            }
            Endpoint::Chat => Logprobs::Chat(chat_logprobs(self.tokenizer(), tokens)),
        });
        if text.is_empty() && logprobs.is_none() {
            Vec::new()
        } else {
            vec![self.chunk(index, text, None, logprobs, None)]
        }
    }

    /// The finish reason of choice `index`; after the last choice's, the usage if asked
    /// for, and `[DONE]`. The bool says whether the stream ends.
    fn closing(&mut self, index: u32, finish: FinishReason, usage: Usage) -> (Vec<SseEvent>, bool) {
        let mut events = vec![self.chunk(
            index,
            String::new(),
            None,
            None,
            Some(finish_reason(Some(finish))),
        )];
        self.usage[index as usize] = Some(usage);
        if self.usage.iter().any(Option::is_none) {
            return (events, false);
        }
        if self.include_usage {
            let total = total_usage(self.usage.iter().flatten().copied());
            let chunk =
                self.response::<TextChoice>(self.chunk_object(), vec![], Some(total.into()));
            events.push(json_event(&chunk));
        }
        events.push(SseEvent::default().data("[DONE]"));
        (events, true)
    }
}

/// A chunk's log-probabilities in its endpoint's shape.
enum Logprobs {
    Text(TextLogprobs),
    Chat(ChatLogprobs),
}

impl Logprobs {
    fn text(self) -> Option<TextLogprobs> {
        match self {
            Logprobs::Text(t) => Some(t),
            Logprobs::Chat(_) => None,
        }
    }

    fn chat(self) -> Option<ChatLogprobs> {
        match self {
            Logprobs::Chat(c) => Some(c),
            Logprobs::Text(_) => None,
        }
    }
}

/// The SSE events of one request: its choices' chunks as the engine makes them, and at
/// the end either `[DONE]` or an error object (the engine's, or the deadline's:
/// `deadline` is when, and the limit it came from). `running` is held until the stream
/// ends.
pub(super) fn event_stream(
    choices: Choices,
    mut reply: Reply,
    deadline: Option<(Instant, Duration)>,
    running: RunningGuard,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let opening = stream::iter(reply.opening());
    // The state is None once the request has ended; the receivers are dropped right then
    // (which cancels the request's choices in the engine).
    let rest = stream::unfold(Some((choices, reply, running)), move |state| async move {
        let (mut choices, mut reply, running) = state?;
        let next = match deadline {
            Some((at, limit)) => tokio::select! {
                event = choices.next() => event,
                _ = tokio::time::sleep_until(at) => Err(ApiError::deadline(limit)),
            },
            None => choices.next().await,
        };
        let (events, ended) = match next {
            Ok((i, Event::Delta { text, logprobs, .. })) => {
                (reply.delta(i, text, &logprobs), false)
            }
            Ok((_, Event::PromptLogprobs(p))) => (reply.echo_chunks(&p), false),
            Ok((i, Event::Done { finish, usage })) => reply.closing(i, finish, usage),
            Ok((_, Event::Failed(message))) => (vec![error_event(ApiError::server(message))], true),
            Ok((_, Event::Attention(_))) => (Vec::new(), false),
            Err(e) => (vec![error_event(e)], true),
        };
        let state = (!ended).then_some((choices, reply, running));
        Some((events, state))
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
pub(super) fn finish_reason(finish: Option<FinishReason>) -> &'static str {
    match finish {
        Some(FinishReason::Stop | FinishReason::Cancelled) | None => "stop",
        Some(FinishReason::Length | FinishReason::Context) => "length",
    }
}
