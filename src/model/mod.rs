//! Model files (GGUF, HF safetensors), config, and host-side tensors.

pub mod config;
pub mod cpu_reference;
pub mod gguf_model;
pub mod gpu_model;
pub mod hf;
#[cfg(not(target_arch = "wasm32"))]
pub mod load;
pub mod source;
pub mod synthetic;

pub use config::{Arch, Llama3RopeScaling, ModelConfig};
pub use source::{HostTensor, LayerTensor, LoadError, TensorName, TensorSummary, WeightSource};
