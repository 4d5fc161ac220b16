//! HF tokenizer.json bytes -> Tokenizer, then a short text encoded and decoded, streamed
//! and written back out. The first bytes, up to a 0 byte, are the tokenizer_config.json
//! when they parse as JSON (so that special tokens, add_bos and templates get exercised).

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::tokenizer_json(data));
