//! What the HTTP server needs from an engine: submit a request, receive its events,
//! read the metrics. The engine (`engine::runner`) implements [`Backend`]; the server
//! (`serve::http`) only sees this trait, so it can be tested against a scripted backend.

use super::logprobs::TokenLogprob;
use super::FinishReason;
use crate::ops::sample::SamplingParams;
use crate::tokenizer::Tokenizer;

/// One completion to run: a tokenized prompt and how to continue it.
#[derive(Clone, Debug)]
pub struct CompletionRequest {
    pub prompt_ids: Vec<u32>,
    /// most tokens to generate
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// ids that end generation (not in the output); servers pass the model's
    /// end-of-sequence ids, benchmarks none (fixed-length generation)
    pub stop_ids: Vec<u32>,
    /// texts that end generation; the text up to the stop string is returned, the stop
    /// string itself is not
    pub stop_strings: Vec<String>,
    /// do not emit the text of special tokens
    pub skip_special: bool,
    /// send the attention weights of the prompt's last token (`Event::Attention`) before
    /// the first token
    pub probe_attention: bool,
    /// the log-probability of every generated token, with this many most likely
    /// alternatives (at most `MAX_TOP_LOGPROBS`), in its `Event::Delta`
    pub logprobs: Option<usize>,
    /// the log-probabilities of the prompt's tokens after the first
    /// (`Event::PromptLogprobs`, with `logprobs` alternatives each); the prompt is then
    /// computed whole, not taken from the prefix cache
    pub prompt_logprobs: bool,
    /// let the engine draft tokens by prompt lookup and verify them in one step (requests
    /// without logprobs): greedy output is the same either way, sampled output keeps its
    /// distribution
    pub speculate: bool,
}

/// Token counts of one finished request, as OpenAI's `usage` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// prompt tokens whose KV came from the prefix cache (not recomputed)
    pub cached_tokens: usize,
}

/// What the engine tells a request's owner, in order: any number of `Delta`s, then one
/// `Done` or `Failed`, then nothing.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// New text (possibly empty while a character is incomplete) and the ids that made it,
    /// with their log-probabilities where the request asked (else empty). Text that might
    /// be the start of a stop string is held back until it is not.
    Delta {
        text: String,
        ids: Vec<u32>,
        logprobs: Vec<TokenLogprob>,
        /// the ids were drafted (prompt lookup) and confirmed by the model in one step,
        /// rather than drawn by a step of their own
        drafted: bool,
    },
    /// The log-probabilities of the prompt's tokens after the first, once, before the
    /// first `Delta` (requests with `prompt_logprobs`).
    PromptLogprobs(Vec<TokenLogprob>),
    /// Finished: why, and the token counts.
    Done { finish: FinishReason, usage: Usage },
    /// Failed after it was accepted (a device error); the message says what happened.
    Failed(String),
    /// The attention weights of the prompt's last token over the prompt, in every layer and
    /// head (requests with `probe_attention`), before its first `Delta`.
    Attention(std::sync::Arc<crate::model::gpu_model::AttentionProbe>),
}

/// Receives a request's events on the engine's thread; returns false when nobody listens
/// any more (the client went away), and the engine then cancels the request and frees
/// its KV blocks. It must not block.
pub type EventSink = Box<dyn FnMut(Event) -> bool + Send>;

/// Why a request was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The request itself is wrong (empty prompt, prompt longer than the context, bad
    /// sampling parameters): HTTP 400.
    #[error("{0}")]
    Invalid(String),
    /// The queue is full: HTTP 503; retry later.
    #[error("{0}")]
    Overloaded(String),
    /// The engine has stopped (a device error ended it): HTTP 503.
    #[error("the engine has stopped: {0}")]
    Stopped(String),
}

/// Engine counters for `/metrics` and the bench. Totals count since start.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// sequences in the running batch
    pub running: usize,
    /// requests waiting for KV blocks or a batch slot
    pub waiting: usize,
    pub kv_blocks_used: usize,
    pub kv_blocks_total: usize,
    /// cached (unreferenced, evictable) blocks that hold a reusable prefix
    pub kv_blocks_cached: usize,
    pub kv_block_size: usize,
    pub kv_bytes_per_token: u64,
    pub requests_total: u64,
    pub requests_finished: u64,
    pub requests_preempted: u64,
    pub prompt_tokens_total: u64,
    /// prompt tokens served from the prefix cache
    pub prompt_tokens_cached: u64,
    pub generated_tokens_total: u64,
    /// forward passes run
    pub steps_total: u64,
    /// speculative draft tokens verified, and those the model confirmed
    pub draft_tokens_total: u64,
    pub draft_accepted_total: u64,
    /// generated tokens per second over the last few seconds
    pub decode_tokens_per_s: f64,
}

impl MetricsSnapshot {
    /// Fraction of prompt tokens served from the prefix cache (0 before any request).
    pub fn prefix_hit_rate(&self) -> f64 {
        if self.prompt_tokens_total == 0 {
            0.0
        } else {
            self.prompt_tokens_cached as f64 / self.prompt_tokens_total as f64
        }
    }
}

/// An engine as the server sees it. All methods are called from any thread.
pub trait Backend: Send + Sync + 'static {
    /// The model's name in `/v1/models` and responses.
    fn model_id(&self) -> &str;
    fn tokenizer(&self) -> &Tokenizer;
    /// Positions one sequence may hold (prompt plus generated tokens).
    fn context(&self) -> usize;
    /// Queues a request; its events go to `sink`. Checks the request before accepting it.
    fn submit(&self, req: CompletionRequest, sink: EventSink) -> Result<(), SubmitError>;
    fn metrics(&self) -> MetricsSnapshot;
    /// Why the backend can serve no more (its GPU device was lost, say), or None while it
    /// can; `/health` says which.
    fn stopped(&self) -> Option<String> {
        None
    }
}
