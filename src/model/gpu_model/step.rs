//! Running steps: one forward pass over parts of several sequences (prefill chunks and
//! single tokens to decode, each with its own block table), the same decode step chained
//! on the GPU, and what a step costs.
//!
//! Every way of running a step goes through [`GpuModel::prepare`], which checks the parts
//! and writes the step's token ids, query rows, block tables and logits rows; then the
//! prepared step is recorded into a compute pass (`record`), submitted, and its sampled ids
//! read back.

use super::{GpuModel, ModelError};
use crate::kv::{QueryRow, StepMeta};
use crate::ops::sample::SamplingParams;
use crate::ops::{Cost, OutRow, StepParams, StepShape};

/// Most decode steps submitted back to back before one readback.
pub const MAX_STEPS_PER_READBACK: usize = 32;

/// One sequence's share of a step.
#[derive(Clone, Copy, Debug)]
pub struct SequencePart<'a> {
    /// ids at positions `pos0..` (a prefill chunk, or the one token to decode)
    pub tokens: &'a [u32],
    /// positions 0..pos0 are already in the sequence's blocks
    pub pos0: usize,
    /// the sequence's blocks in order, covering at least positions 0..pos0 + tokens.len()
    pub table: &'a [u32],
    /// draw the token after the last one with these settings, as the sequence's
    /// `counter`-th draw
    pub sample: Option<(SamplingParams, u32)>,
    /// which rows' logits come back to the host (`StepReport::logits`)
    pub logits: PartLogits,
}

/// Which of a part's rows have their logits read back after a reported step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PartLogits {
    /// none (the sampled id alone comes back)
    #[default]
    None,
    /// the sampled last row's (the log-probabilities of a generated token)
    Last,
    /// every row's, each predicting the token after it (a prompt's log-probabilities);
    /// every row then takes a logits row of the step
    All,
    /// none, but every row takes a logits row and draws greedily after it, and the draws
    /// come back (`StepReport::row_draws`): verifying a speculative draft
    Verify,
}

impl PartLogits {
    /// Whether every row of the part takes a logits row.
    pub fn every_row(self) -> bool {
        matches!(self, PartLogits::All | PartLogits::Verify)
    }
}

/// A chain of steps submitted and not yet read back (`GpuModel::submit_chain`).
#[must_use = "a pending chain holds a readback slot until finish_chain"]
pub struct PendingChain {
    /// the readback buffer its ids go to; None when no row is sampled
    slot: Option<usize>,
    steps: usize,
    sampled: usize,
    submission: wgpu::SubmissionIndex,
}

impl PendingChain {
    /// How many steps the chain runs.
    pub fn steps(&self) -> usize {
        self.steps
    }
}

/// A step whose rows, tables and parameters are on the GPU, ready to record. The state
/// stays until the next step is prepared, so the same step can be recorded and submitted
/// again (benchmarks do: each run appends the same positions again).
pub struct PreparedStep<'a> {
    /// one per token row, in order
    pub rows: Vec<QueryRow<'a>>,
    /// rows that get logits, in the order of their parts
    pub sampled: usize,
    /// per part, its logits rows (empty for a part without any)
    pub part_outs: Vec<std::ops::Range<usize>>,
    pub shape: StepShape,
}

impl PreparedStep<'_> {
    /// Each token row's context length (its own position included).
    pub fn context_lens(&self) -> Vec<u32> {
        self.rows.iter().map(|r| r.context_len).collect()
    }
}

