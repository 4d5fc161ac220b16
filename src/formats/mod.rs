//! File formats, below everything that reads models: GGUF (reader and the writer tests
//! use), safetensors, GGML quantization blocks, and the bytes of a file on disk or in
//! memory. Nothing here knows what a model is.

mod bytes;
pub mod date;
mod error;
pub mod gguf;
pub mod quant;
pub mod safetensors;

#[cfg(not(target_arch = "wasm32"))]
pub use bytes::map_file;
pub use bytes::FileBytes;
pub use error::LoadError;
