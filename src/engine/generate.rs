//! One sequence from prompt to finish: chunked prefill, then one decode step per token,
//! sampling on the GPU, steps chained on the GPU and read back a chain at a time; or,
//! where a sequence's text repeats earlier text (prompt lookup) or a draft model runs
//! beside it, a drafted run of tokens verified in one step (speculative decoding).

use crate::ops::sample::SamplingParams;
#[cfg(not(target_arch = "wasm32"))]
use {
    super::draft::{accepted, prompt_lookup, DraftPacer},
    super::draft_model::DraftModel,
    crate::model::gpu_model::{
        GpuModel, ModelError, PartLogits, PendingChain, SequencePart, StepProbe,
        MAX_STEPS_PER_READBACK,
    },
    web_time::Instant,
};

#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub prompt_ids: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// ids that end generation (not included in the output)
    pub stop_ids: Vec<u32>,
    /// most tokens to draft (by prompt lookup, or by a draft model where `generate_drafted`
    /// has one) and verify in one step (speculative decoding, see `engine::draft`; greedy
    /// output is unchanged, sampled output keeps its distribution; 0: off)
    pub draft_tokens: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// a stop token was sampled
    Stop,
    /// max_tokens were generated
    Length,
    /// the KV cache (context) is full
    Context,
    /// the caller's callback asked to stop
    Cancelled,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_s: f64,
    /// from the start to the first generated token on the host
    pub ttft_s: f64,
    /// from the first generated token to the last
    pub decode_s: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// speculative decoding: tokens drafted and verified, and those the model confirmed
    pub drafted_tokens: usize,
    pub accepted_tokens: usize,
}

#[derive(Clone, Debug)]
pub struct GenerateResult {
    pub ids: Vec<u32>,
    pub finish: FinishReason,
    pub stats: GenerateStats,
}

/// The chain of decode steps submitted and not yet read; finished on every way out of
/// `generate` (an error included), so that its readback buffer is free for the next call.
#[cfg(not(target_arch = "wasm32"))]
struct InFlight<'a> {
    model: &'a GpuModel,
    /// the chain and when its submission began
    chain: Option<(PendingChain, Instant)>,
}

