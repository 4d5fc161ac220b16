//! A request body turned into what the engine runs and what its reply needs, checked
//! against the model's tokenizer and context before anything reaches the engine: sampling
//! fields, stop strings, token limits, choices, log-probabilities, the prompt (encoded) or
//! the messages (rendered with the chat template, encoded). The routes and the fuzzer
//! (`fuzz/`, through `serve::check_request_body`) both go through here.

use serde_json::Value;

use super::error::ApiError;
use super::openai::{ChatBody, CompletionBody};
use super::request::{
    chat_logprobs, chat_messages, check_fits_context, choice_count, completion_logprobs,
    completion_request, max_tokens, prompt_ids,
};
use super::response::Echo;
use crate::engine::CompletionRequest;
use crate::tokenizer::Tokenizer;

/// `max_tokens` of `/v1/completions` when the request has none (OpenAI's default).
pub(super) const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;

/// A checked request: what the engine runs for each choice, and what the reply needs.
pub(super) struct Prepared {
    pub(super) req: CompletionRequest,
    /// choices asked for
    pub(super) n: usize,
    /// log-probabilities in the reply
    pub(super) logprobs: bool,
    pub(super) echo: Option<Echo>,
}

/// `/v1/completions`' body for a model of `context` positions.
pub(super) fn completion(
    tokenizer: &Tokenizer,
    context: usize,
    body: &CompletionBody,
) -> Result<Prepared, ApiError> {
    let n = choice_count(&body.sampling)?;
    let logprobs = completion_logprobs(body.logprobs.as_ref())?;
    let echo = body.echo.unwrap_or(false);
    let prompt_ids = prompt_ids(tokenizer, &body.prompt)?;
    let max_tokens =
        max_tokens(body.max_tokens, "max_tokens")?.unwrap_or(DEFAULT_COMPLETION_MAX_TOKENS);
    check_fits_context(context, prompt_ids.len(), max_tokens, "max_tokens")?;
    let echo = echo.then(|| Echo {
        text: echo_text(tokenizer, &body.prompt, &prompt_ids),
        ids: prompt_ids.clone(),
    });
    let mut req = completion_request(tokenizer, prompt_ids, max_tokens, &body.sampling)?;
    req.logprobs = logprobs;
    req.prompt_logprobs = echo.is_some() && logprobs.is_some();
    Ok(Prepared {
        req,
        n,
        logprobs: logprobs.is_some(),
        echo,
    })
}

/// `/v1/chat/completions`' body for a model of `context` positions.
pub(super) fn chat(
    tokenizer: &Tokenizer,
    context: usize,
    body: &ChatBody,
) -> Result<Prepared, ApiError> {
    let n = choice_count(&body.sampling)?;
    let logprobs = chat_logprobs(body.logprobs.as_ref(), body.top_logprobs)?;
    let messages = chat_messages(&body.messages)?;
    // The rendered template already holds the special tokens (BOS included where wanted).
    let prompt_ids = tokenizer
        .apply_chat(&messages, true)
        .and_then(|text| tokenizer.encode(&text, false))
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    let (max_tokens, param) = match body.max_completion_tokens {
        Some(n) => (
            max_tokens(Some(n), "max_completion_tokens")?,
            "max_completion_tokens",
        ),
        None => (max_tokens(body.max_tokens, "max_tokens")?, "max_tokens"),
    };
    if let Some(n) = max_tokens {
        check_fits_context(context, prompt_ids.len(), n, param)?;
    }
    // Without a limit a chat reply may fill the context, as with OpenAI.
    let max_tokens = max_tokens.unwrap_or_else(|| context.saturating_sub(prompt_ids.len()).max(1));
    let mut req = completion_request(tokenizer, prompt_ids, max_tokens, &body.sampling)?;
    req.logprobs = logprobs;
    Ok(Prepared {
        req,
        n,
        logprobs: logprobs.is_some(),
        echo: None,
    })
}

/// The prompt as `echo` repeats it: as sent where it was text, else decoded.
fn echo_text(tokenizer: &Tokenizer, prompt: &Value, ids: &[u32]) -> String {
    let sent = match prompt {
        Value::Array(items) if items.len() == 1 => &items[0],
        other => other,
    };
    match sent {
        Value::String(text) => text.clone(),
        _ => tokenizer.decode_with(ids, false),
    }
}
