//! Models: the config (`config`), weight sources that read model files into canonical
//! tensors (`source`, `gguf_model`, `hf`, `load`), one file per architecture that lists its
//! graph of ops (`llama`) over shared buffers (`graph`) and weights (`weights`), the model
//! on the GPU and its steps (`gpu_model`), the f32 CPU reference (`cpu_reference`) and the
//! synthetic models and file writers tests use (`synthetic`), and random-weight files of
//! real families' shapes for speed runs (`random_gguf`).

pub mod config;
pub mod cpu_reference;
mod error;
pub mod gguf_model;
pub mod gpu_model;
pub mod graph;
pub mod hf;
pub mod llama;
#[cfg(not(target_arch = "wasm32"))]
pub mod load;
mod options;
#[cfg(not(target_arch = "wasm32"))]
pub mod random_gguf;
pub mod source;
pub mod synthetic;
pub mod weights;

pub use config::{Activation, Arch, Llama3RopeScaling, LongRope, ModelConfig, Variant};
pub use error::ModelError;
pub use source::{HostTensor, LayerTensor, LoadError, TensorName, TensorSummary, WeightSource};
