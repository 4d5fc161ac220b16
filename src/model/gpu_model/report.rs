//! A forward step that also says what it cost: the declared bytes of every kernel (split
//! into weights, KV cache and activations), its GPU time from timestamp queries, the GPU
//! time of each kernel family, and, on request, the attention weights of one query row
//! over its context in every layer and head (the viewer's live telemetry and attention
//! map).

use super::{GpuModel, ModelError, PartLogits, SequencePart};
use crate::gpu::{GpuContext, GpuError, ReadbackBuffer};
use crate::ops::Cost;

/// What to measure or capture during one step, beyond sampling.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepProbe {
    /// time every kernel on its own (one compute pass each; the step runs a little slower)
    pub kernel_times: bool,
    /// capture the attention weights of the last row of this part (its index in the step)
    pub attention_of: Option<usize>,
}

/// GPU time and declared traffic and arithmetic of one kernel family in a step.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KernelTime {
    /// the op's name: embed, rmsnorm, matmul, rope_kv, attention, silu_mul, sample
    pub family: &'static str,
    pub seconds: f64,
    pub bytes: u64,
    /// floating-point operations the ops declare (a multiply-add counts 2)
    pub flops: u64,
}

/// The last row of a part attending over its context: softmax weights for every layer and
/// query head, computed from the query the step produced and the keys in the KV cache.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionProbe {
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// positions attended over (the row's own included)
    pub positions: usize,
    /// `[layer][head][position]`
    pub weights: Vec<f32>,
}

impl AttentionProbe {
    /// The weights of one head of one layer over the positions (sums to 1).
    pub fn head(&self, layer: usize, head: usize) -> &[f32] {
        let at = (layer * self.heads + head) * self.positions;
        &self.weights[at..at + self.positions]
    }

    /// Query heads per KV head.
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// One step's samples and what it cost.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub sampled: Vec<u32>,
    /// declared traffic and arithmetic of all the step's kernels
    pub cost: Cost,
    /// GPU time of the whole step from timestamps; None where the adapter has none
    pub gpu_s: Option<f64>,
    /// per kernel family, in order of first use; empty unless asked and timestamps exist
    pub kernels: Vec<KernelTime>,
    pub attention: Option<AttentionProbe>,
    /// per part, the logits its `logits` asked for: rows x vocab, in row order (empty
    /// for a part that asked for none)
    pub logits: Vec<Vec<f32>>,
    /// per part, the greedy draw after each of its rows for `PartLogits::Verify` parts
    /// (the last row's drawn with the part's own settings); empty for the others
    pub row_draws: Vec<Vec<u32>>,
}

/// Timestamp queries for one step: a pair per compute pass.
pub(super) struct StepClock {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: ReadbackBuffer,
    pairs: u32,
    period_ns: f64,
}

impl StepClock {
    /// None where the device has no timestamp queries.
    pub(super) fn new(gpu: &GpuContext, passes: usize) -> Option<StepClock> {
        let period_ns = gpu.queue.get_timestamp_period() as f64;
        if !(gpu.features.timestamps && period_ns.is_finite() && period_ns > 0.0) {
            return None;
        }
        let pairs = (passes as u32).min(wgpu::QUERY_SET_MAX_QUERIES / 2);
        let bytes = 2 * pairs as u64 * wgpu::QUERY_SIZE as u64;
        Some(StepClock {
            set: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("step clock"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * pairs,
            }),
            resolve: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("step clock resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: ReadbackBuffer::new(gpu, "step clock readback", bytes),
            pairs,
            period_ns,
        })
    }

    fn writes(&self, pair: u32) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * pair),
            end_of_pass_write_index: Some(2 * pair + 1),
        }
    }

    fn resolve(&self, enc: &mut wgpu::CommandEncoder, pairs: u32) {
        enc.resolve_query_set(&self.set, 0..2 * pairs, &self.resolve, 0);
        let bytes = 2 * pairs as u64 * wgpu::QUERY_SIZE as u64;
        self.readback.copy_from(enc, &self.resolve, bytes);
    }

    /// Seconds of each pass; None for a pair the driver returned unusable (zero, or the
    /// end not after the start).
    async fn read(&self, gpu: &GpuContext, pairs: u32) -> Result<Vec<Option<f64>>, GpuError> {
        let bytes = self
            .readback
            .read_async(gpu, 2 * pairs as u64 * wgpu::QUERY_SIZE as u64)
            .await?;
        let ticks: &[u64] = bytemuck::cast_slice(&bytes);
        Ok(ticks
            .chunks(2)
            .map(|p| {
                (p[0] != 0 && p[1] > p[0]).then(|| (p[1] - p[0]) as f64 * self.period_ns * 1e-9)
            })
            .collect())
    }
}

