//! Every kernel on the default adapter (lavapipe in CI) against a CPU reference in f64,
//! on fresh random inputs each run (the seed is printed), with outputs poisoned first.

mod common;

use common::{assert_close, fused_gpu, gpu, q8_round_trip, randn, rng, rounded};
use headroom::formats::quant::dequantize;
use headroom::gpu::quant_layout::QuantType;
use headroom::gpu::GemmKernel;
use headroom::gpu::{GpuContext, GpuOptions, StorageFormat};
use headroom::kv::{KvLayout, KvPool, QueryRow, StepMeta};
use headroom::model::Activation;
use headroom::ops::elementwise::SiluMul;
use headroom::ops::embed::Embed;
use headroom::ops::matmul::{Matmul, MatmulMode, WeightMatrix, VEC_MAX_ROWS};
use headroom::ops::matmul_prologue::{MatmulInputs, Prologue, PrologueMatmul};
use headroom::ops::rmsnorm::{NormRows, RmsNorm};
use headroom::ops::rope_kv::{HeadNorms, RopeKvAppend};
use headroom::ops::sample::{Sample, SamplingParams};
use headroom::ops::{Op, OutRow, StepParams, StepShape};
use rand::rngs::StdRng;
use rand::Rng;
use std::sync::{Arc, OnceLock};

const POISON: f32 = f32::NAN;

/// The default context (with the integer-dot path for quantized weights where it has
/// subgroups, and the matrix-unit GEMM where it has cooperative matrices), one with x kept
/// in f32 there and the workgroup-tiled f32 GEMM, and contexts without subgroups, with one
/// and with 32 threads per row in the portable matvec (CPU adapters pick one, GPUs 32):
/// every path runs.
fn gpus() -> Vec<Arc<GpuContext>> {
    static OTHERS: OnceLock<Vec<Arc<GpuContext>>> = OnceLock::new();
    let mut all = vec![gpu()];
    all.extend(
        OTHERS
            .get_or_init(|| {
                let f32_x = GpuOptions {
                    no_q8_dot: true,
                    gemm: Some(GemmKernel::Tiled),
                    ..Default::default()
                };
                // the matrix-unit GEMM for every shape, where the adapter has it: for f16
                // weights, and quantized ones dequantized to f16 rows in slices of 128 rows,
                // with 32 and with 64 token rows per subgroup (tiles staged in workgroup
                // memory, the default); then 64 with every fragment from memory, and the
                // staging kernel for quantized weights; then the few-rows form
                let coop = [(false, true), (true, true), (true, false)].map(|(wide, default)| {
                    GpuOptions {
                        gemm: Some(GemmKernel::Coop),
                        coop_wide: Some(wide),
                        coop_dequant: Some(default),
                        coop_staged: Some(default),
                        coop_few: Some(false),
                        dequant_slice_bytes: Some(1),
                        ..Default::default()
                    }
                });
                // and the few-rows form for f16 weights at every row count
                let few = GpuOptions {
                    gemm: Some(GemmKernel::Coop),
                    coop_few: Some(true),
                    ..Default::default()
                };
                let coop = coop.into_iter().chain([few]);
                let coop = coop.into_iter().filter(|_| gpu().features.coopmat);
                // (its decode matvecs take 2 weight rows per subgroup at a time, as the
                // defaults do for big matrices; odd row counts leave a tile's last row over;
                // and integer dot products of unpacked lanes, the default's alternative)
                let matvec = gpu().features.subgroups.then_some(GpuOptions {
                    gemm: Some(GemmKernel::Matvec),
                    matvec_rows: Some(2),
                    q8_packed_dot: Some(false),
                    ..Default::default()
                });
                let portable = [1, 32].map(|lanes| GpuOptions {
                    no_subgroups: true,
                    matvec_lanes: Some(lanes),
                    ..Default::default()
                });
                std::iter::once(f32_x)
                    .chain(coop)
                    .chain(matvec)
                    .chain(portable)
                    .map(|o| GpuContext::new_blocking(&o).unwrap())
                    .collect::<Vec<_>>()
            })
            .iter()
            .cloned(),
    );
    all
}

fn step_buffer(g: &GpuContext, p: StepParams) -> wgpu::Buffer {
    let b = g.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("step"),
        size: std::mem::size_of::<StepParams>() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    g.queue.write_buffer(&b, 0, bytemuck::bytes_of(&p));
    b
}

fn params(n_tokens: u32, pos0: u32, n_out_rows: u32) -> StepParams {
    StepParams {
        n_tokens,
        pos0,
        n_out_rows,
        _pad: 0,
    }
}

/// A buffer of logits rows with these source rows, all greedy.
fn out_rows_buffer(g: &GpuContext, src_rows: &[u32]) -> wgpu::Buffer {
    let rows: Vec<OutRow> = src_rows
        .iter()
        .map(|&r| OutRow::new(r, &SamplingParams::default(), 0))
        .collect();
    g.storage_init("out_rows", bytemuck::cast_slice(&rows))
        .unwrap()
}

fn run(g: &GpuContext, ops: &[&dyn Op], shape: StepShape) {
    let mut enc = g.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for op in ops {
            op.record(&mut pass, &shape);
        }
    }
    g.queue.submit([enc.finish()]);
    g.wait().unwrap();
}

/// A step of `n_tokens` token rows, logits for one (the shapes the kernel tests record).
fn rows(n_tokens: u32) -> StepShape {
    StepShape {
        n_tokens,
        pos0: 0,
        n_out_rows: 1,
        max_context: 0,
        query_tiles: 0,
    }
}

fn upload(g: &GpuContext, v: &[f32]) -> wgpu::Buffer {
    g.storage_init("test", bytemuck::cast_slice(v)).unwrap()
}

#[test]
fn matmul_matches_cpu_for_decode_and_prefill_shapes() {
    let all = gpus();
    if std::env::var_os("HEADROOM_NO_SUBGROUPS").is_none() {
        assert_eq!(
            all[0].features.subgroups, all[0].features.subgroups_offered,
            "the default context runs the subgroup kernels where the adapter has them"
        );
    }
    let mut ran = std::collections::BTreeSet::new();
    for g in &all {
        eprintln!(
            "subgroups: {} (offered: {}), portable lanes {}",
            g.features.subgroups, g.features.subgroups_offered, g.matvec_lanes
        );
        matmul_cases(g, &mut ran);
    }
    assert_eq!(ran, gemm_kernels_expected(&all[0]));
}

/// The kernels `gpus()` runs for many token rows: the tiled f32 one, the matrix units' and
/// the looping matvec where the adapter has them (contexts force each), and the
/// cache-blocked one (the portable contexts', and the default's on CPU adapters).
fn gemm_kernels_expected(default: &GpuContext) -> std::collections::BTreeSet<&'static str> {
    let mut want = std::collections::BTreeSet::from(["gemm_tiled", "matmul_blocked"]);
    if default.features.subgroups {
        want.insert("matvec_rows");
    }
    if default.features.coopmat {
        want.insert("gemm_coop");
    }
    want
}

