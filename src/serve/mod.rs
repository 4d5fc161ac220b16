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
