//! headroom: LLM inference on WebGPU. See DESIGN in the README for the parts.
// The browser build leaves out the blocking (native-only) paths; helpers only they use
// would otherwise warn there.
#![cfg_attr(target_arch = "wasm32", allow(dead_code))]

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod engine;
pub mod formats;
pub mod gpu;
pub mod kv;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod serve;
pub mod tokenizer;
pub mod viewer;
#[cfg(target_arch = "wasm32")]
pub mod web;
