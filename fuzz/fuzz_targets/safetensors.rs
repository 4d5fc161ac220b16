//! One input feeds both the safetensors reader and the HF config parser: the bytes as a
//! safetensors file (header, every tensor's range, floats widened), as a shard index,
//! and as `config.json` text.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::safetensors(data));
