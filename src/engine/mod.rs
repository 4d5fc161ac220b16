//! Requests, generation loop, stop conditions, streaming and timing.

mod generate;
mod loader;

#[cfg(not(target_arch = "wasm32"))]
pub use generate::generate;
pub use generate::{FinishReason, GenerateRequest, GenerateResult, GenerateStats};
#[cfg(not(target_arch = "wasm32"))]
pub use loader::open;
pub use loader::{
    default_model_path, open_gguf_bytes, open_hf_files, ModelFiles, DEFAULT_MODEL_FILE,
};
