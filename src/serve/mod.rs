//! Serving many requests at once: a paged KV block pool with prefix caching
//! (`blocks`), a scheduler that batches sequences continuously with chunked prefill
//! (`scheduler`), the engine thread that runs it on a model (`engine`), and the
//! OpenAI-compatible HTTP server (`http`) that talks to any [`api::Backend`].

pub mod api;
pub mod blocks;
pub mod engine;
#[cfg(not(target_arch = "wasm32"))]
pub mod http;
pub mod load;
#[cfg(not(target_arch = "wasm32"))]
pub mod openai;
pub mod scheduler;