impl GpuModel {
    /// [`forward`](Self::forward), reporting the step's declared traffic and GPU time and
    /// capturing what `probe` asks for.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_report(
        &self,
        parts: &[SequencePart<'_>],
        probe: StepProbe,
    ) -> Result<StepReport, ModelError> {
        crate::gpu::block_on(self.forward_report_async(parts, probe))
    }

    /// [`forward_report`](Self::forward_report), awaited (the browser's engine loop).
    pub async fn forward_report_async(
        &self,
        parts: &[SequencePart<'_>],
        probe: StepProbe,
    ) -> Result<StepReport, ModelError> {
        let probe_row = match probe.attention_of {
            Some(p) if p >= parts.len() => {
                return Err(ModelError::Invalid(format!(
                    "attention probe of part {p}, but the step has {} parts",
                    parts.len()
                )))
            }
            Some(p) => {
                let before: usize = parts[..=p].iter().map(|x| x.tokens.len()).sum();
                Some(before - 1)
            }
            None => None,
        };
        let step = self.prepare(parts)?;
        let (shape, rows) = (step.shape, &step.rows);
        let lens = step.context_lens();
        let ops: Vec<&dyn crate::ops::Op> = self.ops().collect();
        let costs: Vec<Cost> = ops.iter().map(|o| o.cost_of_rows(&shape, &lens)).collect();
        let cost = costs.iter().fold(Cost::default(), |a, &c| a + c);

        let clock = self.clock.as_ref();
        let per_kernel = probe.kernel_times && clock.is_some_and(|c| c.pairs as usize >= ops.len());
        let nh_d = self.config.num_heads * self.config.head_dim;
        let qkv_row = (self.config.num_heads + 2 * self.config.num_kv_heads) * self.config.head_dim;
        let capture = probe_row.map(|_| {
            self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("attention probe queries"),
                size: (self.config.num_layers * nh_d * 4) as u64,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });

        let mut enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step (reported)"),
            });
        // Passes: one per kernel when timing kernels; split after each layer's RoPE/KV
        // append when the queries are captured (a copy cannot sit inside a pass); else
        // growing runs of ops, each submitted as soon as it is recorded (`early_submits`).
        let early = self.gpu.features.early_submits && !per_kernel && capture.is_none();
        let pass_ops = if early {
            early_submits(ops.len())
        } else {
            let mut pass_ops: Vec<std::ops::Range<usize>> = Vec::new();
            let mut start = 0;
            for (i, op) in ops.iter().enumerate() {
                if per_kernel || (capture.is_some() && op.name() == "rope_kv") {
                    pass_ops.push(start..i + 1);
                    start = i + 1;
                }
            }
            if start < ops.len() {
                pass_ops.push(start..ops.len());
            }
            pass_ops
        };
        // every logits row's draw comes back; the sampled parts' are picked out of them
        // (the readback taken before anything is submitted, so a refused step runs nothing)
        let sample_bytes = 4 * step.sampled as u64;
        let slot = match sample_bytes {
            0 => None,
            _ => Some(self.take_readback_slot()?),
        };
        // every pass timed, where the adapter has timestamps
        let clock = clock.filter(|c| pass_ops.len() <= c.pairs as usize);
        let mut layer = 0;
        for (p, range) in pass_ops.iter().enumerate() {
            if early && p > 0 {
                let done = std::mem::replace(
                    &mut enc,
                    self.gpu
                        .device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("step (reported)"),
                        }),
                );
                self.gpu.queue.submit([done.finish()]);
            }
            let timestamp_writes = clock.map(|c| c.writes(p as u32));
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("forward"),
                    timestamp_writes,
                });
                for op in &ops[range.clone()] {
                    op.record(&mut pass, &shape);
                }
            }
            if let (Some(cap), Some(row)) = (&capture, probe_row) {
                if ops[range.end - 1].name() == "rope_kv" {
                    enc.copy_buffer_to_buffer(
                        &self.qkv,
                        (row * qkv_row * 4) as u64,
                        cap,
                        (layer * nh_d * 4) as u64,
                        (nh_d * 4) as u64,
                    );
                    layer += 1;
                }
            }
        }
        let timed_pairs = pass_ops.len() as u32;
        if let Some(c) = clock {
            c.resolve(&mut enc, timed_pairs);
        }
        if let Some(i) = slot {
            self.readback[i].copy_from(&mut enc, &self.tokens, sample_bytes);
        }
        let logits = self.copy_logits(&mut enc, parts, &step.part_outs);
        self.gpu.queue.submit([enc.finish()]);
        let drawn = if let Some(i) = slot {
            let bytes = self.readback[i].read_async(&self.gpu, sample_bytes).await;
            self.release_readback_slot(i);
            bytemuck::cast_slice::<u8, u32>(&bytes?).to_vec()
        } else {
            self.gpu.wait_async().await?;
            Vec::new()
        };
        let sampled = parts
            .iter()
            .zip(&step.part_outs)
            .filter(|(p, _)| p.sample.is_some())
            .map(|(_, outs)| drawn[outs.end.max(outs.start + 1) - 1])
            .collect();
        let row_draws = parts
            .iter()
            .zip(&step.part_outs)
            .map(|(p, outs)| match p.logits {
                PartLogits::Verify => drawn[outs.clone()].to_vec(),
                _ => Vec::new(),
            })
            .collect();
        let logits = match logits {
            Some((buffer, rows)) => self.split_logits(&buffer, &rows).await?,
            None => vec![Vec::new(); parts.len()],
        };
        let (gpu_s, kernels) = match clock {
            Some(c) => {
                let times = c.read(&self.gpu, timed_pairs).await?;
                let (total, families) = kernel_times(&ops, &costs, &pass_ops, &times);
                (total, if per_kernel { families } else { Vec::new() })
            }
            None => (None, Vec::new()),
        };
        let attention = match (capture, probe_row) {
            (Some(cap), Some(row)) => Some(self.attention_weights(&cap, &rows[row]).await?),
            _ => None,
        };
        Ok(StepReport {
            sampled,
            cost,
            gpu_s,
            kernels,
            attention,
            logits,
            row_draws,
        })
    }

    /// Copies the logits rows that `parts` ask for into one new readback buffer; returns
    /// it and each part's row count, or None when no part asks.
    fn copy_logits(
        &self,
        enc: &mut wgpu::CommandEncoder,
        parts: &[SequencePart<'_>],
        part_outs: &[std::ops::Range<usize>],
    ) -> Option<(ReadbackBuffer, Vec<usize>)> {
        let counts: Vec<usize> = parts
            .iter()
            .zip(part_outs)
            .map(|(p, outs)| match p.logits {
                PartLogits::Last | PartLogits::All => outs.len(),
                PartLogits::None | PartLogits::Verify => 0,
            })
            .collect();
        let total: usize = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let row_bytes = (self.config.vocab_size * 4) as u64;
        let buffer = ReadbackBuffer::new(&self.gpu, "logits readback", total as u64 * row_bytes);
        let mut at = 0;
        for (outs, &n) in part_outs.iter().zip(&counts) {
            if n > 0 {
                enc.copy_buffer_to_buffer(
                    &self.logits,
                    outs.start as u64 * row_bytes,
                    buffer.buffer(),
                    at,
                    n as u64 * row_bytes,
                );
                at += n as u64 * row_bytes;
            }
        }
        Some((buffer, counts))
    }

    /// The rows `copy_logits` copied, one list per part.
    async fn split_logits(
        &self,
        buffer: &ReadbackBuffer,
        counts: &[usize],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let v = self.config.vocab_size;
        let total: usize = counts.iter().sum();
        let bytes = buffer.read_async(&self.gpu, (total * v * 4) as u64).await?;
        let all: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut at = 0;
        Ok(counts
            .iter()
            .map(|&n| {
                let rows = all[at * v..(at + n) * v].to_vec();
                at += n;
                rows
            })
            .collect())
    }

    /// Softmax weights of the captured queries over the keys of `row`'s blocks.
    async fn attention_weights(
        &self,
        queries: &wgpu::Buffer,
        row: &crate::kv::QueryRow<'_>,
    ) -> Result<AttentionProbe, ModelError> {
        let cfg = &self.config;
        let (nl, nh, nkv, d) = (
            cfg.num_layers,
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.head_dim,
        );
        let positions = row.context_len as usize;
        let layout = self.kv_layout;
        let bs = layout.block_size;
        let q = self.gpu.read_f32_async(queries, nl * nh * d).await?;
        let blocks = &row.table[..positions.div_ceil(bs)];
        let scale = 1.0 / (d as f32).sqrt();
        let group = nh / nkv;
        let mut weights = vec![0f32; nl * nh * positions];
        for l in 0..nl {
            let mut keys: Vec<Vec<f32>> = Vec::with_capacity(blocks.len());
            for &b in blocks {
                keys.push(
                    self.pool
                        .read_block_async(&self.gpu, l, false, b as usize)
                        .await?,
                );
            }
            for h in 0..nh {
                let qh = &q[(l * nh + h) * d..(l * nh + h + 1) * d];
                let kvh = h / group;
                let w = &mut weights[(l * nh + h) * positions..(l * nh + h + 1) * positions];
                for (p, s) in w.iter_mut().enumerate() {
                    let block = &keys[p / bs];
                    *s = scale
                        * (0..d)
                            .map(|e| qh[e] * block[layout.key_offset(kvh, p % bs, e)])
                            .sum::<f32>();
                }
                softmax_in_place(w);
            }
        }
        Ok(AttentionProbe {
            layers: nl,
            heads: nh,
            kv_heads: nkv,
            positions,
            weights,
        })
    }
}

