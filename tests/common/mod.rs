//! Helpers the integration tests share: one GPU context per test binary, seeded random
//! inputs whose seed is printed, tolerance checks that name the element, and greedy steps
//! of a single-sequence model.
#![allow(dead_code)]

pub mod http;

use headroom::formats::quant::GgmlType;
use headroom::gpu::{GpuContext, GpuOptions, StorageFormat};
use headroom::model::gpu_model::{GpuModel, PartLogits, SequencePart};
use headroom::model::{
    HostTensor, LoadError, ModelConfig, TensorName, TensorSummary, WeightSource,
};
use headroom::ops::sample::SamplingParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The default adapter (lavapipe in CI), made once per test binary.
pub fn gpu() -> Arc<GpuContext> {
    static GPU: OnceLock<Arc<GpuContext>> = OnceLock::new();
    GPU.get_or_init(|| {
        let g = GpuContext::new_blocking(&GpuOptions::default())
            .expect("a GPU adapter (lavapipe in CI)");
        eprintln!("adapter: {}", g.adapter_name());
        g
    })
    .clone()
}

/// A context whose integer-dot matmuls compute RMSNorm and SiLU·mul themselves
/// (`GpuOptions::fused_prologue`): the default on GPUs, not on lavapipe.
#[allow(dead_code)]
pub fn fused_gpu() -> Arc<GpuContext> {
    static FUSED: OnceLock<Arc<GpuContext>> = OnceLock::new();
    FUSED
        .get_or_init(|| {
            GpuContext::new_blocking(&GpuOptions {
                fused_prologue: Some(true),
                ..Default::default()
            })
            .expect("a GPU adapter (lavapipe in CI)")
        })
        .clone()
}

/// A fresh seed, printed so that a failure can be replayed: `HEADROOM_TEST_SEED=N` gives
/// every random test that seed instead.
pub fn seed() -> u64 {
    let seed = match std::env::var("HEADROOM_TEST_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("HEADROOM_TEST_SEED={s:?} is not a u64")),
        Err(_) => rand::random(),
    };
    eprintln!("seed: {seed} (replay with HEADROOM_TEST_SEED={seed})");
    seed
}

/// A generator seeded by [`seed`].
pub fn rng() -> StdRng {
    StdRng::seed_from_u64(seed())
}

/// The default model, or None where `HEADROOM_SKIP_MODEL_TESTS=1` skips the tests that
/// need it (see `engine::default_model_for_tests`: without the variable, a missing model
/// fails the test).
pub fn default_model() -> Option<PathBuf> {
    headroom::engine::default_model_for_tests()
}

/// `n` values uniform in ±scale.
pub fn randn(r: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (r.random::<f32>() * 2.0 - 1.0) * scale)
        .collect()
}

/// `v` as stored in format `f` and read back.
pub fn rounded(v: &[f32], f: StorageFormat) -> Vec<f32> {
    match f {
        StorageFormat::F32 => v.to_vec(),
        StorageFormat::F16 => v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
    }
}

/// Every element finite (so written: outputs are poisoned with NaN first) and within
/// `atol + rtol * |want|`.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite(),
            "{what}[{i}] was not written (or is not finite): {g}"
        );
        let err = (g as f64 - w).abs();
        assert!(
            err <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g}, want {w} (err {err:e})"
        );
        worst = worst.max(err);
    }
    eprintln!("{what}: max abs err {worst:e} over {} values", got.len());
}

/// The largest difference of `a` from `b`, relative to `b`'s largest magnitude.
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
        / scale
}

/// The index of the largest value, the lowest on ties.
pub fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .fold(0, |b, (i, &x)| if x > v[b] { i } else { b }) as u32
}

/// Runs `tokens` at positions `pos0..` of sequence `seq` and returns the greedy next token.
pub fn greedy_step(model: &GpuModel, seq: usize, tokens: &[u32], pos0: usize) -> u32 {
    let part = SequencePart {
        tokens,
        pos0,
        table: model.sequence_table(seq).unwrap(),
        sample: Some((SamplingParams::default(), 0)),
        logits: PartLogits::None,
    };
    model.forward(&[part]).unwrap()[0]
}

/// The logits of the last step's (first) sampled row.
pub fn last_logits(model: &GpuModel) -> Vec<f32> {
    model.logits_rows(1).unwrap().remove(0)
}

/// A model file's weights under another config: a bug planted in a correct run (a wrong
/// epsilon, a dropped RoPE scaling) without touching the code under test.
pub struct WithConfig<'a> {
    pub inner: &'a dyn WeightSource,
    pub config: ModelConfig,
}

impl WeightSource for WithConfig<'_> {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn path(&self) -> &str {
        self.inner.path()
    }
    fn has(&self, name: TensorName) -> bool {
        self.inner.has(name)
    }
    fn load(&self, name: TensorName) -> Result<HostTensor, LoadError> {
        self.inner.load(name)
    }
    fn summaries(&self) -> Vec<TensorSummary> {
        self.inner.summaries()
    }
    fn blocks(&self, name: TensorName) -> Result<Option<(GgmlType, Vec<u8>)>, LoadError> {
        self.inner.blocks(name)
    }
}

/// `x` (rows of whole 32-value blocks) as the integer-dot matvec sees it
/// (shaders/q8_pack.wgsl): per block d = max |v| / 127, q = round-half-even(v / d),
/// back to q * d.
#[allow(dead_code)]
pub fn q8_round_trip(x: &[f32]) -> Vec<f32> {
    x.chunks_exact(32)
        .flat_map(|b| {
            let m = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = m / 127.0;
            let inv = if m > 0.0 { 1.0 / d } else { 0.0 };
            b.iter().map(move |v| (v * inv).round_ties_even() * d)
        })
        .collect()
}
