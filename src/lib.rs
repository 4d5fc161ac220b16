//! headroom: LLM inference on WebGPU. See DESIGN in the README for the parts.

pub mod model;
pub mod tokenizer;
pub mod gpu;
pub mod ops;
pub mod engine;
