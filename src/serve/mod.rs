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

/// Parses and checks a request body as the routes do before anything reaches the engine
/// (`prepare`): the JSON, sampling fields, stop strings, token limits against a context of
/// `FUZZ_CONTEXT`, choices and log-probabilities, then the prompt (encoded) or the messages
/// (rendered with the tokenizer's template, encoded). `chat` picks `/v1/chat/completions`
/// over `/v1/completions`. The prompt's token count, or the 400's message. For the fuzzer
/// (`fuzz/`), not an API.
#[doc(hidden)]
pub fn check_request_body(
    tokenizer: &crate::tokenizer::Tokenizer,
    body: &[u8],
    chat: bool,
) -> Result<usize, String> {
    let body = Ok(axum::body::Bytes::copy_from_slice(body));
    let prepared = match chat {
        true => request::parse_body(body).and_then(|b| prepare::chat(tokenizer, FUZZ_CONTEXT, &b)),
        false => {
            request::parse_body(body).and_then(|b| prepare::completion(tokenizer, FUZZ_CONTEXT, &b))
        }
    };
    prepared
        .map(|p| p.req.prompt_ids.len())
        .map_err(|e| e.detail.message)
}

/// The context `check_request_body` checks token limits against.
#[doc(hidden)]
pub const FUZZ_CONTEXT: usize = 8192;
