//! Drafts from a small model that shares the target's tokenizer (`--draft-model`): its
//! greedy continuation of the sequence, k tokens at a time, which the target verifies in
//! one step as it verifies prompt-lookup drafts (`engine::draft`). Greedy drafts are
//! single tokens, not distributions, so the target's acceptance rule for them (keep a
//! drafted token with the target's probability of it, else draw from the rest) leaves
//! sampled output with the target's distribution, and greedy output is the target's own.
//!
//! The draft model keeps its own KV cache of the sequence. Which of its positions still
//! hold the sequence's tokens is found by comparing what it fed with what is known now:
//! rejected drafts fall off that common prefix, so a rollback costs nothing.

use crate::model::gpu_model::{
    GpuModel, ModelError, PartLogits, SequencePart, MAX_STEPS_PER_READBACK,
};
use crate::ops::sample::SamplingParams;
use crate::tokenizer::Tokenizer;

/// A text whose ids the two tokenizers must agree on before a model may draft for another.
const PROBE_TEXT: &str = "The quick brown fox jumps over 13 lazy dogs; naïve café ✓\n\tdone.";

/// A draft model and the sequence its KV cache holds (its sequence 0).
pub struct DraftModel<'a> {
    model: &'a GpuModel,
    state: DraftState,
}

/// One sequence in a draft model's KV cache: its slot (`GpuModel::sequence_table`) and
/// the tokens the slot holds, position by position.
#[derive(Clone, Debug)]
pub struct DraftState {
    slot: usize,
    cached: Vec<u32>,
}

/// Errors unless the two tokenizers give the same ids for a probe text: a draft model
/// must share its target's tokenizer (`DraftModel::new` checks the sizes alone).
pub fn check_same_tokenizer(draft: &Tokenizer, target: &Tokenizer) -> Result<(), ModelError> {
    let ids = |t: &Tokenizer| t.encode(PROBE_TEXT, false).map_err(|e| e.to_string());
    match ids(draft) == ids(target) {
        true => Ok(()),
        false => Err(ModelError::Invalid(format!(
            "the draft model tokenizes text differently from the target ({PROBE_TEXT:?}): it \
             must share the target's tokenizer"
        ))),
    }
}

impl<'a> DraftModel<'a> {
    /// `model` drafting for `target`: the same vocabulary size, and a cache that holds
    /// the target's context (see also `check_same_tokenizer`).
    pub fn new(model: &'a GpuModel, target: &GpuModel) -> Result<Self, ModelError> {
        check_draft_model(model, target.config.vocab_size, target.options.context)?;
        Ok(DraftModel {
            model,
            state: DraftState::new(0),
        })
    }

    /// Up to `k` tokens the draft model would generate greedily after `known` (see
    /// `DraftState::draft`).
    pub fn draft(&mut self, known: &[u32], k: usize) -> Result<Vec<u32>, ModelError> {
        self.state.draft(self.model, known, k)
    }
}

/// Errors unless `model` can draft for a target of `vocab` tokens and `context`
/// positions.
pub fn check_draft_model(model: &GpuModel, vocab: usize, context: usize) -> Result<(), ModelError> {
    let refuse = |why: String| Err(ModelError::Invalid(format!("the draft model {why}")));
    if model.config.vocab_size != vocab {
        return refuse(format!(
            "has a vocabulary of {} tokens, the target {vocab}: it must share the target's \
             tokenizer",
            model.config.vocab_size
        ));
    }
    if model.options.context < context {
        return refuse(format!(
            "holds {} positions, the target {context}",
            model.options.context
        ));
    }
    Ok(())
}

impl DraftState {
    /// A sequence in slot `slot` of a draft model, nothing cached yet.
    pub fn new(slot: usize) -> Self {
        DraftState {
            slot,
            cached: Vec::new(),
        }
    }

    /// The draft model's slot it uses.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Forgets what the slot holds (its sequence lost its place).
    pub fn clear(&mut self) {
        self.cached.clear();
    }

    /// Up to `k` tokens `m` would generate greedily after `known` (fewer where its
    /// context ends): the tokens of `known` its cache lacks, then k decode steps, all in
    /// one chain with one readback (a catch-up longer than a chunk prefills its earlier
    /// chunks first).
    pub fn draft(&mut self, m: &GpuModel, known: &[u32], k: usize) -> Result<Vec<u32>, ModelError> {
        let k = k
            .min(m.options.context.saturating_sub(known.len()))
            .min(MAX_STEPS_PER_READBACK);
        if k == 0 || known.is_empty() {
            return Ok(Vec::new());
        }
        // positions still holding the sequence; the last known token is fed again so its
        // row gives the first draft
        let keep = self
            .cached
            .iter()
            .zip(known)
            .take_while(|(a, b)| a == b)
            .count()
            .min(known.len() - 1);
        self.cached.truncate(keep);
        let table = m.sequence_table(self.slot)?;
        let feed = &known[keep..];
        let last_chunk = feed.len().min(m.options.max_chunk);
        let (earlier, last) = feed.split_at(feed.len() - last_chunk);
        let mut pos = keep;
        for chunk in earlier.chunks(m.options.max_chunk) {
            let part = SequencePart {
                tokens: chunk,
                pos0: pos,
                table,
                sample: None,
                logits: PartLogits::None,
            };
            m.forward(&[part])?;
            pos += chunk.len();
        }
        // the last chunk's last row drafts the first token, each later step the next
        let part = SequencePart {
            tokens: last,
            pos0: pos,
            table,
            sample: Some((SamplingParams::default(), 0)),
            logits: PartLogits::None,
        };
        let chain = m.submit_chain(&[part], k, false)?;
        let drafts = m.finish_chain(chain)?.concat();
        if drafts.len() != k {
            return Err(ModelError::Invalid(format!(
                "the draft model's chain of {k} steps sampled {} tokens",
                drafts.len()
            )));
        }
        // the cache now holds the sequence and every draft but the last
        self.cached.extend_from_slice(feed);
        self.cached.extend_from_slice(&drafts[..k - 1]);
        Ok(drafts)
    }
}
