//! `headroom bench matmul`: one matmul alone, `y[T, N] = x[T, K] . W[N, K]^T`, over token
//! counts T and the weight shapes of a model's layer (fused QKV, O, fused gate/up, down),
//! on every kernel this adapter runs for more than `VEC_MAX_ROWS` rows (the decode matvec
//! looping over them, the matrix units, the workgroup-tiled f32 kernel, the cache-blocked
//! one), each from its own device
//! so one kernel's pipelines do not warm another's. Prints TFLOP/s and the weight bytes
//! per second beside them.

use super::attention::parse_sizes;
use super::decode_step::{preset, Format, Quant};
use super::BenchError;
use crate::formats::date::UtcTime;
use crate::gpu::quant_layout::QuantType;
use crate::gpu::timing::GpuTimer;
use crate::gpu::GemmKernel;
use crate::gpu::{GpuContext, GpuOptions, StorageFormat};
use crate::ops::matmul::{gemm_kernels, Matmul, MatmulMode, WeightMatrix, VEC_MAX_ROWS};
use crate::ops::{Op, StepParams, StepShape};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Clone, Debug)]
pub struct BenchMatmulArgs {
    /// the model whose layer shapes are measured: llama2-7b, llama3-8b, smollm2-135m
    #[arg(long, default_value = "llama2-7b")]
    pub synthetic: String,
    /// KV heads (the width of the fused QKV matrix)
    #[arg(long, default_value_t = 8)]
    pub kv_heads: usize,
    /// token rows (comma-separated)
    #[arg(long, default_value = "16,64,256,512")]
    pub tokens: String,
    /// how float weights are stored
    #[arg(long, value_enum, default_value = "f16")]
    pub weights: Format,
    /// random blocks of this GGML type instead of float weights
    #[arg(long, value_enum)]
    pub quant: Option<Quant>,
    /// which kernels to measure, comma-separated: matvec, coop, tiled, blocked, and auto
    /// (the engine's choice by shape)
    #[arg(long, default_value = "matvec,coop,tiled,blocked,auto")]
    pub kernels: String,
    /// timed passes per shape (median reported)
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// untimed passes per shape until this much time has gone by (the H200 runs kernels
    /// ~3x slow for the first ~200 ms after an upload: bench/2026-12-01-h200-packed-dot)
    #[arg(long, default_value_t = 200)]
    pub warmup_ms: u64,
    /// adapter name substring (default: the high-performance adapter)
    #[arg(long, env = "HEADROOM_ADAPTER")]
    pub adapter: Option<String>,
    /// also write the results as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One measured (kernel, matrix, T).
#[derive(serde::Serialize)]
struct Row {
    kernel: &'static str,
    matrix: &'static str,
    n: usize,
    k: usize,
    tokens: u32,
    median_us: f64,
    tflops: f64,
    weight_gbps: f64,
}

pub fn run(a: &BenchMatmulArgs) -> Result<(), BenchError> {
    let cfg = preset(&a.synthetic, a.kv_heads)?;
    let tokens: Vec<u32> = parse_sizes(&a.tokens, "--tokens")?
        .into_iter()
        .map(|t| t as u32)
        .collect();
    if a.runs == 0 || tokens.contains(&0) {
        return Err(BenchError(
            "--runs and every --tokens must be at least 1".into(),
        ));
    }
    let (h, d) = (cfg.hidden_size, cfg.head_dim);
    let matrices = [
        ("qkv", (cfg.num_heads + 2 * cfg.num_kv_heads) * d, h),
        ("o", h, cfg.num_heads * d),
        ("gate_up", 2 * cfg.intermediate_size, h),
        ("down", h, cfg.intermediate_size),
    ];
    // each kernel asked for forced in turn, then the engine's choice by shape
    let mut wanted = Vec::new();
    for name in a.kernels.split(',').map(str::trim) {
        let kernel = match name {
            "auto" => None,
            _ => Some(GemmKernel::parse(name).ok_or_else(|| {
                BenchError(format!(
                    "--kernels: {name:?} is none of matvec, coop, tiled, blocked, auto"
                ))
            })?),
        };
        wanted.push(kernel);
    }
    let options = wanted.into_iter().map(|gemm| GpuOptions {
        adapter: a.adapter.clone(),
        gemm,
        ..Default::default()
    });
    let quant = a.quant.map(QuantType::from);
    let format = match quant {
        Some(q) => crate::gpu::WeightFormat::Quant(q),
        None => StorageFormat::from(a.weights).into(),
    };
    let mut rows = Vec::new();
    let mut seen = Vec::new();
    let mut adapter = String::new();
    // at most VEC_MAX_ROWS token rows every option runs the decode matvec: measure it once
    let decode_only = tokens.iter().all(|&t| t <= VEC_MAX_ROWS);
    let mut features = None;
    for o in options {
        let o = &o;
        if decode_only && o.gemm.is_some() {
            continue;
        }
        let gpu = GpuContext::new_blocking(o)?;
        features = Some(gpu.features.clone());
        let kernels = gemm_kernels(&gpu, format);
        if o.gemm.is_some() && seen.contains(&kernels) {
            continue; // not on this adapter (the coop GEMM), or not for these weights
        }
        seen.push(kernels.clone());
        adapter = gpu.adapter_name();
        let label = match o.gemm {
            Some(_) => kernels[0].name(),
            None => "by shape",
        };
        eprintln!("{adapter}: {label}");
        for &(name, n, k) in &matrices {
            let w = weights(&gpu, quant, a.weights.into(), n, k)?;
            for &t in &tokens {
                let (r, kernel) = measure(&gpu, &w, t, a.runs, a.warmup_ms as f64 / 1e3)?;
                let kernel = match (t <= VEC_MAX_ROWS, o.gemm) {
                    (true, _) => "decode matvec",
                    (false, Some(_)) => kernel,
                    (false, None) => match kernel {
                        "matvec_rows" => "auto:matvec",
                        "gemm_coop" => "auto:coop",
                        "gemm_tiled" => "auto:tiled",
                        _ => "auto:blocked",
                    },
                };
                let flops = 2.0 * t as f64 * n as f64 * k as f64;
                let row = Row {
                    kernel,
                    matrix: name,
                    n,
                    k,
                    tokens: t,
                    median_us: r * 1e6,
                    tflops: flops / r / 1e12,
                    weight_gbps: w.bytes() as f64 / r / 1e9,
                };
                println!(
                    "{:<15} {:<8} N {:>6} K {:>6} T {:>4}: {:>9.1} us {:>7.2} TFLOP/s {:>7.0} GB/s of weights",
                    row.kernel, row.matrix, n, k, t, row.median_us, row.tflops, row.weight_gbps
                );
                rows.push(row);
            }
        }
    }
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
            "bench": "matmul",
            "adapter": adapter,
            "date_utc": UtcTime::from_unix(super::now_unix()).iso8601(),
            "model_shape": a.synthetic,
            "weights": format.name(),
            "gpu_features": features,
            "rows": rows,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| BenchError(e.to_string()))?;
        std::fs::write(path, text)?;
    }
    Ok(())
}