/// Where `op` ran the matrix-unit GEMM (many token rows), x and the weights were rounded
/// to f16 on the way in: the reference multiplies what it multiplied.
fn gemm_inputs(op: &Matmul, t: usize, x: &[f32], w: &[f32]) -> (Vec<f32>, Vec<f32>) {
    gemm_inputs_of(op.gemm_kernel((t as u32).max(VEC_MAX_ROWS + 1)), t, x, w)
}

/// As `gemm_inputs`, for an op already handed to another.
fn gemm_inputs_of(kernel: GemmKernel, t: usize, x: &[f32], w: &[f32]) -> (Vec<f32>, Vec<f32>) {
    match t > VEC_MAX_ROWS as usize && kernel == GemmKernel::Coop {
        true => (
            rounded(x, StorageFormat::F16),
            rounded(w, StorageFormat::F16),
        ),
        false => (x.to_vec(), w.to_vec()),
    }
}

fn matmul_cases(g: &GpuContext, ran: &mut std::collections::BTreeSet<&'static str>) {
    let mut r = rng();
    let dummy = g.storage("dummy", 16).unwrap();
    for &format in &[StorageFormat::F32, StorageFormat::F16] {
        for &(t, k, n, split, accumulate, bias) in &[
            (1usize, 64usize, 40usize, usize::MAX, false, false),
            (3, 136, 200, 64, true, true),
            (8, 72, 129, usize::MAX, false, true),
            // 65 chunks of 8: lanes take two a trip, then one (subgroups of 8 to 32)
            (2, 520, 33, usize::MAX, false, false),
            (9, 72, 130, 50, true, false),
            (70, 136, 65, usize::MAX, false, true),
            (130, 64, 200, 100, true, true),
            // GEMM shapes that are multiples of no tile, in tokens, rows or K
            (17, 40, 33, usize::MAX, true, false),
            (65, 72, 129, 50, false, true),
            (300, 48, 131, usize::MAX, true, true),
        ] {
            let w = randn(&mut r, n * k, 0.5);
            let x = randn(&mut r, t * k, 1.0);
            let b = randn(&mut r, n, 0.5);
            let y0 = if accumulate {
                randn(&mut r, t * n, 1.0)
            } else {
                vec![POISON; t * n]
            };
            let wm = WeightMatrix::upload_split(g, "w", &w, n, k, format, split).unwrap();
            assert_eq!(wm.parts.len(), n.div_ceil(split.min(n)));
            let xb = upload(g, &x);
            let yb = upload(g, &y0);
            let bb = upload(g, &b);
            let step = step_buffer(g, params(t as u32, 0, 1));
            let mode = MatmulMode {
                accumulate,
                logits_rows: false,
            };
            let op = Matmul::new(g, &step, &wm, bias.then_some(&bb), &xb, &yb, mode, &dummy);
            let decode = match g.features.subgroups {
                true => "matmul_vec_subgroup",
                false => "matmul_vec",
            };
            assert_eq!(op.decode_kernel(), decode);
            run(g, &[&op], rows(t as u32));
            if t > VEC_MAX_ROWS as usize {
                ran.insert(op.gemm_kernel(t as u32).name());
            }
            let got = g.read_f32(&yb, t * n).unwrap();
            let (x, wr) = gemm_inputs(&op, t, &x, &rounded(&w, format));
            let mut want = vec![0f64; t * n];
            for ti in 0..t {
                for ni in 0..n {
                    let mut s: f64 = (0..k)
                        .map(|ki| wr[ni * k + ki] as f64 * x[ti * k + ki] as f64)
                        .sum();
                    if bias {
                        s += b[ni] as f64;
                    }
                    if accumulate {
                        s += y0[ti * n + ni] as f64;
                    }
                    want[ti * n + ni] = s;
                }
            }
            // f32 accumulation over k terms of size <= 0.5
            assert_close(
                &format!("matmul {format:?} t={t} k={k} n={n}"),
                &got,
                &want,
                1e-4 * (k as f64).sqrt(),
                1e-5,
            );
        }
    }
}

#[test]
fn lm_head_matmul_uses_only_the_logits_rows() {
    let g = gpu();
    let mut r = rng();
    let dummy = g.storage("dummy", 16).unwrap();
    let (k, n, rows) = (64, 100, 3);
    let w = randn(&mut r, n * k, 0.5);
    let x = randn(&mut r, rows * k, 1.0);
    let wm = WeightMatrix::upload(&g, "w", &w, n, k, StorageFormat::F32).unwrap();
    let (xb, yb) = (upload(&g, &x), upload(&g, &vec![POISON; rows * n]));
    let step = step_buffer(&g, params(50, 0, rows as u32));
    let op = Matmul::new(
        &g,
        &step,
        &wm,
        None,
        &xb,
        &yb,
        MatmulMode {
            accumulate: false,
            logits_rows: true,
        },
        &dummy,
    );
    run(
        &g,
        &[&op],
        StepShape {
            n_tokens: 50,
            pos0: 0,
            n_out_rows: rows as u32,
            max_context: 0,
            query_tiles: 0,
        },
    );
    let got = g.read_f32(&yb, rows * n).unwrap();
    let want: Vec<f64> = (0..rows * n)
        .map(|i| {
            (0..k)
                .map(|j| w[(i % n) * k + j] as f64 * x[(i / n) * k + j] as f64)
                .sum()
        })
        .collect();
    assert_close("lm_head", &got, &want, 1e-4, 1e-5);
}

