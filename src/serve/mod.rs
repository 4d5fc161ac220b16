//! The OpenAI-compatible HTTP server, over any [`crate::engine::Backend`]: routes and
//! handlers (`routes`), request checking (`request`), the exchange of events with the
//! engine (`state`), reply and stream shaping (`response`), error bodies (`error`),
//! Prometheus text (`prometheus`) and the wire types (`openai`). It knows nothing of GPUs or batching.

#![cfg(not(target_arch = "wasm32"))]

mod error;
mod ids;
pub mod openai;
mod prometheus;
mod request;
mod response;
mod routes;
mod state;

pub use routes::{router, serve};
