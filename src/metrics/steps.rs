//! What each step of the engine did and cost: its record (rows, tokens, the kernels'
//! declared bytes split into weights, KV cache and activations, GPU time), and records
//! grouped into bins of time for rates.

use crate::model::gpu_model::KernelTime;
use crate::ops::Cost;

/// The kernels' declared bytes of some work, split by what they are (see `ops::Cost`).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Traffic {
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    pub activation_bytes: u64,
}

impl Traffic {
    pub fn of(cost: &Cost) -> Traffic {
        Traffic {
            weight_bytes: cost.weight_bytes,
            kv_bytes: cost.kv_bytes,
            activation_bytes: cost.activation_bytes(),
        }
    }

    /// All bytes read and written.
    pub fn bytes(&self) -> u64 {
        self.weight_bytes + self.kv_bytes + self.activation_bytes
    }
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, o: Traffic) {
        self.weight_bytes += o.weight_bytes;
        self.kv_bytes += o.kv_bytes;
        self.activation_bytes += o.activation_bytes;
    }
}

/// One forward pass: throughput against batch size (`bench serve`), the viewer's live
/// telemetry.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepRecord {
    /// steps before this one since the engine started
    pub index: u64,
    /// seconds since the engine started, at the end of the step
    pub at_s: f64,
    pub seconds: f64,
    /// sequences in the running batch
    pub running: usize,
    /// rows that sampled a token (decode rows and finished prefills)
    pub sampled: usize,
    /// prompt tokens computed (prefill rows)
    pub prefill_tokens: usize,
    /// token rows of the pass (prefill and decode)
    pub rows: usize,
    /// the kernels' declared traffic
    #[serde(flatten)]
    pub traffic: Traffic,
    /// GPU time from timestamps (None without them)
    pub gpu_s: Option<f64>,
    /// per kernel family, on the steps that time them (`EngineOptions::kernel_times_every`)
    pub kernels: Vec<KernelTime>,
}

/// Width of the bins rates are computed over.
pub const BIN_S: f64 = 0.5;

/// Totals of the steps that ended in one bin of time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bin {
    /// start of the bin, seconds since the engine started
    pub at_s: f64,
    pub sampled: usize,
    pub prefill_tokens: usize,
    pub rows: usize,
    pub traffic: Traffic,
    /// GPU seconds of the steps that had timestamps, and their bytes
    pub gpu_s: f64,
    pub timed_bytes: u64,
    pub steps: usize,
}

impl Bin {
    pub fn decode_tokens_per_s(&self) -> f64 {
        self.sampled as f64 / BIN_S
    }
    pub fn prefill_tokens_per_s(&self) -> f64 {
        self.prefill_tokens as f64 / BIN_S
    }
    /// Declared bytes over measured GPU time (None without timestamps).
    pub fn gbps(&self) -> Option<f64> {
        (self.gpu_s > 0.0).then(|| self.timed_bytes as f64 / self.gpu_s / 1e9)
    }
}

/// Groups steps into bins of `BIN_S` by the time they ended.
pub fn bin_steps(steps: &[StepRecord]) -> Vec<Bin> {
    let mut bins: Vec<Bin> = Vec::new();
    for s in steps {
        let at = (s.at_s / BIN_S).floor() * BIN_S;
        if bins.last().is_none_or(|b| b.at_s != at) {
            bins.push(Bin {
                at_s: at,
                ..Default::default()
            });
        }
        let b = bins.last_mut().expect("pushed above");
        b.sampled += s.sampled;
        b.prefill_tokens += s.prefill_tokens;
        b.rows += s.rows;
        b.traffic += s.traffic;
        b.steps += 1;
        if let Some(g) = s.gpu_s {
            b.gpu_s += g;
            b.timed_bytes += s.traffic.bytes();
        }
    }
    bins
}

/// The runs of `bins` (index ranges) whose bins follow one another without an empty bin
/// between them: a chart draws each run as its own line, so an idle stretch shows as a gap
/// rather than a line through it.
pub fn contiguous_runs(bins: &[Bin]) -> Vec<std::ops::Range<usize>> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, b) in bins.iter().enumerate() {
        let follows = i > 0 && b.at_s - bins[i - 1].at_s < 1.5 * BIN_S;
        match runs.last_mut() {
            Some(r) if follows => r.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin_at(at_s: f64) -> Bin {
        Bin {
            at_s,
            ..Default::default()
        }
    }

    #[test]
    fn runs_break_where_a_bin_is_missing() {
        let bins: Vec<Bin> = [0.0, 0.5, 1.0, 3.0, 3.5, 10.0]
            .into_iter()
            .map(bin_at)
            .collect();
        assert_eq!(contiguous_runs(&bins), vec![0..3, 3..5, 5..6]);
        assert!(contiguous_runs(&[]).is_empty());
        // from steps: an idle second between two bursts
        let step = |at_s| StepRecord {
            index: 0,
            at_s,
            seconds: 0.01,
            running: 1,
            sampled: 1,
            prefill_tokens: 0,
            rows: 1,
            traffic: Traffic::default(),
            gpu_s: None,
            kernels: Vec::new(),
        };
        let steps: Vec<StepRecord> = [0.1, 0.2, 0.6, 2.1, 2.2].into_iter().map(step).collect();
        let bins = bin_steps(&steps);
        assert_eq!(bins.len(), 3);
        assert_eq!(contiguous_runs(&bins), vec![0..2, 2..3]);
    }
}
