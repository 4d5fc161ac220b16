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