impl GpuModel {
    /// Checks `parts`, writes their token ids, query rows, block tables and logits rows
    /// and the attention's split to the GPU. A part's tokens go to positions `pos0..`,
    /// each attends over its sequence's positions up to its own, and its keys and values
    /// are written into its table's blocks.
    pub fn prepare<'a>(&self, parts: &[SequencePart<'a>]) -> Result<PreparedStep<'a>, ModelError> {
        self.prepare_with(parts, true)
    }

    /// `prepare`, leaving the token ids on the GPU as they are unless `write_tokens`.
    fn prepare_with<'a>(
        &self,
        parts: &[SequencePart<'a>],
        write_tokens: bool,
    ) -> Result<PreparedStep<'a>, ModelError> {
        let (rows, outs, part_outs, tokens) = self.check_parts(parts)?;
        if write_tokens {
            self.write_tokens(&tokens)?;
        }
        let (max_context, query_tiles) = self.write_rows(&rows, &outs);
        let shape = StepShape {
            n_tokens: rows.len() as u32,
            pos0: 0,
            n_out_rows: outs.len() as u32,
            max_context,
            query_tiles,
        };
        Ok(PreparedStep {
            rows,
            sampled: outs.len(),
            part_outs,
            shape,
        })
    }

    /// Records every op of a prepared step into `pass` (e.g. a pass that
    /// `gpu::timing::GpuTimer` times). The step must have been prepared last.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, step: &PreparedStep<'_>) {
        for op in self.ops() {
            op.record(pass, &step.shape);
        }
    }

    /// One forward pass over `parts` (see [`prepare`](Self::prepare)). Parts with
    /// `sample` get the next token drawn from the logits of their last row; the sampled
    /// ids come back in the order of those parts.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(&self, parts: &[SequencePart<'_>]) -> Result<Vec<u32>, ModelError> {
        Ok(self.decode_chain(parts, 1)?.remove(0))
    }

    /// `steps` forward passes submitted back to back with one readback at the end, so the
    /// host never waits between them. The first runs `parts`; each later one decodes,
    /// for every part, the token the step before sampled for it, one position further and
    /// as the next draw. So in a chain of several steps every part samples: the first
    /// step's parts may be prefill chunks (their last rows draw the first ids), later
    /// steps decode one token a part; any parts may make up a one-step chain. Returns the
    /// sampled ids of each step.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn decode_chain(
        &self,
        parts: &[SequencePart<'_>],
        steps: usize,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        let chain = self.submit_chain(parts, steps, false)?;
        self.finish_chain(chain)
    }

    /// The submitting half of [`decode_chain`](Self::decode_chain): returns once the steps
    /// are submitted, so the host can submit the next chain before reading this one
    /// ([`finish_chain`](Self::finish_chain)) and the GPU never waits for the host
    /// between chains. With `in_place`, the first step's tokens are not the parts' but
    /// those the last step before it sampled, still on the GPU (the parts' positions,
    /// tables and draws still count): a chain that continues the one before. At most two
    /// chains with sampled rows may be pending at once.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn submit_chain(
        &self,
        parts: &[SequencePart<'_>],
        steps: usize,
        in_place: bool,
    ) -> Result<PendingChain, ModelError> {
        if steps == 0 || steps > MAX_STEPS_PER_READBACK {
            return Err(ModelError::Invalid(format!(
                "a chain takes 1..={MAX_STEPS_PER_READBACK} steps, got {steps}"
            )));
        }
        // the first step's parts may be prefill chunks (their last rows sample), unless
        // the chain continues in place; every later step decodes one token a part
        if (steps > 1 || in_place)
            && parts
                .iter()
                .any(|p| p.sample.is_none() || (in_place && p.tokens.len() != 1))
        {
            return Err(ModelError::Invalid(
                "a chain of steps samples every part, and continues in place from one token \
                 a part"
                    .into(),
            ));
        }
        if parts.iter().any(|p| p.logits.every_row()) {
            // its ids would not sit one per part where the readback takes them
            return Err(ModelError::Invalid(
                "a chain reads back sampled ids only: logits of every row need a reported step"
                    .into(),
            ));
        }
        let host = web_time::Instant::now();
        // the readback buffer first: a chain refused writes nothing
        let slot = match parts.iter().any(|p| p.sample.is_some()) {
            true => Some(self.take_readback_slot()?),
            false => None,
        };
        // every step of the chain must fit the context: checked before any is submitted
        let first = self.prepare_with(parts, !in_place).and_then(|first| {
            let last = |r: &QueryRow| r.context_len as usize + steps - 1;
            match first.rows.iter().find(|r| last(r) > self.options.context) {
                Some(r) => Err(ModelError::Invalid(format!(
                    "position {} is past the context of {} tokens",
                    last(r) - 1,
                    self.options.context
                ))),
                None => Ok(first),
            }
        });
        let first = match first {
            Ok(step) => step,
            Err(e) => {
                if let Some(i) = slot {
                    self.release_readback_slot(i);
                }
                return Err(e);
            }
        };
        let n = first.sampled;
        let row_bytes = 4 * n as u64;
        let readback = slot.map(|i| self.readback[i].buffer());
        let mut enc = self.encode(&first);
        if let Some(rb) = readback {
            enc.copy_buffer_to_buffer(&self.tokens, 0, rb, 0, row_bytes);
        }
        let mut submission = self.gpu.queue.submit([enc.finish()]);
        for k in 1..steps {
            // the ids sampled into rows 0..n are this step's inputs, in place: part i's
            // at row i, one position past its last
            let next: Vec<QueryRow> = parts
                .iter()
                .enumerate()
                .map(|(i, p)| QueryRow {
                    context_len: (p.pos0 + p.tokens.len() + k) as u32,
                    table: p.table,
                    q_row: i as u32,
                    out_row: i as u32,
                })
                .collect();
            let outs: Vec<OutRow> = parts
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.sample.map(|(s, counter)| (i, s, counter)))
                .map(|(i, s, counter)| OutRow::new(i as u32, &s, counter + k as u32))
                .collect();
            let (max_context, query_tiles) = self.write_rows(&next, &outs);
            let step = PreparedStep {
                shape: StepShape {
                    n_tokens: next.len() as u32,
                    max_context,
                    query_tiles,
                    ..first.shape
                },
                rows: next,
                sampled: n,
                part_outs: first.part_outs.clone(),
            };
            let mut enc = self.encode(&step);
            if let Some(rb) = readback {
                enc.copy_buffer_to_buffer(&self.tokens, 0, rb, k as u64 * row_bytes, row_bytes);
            }
            // this step's parameters are written after the previous submit and before
            // this one, so each step sees its own
            submission = self.gpu.queue.submit([enc.finish()]);
        }
        self.count_host_time(host.elapsed(), steps);
        Ok(PendingChain {
            slot,
            steps,
            sampled: n,
            submission,
        })
    }

    /// Waits for a chain's steps and returns the ids each sampled (one list per step).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn finish_chain(&self, chain: PendingChain) -> Result<Vec<Vec<u32>>, ModelError> {
        let Some(slot) = chain.slot else {
            self.gpu.wait()?;
            return Ok(vec![Vec::new(); chain.steps]);
        };
        let bytes = (chain.steps * chain.sampled * 4) as u64;
        let read = self.readback[slot].read_after(&self.gpu, bytes, chain.submission);
        self.release_readback_slot(slot);
        Ok(bytemuck::cast_slice::<u8, u32>(&read?)
            .chunks(chain.sampled)
            .map(<[u32]>::to_vec)
            .collect())
    }

    /// A readback buffer no pending chain holds (reported steps take one too).
    pub(super) fn take_readback_slot(&self) -> Result<usize, ModelError> {
        let mut busy = self.readback_busy.lock().unwrap_or_else(|e| e.into_inner());
        let free = busy.iter().position(|b| !b).ok_or_else(|| {
            ModelError::Invalid("two chains are pending already: finish one first".into())
        })?;
        busy[free] = true;
        Ok(free)
    }

    pub(super) fn release_readback_slot(&self, slot: usize) {
        self.readback_busy.lock().unwrap_or_else(|e| e.into_inner())[slot] = false;
    }

    /// Host time of the decode-chain steps so far, in seconds, and how many steps: preparing
    /// their parameters, encoding and submitting them (waits inside `submit` included, not
    /// the readback), an upper bound on the host's share of decode.
    pub fn host_time(&self) -> (f64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let ns = self.host_ns.load(Relaxed);
        (ns as f64 * 1e-9, self.host_steps.load(Relaxed))
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn count_host_time(&self, t: std::time::Duration, steps: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.host_ns.fetch_add(t.as_nanos() as u64, Relaxed);
        self.host_steps.fetch_add(steps as u64, Relaxed);
    }

    /// The logits of the last step's first `rows` sampled rows (in the order of their
    /// parts).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn logits_rows(&self, rows: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        if rows == 0 || rows > self.max_out_rows {
            return Err(ModelError::Invalid(format!(
                "the logits buffer holds 1..={} rows, asked for {rows}",
                self.max_out_rows
            )));
        }
        let v = self.config.vocab_size;
        let all = self.gpu.read_f32(&self.logits, rows * v)?;
        Ok(all.chunks(v).map(<[f32]>::to_vec).collect())
    }

    /// What one step reads, writes and computes, summed over its ops, for token rows that
    /// see `context_lens` positions each (their own included), `sampled` of them with
    /// logits.
    pub fn step_cost(&self, context_lens: &[u32], sampled: usize) -> Cost {
        let shape = self.shape_of_rows(context_lens, sampled);
        self.ops().fold(Cost::default(), |acc, op| {
            acc + op.cost_of_rows(&shape, context_lens)
        })
    }

    /// The dispatches of such a step (see `step_cost`).
    pub fn step_dispatches(&self, context_lens: &[u32], sampled: usize) -> u32 {
        let shape = self.shape_of_rows(context_lens, sampled);
        self.ops().map(|op| op.dispatches(&shape)).sum()
    }

    fn shape_of_rows(&self, context_lens: &[u32], sampled: usize) -> StepShape {
        StepShape {
            n_tokens: context_lens.len() as u32,
            pos0: 0,
            n_out_rows: sampled as u32,
            max_context: context_lens.iter().copied().max().unwrap_or(0),
            query_tiles: self.attention.tiles_of_lens(context_lens),
        }
    }

    /// Every op of a step, in order.
    pub(super) fn ops(&self) -> impl Iterator<Item = &dyn crate::ops::Op> {
        self.layers
            .iter()
            .chain(self.head.iter())
            .map(|o| o.as_ref())
    }

    /// Checks the parts of a step; returns its query rows, logits rows and token ids.
    #[allow(clippy::type_complexity)]
    #[allow(clippy::type_complexity)]
    fn check_parts<'a>(
        &self,
        parts: &[SequencePart<'a>],
    ) -> Result<
        (
            Vec<QueryRow<'a>>,
            Vec<OutRow>,
            Vec<std::ops::Range<usize>>,
            Vec<u32>,
        ),
        ModelError,
    > {
        let bs = self.options.kv_block_size;
        let n: usize = parts.iter().map(|p| p.tokens.len()).sum();
        if n == 0 || n > self.options.max_chunk {
            return Err(ModelError::Invalid(format!(
                "a step takes 1..={} token rows, got {n}",
                self.options.max_chunk
            )));
        }
        let logits_rows: usize = parts
            .iter()
            .map(|p| match p.logits.every_row() {
                true => p.tokens.len(),
                false => p.sample.is_some() as usize,
            })
            .sum();
        if logits_rows > self.max_out_rows {
            return Err(ModelError::Invalid(format!(
                "a step has at most {} rows with logits (sampled, or all of a part's rows), got {logits_rows}",
                self.max_out_rows
            )));
        }
        if let Some(i) = parts
            .iter()
            .position(|p| p.logits == PartLogits::Last && p.sample.is_none())
        {
            return Err(ModelError::Invalid(format!(
                "part {i} asks for its sampled row's logits but samples nothing"
            )));
        }
        let mut rows = Vec::with_capacity(n);
        let mut outs = Vec::with_capacity(logits_rows);
        let mut part_outs = Vec::with_capacity(parts.len());
        let mut tokens = Vec::with_capacity(n);
        for (i, p) in parts.iter().enumerate() {
            let end = p.pos0 + p.tokens.len();
            if p.tokens.is_empty() || end > self.options.context {
                return Err(ModelError::Invalid(format!(
                    "part {i}: {} tokens at position {} do not fit the context of {}",
                    p.tokens.len(),
                    p.pos0,
                    self.options.context
                )));
            }
            if p.table.len() * bs < end {
                return Err(ModelError::Invalid(format!(
                    "part {i}: {} blocks of {bs} do not cover position {}",
                    p.table.len(),
                    end - 1
                )));
            }
            if let Some(b) = p.table.iter().find(|&&b| b as usize >= self.pool.blocks) {
                return Err(ModelError::Invalid(format!(
                    "part {i}: block {b} is outside the pool of {}",
                    self.pool.blocks
                )));
            }
            let first_out = outs.len();
            for t in 0..p.tokens.len() {
                let row = rows.len() as u32;
                rows.push(QueryRow {
                    context_len: (p.pos0 + t + 1) as u32,
                    table: p.table,
                    q_row: row,
                    out_row: row,
                });
                if p.logits.every_row() && t + 1 < p.tokens.len() {
                    outs.push(match (p.logits, &p.sample) {
                        // a draft's row draws the part's t-th token after the last with
                        // the rejection rule against the drafted token that follows it
                        (PartLogits::Verify, Some((sampling, counter))) => {
                            OutRow::drafted(row, sampling, counter + t as u32, p.tokens[t + 1])
                        }
                        // a prompt's row only gets logits (drawn greedily, thrown away)
                        _ => OutRow::new(row, &SamplingParams::default(), 0),
                    });
                }
            }
            tokens.extend_from_slice(p.tokens);
            match &p.sample {
                Some((sampling, counter)) => {
                    sampling.validate().map_err(ModelError::Invalid)?;
                    // a verified draft's last row is its (len - 1)-th draw
                    let draw = match p.logits {
                        PartLogits::Verify => counter + p.tokens.len() as u32 - 1,
                        _ => *counter,
                    };
                    outs.push(OutRow::new(rows.len() as u32 - 1, sampling, draw));
                }
                None if p.logits.every_row() => outs.push(OutRow::new(
                    rows.len() as u32 - 1,
                    &SamplingParams::default(),
                    0,
                )),
                None => {}
            }
            part_outs.push(match p.logits {
                PartLogits::None => first_out..first_out,
                _ => first_out..outs.len(),
            });
        }
        Ok((rows, outs, part_outs, tokens))
    }

    fn write_tokens(&self, ids: &[u32]) -> Result<(), ModelError> {
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= self.config.vocab_size) {
            return Err(ModelError::Invalid(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab_size
            )));
        }
        self.gpu
            .queue
            .write_buffer(&self.tokens, 0, bytemuck::cast_slice(ids));
        Ok(())
    }

    /// Writes the step parameters, the logits rows, the query rows with their block
    /// tables, and the attention's split or query tiles for them; returns the longest
    /// context and the query tiles (`StepShape::query_tiles`).
    fn write_rows(&self, rows: &[QueryRow<'_>], outs: &[OutRow]) -> (u32, u32) {
        let params = StepParams {
            n_tokens: rows.len() as u32,
            pos0: 0,
            n_out_rows: outs.len() as u32,
            _pad: 0,
        };
        self.gpu
            .queue
            .write_buffer(&self.step, 0, bytemuck::bytes_of(&params));
        self.gpu
            .queue
            .write_buffer(&self.out_rows, 0, bytemuck::cast_slice(outs));
        let meta = StepMeta::new(rows, self.options.max_chunk);
        self.gpu
            .queue
            .write_buffer(&self.meta, 0, bytemuck::cast_slice(&meta.words));
        self.attention.prepare_step(&self.gpu, &meta);
        let tiles = self.attention.prepare_tiles(&self.gpu, &meta);
        (meta.max_context, tiles)
    }

    /// An encoder holding one compute pass with the prepared step recorded.
    fn encode(&self, step: &PreparedStep<'_>) -> wgpu::CommandEncoder {
        let mut enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: None,
            });
            self.record(&mut pass, step);
        }
        enc
    }
}