/// Runs of a step's `ops` (op indices) that are each recorded and submitted on their own,
/// the first at once: the GPU starts on it while the host encodes the rest. Encoding is
/// the host's share of a step, all of it on the critical path when the step goes in one
/// submission: on the H200, 1.2-2.0 ms of a 7B step of 16 sequences (453 dispatches),
/// against 14.1 ms of GPU time (bench/2026-12-01-h200-few-staged). The runs double (8,
/// 16, 32, .. ops), so each is recorded while the GPU runs the one before; few enough that
/// the submissions cost little.
fn early_submits(ops: usize) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut len) = (0, 8);
    while start < ops {
        let end = (start + len).min(ops);
        runs.push(start..end);
        start = end;
        len *= 2;
    }
    runs
}

/// Sums pass times into kernel families (a pass holds one op when kernels are timed); the
/// step's GPU time is the sum of its passes. Any unusable pair makes both unknown.
fn kernel_times(
    ops: &[&dyn crate::ops::Op],
    costs: &[Cost],
    passes: &[std::ops::Range<usize>],
    times: &[Option<f64>],
) -> (Option<f64>, Vec<KernelTime>) {
    if times.iter().any(Option::is_none) {
        return (None, Vec::new());
    }
    let mut out: Vec<KernelTime> = Vec::new();
    let mut total = 0.0;
    for (range, t) in passes.iter().zip(times) {
        let t = t.unwrap_or_default();
        total += t;
        let op = range.start;
        let family = ops[op].name();
        let bytes: u64 = costs[range.clone()].iter().map(Cost::bytes).sum();
        let flops: u64 = costs[range.clone()].iter().map(|c| c.flops).sum();
        match out.iter_mut().find(|k| k.family == family) {
            Some(k) => {
                k.seconds += t;
                k.bytes += bytes;
                k.flops += flops;
            }
            None => out.push(KernelTime {
                family,
                seconds: t,
                bytes,
                flops,
            }),
        }
    }
    (Some(total), out)
}

/// Numerically stable softmax.
pub fn softmax_in_place(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::early_submits;

    #[test]
    fn early_submits_cover_every_op_once_in_growing_runs() {
        for ops in [0, 1, 7, 8, 9, 24, 25, 300] {
            let runs = early_submits(ops);
            let mut next = 0;
            for r in &runs {
                assert_eq!(r.start, next, "{ops} ops: {runs:?}");
                assert!(r.end > r.start, "{ops} ops: {runs:?}");
                next = r.end;
            }
            assert_eq!(next, ops, "{ops} ops: {runs:?}");
            assert!(runs.first().is_none_or(|r| r.len() <= 8), "{runs:?}");
            for w in runs.windows(2).take(runs.len().saturating_sub(2)) {
                assert_eq!(w[1].len(), 2 * w[0].len(), "{ops} ops: {runs:?}");
            }
        }
        // a 7B step's ~290 ops in six submissions
        assert_eq!(early_submits(290).len(), 6);
    }
}
