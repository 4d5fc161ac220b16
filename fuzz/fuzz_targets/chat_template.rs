//! A chat template and a conversation, both fuzzed, rendered with small bounds (fuel and
//! output cap) so that a template that runs into them costs milliseconds: the bounding
//! code is the server's, only the numbers differ.
//!
//! Input: template text, then (after the first 0 byte) messages separated by 0x1e, each
//! `role:content`. The last byte's low bit is `add_generation_prompt`.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::chat_template(data));
