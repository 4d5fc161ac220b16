//! headroom: LLM inference on WebGPU. See DESIGN in the README for the parts.

pub mod bench;
pub mod engine;
pub mod gpu;
pub mod kv;
pub mod model;
pub mod ops;
pub mod plot;
pub mod serve;
pub mod tokenizer;
pub mod viewer;