#[test]
fn rmsnorm_matches_cpu() {
    let g = gpu();
    let mut r = rng();
    // (rows, hidden, the logits rows only, added to y)
    let cases = [
        (1usize, 576usize, false, false),
        (7, 64, false, false),
        (5, 1024, true, false),
        (6, 576, false, true),
    ];
    for &(t, h, logits_rows, add) in &cases {
        let x = randn(&mut r, t * h, 3.0);
        let w = randn(&mut r, h, 1.0);
        let out_rows = if logits_rows { 2 } else { t };
        let y0 = match add {
            true => randn(&mut r, out_rows * h, 1.0),
            false => vec![POISON; out_rows * h],
        };
        let (xb, wb, yb) = (upload(&g, &x), upload(&g, &w), upload(&g, &y0));
        let step = step_buffer(&g, params(t as u32, 0, 2));
        // the logits rows: the last two rows, in reverse order
        let gather = out_rows_buffer(&g, &[t as u32 - 1, t as u32 - 2]);
        let rows = match (logits_rows, add) {
            (true, _) => NormRows::Logits(&gather),
            (false, true) => NormRows::AddAll,
            (false, false) => NormRows::All,
        };
        let op = RmsNorm::new(&g, &step, h, 1e-5, &wb, &xb, &yb, rows);
        run(
            &g,
            &[&op],
            StepShape {
                n_tokens: t as u32,
                pos0: 0,
                n_out_rows: 2,
                max_context: 0,
                query_tiles: 0,
            },
        );
        let got = g.read_f32(&yb, out_rows * h).unwrap();
        let src: Vec<usize> = if logits_rows {
            vec![t - 1, t - 2]
        } else {
            (0..t).collect()
        };
        let mut want = vec![];
        for &row in &src {
            let xs = &x[row * h..(row + 1) * h];
            let ms: f64 = xs.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / h as f64;
            let s = 1.0 / (ms + 1e-5).sqrt();
            want.extend(xs.iter().zip(&w).map(|(&v, &wi)| v as f64 * s * wi as f64));
        }
        if add {
            want.iter_mut().zip(&y0).for_each(|(w, &y)| *w += y as f64);
        }
        assert_close(
            &format!("rmsnorm t={t} h={h} add {add}"),
            &got,
            &want,
            1e-5,
            1e-5,
        );
    }
}

/// RMSNorm's and SiLU·mul's Q8 variants write their rows as 8-bit blocks too, and the
/// integer-dot matmul that reads them (no quantize dispatch of its own) gives the product
/// of those blocks; with more rows than the decode kernel takes, none of them uses blocks.
#[test]
fn rmsnorm_and_silu_blocks_feed_the_integer_dot_matmul() {
    let g = gpu();
    if !g.features.q8_dot {
        eprintln!("no subgroups on this adapter: the integer-dot path does not exist");
        return;
    }
    let mut r = rng();
    let dummy = g.storage("dummy", 16).unwrap();
    let ty = QuantType::Q4_1;
    for silu in [false, true] {
        for &(t, k, n) in &[(1usize, 2240usize, 33usize), (3, 96, 40), (9, 96, 40)] {
            let blocks = random_blocks(&mut r, ty, n * k / 32, 0.1);
            let w = dequantize(ty.ggml(), &blocks, n * k).unwrap();
            let wm = WeightMatrix::upload_blocks(&g, "wq", ty, &blocks, n, k, usize::MAX).unwrap();
            let xn = upload(&g, &vec![POISON; t * k]);
            let yb = upload(&g, &vec![POISON; t * n]);
            let xq = headroom::ops::matmul::q8_scratch(&g, k).unwrap();
            let step = step_buffer(&g, params(t as u32, 0, 1));
            // the producer of x (f32 and blocks), and x as the CPU computes it
            let (producer, want_x): (Box<dyn Op>, Vec<f64>) = if silu {
                let gu = randn(&mut r, t * 2 * k, 3.0);
                let op = SiluMul::new_with_x_blocks(&g, &step, k, &upload(&g, &gu), &xn, Some(&xq));
                let want = (0..t * k)
                    .map(|i| {
                        let (ti, ii) = (i / k, i % k);
                        let a = gu[ti * 2 * k + ii] as f64;
                        a / (1.0 + (-a).exp()) * gu[ti * 2 * k + k + ii] as f64
                    })
                    .collect();
                (Box::new(op), want)
            } else {
                let x = randn(&mut r, t * k, 3.0);
                let norm = randn(&mut r, k, 1.0);
                let (xb, nb) = (upload(&g, &x), upload(&g, &norm));
                let op = RmsNorm::new_with_x_blocks(
                    &g,
                    &step,
                    k,
                    1e-5,
                    &nb,
                    &xb,
                    &xn,
                    Some(&xq),
                    NormRows::All,
                );
                let mut want = Vec::new();
                for xs in x.chunks(k) {
                    let ms = xs.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / k as f64;
                    let s = 1.0 / (ms + 1e-5).sqrt();
                    want.extend(xs.iter().zip(&norm).map(|(&v, &c)| v as f64 * s * c as f64));
                }
                (Box::new(op), want)
            };
            let mm = Matmul::new_with_x_blocks(
                &g,
                &step,
                &wm,
                None,
                &xn,
                Some(&xq),
                &yb,
                MatmulMode::default(),
                &dummy,
            );
            run(&g, &[producer.as_ref(), &mm], rows(t as u32));
            let what = if silu { "silu_mul" } else { "rmsnorm" };
            // the f32 rows are the producer's as ever
            let got_x = g.read_f32(&xn, t * k).unwrap();
            assert_close(&format!("{what} t={t} k={k}"), &got_x, &want_x, 1e-5, 1e-5);
            // the matmul multiplies by those rows as 8-bit blocks (the integer-dot matvecs)
            // or as they are
            let xr = match mm.x_as_q8_blocks(t as u32) {
                true => q8_round_trip(&got_x),
                false => got_x.clone(),
            };
            let (xr, w) = gemm_inputs(&mm, t, &xr, &w);
            let want = cpu_matmul(&w, &xr, t, k, n);
            let got = g.read_f32(&yb, t * n).unwrap();
            assert_close(
                &format!("{what} blocks -> matvec t={t} k={k}"),
                &got,
                &want,
                1e-5 * 1.6 * (k as f64).sqrt(),
                1e-5,
            );
        }
    }
}

