//! Checking and converting request bodies: JSON, sampling fields, stop strings, prompts
//! and chat messages; every problem is a 400 that names the field.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use super::ids::random_seed;
use super::openai::{ChatMessageBody, SamplingFields};
use crate::engine::SamplingParams;
use crate::engine::{CompletionRequest, MAX_TOP_LOGPROBS};
use crate::tokenizer::{ChatMessage, Tokenizer};

/// OpenAI accepts at most this many stop strings.
const MAX_STOP_STRINGS: usize = 4;
/// OpenAI's range for `temperature`.
const MAX_TEMPERATURE: f64 = 2.0;
/// Most choices (`n`) one request may ask for; each takes a row of the running batch.
pub(super) const MAX_CHOICES: usize = 16;

/// Parses a JSON body; malformed JSON and wrong types are a 400 with serde's message.
pub(super) fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes =
        body.map_err(|e| ApiError::new(e.status(), "invalid_request_error", e.body_text()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
}

/// `n`: how many choices to generate for the prompt (1 when absent).
pub(super) fn choice_count(s: &SamplingFields) -> Result<usize, ApiError> {
    match s.n {
        None => Ok(1),
        Some(n) if (1..=MAX_CHOICES as i64).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(
            "n",
            format!("n must be between 1 and {MAX_CHOICES}, got {n}"),
        )),
    }
}

/// `/v1/completions`' `logprobs`: null, or how many alternatives to list per token.
pub(super) fn completion_logprobs(logprobs: Option<&Value>) -> Result<Option<usize>, ApiError> {
    match logprobs {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(k) if k as usize <= MAX_TOP_LOGPROBS => Ok(Some(k as usize)),
            _ => Err(ApiError::invalid(
                "logprobs",
                format!("logprobs must be an integer between 0 and {MAX_TOP_LOGPROBS}, got {v}"),
            )),
        },
    }
}

/// `/v1/chat/completions`' `logprobs` (a boolean) and `top_logprobs` (how many
/// alternatives, which needs `logprobs`).
pub(super) fn chat_logprobs(
    logprobs: Option<&Value>,
    top_logprobs: Option<i64>,
) -> Result<Option<usize>, ApiError> {
    let wanted = match logprobs {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(v) => {
            return Err(ApiError::invalid(
                "logprobs",
                format!("logprobs must be a boolean, got {v}"),
            ))
        }
    };
    let top = match top_logprobs {
        None => 0,
        Some(k) if (0..=MAX_TOP_LOGPROBS as i64).contains(&k) => k as usize,
        Some(k) => {
            return Err(ApiError::invalid(
                "top_logprobs",
                format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {k}"),
            ))
        }
    };
    match (wanted, top_logprobs) {
        (true, _) => Ok(Some(top)),
        (false, None) => Ok(None),
        (false, Some(_)) => Err(ApiError::invalid(
            "top_logprobs",
            "top_logprobs needs logprobs set to true",
        )),
    }
}

/// A request's token limit, if it sets one; it must be at least 1.
pub(super) fn max_tokens(
    value: Option<i64>,
    param: &'static str,
) -> Result<Option<usize>, ApiError> {
    match value {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Some(n) => Err(ApiError::invalid(
            param,
            format!("{param} must be at least 1, got {n}"),
        )),
    }
}

/// A prompt and `max_tokens` that fit the context together, as OpenAI requires (a 400 on
/// `param` otherwise, rather than a reply cut short at the context).
pub(super) fn check_fits_context(
    context: usize,
    prompt_tokens: usize,
    max_tokens: usize,
    param: &'static str,
) -> Result<(), ApiError> {
    match prompt_tokens.checked_add(max_tokens) {
        Some(total) if total <= context => Ok(()),
        _ => Err(ApiError::invalid(
            param,
            format!(
                "this model's context holds {context} tokens, but {prompt_tokens} prompt tokens and {param} = {max_tokens} ask for more; lower {param} or shorten the prompt"
            ),
        )),
    }
}

/// The request for the backend: sampling fields checked, generation ending at the model's
/// stop tokens, special tokens kept out of the text.
pub(super) fn completion_request(
    tokenizer: &Tokenizer,
    prompt_ids: Vec<u32>,
    max_tokens: usize,
    s: &SamplingFields,
) -> Result<CompletionRequest, ApiError> {
    Ok(CompletionRequest {
        prompt_ids,
        max_tokens,
        sampling: sampling_params(s)?,
        stop_ids: tokenizer.eos_ids().to_vec(),
        stop_strings: stop_strings(s.stop.as_ref())?,
        skip_special: true,
        probe_attention: false,
        logprobs: None,
        prompt_logprobs: false,
        speculate: s.speculate.unwrap_or(true),
    })
}

