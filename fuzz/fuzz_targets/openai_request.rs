//! A request body for `/v1/chat/completions` or `/v1/completions` (the first byte picks),
//! parsed and checked as the server's routes do before anything reaches the engine:
//! JSON, sampling fields, stop strings, token limits, the prompt or the messages (rendered
//! with SmolLM2's chat template) and their encoding.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::openai_request(data));