/// RMSNorm and SiLU·mul inside the integer-dot matmul (`ops::matmul_prologue`): on decode
/// steps one kernel makes x's blocks from the f32 rows and multiplies; the result is the
/// two kernels' (x on the CPU in f32 as the kernels compute it, rounded to 8-bit blocks;
/// one block rounding the other way where the norm's sum was added up in another order is
/// allowed for). Nine rows take the two kernels, a bias and the residual add ride along.
#[test]
fn rmsnorm_and_silu_run_inside_the_integer_dot_matmul() {
    let g = fused_gpu();
    if !g.features.q8_dot || !g.features.fused_prologue {
        eprintln!("no integer-dot path (or its prologue is off) on this adapter");
        return;
    }
    let mut r = rng();
    let dummy = g.storage("dummy", 16).unwrap();
    let eps = 1e-5f32;
    // (gated activation or RMSNorm, weights)
    let kinds = [
        (None, QuantType::Q4_0),
        (Some(Activation::Silu), QuantType::Q8_0),
        (Some(Activation::GeluTanh), QuantType::Q4_1),
    ];
    for (gated, ty) in kinds {
        for &(t, k, n) in &[
            (1usize, 2240usize, 33usize),
            (3, 96, 40),
            (8, 64, 20),
            (9, 96, 40),
        ] {
            let blocks = random_blocks(&mut r, ty, n * k / 32, 0.1);
            let w = dequantize(ty.ggml(), &blocks, n * k).unwrap();
            let wm = WeightMatrix::upload_blocks(&g, "wq", ty, &blocks, n, k, usize::MAX).unwrap();
            let xn = upload(&g, &vec![POISON; t * k]);
            let y0 = randn(&mut r, t * n, 1.0);
            let yb = upload(&g, &y0);
            let bias = randn(&mut r, n, 1.0);
            let bias_b = upload(&g, &bias);
            let xq = headroom::ops::matmul::q8_scratch(&g, k).unwrap();
            let step = step_buffer(&g, params(t as u32, 0, 1));
            let (src, want_x, prologue_norm) = if let Some(act) = gated {
                let gu = randn(&mut r, t * 2 * k, 3.0);
                let want: Vec<f32> = (0..t * k)
                    .map(|i| {
                        let (ti, ii) = (i / k, i % k);
                        let a = gu[ti * 2 * k + ii] as f64;
                        (gate_ref(act, a) * gu[ti * 2 * k + k + ii] as f64) as f32
                    })
                    .collect();
                (gu, want, None)
            } else {
                let x = randn(&mut r, t * k, 3.0);
                let norm = randn(&mut r, k, 1.0);
                let mut want = Vec::new();
                for xs in x.chunks(k) {
                    let ms = xs.iter().map(|v| v * v).sum::<f32>() / k as f32;
                    let s = 1.0 / (ms + eps).sqrt();
                    want.extend(xs.iter().zip(&norm).map(|(&v, &c)| v * s * c));
                }
                (x, want, Some(upload(&g, &norm)))
            };
            let src_b = upload(&g, &src);
            let (first, prologue): (Box<dyn Op>, Prologue) = match &prologue_norm {
                Some(nb) => (
                    Box::new(RmsNorm::new_with_x_blocks(
                        &g,
                        &step,
                        k,
                        eps,
                        nb,
                        &src_b,
                        &xn,
                        Some(&xq),
                        NormRows::All,
                    )),
                    Prologue::RmsNorm { weight: nb, eps },
                ),
                None => {
                    let act = gated.expect("a gated activation where there is no norm");
                    (
                        Box::new(SiluMul::gated(&g, &step, act, k, &src_b, &xn, Some(&xq))),
                        Prologue::Gated(act),
                    )
                }
            };
            let mode = MatmulMode {
                accumulate: true,
                ..MatmulMode::default()
            };
            let mm = Matmul::new_with_x_blocks(
                &g,
                &step,
                &wm,
                Some(&bias_b),
                &xn,
                Some(&xq),
                &yb,
                mode,
                &dummy,
            );
            let inputs = MatmulInputs {
                w: &wm,
                bias: Some(&bias_b),
                y: &yb,
                mode,
                dummy: &dummy,
            };
            let gemm = mm.gemm_kernel((t as u32).max(VEC_MAX_ROWS + 1));
            let q8 = mm.x_as_q8_blocks(t as u32);
            let op = PrologueMatmul::new(&g, &step, prologue, &src_b, first, mm, &inputs);
            run(&g, &[&op], rows(t as u32));
            let decode = t <= VEC_MAX_ROWS as usize;
            // fused, x never reaches memory; nine rows run the first kernel, which writes it
            let x_written = g.read_f32(&xn, t * k).unwrap().iter().any(|v| !v.is_nan());
            assert_eq!(x_written, !decode, "t={t}: x written by a separate kernel");
            let xr = match q8 {
                true => q8_round_trip(&want_x),
                false => want_x.clone(),
            };
            let (xr, w) = gemm_inputs_of(gemm, t, &xr, &w);
            let mut want = cpu_matmul(&w, &xr, t, k, n);
            for (i, v) in want.iter_mut().enumerate() {
                *v += y0[i] as f64 + bias[i % n] as f64;
            }
            // one quantum of one block of x, times the largest weight
            let w_max = w.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            let x_max = want_x.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            // (the matrix units round x to f16 instead: one ulp of it)
            let flip = match (q8, gemm) {
                (true, _) => w_max * x_max / 127.0,
                (false, GemmKernel::Coop) => w_max * x_max / 2048.0,
                (false, _) => 0.0,
            };
            let what = match gated {
                Some(act) => format!("{act:?}_mul"),
                None => "rmsnorm".into(),
            };
            let got = g.read_f32(&yb, t * n).unwrap();
            assert_close(
                &format!("{what} inside {} matvec t={t} k={k}", ty.name()),
                &got,
                &want,
                2e-5 * (k as f64).sqrt() + flip,
                1e-5,
            );
        }
    }
}

/// `y[t, n] = x[t, :] . w[n, :]` in f64: the CPU reference of a matmul without bias.
fn cpu_matmul(w: &[f32], x: &[f32], t: usize, k: usize, n: usize) -> Vec<f64> {
    (0..t * n)
        .map(|i| {
            let (ti, ni) = (i / n, i % n);
            (0..k)
                .map(|ki| w[ni * k + ki] as f64 * x[ti * k + ki] as f64)
                .sum()
        })
        .collect()
}

