//! headroom: LLM inference on WebGPU.
//!
//! The parts, top to bottom; each imports only parts below it:
//!
//! | part | owns |
//! | --- | --- |
//! | `viewer` | the egui app: generation, live telemetry, the attention explorer and maps |
//! | `bench` | benchmark commands and their tables, CSV, JSON and plots |
//! | `serve` | the OpenAI-compatible HTTP server: routes, request checks, replies, Prometheus text |
//! | `engine` | requests, continuous batching, scheduling, stop conditions, streaming; opening a model |
//! | `metrics` | step records and rates, bandwidth probes, the attention cost model, model presets |
//! | `tokenizer` | tokenizers (HF `tokenizer.json` or a GGUF vocabulary) and chat templates |
//! | `model` | configs, weight sources, one file per architecture's graph, steps on the GPU, the CPU reference |
//! | `ops` | one wrapper per WGSL kernel family, each declaring its cost |
//! | `kv` | the paged KV cache: layout and GPU pool, per-step block tables, the prefix cache |
//! | `gpu` | adapter, device, limits, buffers, pipelines, bind groups, timers |
//! | `hub` | `--model hf:ORG/REPO[/FILE.gguf]`: fetching from the Hugging Face Hub into the cache (native only) |
//! | `formats` | GGUF, safetensors, quantization blocks, file bytes, dates |
//!
//! `kv` sits below `ops`: the attention and KV-append kernels read the cache's layout, and
//! the cache itself knows nothing of kernels.
// The browser build leaves out the blocking (native-only) paths; helpers only they use
// would otherwise warn there.
#![cfg_attr(target_arch = "wasm32", allow(dead_code))]

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod engine;
pub mod formats;
pub mod gpu;
#[cfg(not(target_arch = "wasm32"))]
pub mod hub;
pub mod kv;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod serve;
pub mod tokenizer;
pub mod viewer;
#[cfg(target_arch = "wasm32")]
pub mod web;
