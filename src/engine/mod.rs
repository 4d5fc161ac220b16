//! Requests, generation loop, stop conditions, streaming and timing.

mod generate;
mod loader;

pub use generate::{generate, FinishReason, GenerateRequest, GenerateResult, GenerateStats};
pub use loader::{default_model_path, open, ModelFiles, DEFAULT_MODEL_FILE};