/// OpenAI's defaults: temperature 1, top-p 1; a random seed unless one is given.
pub(super) fn sampling_params(s: &SamplingFields) -> Result<SamplingParams, ApiError> {
    let temperature = s.temperature.unwrap_or(1.0);
    if !(0.0..=MAX_TEMPERATURE).contains(&temperature) {
        return Err(ApiError::invalid(
            "temperature",
            format!("temperature must be between 0 and {MAX_TEMPERATURE}, got {temperature}"),
        ));
    }
    let top_p = s.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            "top_p",
            format!("top_p must be in (0, 1], got {top_p}"),
        ));
    }
    Ok(SamplingParams {
        temperature: temperature as f32,
        top_k: s.top_k.unwrap_or(0),
        top_p: top_p as f32,
        // Any integer is a valid OpenAI seed; its low 32 bits seed the sampler.
        seed: s.seed.map_or_else(random_seed, |seed| seed as u32),
    })
}

/// `stop`: a string or up to four strings; empty strings stop nothing and are dropped.
pub(super) fn stop_strings(stop: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::invalid("stop", "stop must be a string or an array of strings");
    let stops: Vec<String> = match stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    if stops.len() > MAX_STOP_STRINGS {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "at most {MAX_STOP_STRINGS} stop strings are allowed, got {}",
                stops.len()
            ),
        ));
    }
    Ok(stops.into_iter().filter(|s| !s.is_empty()).collect())
}

/// The prompt of `/v1/completions` as token ids: text is encoded (with BOS where the model
/// wants it); ids are taken as they are but must be in the vocabulary.
pub(super) fn prompt_ids(tokenizer: &Tokenizer, prompt: &Value) -> Result<Vec<u32>, ApiError> {
    let encode = |text: &str| {
        tokenizer
            .encode(text, true)
            .map_err(|e| ApiError::invalid("prompt", e.to_string()))
    };
    let shape = || {
        ApiError::invalid(
            "prompt",
            "prompt must be a string, an array of one string, or an array of token ids",
        )
    };
    let items = match prompt {
        Value::String(text) => return encode(text),
        Value::Array(items) => items,
        _ => return Err(shape()),
    };
    match items.first() {
        None => Err(ApiError::invalid("prompt", "prompt must not be empty")),
        Some(Value::Number(_)) => token_ids(tokenizer, items),
        Some(_) if items.len() > 1 => {
            Err(ApiError::invalid("prompt", "only one prompt per request"))
        }
        Some(Value::String(text)) => encode(text),
        Some(Value::Array(ids)) => token_ids(tokenizer, ids),
        Some(_) => Err(shape()),
    }
}

/// A flat array of token ids, each inside the vocabulary.
pub(super) fn token_ids(tokenizer: &Tokenizer, items: &[Value]) -> Result<Vec<u32>, ApiError> {
    let vocab = tokenizer.vocab_size();
    items
        .iter()
        .map(|v| {
            v.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .filter(|&id| (id as usize) < vocab)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "prompt",
                        format!("token ids must be integers in [0, {vocab}), got {v}"),
                    )
                })
        })
        .collect()
}

/// The conversation as the chat template takes it; content parts are joined.
pub(super) fn chat_messages(messages: &[ChatMessageBody]) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    messages
        .iter()
        .map(|m| {
            Ok(ChatMessage::new(
                m.role.as_str(),
                message_text(m.content.as_ref())?,
            ))
        })
        .collect()
}

/// A message's `content`: a string, null (an assistant turn with only tool calls) or an
/// array of `{"type": "text", "text": ...}` parts.
pub(super) fn message_text(content: Option<&Value>) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => parts.iter().map(part_text).collect(),
        Some(_) => Err(ApiError::invalid(
            "messages",
            "message content must be a string or an array of content parts",
        )),
    }
}

pub(super) fn part_text(part: &Value) -> Result<&str, ApiError> {
    match (
        part.get("type").and_then(Value::as_str),
        part.get("text").and_then(Value::as_str),
    ) {
        (Some("text"), Some(text)) => Ok(text),
        (Some("text"), None) => Err(ApiError::invalid(
            "messages",
            "a text content part needs a string `text`",
        )),
        (kind, _) => Err(ApiError::invalid(
            "messages",
            format!(
                "only text content parts are supported, got type {}",
                kind.unwrap_or("(none)")
            ),
        )),
    }
}
