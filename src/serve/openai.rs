//! The OpenAI wire format: request bodies as clients send them and the responses,
//! stream chunks and errors the server writes back. Only the fields this server reads
//! or writes are here; unknown request fields are ignored, as OpenAI's own server does.
//! Fields whose JSON shape varies (`prompt`, `stop`, message `content`) stay
//! [`serde_json::Value`]s so that `http` can explain exactly what is wrong with them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::Usage;

/// `stream_options` of a streaming request.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// Sampling and length fields shared by both endpoints. `null` means absent.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SamplingFields {
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    /// not in OpenAI's API; vLLM and llama.cpp accept it too
    #[serde(default)]
    pub top_k: Option<u32>,
    /// not in OpenAI's API: false keeps this request out of speculative decoding (its
    /// output is the same either way; only its speed changes)
    #[serde(default)]
    pub speculate: Option<bool>,
    #[serde(default)]
    pub seed: Option<i64>,
    /// a string or an array of strings
    #[serde(default)]
    pub stop: Option<Value>,
    #[serde(default)]
    pub n: Option<i64>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

/// `POST /v1/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct CompletionBody {
    #[serde(default)]
    pub model: Option<String>,
    /// a string, an array of one string, or token ids (flat, or one array of them)
    pub prompt: Value,
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub echo: Option<bool>,
    /// most likely alternatives per token (0..=20): the log-probability of every token
    /// comes back, of the prompt's too with `echo`
    #[serde(default)]
    pub logprobs: Option<Value>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatBody {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessageBody>,
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// the newer name of `max_tokens`
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    /// true to get the log-probability of every generated token
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// most likely alternatives per token (0..=20), with `logprobs`
    #[serde(default)]
    pub top_logprobs: Option<i64>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// One message of `messages`; `content` is a string, an array of parts, or null.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatMessageBody {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
}

/// `usage` of a response or of the last stream chunk.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageBody {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: usize,
}

impl From<Usage> for UsageBody {
    fn from(u: Usage) -> Self {
        UsageBody {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: u.cached_tokens,
            },
        }
    }
}

/// A response (`object` = "text_completion" or "chat.completion") or a stream chunk
/// (`object` = "text_completion" or "chat.completion.chunk"); `C` is the choice type.
#[derive(Clone, Debug, Serialize)]
pub struct CompletionResponse<C> {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<C>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageBody>,
}

/// A choice of `/v1/completions`, whole or streamed.
#[derive(Clone, Debug, Serialize)]
pub struct TextChoice {
    pub index: u32,
    pub text: String,
    /// null until the last chunk of a stream
    pub finish_reason: Option<&'static str>,
    pub logprobs: Option<TextLogprobs>,
}

/// `logprobs` of a `/v1/completions` choice (or of a chunk's tokens): per token, its text,
/// log-probability (null for a prompt's first) and most likely alternatives, and where
/// its text starts in the choice's text.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TextLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<Option<f32>>,
    pub top_logprobs: Vec<Option<serde_json::Map<String, Value>>>,
    pub text_offset: Vec<usize>,
}

/// `logprobs` of a `/v1/chat/completions` choice (or of a chunk's tokens).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
    pub refusal: Option<Vec<ChatTokenLogprob>>,
}

/// One token of a chat reply: its text, its UTF-8 bytes, its log-probability and the most
/// likely alternatives at its position.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// A whole choice of `/v1/chat/completions`.
#[derive(Clone, Debug, Serialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: &'static str,
    pub logprobs: Option<ChatLogprobs>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

/// A streamed choice of `/v1/chat/completions`.
#[derive(Clone, Debug, Serialize)]
pub struct ChatChunkChoice {
    pub index: u32,
    pub delta: ChatDelta,
    pub finish_reason: Option<&'static str>,
    pub logprobs: Option<ChatLogprobs>,
}

/// What a chat chunk adds: the role once at the start, then content.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChatDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `{"error": {...}}`, the body of every error response and of a failed stream's last event.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

/// An entry of `/v1/models`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

/// `/v1/models`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}