/// `n` random GGML blocks of `ty`: random bytes (every bit pattern of the quants), with
/// the f16 scale (and min) fields overwritten by values of either sign up to `scale`.
fn random_blocks(r: &mut StdRng, ty: QuantType, blocks: usize, scale: f32) -> Vec<u8> {
    let bb = ty.ggml().type_size();
    // byte offsets of the f16 scale fields: d (and m / dmin)
    let fields: &[usize] = match ty {
        QuantType::Q4_1 | QuantType::Q5_1 | QuantType::Q4_K | QuantType::Q5_K => &[0, 2],
        QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Q8_0 => &[0],
        QuantType::Q6_K => &[208],
    };
    let mut bytes: Vec<u8> = (0..blocks * bb).map(|_| r.random::<u8>()).collect();
    for b in 0..blocks {
        for &at in fields {
            let v = half::f16::from_f32((r.random::<f32>() * 2.0 - 1.0) * scale);
            bytes[b * bb + at..b * bb + at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    bytes
}

/// Weights kept as GGML blocks: the decode and tiled matmul paths and the embedding read
/// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K blocks as the file stores them and give the CPU
/// dequantization's
/// results (`formats::quant`, itself checked against python gguf), over parts that split
/// rows where super-blocks do not end.
#[test]
fn quantized_weights_match_the_cpu_dequantization() {
    let mut r = rng();
    let mut q8_dot_ran = false;
    let mut gemm_ran = std::collections::BTreeSet::new();
    for g in gpus() {
        let dummy = g.storage("dummy", 16).unwrap();
        for ty in QuantType::ALL {
            // the largest |value| a block can hold at the scales drawn below
            let (scale, wmax) = match ty {
                QuantType::Q8_0 => (0.02, 0.02 * 128.0),
                QuantType::Q4_0 | QuantType::Q4_1 => (0.1, 0.1 * 16.0),
                QuantType::Q5_0 | QuantType::Q5_1 => (0.05, 0.05 * 32.0),
                QuantType::Q4_K => (0.005, 0.005 * 63.0 * 16.0),
                QuantType::Q5_K => (0.003, 0.003 * 63.0 * 32.0),
                QuantType::Q6_K => (0.001, 0.001 * 128.0 * 32.0),
            };
            // rows of whole blocks: 32 values, or 256 for the K-quants (odd counts of
            // them split Q6_K's two-block units across rows and parts)
            let shapes: &[(usize, usize, usize, usize)] = match ty.block_values() {
                32 => &[
                    (1, 64, 40, usize::MAX),
                    (5, 96, 37, 16),
                    // 70 blocks a row: lanes take two blocks a trip and then one
                    (3, 2240, 33, 20),
                    (70, 160, 65, 30),
                    (17, 96, 131, 64),
                    // dequantized to f16 rows for the matrix units in slices of 128 rows
                    // where a context asks for the least: 128, 128 and 44; 128 and 128+3
                    (33, 96, 300, usize::MAX),
                    (20, 64, 259, usize::MAX),
                ],
                _ => &[
                    (1, 256, 40, usize::MAX),
                    (5, 768, 37, 16),
                    (40, 512, 33, 10),
                    (65, 256, 131, usize::MAX),
                    (33, 256, 290, usize::MAX),
                ],
            };
            for &(t, k, n, split) in shapes {
                let blocks = random_blocks(&mut r, ty, n * k / ty.block_values(), scale);
                let w = dequantize(ty.ggml(), &blocks, n * k).unwrap();
                let x = randn(&mut r, t * k, 1.0);
                let wm = WeightMatrix::upload_blocks(&g, "wq", ty, &blocks, n, k, split).unwrap();
                assert_eq!(wm.parts.len(), n.div_ceil(split.min(n)));
                assert_eq!(
                    wm.bytes(),
                    wm.parts
                        .iter()
                        .map(|p| ty.bytes_for(p.rows * k))
                        .sum::<u64>()
                );
                let xb = upload(&g, &x);
                let yb = upload(&g, &vec![POISON; t * n]);
                let step = step_buffer(&g, params(t as u32, 0, 1));
                let op = Matmul::new(
                    &g,
                    &step,
                    &wm,
                    None,
                    &xb,
                    &yb,
                    MatmulMode::default(),
                    &dummy,
                );
                run(&g, &[&op], rows(t as u32));
                let got = g.read_f32(&yb, t * n).unwrap();
                // the integer-dot paths multiply by x as its 8-bit blocks hold it (the
                // decode matvec, and looping it over more rows)
                let q8 = op.x_as_q8_blocks(t as u32);
                if t <= VEC_MAX_ROWS as usize {
                    assert_eq!(q8, op.decode_kernel() == "matvec_q8");
                }
                if g.features.q8_dot && ty.has_block_dot() {
                    assert_eq!(op.decode_kernel(), "matvec_q8");
                }
                q8_dot_ran |= q8;
                if t > VEC_MAX_ROWS as usize {
                    gemm_ran.insert(op.gemm_kernel(t as u32).name());
                }
                let xr = if q8 { q8_round_trip(&x) } else { x.clone() };
                // WGSL lets the GPU's 1 / d be off by an ulp or two, so a value of x near a
                // rounding boundary can land one quantum from the CPU's: one such flip
                // times the largest weight (seen on the H200: 9.3e-3 at K = 2 240)
                let x_max = x.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                let flip = if q8 { wmax * x_max / 127.0 } else { 0.0 };
                let (xr, w) = gemm_inputs(&op, t, &xr, &w);
                let want = cpu_matmul(&w, &xr, t, k, n);
                assert_close(
                    &format!(
                        "matmul {} t={t} k={k} n={n} lanes {} kernel {}",
                        ty.name(),
                        g.matvec_lanes,
                        op.decode_kernel()
                    ),
                    &got,
                    &want,
                    1e-5 * wmax * (k as f64).sqrt() + flip,
                    1e-5,
                );
            }
            // the embedding gathers dequantized rows exactly
            let (vocab, h, t) = (300usize, 96usize.max(ty.block_values()), 11usize);
            let blocks = random_blocks(&mut r, ty, vocab * h / ty.block_values(), scale);
            let table = dequantize(ty.ggml(), &blocks, vocab * h).unwrap();
            let wm = WeightMatrix::upload_blocks(&g, "embed", ty, &blocks, vocab, h, 128).unwrap();
            let ids: Vec<u32> = (0..t).map(|_| r.random_range(0..vocab as u32)).collect();
            let tb = g.storage_init("ids", bytemuck::cast_slice(&ids)).unwrap();
            let xb = upload(&g, &vec![POISON; t * h]);
            let step = step_buffer(&g, params(t as u32, 0, 1));
            let op = Embed::new(&g, &step, &wm, &tb, &xb);
            run(&g, &[&op], rows(t as u32));
            let want: Vec<f64> = ids
                .iter()
                .flat_map(|&id| table[id as usize * h..][..h].iter().map(|&v| v as f64))
                .collect();
            let got = g.read_f32(&xb, t * h).unwrap();
            assert_close(&format!("embed {}", ty.name()), &got, &want, 0.0, 0.0);
        }
    }
    // the integer-dot path ran wherever the adapter has subgroups
    assert_eq!(q8_dot_ran, gpu().features.subgroups);
    assert_eq!(gemm_ran, gemm_kernels_expected(&gpu()));
}

#[test]
fn embedding_lookup_over_split_table() {
    let g = gpu();
    let mut r = rng();
    for &format in &[StorageFormat::F32, StorageFormat::F16] {
        let (vocab, h, t) = (300usize, 72usize, 11usize);
        let table = randn(&mut r, vocab * h, 1.0);
        let wm = WeightMatrix::upload_split(&g, "embed", &table, vocab, h, format, 128).unwrap();
        assert_eq!(wm.parts.len(), 3);
        let ids: Vec<u32> = (0..t).map(|_| r.random_range(0..vocab as u32)).collect();
        let tb = g.storage_init("ids", bytemuck::cast_slice(&ids)).unwrap();
        let xb = upload(&g, &vec![POISON; t * h]);
        let step = step_buffer(&g, params(t as u32, 0, 1));
        // gemma scales its embeddings by sqrt(hidden)
        let scale = match format {
            StorageFormat::F16 => (h as f32).sqrt(),
            _ => 1.0,
        };
        let op = Embed::scaled(&g, &step, &wm, &tb, &xb, scale);
        run(&g, &[&op], rows(t as u32));
        let got = g.read_f32(&xb, t * h).unwrap();
        let tr = rounded(&table, format);
        let want: Vec<f64> = ids
            .iter()
            .flat_map(|&id| {
                tr[id as usize * h..(id as usize + 1) * h]
                    .iter()
                    .map(|&v| (v * scale) as f64)
            })
            .collect();
        assert_close(&format!("embed {format:?} x{scale}"), &got, &want, 0.0, 0.0);
    }
}

/// act(gate) * up for SiLU and tanh-GELU, gates of ±6 standard deviations (GELU's tanh
/// saturates there), against f64.
#[test]
fn gated_activations_match_cpu() {
    let g = gpu();
    let mut r = rng();
    let (t, inter) = (5usize, 1536usize);
    for act in [Activation::Silu, Activation::GeluTanh] {
        let gu = randn(&mut r, t * 2 * inter, 6.0);
        let (gb, hb) = (upload(&g, &gu), upload(&g, &vec![POISON; t * inter]));
        let step = step_buffer(&g, params(t as u32, 0, 1));
        let op = SiluMul::gated(&g, &step, act, inter, &gb, &hb, None);
        run(&g, &[&op], rows(t as u32));
        let got = g.read_f32(&hb, t * inter).unwrap();
        let want: Vec<f64> = (0..t * inter)
            .map(|i| {
                let (ti, ii) = (i / inter, i % inter);
                let a = gu[ti * 2 * inter + ii] as f64;
                let u = gu[ti * 2 * inter + inter + ii] as f64;
                gate_ref(act, a) * u
            })
            .collect();
        assert_close(&format!("{act:?}_mul"), &got, &want, 1e-5, 1e-5);
    }
}

/// The gate's activation in f64: SiLU, or GELU's tanh approximation (PyTorch's).
fn gate_ref(act: Activation, a: f64) -> f64 {
    match act {
        Activation::Silu => a / (1.0 + (-a).exp()),
        Activation::GeluTanh => {
            let inner = (2.0 / std::f64::consts::PI).sqrt() * (a + 0.044715 * a.powi(3));
            0.5 * a * (1.0 + inner.tanh())
        }
    }
}

/// Gemma2's final soft-capping of the logits rows (cap * tanh(logit / cap)), in place, on
/// the rows that got logits only.
#[test]
fn softcap_logits_matches_cpu() {
    use headroom::ops::elementwise::SoftcapLogits;
    let g = gpu();
    let mut r = rng();
    let (rows_with_logits, vocab, cap) = (3usize, 1000usize, 15.0f32);
    let logits = randn(&mut r, 4 * vocab, 40.0);
    let lb = upload(&g, &logits);
    let step = step_buffer(&g, params(9, 0, rows_with_logits as u32));
    let op = SoftcapLogits::new(&g, &step, vocab, cap, &lb);
    run(
        &g,
        &[&op],
        StepShape {
            n_tokens: 9,
            pos0: 0,
            n_out_rows: rows_with_logits as u32,
            max_context: 0,
            query_tiles: 0,
        },
    );
    let got = g.read_f32(&lb, 4 * vocab).unwrap();
    let want: Vec<f64> = logits
        .iter()
        .enumerate()
        .map(|(i, &v)| match i < rows_with_logits * vocab {
            true => cap as f64 * (v as f64 / cap as f64).tanh(),
            false => v as f64,
        })
        .collect();
    assert_close("softcap", &got, &want, 2e-6 * cap as f64, 1e-6);
}

/// Rotate-half RoPE of one head vector at `pos`.
fn rope_ref(v: &[f32], pos: usize, inv_freq: &[f32]) -> Vec<f64> {
    let half = v.len() / 2;
    let mut out = vec![0f64; v.len()];
    for i in 0..half {
        let a = pos as f64 * inv_freq[i] as f64;
        let (x1, x2) = (v[i] as f64, v[i + half] as f64);
        out[i] = x1 * a.cos() - x2 * a.sin();
        out[i + half] = x2 * a.cos() + x1 * a.sin();
    }
    out
}

/// x * w / sqrt(mean(x^2) + eps), rounded to f32 (the head norms before RoPE).
fn head_norm_ref(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let scale = 1.0 / (ms + eps as f64).sqrt();
    x.iter()
        .zip(w)
        .map(|(&v, &w)| (v as f64 * scale * w as f64) as f32)
        .collect()
}

/// RoPE and the KV append, with qwen3's per-head RMSNorm first in some cases: head dims
/// 64, 96 (a workgroup of 60 invocations, five heads) and 32.
#[test]
fn rope_and_kv_append_match_cpu() {
    let g = gpu();
    let mut r = rng();
    for &(kvf, split_bindings, d, normed) in &[
        (StorageFormat::F32, false, 64, false),
        (StorageFormat::F16, true, 64, false),
        (StorageFormat::F32, false, 64, true),
        (StorageFormat::F16, false, 96, true),
        (StorageFormat::F32, true, 32, true),
    ] {
        let (nh, nkv, t, pos0, bs) = (6usize, 2usize, 5usize, 37usize, 16usize);
        let row = (nh + 2 * nkv) * d;
        let qkv = randn(&mut r, t * row, 2.0);
        // [q_norm | k_norm]
        let norms: Vec<f32> = randn(&mut r, 2 * d, 0.3).iter().map(|x| 1.0 + x).collect();
        let eps = 1e-6;
        let normed_head = |v: &[f32], k: bool| -> Vec<f32> {
            match normed {
                true => head_norm_ref(v, &norms[k as usize * d..][..d], eps),
                false => v.to_vec(),
            }
        };
        let inv_freq: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / d as f32))
            .collect();
        let layout = KvLayout {
            layers: 1,
            kv_heads: nkv,
            key_dim: d,
            value_dim: d,
            block_size: bs,
            format: kvf,
            latent: false,
        };
        // the sequence's blocks in shuffled order, over two bindings in the f16 case
        let blocks = 6;
        let block_bytes = (layout.key_block_elems() * kvf.bytes_per_element()) as u64;
        let limit = if split_bindings {
            3 * block_bytes
        } else {
            g.max_binding()
        };
        let pool = KvPool::with_binding_limit(&g, layout, blocks, limit).unwrap();
        let table: Vec<u32> = vec![4, 1, 5, 0];
        let sentinel = 7.0f32;
        for vp in [false, true] {
            pool.write_blocks(
                &g,
                0,
                vp,
                0,
                &vec![sentinel; blocks * layout.key_block_elems()],
            )
            .unwrap();
        }
        let rows: Vec<QueryRow> = (0..t as u32)
            .map(|i| QueryRow {
                context_len: pos0 as u32 + i + 1,
                table: &table,
                q_row: i,
                out_row: i,
            })
            .collect();
        let meta = StepMeta::new(&rows, t);
        let mb = g
            .storage_init("meta", bytemuck::cast_slice(&meta.words))
            .unwrap();
        let (qb, fb, nb) = (upload(&g, &qkv), upload(&g, &inv_freq), upload(&g, &norms));
        let step = step_buffer(&g, params(t as u32, pos0 as u32, 1));
        let op = RopeKvAppend::new(
            &g,
            &step,
            nh,
            nkv,
            d,
            &qb,
            &fb,
            &mb,
            meta.table_base,
            &layout,
            pool.blocks_per_binding,
            &pool.layers[0],
            1.0,
            normed.then_some(HeadNorms { weights: &nb, eps }),
        );
        run(&g, &[&op], StepShape::single(t as u32, pos0 as u32));
        let got_qkv = g.read_f32(&qb, t * row).unwrap();
        let k_blocks: Vec<Vec<f32>> = (0..blocks)
            .map(|b| pool.read_block(&g, 0, false, b).unwrap())
            .collect();
        let v_blocks: Vec<Vec<f32>> = (0..blocks)
            .map(|b| pool.read_block(&g, 0, true, b).unwrap())
            .collect();
        let tol = if kvf == StorageFormat::F16 {
            2e-3
        } else {
            1e-5
        };
        let mut written = std::collections::HashSet::new();
        for ti in 0..t {
            let pos = pos0 + ti;
            let (b, off) = (table[pos / bs] as usize, pos % bs);
            for hh in 0..nh {
                let v = &qkv[ti * row + hh * d..ti * row + (hh + 1) * d];
                assert_close(
                    "rope q",
                    &got_qkv[ti * row + hh * d..ti * row + (hh + 1) * d],
                    &rope_ref(&normed_head(v, false), pos, &inv_freq),
                    1e-5,
                    1e-5,
                );
            }
            for kh in 0..nkv {
                let k = &qkv[ti * row + (nh + kh) * d..ti * row + (nh + kh + 1) * d];
                let got_k: Vec<f32> = (0..d)
                    .map(|e| k_blocks[b][layout.key_offset(kh, off, e)])
                    .collect();
                let want_k = rope_ref(&normed_head(k, true), pos, &inv_freq);
                assert_close("k cache", &got_k, &want_k, tol, tol);
                let v = &qkv[ti * row + (nh + nkv + kh) * d..ti * row + (nh + nkv + kh + 1) * d];
                let got_v: Vec<f32> = (0..d)
                    .map(|e| v_blocks[b][layout.value_offset(kh, off, e)])
                    .collect();
                let want: Vec<f64> = v.iter().map(|&x| x as f64).collect();
                assert_close("v cache", &got_v, &want, tol, tol);
                for e in 0..d {
                    written.insert((b, layout.key_offset(kh, off, e), false));
                    written.insert((b, layout.value_offset(kh, off, e), true));
                }
            }
        }
        // every other slot of the pool is untouched
        for (b, (kb, vb)) in k_blocks.iter().zip(&v_blocks).enumerate() {
            for i in 0..kb.len() {
                if !written.contains(&(b, i, false)) {
                    assert_eq!(kb[i], sentinel, "k block {b} slot {i} was overwritten");
                }
                if !written.contains(&(b, i, true)) {
                    assert_eq!(vb[i], sentinel, "v block {b} slot {i} was overwritten");
                }
            }
        }
    }
}

/// Samples every row of `logits`; row i draws as `counters[i]`-th draw with `sampling`.
fn sample_rows(
    g: &GpuContext,
    logits: &[f32],
    vocab: usize,
    sampling: SamplingParams,
    counters: &[u32],
) -> Vec<u32> {
    let rows = logits.len() / vocab;
    assert_eq!(counters.len(), rows);
    let lb = upload(g, logits);
    let tb = g
        .storage_init("tokens", bytemuck::cast_slice(&vec![u32::MAX; rows]))
        .unwrap();
    let step = step_buffer(g, params(rows as u32, 0, rows as u32));
    let outs: Vec<OutRow> = (0..rows)
        .map(|i| OutRow::new(i as u32, &sampling, counters[i]))
        .collect();
    let ob = g
        .storage_init("out_rows", bytemuck::cast_slice(&outs))
        .unwrap();
    let op = Sample::new(g, &step, vocab, &lb, &tb, &ob);
    run(
        g,
        &[&op],
        StepShape {
            n_tokens: rows as u32,
            pos0: 0,
            n_out_rows: rows as u32,
            max_context: 0,
            query_tiles: 0,
        },
    );
    g.read_u32(&tb, rows).unwrap()
}

#[test]
fn greedy_sampling_is_argmax_with_lowest_index_on_ties() {
    let g = gpu();
    let mut r = rng();
    let vocab = 49152;
    let rows = 4;
    let mut logits = randn(&mut r, rows * vocab, 10.0);
    // row 3: a tie between two maxima; the lower index wins
    let (a, b) = (40000, 123);
    logits[3 * vocab + a] = 50.0;
    logits[3 * vocab + b] = 50.0;
    let mut p = SamplingParams::default();
    let counters = vec![0; rows];
    let got = sample_rows(&g, &logits, vocab, p, &counters);
    for row in 0..rows {
        let l = &logits[row * vocab..(row + 1) * vocab];
        let want = l
            .iter()
            .enumerate()
            .fold(0, |best, (i, &v)| if v > l[best] { i } else { best });
        assert_eq!(got[row] as usize, want, "row {row}");
    }
    assert_eq!(got[3] as usize, b);
    // top_k = 1 is greedy too, whatever the temperature
    p.temperature = 1.5;
    p.top_k = 1;
    assert_eq!(sample_rows(&g, &logits, vocab, p, &counters), got);
}

/// The CPU's view of which ids may be drawn and with what probability.
fn allowed(l: &[f32], temperature: f32, top_k: usize, top_p: f32) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..l.len()).collect();
    idx.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap());
    let m = l[idx[0]] as f64;
    let k = if top_k == 0 {
        l.len()
    } else {
        top_k.min(l.len())
    };
    let kept = &idx[..k];
    let w: Vec<f64> = kept
        .iter()
        .map(|&i| ((l[i] as f64 - m) / temperature as f64).exp())
        .collect();
    let z: f64 = w.iter().sum();
    let mut probs = vec![0f64; l.len()];
    let mut mass = 0.0;
    for (j, &i) in kept.iter().enumerate() {
        probs[i] = w[j];
        mass += w[j] / z;
        if mass >= top_p as f64 {
            break;
        }
    }
    let total: f64 = probs.iter().sum();
    probs.iter().map(|p| p / total).collect()
}

