//! GGUF bytes -> GgufFile, every accessor, small tensors dequantized, then the model
//! config, the whole GgufModel (tensors checked against it), the vocabulary and the
//! tokenizer built from it, which encodes and decodes a short text.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::gguf(data));
