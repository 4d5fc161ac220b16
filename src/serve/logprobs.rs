//! Log-probabilities in OpenAI's two shapes: the legacy one of `/v1/completions` (parallel
//! lists of tokens, log-probabilities, alternatives and text offsets) and the one of
//! `/v1/chat/completions` (a list of token objects with their UTF-8 bytes).

use serde_json::{Map, Value};

use super::openai::{ChatLogprobs, ChatTokenLogprob, TextLogprobs, TopLogprob};
use crate::engine::TokenLogprob;
use crate::tokenizer::Tokenizer;

/// What OpenAI reports for a log-probability of minus infinity (JSON has none).
const FLOOR: f32 = -9999.0;

/// A token's text as it would print on its own (special tokens included).
pub(super) fn token_text(tok: &Tokenizer, id: u32) -> String {
    tok.decode_with(&[id], false)
}

fn finite(logprob: f32) -> f32 {
    if logprob.is_nan() {
        FLOOR
    } else {
        logprob.max(FLOOR)
    }
}

/// Chat's shape for generated tokens.
pub(super) fn chat_logprobs(tok: &Tokenizer, tokens: &[TokenLogprob]) -> ChatLogprobs {
    let entry = |id: u32, logprob: f32| {
        let token = token_text(tok, id);
        (token.as_bytes().to_vec(), token, finite(logprob))
    };
    ChatLogprobs {
        content: tokens
            .iter()
            .map(|t| {
                let (bytes, token, logprob) = entry(t.id, t.logprob);
                ChatTokenLogprob {
                    token,
                    logprob,
                    bytes,
                    top_logprobs: t
                        .top
                        .iter()
                        .map(|&(id, lp)| {
                            let (bytes, token, logprob) = entry(id, lp);
                            TopLogprob {
                                token,
                                logprob,
                                bytes,
                            }
                        })
                        .collect(),
                }
            })
            .collect(),
        refusal: None,
    }
}

/// The legacy shape, appending to `out`: the prompt's tokens first where `prompt` is
/// given (its first token has no log-probability), then `tokens`. Text offsets count
/// characters from `*offset`, which moves past the tokens' text.
pub(super) fn push_text_logprobs(
    out: &mut TextLogprobs,
    tok: &Tokenizer,
    prompt: Option<(&[u32], &[TokenLogprob])>,
    tokens: &[TokenLogprob],
    offset: &mut usize,
) {
    let mut push = |id: u32, scored: Option<&TokenLogprob>| {
        let text = token_text(tok, id);
        out.text_offset.push(*offset);
        *offset += text.chars().count();
        out.tokens.push(text);
        out.token_logprobs.push(scored.map(|t| finite(t.logprob)));
        out.top_logprobs.push(scored.map(|t| {
            let mut top = Map::new();
            for &(id, lp) in &t.top {
                top.entry(token_text(tok, id))
                    .or_insert_with(|| Value::from(finite(lp)));
            }
            top
        }));
    };
    if let Some((ids, scored)) = prompt {
        if let Some((&first, rest)) = ids.split_first() {
            push(first, None);
            for (&id, t) in rest.iter().zip(scored) {
                push(id, Some(t));
            }
        }
    }
    for t in tokens {
        push(t.id, Some(t));
    }
}