/// An `n x k` matrix of random values (floats made on the GPU, blocks on the host).
fn weights(
    gpu: &Arc<GpuContext>,
    quant: Option<QuantType>,
    float: StorageFormat,
    n: usize,
    k: usize,
) -> Result<WeightMatrix, BenchError> {
    Ok(match quant {
        Some(q) => {
            let blocks = crate::model::weights::random_blocks(q, n * k / q.block_values(), 0.05, 7);
            WeightMatrix::upload_blocks(gpu, "w", q, &blocks, n, k, usize::MAX)?
        }
        None => WeightMatrix::random(gpu, "w", n, k, float, 7, 0.05)?,
    })
}

/// Median seconds of one matmul of `t` rows against `w`, and the GEMM kernel it ran.
fn measure(
    gpu: &Arc<GpuContext>,
    w: &WeightMatrix,
    t: u32,
    runs: usize,
    warmup_s: f64,
) -> Result<(f64, &'static str), BenchError> {
    let (n, k) = (w.rows, w.cols);
    let params = StepParams {
        n_tokens: t,
        pos0: 0,
        n_out_rows: 1,
        _pad: 0,
    };
    let step = gpu.uniform("step", &params);
    let x = gpu.storage("x", t as u64 * k as u64 * 4)?;
    crate::gpu::fill::fill_random(gpu, &x, StorageFormat::F32, t as u64 * k as u64, 3, 1.0)?;
    let y = gpu.storage("y", t as u64 * n as u64 * 4)?;
    let dummy = gpu.storage("dummy", 16)?;
    let op = Matmul::new(gpu, &step, w, None, &x, &y, MatmulMode::default(), &dummy);
    let shape = StepShape {
        n_tokens: t,
        pos0: 0,
        n_out_rows: 1,
        max_context: t,
        query_tiles: 0,
    };
    let timer = GpuTimer::new(gpu, 64);
    timer.warm_up_for(gpu, "matmul", warmup_s, &mut |pass| op.record(pass, &shape))?;
    let m = timer.measure(gpu, "matmul", 2, runs, 5, &mut |pass| {
        op.record(pass, &shape)
    })?;
    Ok((m.median_s, op.gemm_kernel(t.max(VEC_MAX_ROWS + 1)).name()))
}
