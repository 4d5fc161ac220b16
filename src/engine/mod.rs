//! The engine: requests and their sampling settings, sequences, continuous batching with
//! chunked prefill and preemption (`scheduler`), the engine thread that runs steps on a
//! model (`runner`), stop conditions and streaming, and the one way to open a model
//! (`open`). `generate` runs a single sequence on a model without the scheduler (the
//! command line's `generate` and `chat`), its drafts by prompt lookup (`draft`) or from a
//! draft model (`draft_model`).

pub mod api;
pub mod draft;
#[cfg(not(target_arch = "wasm32"))]
pub mod draft_model;
mod generate;
pub mod logprobs;
mod open;
mod runner;
pub mod scheduler;

pub use crate::ops::sample::SamplingParams;
pub use api::{Backend, CompletionRequest, Event, EventSink, MetricsSnapshot, SubmitError, Usage};
#[cfg(not(target_arch = "wasm32"))]
pub use generate::{generate, generate_drafted};
pub use generate::{FinishReason, GenerateRequest, GenerateResult, GenerateStats};
pub use logprobs::{TokenLogprob, MAX_TOP_LOGPROBS};
pub use open::{
    default_model_for_tests, default_model_path, open_gguf_bytes, open_hf_files, parse_bytes,
    pool_blocks, upload_paged, LoadOptions, ModelFiles, DEFAULT_KV_MEMORY_CAP, DEFAULT_MODEL_FILE,
};
#[cfg(not(target_arch = "wasm32"))]
pub use open::{open, open_engine};
#[cfg(not(target_arch = "wasm32"))]
pub use runner::Drafter;
pub use runner::{Engine, EngineOptions, DEFAULT_DRAFT_TOKENS, DRAFT_MODEL_SLOTS};
