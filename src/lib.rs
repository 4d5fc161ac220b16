//! headroom: LLM inference on WebGPU. See DESIGN in the README for the parts.

pub mod engine;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod tokenizer;
