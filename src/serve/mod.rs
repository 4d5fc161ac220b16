//! The OpenAI-compatible HTTP server, over any [`crate::engine::Backend`]: routes and
//! handlers (`routes`), request checking (`request`), the exchange of events with the
//! engine (`state`), checking and tokenizing a body into what the engine runs
//! (`prepare`), reply and stream shaping (`response`), the `n` choices of a request (`choices`),
//! log-probabilities in OpenAI's shapes (`logprobs`), error bodies (`error`),
//! Prometheus text (`prometheus`), the wire types (`openai`), API keys (`auth`),
//! bounds on requests and connections (`limits`) and the accept loop with its graceful
//! shutdown (`listen`). It knows nothing of GPUs or batching.

#![cfg(not(target_arch = "wasm32"))]

mod auth;
mod choices;
mod error;
mod ids;
mod limits;
mod listen;
mod logprobs;
pub mod openai;
mod prepare;
mod prometheus;
mod request;
mod response;
mod routes;
mod state;

pub use auth::Access;
pub use limits::{Limits, DEFAULT_MAX_BODY_BYTES};
pub use routes::{router, router_with, serve, serve_until, serve_with};

/// Parses and checks a request body as the routes do before anything reaches the engine:
/// the JSON, sampling fields, stop strings and token limits, then the prompt (encoded) or
/// the messages (rendered with the tokenizer's template, encoded). `chat` picks
/// `/v1/chat/completions` over `/v1/completions`. The prompt's token count, or the 400's
/// message. For the fuzzer (`fuzz/`), not an API.
#[doc(hidden)]
pub fn check_request_body(
    tokenizer: &crate::tokenizer::Tokenizer,
    body: &[u8],
    chat: bool,
) -> Result<usize, String> {
    use request::{chat_messages, max_tokens, parse_body, prompt_ids, sampling_params};
    let check = || -> Result<usize, error::ApiError> {
        let body = Ok(axum::body::Bytes::copy_from_slice(body));
        let (ids, sampling) = if chat {
            let b: openai::ChatBody = parse_body(body)?;
            max_tokens(b.max_completion_tokens, "max_completion_tokens")?;
            max_tokens(b.max_tokens, "max_tokens")?;
            let messages = chat_messages(&b.messages)?;
            let ids = tokenizer
                .apply_chat(&messages, true)
                .and_then(|text| tokenizer.encode(&text, false))
                .map_err(|e| error::ApiError::invalid("messages", e.to_string()))?;
            (ids, b.sampling)
        } else {
            let b: openai::CompletionBody = parse_body(body)?;
            max_tokens(b.max_tokens, "max_tokens")?;
            (prompt_ids(tokenizer, &b.prompt)?, b.sampling)
        };
        sampling_params(&sampling)?;
        request::stop_strings(sampling.stop.as_ref())?;
        Ok(ids.len())
    };
    check().map_err(|e| e.detail.message)
}