#[cfg(not(target_arch = "wasm32"))]
impl InFlight<'_> {
    fn finish(&mut self) -> Result<(), ModelError> {
        match self.chain.take() {
            Some((chain, _)) => self.model.finish_chain(chain).map(drop),
            None => Ok(()),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Runs `req` on `model`. `on_token(id)` sees every generated id as soon as it is read
/// back and returns false to stop early.
#[cfg(not(target_arch = "wasm32"))]
pub fn generate(
    model: &GpuModel,
    req: &GenerateRequest,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<GenerateResult, ModelError> {
    generate_drafted(model, None, req, on_token)
}

/// As `generate`, the drafts coming from `draft_model` where there is one (up to
/// `req.draft_tokens` a step), else from prompt lookup.
#[cfg(not(target_arch = "wasm32"))]
pub fn generate_drafted(
    model: &GpuModel,
    mut draft_model: Option<&mut DraftModel<'_>>,
    req: &GenerateRequest,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<GenerateResult, ModelError> {
    req.sampling.validate().map_err(ModelError::Invalid)?;
    let n = req.prompt_ids.len();
    let context = model.options.context;
    if n == 0 {
        return Err(ModelError::Invalid("the prompt is empty".into()));
    }
    if n >= context {
        return Err(ModelError::Invalid(format!(
            "the prompt has {n} tokens, but the context holds {context} (and one more is needed to generate); use a shorter prompt or a larger --context (the model supports {})",
            model.config.max_position_embeddings
        )));
    }
    let start = Instant::now();
    let table = model.sequence_table(0)?;
    let chunk = model.options.max_chunk;
    let mut pos = 0;
    let mut counter = 0u32;
    let mut next = 0;
    while pos < n {
        let end = (pos + chunk).min(n);
        // only the last chunk's last row samples: the first generated token
        let part = SequencePart {
            tokens: &req.prompt_ids[pos..end],
            pos0: pos,
            table,
            sample: (end == n).then_some((req.sampling, counter)),
            logits: PartLogits::None,
        };
        if let Some(&id) = model.forward(&[part])?.first() {
            next = id;
        }
        pos = end;
    }
    let ttft = start.elapsed().as_secs_f64();
    let mut ids = Vec::new();
    let mut finish = FinishReason::Length;
    let decode_start = Instant::now();
    // Decode steps go to the GPU in chains that feed each sampled id to the next step on
    // the GPU and are read back once. The next chain is submitted before the one before
    // it is read, continuing from its last id in place, so the GPU does not wait for the
    // host between chains. Chains grow while steps are fast (so streaming stays smooth on
    // slow adapters); ids sampled past a stop are discarded.
    let mut pending = std::collections::VecDeque::from([next]);
    let mut batch = 1usize;
    // ids generated or on their way (the first came from prefill)
    let mut submitted = 1usize;
    let mut in_flight = InFlight { model, chain: None };
    let mut last_done = Instant::now();
    let speculate = req.draft_tokens > 0;
    let mut pacer = DraftPacer::new(req.draft_tokens);
    let (mut drafted, mut confirmed_total) = (0, 0);
    // the chain in flight is read before the next is submitted: its ids are wanted
    // for a draft
    let mut drain = false;
    // prompt and output so far, what drafts are looked up in (kept only when drafting)
    let mut known: Vec<u32> = match speculate {
        true => req.prompt_ids.clone(),
        false => Vec::new(),
    };
    'outer: loop {
        while let Some(id) = pending.pop_front() {
            if req.stop_ids.contains(&id) {
                finish = FinishReason::Stop;
                break 'outer;
            }
            ids.push(id);
            if speculate {
                known.push(id);
            }
            if !on_token(id) {
                finish = FinishReason::Cancelled;
                break 'outer;
            }
            if ids.len() >= req.max_tokens {
                break 'outer;
            }
        }
        let room = (req.max_tokens - submitted).min(context - pos);
        if speculate && in_flight.chain.is_none() && room > 1 {
            let want = pacer.next_len().min(room - 1);
            let draft = match draft_model.as_deref_mut() {
                Some(d) => d.draft(&known, want)?,
                None => prompt_lookup(&known, want),
            };
            pacer.looked_up(want, draft.len());
            if !draft.is_empty() {
                let tokens: Vec<u32> = known[known.len() - 1..]
                    .iter()
                    .chain(&draft)
                    .copied()
                    .collect();
                let part = SequencePart {
                    tokens: &tokens,
                    pos0: pos,
                    table,
                    sample: Some((req.sampling, counter + 1)),
                    logits: PartLogits::Verify,
                };
                let draws = model
                    .forward_report(&[part], StepProbe::default())?
                    .row_draws
                    .remove(0);
                let confirmed = accepted(&draft, &draws);
                pacer.record(draft.len(), confirmed);
                drafted += draft.len();
                confirmed_total += confirmed;
                pending.extend(&draft[..confirmed]);
                pending.push_back(draws[confirmed]);
                counter += 1 + confirmed as u32;
                pos += 1 + confirmed;
                submitted += 1 + confirmed;
                continue;
            }
        }
        let mut next_chain = None;
        if room > 0 && !(drain && in_flight.chain.is_some()) {
            let count = batch.min(room);
            // the host knows the first chain's token; later chains take theirs in place
            let last = [*ids.last().expect("the loop above pushed one")];
            let part = SequencePart {
                tokens: &last,
                pos0: pos,
                table,
                sample: Some((req.sampling, counter + 1)),
                logits: PartLogits::None,
            };
            let started = Instant::now();
            let chain = model.submit_chain(&[part], count, in_flight.chain.is_some())?;
            counter += count as u32;
            pos += count;
            submitted += count;
            next_chain = Some((chain, started));
        }
        // the chain before (or, where chains are not pipelined, this one) is read now
        let to_read = match model.gpu.features.pipelined_chains {
            true => std::mem::replace(&mut in_flight.chain, next_chain),
            false => next_chain,
        };
        match to_read {
            Some((chain, started)) => {
                let count = chain.steps();
                pending.extend(model.finish_chain(chain)?.concat());
                // a draft is at hand for what is known so far: read the chain in flight
                // next instead of chaining on, then verify one
                // (a draft model always has one; while its pacer pauses it, the pause
                // counts down a chain at a time)
                drain = speculate
                    && (draft_model.is_some() || {
                        let verified = known.len();
                        known.extend(&pending);
                        let hit = !prompt_lookup(&known, 1).is_empty();
                        known.truncate(verified);
                        hit
                    });
                // aim for about 30 ms per chain (from its submission, or from the read
                // before where it waited behind that chain)
                let per_step = last_done.max(started).elapsed().as_secs_f64() / count as f64;
                last_done = Instant::now();
                batch = ((0.03 / per_step.max(1e-6)) as usize).clamp(1, MAX_STEPS_PER_READBACK);
            }
            None if in_flight.chain.is_none() => {
                // nothing runs and nothing more fits: the context is full
                finish = FinishReason::Context;
                break;
            }
            None => {}
        }
    }
    let decode_s = decode_start.elapsed().as_secs_f64();
    // a chain submitted before a stop, a cancel or the last id: wait for it, drop its ids
    in_flight.finish()?;
    // the first token came from prefill; decode rate counts the steps after it
    let decode_steps = ids.len().saturating_sub(1) + (finish == FinishReason::Stop) as usize;
    let stats = GenerateStats {
        prompt_tokens: n,
        generated_tokens: ids.len(),
        prefill_s: ttft,
        ttft_s: ttft,
        decode_s,
        prefill_tokens_per_s: n as f64 / ttft,
        decode_tokens_per_s: if decode_s > 0.0 && decode_steps > 0 {
            decode_steps as f64 / decode_s
        } else {
            0.0
        },
        drafted_tokens: drafted,
        accepted_tokens: confirmed_total,
    };
    Ok(GenerateResult { ids, finish, stats })
}