/// Pearson's chi-square of `counts` against `probs` (summing to 1) over `n` draws, with
/// ids binned so that every bin expects at least 5 draws: the statistic and its degrees
/// of freedom. Ids outside `probs`' support must not occur (checked by the caller).
fn chi_square(counts: &[usize], probs: &[f64], n: usize) -> (f64, usize) {
    let mut ids: Vec<usize> = (0..probs.len()).filter(|&i| probs[i] > 0.0).collect();
    ids.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let (mut bins, mut expect, mut seen) = (Vec::new(), 0.0, 0usize);
    for &i in &ids {
        expect += probs[i] * n as f64;
        seen += counts[i];
        if expect >= 5.0 {
            bins.push((expect, seen));
            (expect, seen) = (0.0, 0);
        }
    }
    // the tail that expects fewer than 5 joins the last bin
    if let Some(last) = bins.last_mut() {
        last.0 += expect;
        last.1 += seen;
    }
    let stat = bins.iter().map(|&(e, o)| (o as f64 - e).powi(2) / e).sum();
    (stat, bins.len().saturating_sub(1))
}

/// The chi-square value that `df` degrees of freedom exceed with probability about 1e-6
/// (Wilson-Hilferty).
fn chi_square_bound(df: usize) -> f64 {
    let (k, z) = (df.max(1) as f64, 4.75);
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

#[test]
fn seeded_sampling_follows_the_filtered_distribution() {
    let g = gpu();
    let mut r = rng();
    let vocab = 1000;
    let rows = 8192;
    // normal logits of sd 2 (Box-Muller): several ids carry over 2% in every setting below,
    // and top-p keeps a few dozen to a few hundred ids
    let base: Vec<f32> = (0..vocab)
        .map(|_| {
            let (u, v) = (r.random::<f64>().max(1e-12), r.random::<f64>());
            (2.0 * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    let logits: Vec<f32> = (0..rows).flat_map(|_| base.iter().cloned()).collect();
    for &(temp, top_k, top_p) in &[
        (1.0f32, 0u32, 1.0f32),
        (0.7, 3, 1.0),
        (1.0, 0, 0.5),
        (1.0, 0, 0.9),
        (1.3, 50, 0.9),
        (0.8, 20, 0.95),
    ] {
        let what = format!("T={temp} k={top_k} p={top_p}");
        let seed = r.random::<u32>();
        let p = SamplingParams {
            temperature: temp,
            top_k,
            top_p,
            seed,
        };
        // row i is draw 5 + i of its sequence
        let counters: Vec<u32> = (5..5 + rows as u32).collect();
        let got = sample_rows(&g, &logits, vocab, p, &counters);
        if top_k == 0 && top_p == 1.0 {
            assert_eq!(
                sample_rows(&g, &logits, vocab, p, &counters),
                got,
                "same seed, same draws"
            );
            // a draw depends on (seed, counter), not on the row it sits in
            let reversed: Vec<u32> = counters.iter().rev().cloned().collect();
            let mut moved = sample_rows(&g, &logits, vocab, p, &reversed);
            moved.reverse();
            assert_eq!(moved, got, "the same draws in other rows");
            let other = SamplingParams {
                seed: seed.wrapping_add(1),
                ..p
            };
            assert_ne!(
                sample_rows(&g, &logits, vocab, other, &counters),
                got,
                "another seed, other draws"
            );
        }
        let probs = allowed(&base, temp, top_k as usize, top_p);
        let mut counts = vec![0usize; vocab];
        for &t in &got {
            assert!(
                (t as usize) < vocab && probs[t as usize] > 0.0,
                "drew {t}, outside the allowed set ({what})"
            );
            counts[t as usize] += 1;
        }
        // the kept set: every id the reference keeps with 10+ expected draws was drawn
        // (a filter that keeps too few ids fails here), and none outside it (above)
        let kept = probs.iter().filter(|&&q| q > 0.0).count();
        let likely: Vec<usize> = (0..vocab)
            .filter(|&i| probs[i] * rows as f64 >= 10.0)
            .collect();
        let missing: Vec<&usize> = likely.iter().filter(|&&i| counts[i] == 0).collect();
        assert!(
            missing.is_empty(),
            "{what}: ids {missing:?} of the {kept} kept were never drawn"
        );
        // the whole distribution: Pearson's chi-square over binned ids
        let (stat, df) = chi_square(&counts, &probs, rows);
        let bound = chi_square_bound(df);
        let drawn = counts.iter().filter(|&&c| c > 0).count();
        eprintln!(
            "{what}: kept {kept} ids ({} likely, {drawn} drawn), chi-square {stat:.1} on {df} \
             degrees of freedom (bound {bound:.1})",
            likely.len()
        );
        assert!(
            stat <= bound,
            "{what}: chi-square {stat:.1} on {df} degrees of freedom is over {bound:.1}"
        );
    }
}

/// The chi-square check sees a sampler that keeps too few ids: draws from the reference
/// distribution of top-p 0.9 pass, draws from a top-p of 0.8 do not.
#[test]
fn chi_square_sees_a_top_p_that_filters_too_hard() {
    let mut r = rng();
    let base: Vec<f32> = (0..1000)
        .map(|i| ((i * 7919) % 1000) as f32 * 6e-3)
        .collect();
    let want = allowed(&base, 1.0, 0, 0.9);
    let draw = |probs: &[f64], r: &mut StdRng| -> Vec<usize> {
        let mut counts = vec![0usize; probs.len()];
        for _ in 0..8192 {
            let mut u = r.random::<f64>();
            let i = probs
                .iter()
                .position(|&p| {
                    u -= p;
                    u < 0.0
                })
                .unwrap_or_else(|| probs.iter().rposition(|&p| p > 0.0).unwrap());
            counts[i] += 1;
        }
        counts
    };
    let (fair, df) = chi_square(&draw(&want, &mut r), &want, 8192);
    assert!(fair <= chi_square_bound(df), "{fair} on {df}");
    let strict = allowed(&base, 1.0, 0, 0.8);
    let (stat, df) = chi_square(&draw(&strict, &mut r), &want, 8192);
    assert!(stat > chi_square_bound(df), "{stat} on {df}");
}

#[test]
fn a_buffer_over_the_binding_limit_is_a_clear_error() {
    let g = gpu();
    let too_big = g.max_binding() + 16;
    let err = g.storage("kv_cache", too_big).unwrap_err().to_string();
    assert!(err.contains("kv_cache") && err.contains("limit"), "{err}");
    // a matrix whose single row exceeds the limit cannot be split: also an error
    let cols = (g.max_binding() / 4 + 8) as usize;
    let cols = cols.div_ceil(8) * 8;
    let err = WeightMatrix::upload_split(&g, "wide", &[], 0, cols, StorageFormat::F32, 1)
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("one row of wide")),
        "{err:?}"
    );
}
