//! The GPU forward pass against the CPU reference (`model::cpu_reference`) on random-weight
//! models of every attention variant: MHA, GQA, MQA, qwen2 biases, qwen3 q/k norms,
//! sliding windows, tied and untied heads, llama-3 RoPE scaling, chunked prefill, and the
//! f16 storage paths.

mod common;

use common::{gpu, greedy_step, last_logits, max_rel_diff, WithConfig};
use headroom::gpu::StorageFormat;
use headroom::model::cpu_reference::CpuModel;
use headroom::model::gpu_model::{GpuModel, GpuModelOptions};
use headroom::model::synthetic::SyntheticModel;
use headroom::model::{Arch, Llama3RopeScaling, LongRope, ModelConfig, Variant, WeightSource};
use headroom::ops::sample::SamplingParams;

fn config(arch: Arch, heads: usize, kv_heads: usize, head_dim: usize, tied: bool) -> ModelConfig {
    ModelConfig {
        arch,
        vocab_size: 300,
        hidden_size: 96,
        intermediate_size: 160,
        num_layers: 3,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        longrope: None,
        max_position_embeddings: 512,
        tie_word_embeddings: tied,
        attention_bias: arch == Arch::Qwen2,
        qk_norm: arch == Arch::Qwen3,
        sliding_window: None,
        variant: Variant::of_arch(arch, 96),
    }
}

/// f32 weights and KV cache (the CPU reference's precision), chunks of 64 rows, blocks of
/// 16 positions, `context` positions.
fn f32_options(context: usize) -> GpuModelOptions {
    GpuModelOptions {
        quantized: false,
        quantize: None,
        weights: StorageFormat::F32,
        kv: StorageFormat::F32,
        context,
        max_chunk: 64,
        kv_block_size: 16,
    }
}

/// Prefill `prompt` (in chunks of `chunk`), then decode `extra` tokens, comparing the
/// last-position logits with the CPU model at every step.
fn compare(cfg: ModelConfig, weights: StorageFormat, kv: StorageFormat, chunk: usize, tol: f32) {
    compare_planted(cfg, weights, kv, chunk, tol, |_| {});
}

/// As [`compare`], with `plant` changing the config of the GPU model only (a planted bug
/// the comparison must catch).
fn compare_planted(
    cfg: ModelConfig,
    weights: StorageFormat,
    kv: StorageFormat,
    chunk: usize,
    tol: f32,
    plant: impl FnOnce(&mut ModelConfig),
) {
    let seed = common::seed();
    eprintln!(
        "{} heads {}/{} d{} tied {} seed {seed}",
        cfg.arch.name(),
        cfg.num_heads,
        cfg.num_kv_heads,
        cfg.head_dim,
        cfg.tie_word_embeddings
    );
    let src = SyntheticModel::new(cfg.clone(), seed).unwrap();
    let options = GpuModelOptions {
        quantized: false,
        quantize: None,
        weights,
        kv,
        context: 128,
        max_chunk: chunk,
        // block sizes that do not divide the prompt or the chunks
        kv_block_size: [16, 7, 5][chunk % 3],
    };
    let mut planted = cfg.clone();
    plant(&mut planted);
    compare_on(&src, planted, options, seed, tol);
}

/// The GPU model of `src` (its config replaced by `gpu_config`), built with `options`,
/// against the CPU reference of `src` at every position of a 70-token prompt and 6 decode
/// steps.
fn compare_on(
    src: &dyn WeightSource,
    gpu_config: ModelConfig,
    options: GpuModelOptions,
    seed: u64,
    tol: f32,
) {
    compare_on_context(gpu(), src, gpu_config, options, seed, tol)
}

/// `compare_on`, on context `context`.
fn compare_on_context(
    context: std::sync::Arc<headroom::gpu::GpuContext>,
    src: &dyn WeightSource,
    gpu_config: ModelConfig,
    options: GpuModelOptions,
    seed: u64,
    tol: f32,
) {
    let cfg = src.config().clone();
    let chunk = options.max_chunk;
    let mut cpu = CpuModel::new(src).unwrap();
    let gpu_src = WithConfig {
        inner: src,
        config: gpu_config,
    };
    let model = GpuModel::load(context, &gpu_src, options, &mut |_, _, _| {}).unwrap();
    let prompt: Vec<u32> = (0..70)
        .map(|i| (i * 37 + seed as u32 % 11) % cfg.vocab_size as u32)
        .collect();
    let mut cpu_logits = vec![];
    for (pos, &t) in prompt.iter().enumerate() {
        cpu_logits = cpu.forward(t, pos);
    }
    let mut pos = 0;
    let mut next = 0;
    for part in prompt.chunks(chunk) {
        next = greedy_step(&model, 0, part, pos);
        pos += part.len();
    }
    for step in 0..6 {
        let gpu_logits = last_logits(&model);
        let d = max_rel_diff(&gpu_logits, &cpu_logits);
        assert!(
            d <= tol,
            "position {pos}: logits differ by {d} relative (tolerance {tol})"
        );
        let argmax = cpu_logits
            .iter()
            .enumerate()
            .fold(0, |b, (i, &v)| if v > cpu_logits[b] { i } else { b });
        if next as usize != argmax {
            // only a near-tie (within the tolerance) may pick another token; then the
            // sequences part ways and the comparison ends
            let scale = cpu_logits.iter().fold(0f32, |m, v| m.max(v.abs()));
            let margin = cpu_logits[argmax] - cpu_logits[next as usize];
            assert!(
                margin <= 2.0 * tol * scale,
                "position {pos} (step {step}): GPU chose {next}, CPU {argmax} (margin {margin})"
            );
            return;
        }
        cpu_logits = cpu.forward(next, pos);
        next = greedy_step(&model, 0, &[next], pos);
        pos += 1;
    }
}

#[test]
fn every_attention_variant_matches_the_cpu_reference() {
    for &(arch, heads, kv, d, tied) in &[
        (Arch::Llama, 4, 4, 24, true),  // MHA
        (Arch::Llama, 6, 2, 16, false), // GQA-3
        (Arch::Llama, 8, 1, 16, true),  // MQA
        (Arch::Qwen2, 4, 2, 32, false), // qwen2: q/k/v biases
        (Arch::Llama, 2, 1, 64, true),  // wider heads than hidden / heads
    ] {
        compare(
            config(arch, heads, kv, d, tied),
            StorageFormat::F32,
            StorageFormat::F32,
            256,
            2e-4,
        );
    }
}

#[test]
fn chunked_prefill_and_decode_kernels_agree_with_one_pass() {
    // chunks of 3 exercise the decode matmul with several rows; 32 the tiled one
    for chunk in [1, 3, 32] {
        compare(
            config(Arch::Llama, 4, 2, 24, true),
            StorageFormat::F32,
            StorageFormat::F32,
            chunk,
            2e-4,
        );
    }
}

/// Llama-3 RoPE scaling with an original context of 32, so 70 positions cross every band.
fn llama3_config() -> ModelConfig {
    let mut cfg = config(Arch::Llama, 4, 2, 24, false);
    cfg.rope_theta = 500000.0;
    cfg.rope_scaling = Some(Llama3RopeScaling {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 32,
    });
    cfg
}

#[test]
fn llama3_rope_scaling_matches_the_cpu_reference() {
    compare(
        llama3_config(),
        StorageFormat::F32,
        StorageFormat::F32,
        256,
        2e-4,
    );
}

#[test]
#[should_panic(expected = "logits differ by")]
fn planted_dropped_rope_scaling_is_caught() {
    compare_planted(
        llama3_config(),
        StorageFormat::F32,
        StorageFormat::F32,
        256,
        2e-4,
        |c| c.rope_scaling = None,
    );
}

/// Qwen3: every query and key head RMS-normalised before RoPE, GQA, head_dim apart from
/// hidden / heads.
#[test]
fn qwen3_head_norms_match_the_cpu_reference() {
    compare(
        config(Arch::Qwen3, 4, 2, 32, false),
        StorageFormat::F32,
        StorageFormat::F32,
        256,
        2e-4,
    );
}

#[test]
#[should_panic(expected = "logits differ by")]
fn planted_dropped_head_norms_are_caught() {
    compare_planted(
        config(Arch::Qwen3, 4, 2, 32, false),
        StorageFormat::F32,
        StorageFormat::F32,
        256,
        2e-4,
        |c| c.qk_norm = false,
    );
}

/// Phi-3's LongRoPE on a cache of 128 positions past an original context of 32: the long
/// factors, and the attention factor on every rotated query and key.
fn longrope_config() -> ModelConfig {
    let mut cfg = config(Arch::Phi3, 4, 2, 16, false);
    cfg.longrope = Some(LongRope {
        short_factor: vec![1.0, 1.1, 1.2, 1.4, 1.7, 2.0, 2.5, 3.0],
        long_factor: vec![1.0, 1.5, 2.5, 4.0, 6.0, 9.0, 12.0, 16.0],
        original_max_position_embeddings: 32,
        attention_factor: 1.2,
    });
    cfg.max_position_embeddings = 128;
    cfg
}

#[test]
fn phi3_longrope_matches_the_cpu_reference() {
    compare(
        longrope_config(),
        StorageFormat::F32,
        StorageFormat::F32,
        256,
        2e-4,
    );
}

#[test]
#[should_panic(expected = "logits differ by")]
fn planted_dropped_longrope_attention_factor_is_caught() {
    compare_planted(
        longrope_config(),
        StorageFormat::F32,
        StorageFormat::F32,
        256,
        2e-4,
        |c| c.longrope.as_mut().unwrap().attention_factor = 1.0,
    );
}

/// Mistral's sliding window, 19 positions against a 70-token prompt: in one prefill pass
/// (query tiles where the adapter takes them), in chunks of 3 (the decode kernel over
/// several rows) and of 32, then decoding.
fn windowed_config() -> ModelConfig {
    let mut cfg = config(Arch::Llama, 6, 2, 16, false);
    cfg.sliding_window = Some(19);
    cfg
}

#[test]
fn sliding_window_matches_the_cpu_reference() {
    for chunk in [256, 3, 32] {
        compare(
            windowed_config(),
            StorageFormat::F32,
            StorageFormat::F32,
            chunk,
            2e-4,
        );
    }
}

#[test]
#[should_panic(expected = "logits differ by")]
fn planted_dropped_window_is_caught() {
    compare_planted(
        windowed_config(),
        StorageFormat::F32,
        StorageFormat::F32,
        256,
        2e-4,
        |c| c.sliding_window = None,
    );
}

/// Gemma 2's block on a random model: GeGLU, post-norms, embeddings times sqrt(hidden),
/// its own query scale, attention scores capped at 2 (scores here reach past it) and
/// logits at 10, and a window of 19 on layers 0 and 2 of 3 (every 2nd layer global).
fn gemma2_config() -> ModelConfig {
    let mut cfg = config(Arch::Gemma2, 6, 2, 16, true);
    cfg.sliding_window = Some(19);
    cfg.variant.attention_scale = Some(0.4);
    cfg.variant.attn_softcap = Some(2.0);
    cfg.variant.final_softcap = Some(10.0);
    cfg
}

/// Gemma 3's: gemma2's block without the caps, q/k norms, and the windowed layers on a RoPE
/// base of their own while the global layer's is another, linearly scaled.
fn gemma3_config() -> ModelConfig {
    let mut cfg = config(Arch::Gemma3, 6, 2, 16, true);
    cfg.qk_norm = true;
    cfg.sliding_window = Some(19);
    cfg.variant.global_layer_period = Some(2);
    cfg.rope_theta = 1e6;
    cfg.variant.rope_theta_local = Some(100.0);
    cfg.variant.rope_linear_factor = Some(4.0);
    cfg
}

#[test]
fn gemma_blocks_match_the_cpu_reference() {
    for chunk in [256, 3] {
        compare(
            gemma2_config(),
            StorageFormat::F32,
            StorageFormat::F32,
            chunk,
            2e-4,
        );
        compare(
            gemma3_config(),
            StorageFormat::F32,
            StorageFormat::F32,
            chunk,
            2e-4,
        );
    }
}

/// Each of gemma's departures, dropped from the GPU model alone, is caught.
#[test]
fn planted_gemma_bugs_are_caught() {
    use headroom::model::Activation;
    type Plant = fn(&mut ModelConfig);
    let plants: [(&str, ModelConfig, Plant); 7] = [
        ("silu for gelu", gemma2_config(), |c| {
            c.variant.activation = Activation::Silu
        }),
        ("no post-norms", gemma2_config(), |c| {
            c.variant.post_norms = false
        }),
        ("no embedding scale", gemma2_config(), |c| {
            c.variant.embedding_scale = None
        }),
        ("no attention cap", gemma2_config(), |c| {
            c.variant.attn_softcap = None
        }),
        ("no final cap", gemma2_config(), |c| {
            c.variant.final_softcap = None
        }),
        ("window on every layer", gemma2_config(), |c| {
            c.variant.global_layer_period = None
        }),
        ("one RoPE base", gemma3_config(), |c| {
            c.variant.rope_theta_local = None
        }),
    ];
    for (what, cfg, plant) in plants {
        let caught = std::panic::catch_unwind(|| {
            compare_planted(
                cfg,
                StorageFormat::F32,
                StorageFormat::F32,
                256,
                2e-4,
                plant,
            )
        })
        .expect_err(&format!("planted '{what}' was not caught"));
        let message = caught
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| caught.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        assert!(
            message.contains("logits differ by"),
            "planted '{what}' failed otherwise: {message}"
        );
    }
}

#[test]
fn f16_storage_stays_close_to_the_cpu_reference() {
    // f16 weights and KV: relative rounding 2^-11 per value, accumulated over the layers
    compare(
        config(Arch::Llama, 6, 2, 16, true),
        StorageFormat::F16,
        StorageFormat::F16,
        256,
        2e-2,
    );
}

/// A reported step captures the same attention weights as the CPU reference's softmax,
/// samples what a plain step samples, declares the traffic its kernels declare, and (with
/// timestamps) times every kernel family.
#[test]
fn reported_step_captures_the_reference_attention_and_times_its_kernels() {
    use headroom::model::gpu_model::{PartLogits, SequencePart, StepProbe};
    let seed = common::seed();
    eprintln!("seed {seed}");
    let cfg = config(Arch::Llama, 6, 2, 16, false);
    let src = SyntheticModel::new(cfg.clone(), seed).unwrap();
    let mut cpu = CpuModel::new(&src).unwrap();
    let options = f32_options(128);
    let model = GpuModel::load(gpu(), &src, options, &mut |_, _, _| {}).unwrap();
    let prompt: Vec<u32> = (0..41)
        .map(|i| (i * 53 + seed as u32 % 7) % cfg.vocab_size as u32)
        .collect();
    for (pos, &t) in prompt.iter().enumerate() {
        cpu.forward(t, pos);
    }
    let table: Vec<u32> = (0..8).collect();
    let part = [SequencePart {
        tokens: &prompt,
        pos0: 0,
        table: &table,
        sample: Some((SamplingParams::default(), 0)),
        logits: PartLogits::None,
    }];
    let plain = model.forward(&part).unwrap();
    let report = model
        .forward_report(
            &part,
            StepProbe {
                kernel_times: true,
                attention_of: Some(0),
            },
        )
        .unwrap();
    assert_eq!(report.sampled, plain, "the probe changed the sampled token");

    let probe = report.attention.expect("attention captured");
    assert_eq!(
        (probe.layers, probe.heads, probe.kv_heads, probe.positions),
        (3, 6, 2, prompt.len())
    );
    let reference = cpu.last_attention();
    assert_eq!(probe.weights.len(), reference.len());
    let worst = probe
        .weights
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "attention weights differ by {worst}");
    for l in 0..3 {
        for h in 0..6 {
            let sum: f32 = probe.head(l, h).iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "layer {l} head {h} sums to {sum}");
        }
    }

    let lens: Vec<u32> = (1..=prompt.len() as u32).collect();
    let declared = model.step_cost(&lens, 1);
    assert_eq!(report.cost, declared);
    assert!(declared.weight_bytes > 0 && declared.kv_bytes > 0);
    assert_eq!(
        declared.weight_bytes + declared.kv_bytes + declared.activation_bytes(),
        declared.bytes()
    );
    if model.gpu.features.timestamps {
        let total = report.gpu_s.expect("timestamps give the step's GPU time");
        let families: Vec<&str> = report.kernels.iter().map(|k| k.family).collect();
        // a matmul and the RMSNorm or SiLU·mul before it are one op (one family), fused
        // or not (`ops::matmul_prologue`)
        for f in [
            "embed",
            "rmsnorm",
            "rmsnorm_matmul",
            "matmul",
            "rope_kv",
            "attention",
            "silu_mul_matmul",
            "sample",
        ] {
            assert!(families.contains(&f), "{f} missing from {families:?}");
        }
        let sum: f64 = report.kernels.iter().map(|k| k.seconds).sum();
        assert!((sum - total).abs() <= 1e-9 * total.max(1.0) + 1e-12);
        let bytes: u64 = report.kernels.iter().map(|k| k.bytes).sum();
        assert_eq!(bytes, declared.bytes());
    } else {
        assert!(report.gpu_s.is_none() && report.kernels.is_empty());
    }
}

/// A small llama whose every row is a whole number of `ty` blocks: head dim 32, hidden
/// 128, FFN 160 for the 32-value types; head dim 64, hidden and FFN 256 for the K-quants'
/// 256.
fn block_config(ty: headroom::formats::quant::GgmlType) -> ModelConfig {
    let mut cfg = match ty.block_size() {
        32 => config(Arch::Llama, 4, 2, 32, false),
        _ => config(Arch::Llama, 4, 2, 64, false),
    };
    cfg.hidden_size = 128.max(ty.block_size());
    cfg.intermediate_size = cfg.intermediate_size.max(ty.block_size());
    cfg
}

/// `--quantize`: a Hugging Face model's f32 matrices quantized at load (GGML's schemes,
/// `formats::quant::quantize`, checked against python `gguf` in tests/quant.rs) make the
/// same blocks as a GGUF written in that type from the same weights, whose blocks the test
/// above checks against the CPU reference: the same bytes on the GPU by format and the same
/// logits, prompt and decode steps (x in f32 and on the default 8-bit decode path alike).
#[test]
fn safetensors_quantized_at_load_match_a_gguf_of_the_same_blocks() {
    use headroom::formats::quant::GgmlType;
    use headroom::gpu::quant_layout::QuantType;
    use headroom::model::gguf_model::GgufModel;
    use headroom::model::hf::HfModel;
    use headroom::model::synthetic::{write_gguf, write_hf_dir, GgufWriteOptions, HfDtype};
    let seed = common::seed();
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K] {
        let cfg = block_config(ty);
        let src = SyntheticModel::new(cfg.clone(), seed).unwrap();
        let tmp = std::env::temp_dir().join(format!(
            "headroom-quantize-{}-{}",
            std::process::id(),
            ty.name()
        ));
        let gguf_path = tmp.with_extension("gguf");
        let opts = GgufWriteOptions {
            matrix_type: ty,
            embedding_type: ty,
            ..Default::default()
        };
        write_gguf(&gguf_path, &src, &opts).unwrap();
        write_hf_dir(&tmp, &src, HfDtype::F32, 1).unwrap();
        let gguf = GgufModel::open(&gguf_path).unwrap();
        let hf = HfModel::open(&tmp).unwrap();
        let options = |quantize: Option<QuantType>| GpuModelOptions {
            weights: StorageFormat::F32,
            quantized: true,
            quantize,
            kv: StorageFormat::F32,
            context: 128,
            max_chunk: 32,
            kv_block_size: 16,
        };
        let from_gguf = GpuModel::load(gpu(), &gguf, options(None), &mut |_, _, _| {}).unwrap();
        let q = QuantType::from_ggml(ty).unwrap();
        let from_hf = GpuModel::load(gpu(), &hf, options(Some(q)), &mut |_, _, _| {}).unwrap();
        assert_eq!(
            from_hf.weight_bytes_by_format,
            from_gguf.weight_bytes_by_format,
            "{}: bytes on the GPU by format",
            ty.name()
        );
        assert!(from_hf
            .weight_bytes_by_format
            .iter()
            .any(|(f, b)| *f == ty.name() && *b > 0));
        let prompt: Vec<u32> = (0..40)
            .map(|i| (i * 7 + 3) % cfg.vocab_size as u32)
            .collect();
        let mut next = [0u32; 2];
        for (i, model) in [&from_gguf, &from_hf].into_iter().enumerate() {
            next[i] = greedy_step(model, 0, &prompt[..32], 0);
            next[i] = greedy_step(model, 0, &prompt[32..], 32);
        }
        assert_eq!(next[0], next[1], "{}: first sampled token", ty.name());
        let want = last_logits(&from_gguf);
        let d = max_rel_diff(&last_logits(&from_hf), &want);
        assert!(d <= 1e-6, "{}: logits differ by {d} relative", ty.name());
        // three decode steps (the 8-bit path where the adapter has it)
        let mut tok = next[0];
        for pos in 40..43 {
            let a = greedy_step(&from_gguf, 0, &[tok], pos);
            let b = greedy_step(&from_hf, 0, &[tok], pos);
            let d = max_rel_diff(&last_logits(&from_hf), &last_logits(&from_gguf));
            assert!(
                d <= 1e-6 && a == b,
                "{} at {pos}: {a} vs {b}, logits {d}",
                ty.name()
            );
            tok = a;
        }
        std::fs::remove_file(&gguf_path).ok();
        std::fs::remove_dir_all(&tmp).ok();
    }
}

/// A GGUF whose matrices and embedding are Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K or
/// Q6_K blocks,
/// run with the blocks
/// kept on the GPU (the q/k rows un-permuted block by block), against the CPU reference on
/// the same file's dequantized values: the weights are the same numbers, so with x in f32
/// the arithmetic agrees as closely as on float weights (and within x's 8-bit rounding on
/// the default decode path).
#[test]
fn quantized_blocks_on_the_gpu_match_the_cpu_reference() {
    use headroom::formats::quant::GgmlType;
    use headroom::model::gguf_model::GgufModel;
    use headroom::model::synthetic::{write_gguf, GgufWriteOptions};
    let seed = common::seed();
    let exact = headroom::gpu::GpuContext::new_blocking(&headroom::gpu::GpuOptions {
        no_q8_dot: true,
        ..Default::default()
    })
    .unwrap();
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        let cfg = block_config(ty);
        let src = SyntheticModel::new(cfg.clone(), seed).unwrap();
        let path = std::env::temp_dir().join(format!(
            "headroom-quant-{}-{}.gguf",
            std::process::id(),
            ty.name()
        ));
        let opts = GgufWriteOptions {
            matrix_type: ty,
            embedding_type: ty,
            ..Default::default()
        };
        write_gguf(&path, &src, &opts).unwrap();
        let gguf = GgufModel::open(&path).unwrap();
        let options = GpuModelOptions {
            weights: StorageFormat::F32,
            quantized: true,
            quantize: None,
            kv: StorageFormat::F32,
            context: 128,
            max_chunk: 32,
            kv_block_size: 16,
        };
        let model = GpuModel::load(gpu(), &gguf, options.clone(), &mut |_, _, _| {}).unwrap();
        let quant_bytes: u64 = model
            .weight_bytes_by_format
            .iter()
            .filter(|(f, _)| *f == ty.name())
            .map(|(_, b)| b)
            .sum();
        assert!(
            quant_bytes > 0
                && model
                    .weight_bytes_by_format
                    .iter()
                    .all(|(f, _)| *f == ty.name() || *f == "f32"),
            "{}: {:?}",
            ty.name(),
            model.weight_bytes_by_format
        );
        drop(model);
        eprintln!("{}", ty.name());
        // x in f32: the same numbers as the CPU's, so f32 agreement
        compare_on_context(
            exact.clone(),
            &gguf,
            cfg.clone(),
            options.clone(),
            seed,
            2e-4,
        );
        // the default decode path rounds x to 8-bit blocks for the Q4_0, Q4_1 and Q8_0
        // matmuls of chunks of up to 8 rows (here the prompt's last chunk and every step):
        // lavapipe, 2026-11-30, at most 0.026 relative over four seeds
        let tol = if ty == GgmlType::Q4_0 || ty == GgmlType::Q4_1 || ty == GgmlType::Q8_0 {
            0.05
        } else {
            2e-4
        };
        compare_on(&gguf, cfg, options, seed, tol);
        std::fs::remove_file(&path).ok();
    }
}

/// A reported step brings back every row's logits of a part that asks for all of them
/// (a prompt's log-probabilities), the sampled row's of a part that asks for the last,
/// none of the others', each equal to the CPU reference; and it samples what a plain step
/// samples.
#[test]
fn reported_step_returns_the_logits_rows_each_part_asks_for() {
    use headroom::model::gpu_model::{PartLogits, SequencePart, StepProbe};
    let seed = common::seed();
    let cfg = config(Arch::Llama, 6, 2, 16, false);
    let src = SyntheticModel::new(cfg.clone(), seed).unwrap();
    let mut cpu = CpuModel::new(&src).unwrap();
    let options = f32_options(128);
    let model = headroom::gpu::block_on(GpuModel::load_paged(
        gpu(),
        &src,
        options,
        16,
        32,
        &mut |_, _, _| {},
    ))
    .unwrap();
    let prompt = |len: u32, k: u32| -> Vec<u32> {
        (0..len)
            .map(|i| (i * 37 + k * 11 + seed as u32 % 13) % cfg.vocab_size as u32)
            .collect()
    };
    let prompts = [prompt(19, 1), prompt(7, 2), prompt(5, 3), prompt(9, 5)];
    let tables: Vec<Vec<u32>> = (0..4).map(|s| (s * 2..s * 2 + 2).collect()).collect();
    let asks = [
        PartLogits::All,
        PartLogits::Last,
        PartLogits::None,
        PartLogits::Verify,
    ];
    let parts: Vec<SequencePart> = (0..4)
        .map(|s| SequencePart {
            tokens: &prompts[s],
            pos0: 0,
            table: &tables[s],
            sample: Some((SamplingParams::default(), 0)),
            logits: asks[s],
        })
        .collect();
    let report = model.forward_report(&parts, StepProbe::default()).unwrap();
    let without_logits: Vec<SequencePart> = parts
        .iter()
        .map(|p| SequencePart {
            logits: PartLogits::None,
            ..*p
        })
        .collect();
    let plain = model.forward(&without_logits).unwrap();
    assert_eq!(report.sampled, plain);
    // a chain cannot bring back every row's logits
    assert!(model.forward(&parts).is_err());
    let v = cfg.vocab_size;
    for s in 0..4 {
        cpu.reset();
        let reference: Vec<Vec<f32>> = prompts[s]
            .iter()
            .enumerate()
            .map(|(pos, &t)| cpu.forward(t, pos))
            .collect();
        let rows = &report.logits[s];
        let wanted: &[Vec<f32>] = match asks[s] {
            PartLogits::All => &reference,
            PartLogits::Last => &reference[reference.len() - 1..],
            PartLogits::None | PartLogits::Verify => &[],
        };
        // a verified part's rows each draw the most likely token after them
        let draws: Vec<u32> = match asks[s] {
            PartLogits::Verify => reference.iter().map(|r| common::argmax(r)).collect(),
            _ => Vec::new(),
        };
        assert_eq!(report.row_draws[s], draws, "part {s}");
        assert_eq!(rows.len(), wanted.len() * v, "part {s}");
        for (r, want) in wanted.iter().enumerate() {
            let got = &rows[r * v..(r + 1) * v];
            let diff = max_rel_diff(got, want);
            assert!(diff < 1e-4, "part {s} row {r}: logits differ by {diff}");
        }
        assert_eq!(
            report.sampled[s],
            common::argmax(reference.last().unwrap()),
            "part {s}"
        );
    }
    // more logits rows than a step holds (32 here) are refused
    let long = prompt(20, 4);
    let table: Vec<u32> = (10..12).collect();
    let too_many = [
        SequencePart {
            tokens: &long,
            pos0: 0,
            table: &table,
            sample: None,
            logits: PartLogits::All,
        },
        parts[0],
    ];
    let e = model
        .forward_report(&too_many, StepProbe::default())
        .expect_err("refused");
    assert!(e.to_string().contains("rows with logits"), "{e}");
}

/// Speculative sampling: a row that verifies a drafted token keeps it with its probability
/// and otherwise draws from the rest renormalized, so its draws follow the model's own
/// distribution (temperature and top-p applied). Chi-square over 2 000 draws with fixed
/// seeds against the CPU reference's distribution; a sampler that kept every draft, or
/// never kept it, would fail by far.
#[test]
fn a_verified_draft_row_draws_with_the_models_distribution() {
    use headroom::model::gpu_model::{PartLogits, SequencePart, StepProbe};
    let cfg = config(Arch::Llama, 6, 2, 16, false);
    let src = SyntheticModel::new(cfg.clone(), 11).unwrap();
    let mut cpu = CpuModel::new(&src).unwrap();
    let options = f32_options(64);
    let parts_per_step = 10;
    let model = headroom::gpu::block_on(GpuModel::load_paged(
        gpu(),
        &src,
        options,
        parts_per_step,
        64,
        &mut |_, _, _| {},
    ))
    .unwrap();
    let context: Vec<u32> = vec![17, 250, 3, 99, 120];
    let logits = context
        .iter()
        .enumerate()
        .map(|(pos, &t)| cpu.forward(t, pos))
        .last()
        .unwrap();
    // the distribution at temperature 1 with top-p 0.95, as the sampler makes it
    let (temperature, top_p) = (1.0f32, 0.95f32);
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let w: Vec<f64> = logits
        .iter()
        .map(|&l| (((l - max) / temperature) as f64).exp())
        .collect();
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by(|&a, &b| w[b].total_cmp(&w[a]));
    let total: f64 = w.iter().sum();
    let (mut kept, mut mass) = (Vec::new(), 0.0);
    for &i in &order {
        if mass >= top_p as f64 * total {
            break;
        }
        kept.push(i);
        mass += w[i];
    }
    let p = |i: usize| match kept.contains(&i) {
        true => w[i] / mass,
        false => 0.0,
    };
    // the draft: the second most likely token, so that it stands only sometimes
    let draft = order[1] as u32;
    assert!(
        (0.02..0.6).contains(&p(draft as usize)),
        "p(draft) = {}",
        p(draft as usize)
    );
    let mut tokens = context.clone();
    tokens.push(draft);
    let tables: Vec<[u32; 1]> = (0..parts_per_step as u32).map(|b| [b]).collect();
    let draws = 2000;
    let mut counts = vec![0usize; cfg.vocab_size];
    for step in 0..draws / parts_per_step {
        let parts: Vec<SequencePart> = tables
            .iter()
            .enumerate()
            .map(|(k, table)| SequencePart {
                tokens: &tokens,
                pos0: 0,
                table,
                sample: Some((
                    SamplingParams {
                        temperature,
                        top_k: 0,
                        top_p,
                        seed: (step * parts_per_step + k) as u32,
                    },
                    0,
                )),
                logits: PartLogits::Verify,
            })
            .collect();
        let report = model.forward_report(&parts, StepProbe::default()).unwrap();
        for row_draws in &report.row_draws {
            // the context's last row verifies the draft
            counts[row_draws[context.len() - 1] as usize] += 1;
        }
    }
    // chi-square over the tokens expected at least 5 times, the rest pooled
    let n = draws as f64;
    let (mut chi2, mut bins, mut rest_obs, mut rest_exp) = (0.0, 0, 0.0, 0.0);
    for (i, &c) in counts.iter().enumerate() {
        let e = p(i) * n;
        if e >= 5.0 {
            chi2 += (c as f64 - e).powi(2) / e;
            bins += 1;
        } else {
            assert!(e > 0.0 || c == 0, "token {i} drawn {c} times outside top-p");
            rest_obs += c as f64;
            rest_exp += e;
        }
    }
    if rest_exp > 0.0 {
        chi2 += (rest_obs - rest_exp).powi(2) / rest_exp;
        bins += 1;
    }
    let df = (bins - 1) as f64;
    // the 0.1% critical value (Wilson-Hilferty)
    let z = 3.09;
    let critical = df * (1.0 - 2.0 / (9.0 * df) + z * (2.0 / (9.0 * df)).sqrt()).powi(3);
    eprintln!(
        "draft kept {} of {draws} (p = {:.3}); chi-square {chi2:.1} over {df} degrees of freedom, critical {critical:.1}",
        counts[draft as usize],
        p(draft as usize)
    );
    assert!(chi2 < critical, "chi-square {chi2:.1} >= {critical:.1}");
}

/// Speculative decoding with drafts from a draft model (`engine::draft_model`): greedy
/// output is plain decoding's whatever the drafts are. A draft model of the target's own
/// weights is confirmed nearly always; one of other weights and another shape (the same
/// vocabulary) less often, and the output is the same.
#[test]
fn a_draft_model_leaves_greedy_output_unchanged() {
    use headroom::engine::draft_model::DraftModel;
    use headroom::engine::{generate, generate_drafted, GenerateRequest};
    let target_src = SyntheticModel::new(config(Arch::Llama, 6, 2, 16, false), 3).unwrap();
    let mut other_cfg = config(Arch::Qwen3, 4, 1, 16, true);
    other_cfg.num_layers = 2;
    let other_src = SyntheticModel::new(other_cfg, 4).unwrap();
    let load = |src: &dyn WeightSource| {
        GpuModel::load(gpu(), src, f32_options(160), &mut |_, _, _| {}).unwrap()
    };
    let (target, same, other) = (load(&target_src), load(&target_src), load(&other_src));
    let req = GenerateRequest {
        prompt_ids: (0..23).map(|i| (i * 31 + 7) % 300).collect(),
        max_tokens: 60,
        sampling: SamplingParams::default(),
        stop_ids: vec![],
        draft_tokens: 0,
    };
    let plain = generate(&target, &req, &mut |_| true).unwrap();
    let spec = GenerateRequest {
        draft_tokens: 5,
        ..req
    };
    let mut rates = Vec::new();
    for (what, draft) in [("same weights", &same), ("other weights", &other)] {
        let mut drafter = DraftModel::new(draft, &target).unwrap();
        let out = generate_drafted(&target, Some(&mut drafter), &spec, &mut |_| true).unwrap();
        assert_eq!(out.ids, plain.ids, "{what}: the greedy ids");
        let st = &out.stats;
        assert!(st.drafted_tokens > 0, "{what}: nothing drafted");
        let rate = st.accepted_tokens as f64 / st.drafted_tokens as f64;
        eprintln!(
            "{what}: {} of {} drafts confirmed",
            st.accepted_tokens, st.drafted_tokens
        );
        rates.push(rate);
    }
    assert!(
        rates[0] >= 0.9,
        "its own weights confirmed only {:.2}",
        rates[0]
    );
    assert!(rates[1] < rates[0], "acceptance {rates:?}");
}

/// A draft model reused along a sequence (its cache kept where the sequence still holds
/// its tokens, rejected drafts rolled back) drafts what a fresh one drafts from the whole
/// sequence: after confirmations, a rejection, and a sequence cut back before its cache.
#[test]
fn a_draft_model_s_cache_follows_the_sequence() {
    use headroom::engine::draft_model::DraftModel;
    let src = SyntheticModel::new(config(Arch::Llama, 6, 2, 16, false), 5).unwrap();
    let load = || GpuModel::load(gpu(), &src, f32_options(128), &mut |_, _, _| {}).unwrap();
    let (target, reused_model, fresh_model) = (load(), load(), load());
    let mut reused = DraftModel::new(&reused_model, &target).unwrap();
    let mut known: Vec<u32> = (0..19).map(|i| (i * 13 + 5) % 300).collect();
    for round in 0..6 {
        let got = reused.draft(&known, 4).unwrap();
        let mut fresh = DraftModel::new(&fresh_model, &target).unwrap();
        assert_eq!(got, fresh.draft(&known, 4).unwrap(), "round {round}");
        assert_eq!(got.len(), 4);
        match round % 3 {
            // two drafts confirmed and the target's own next token
            0 => known.extend(got[..2].iter().copied().chain([(got[2] + 1) % 300])),
            // the first draft rejected
            1 => known.push((got[0] + 7) % 300),
            // the sequence cut back before what the cache holds, then a new token
            _ => {
                known.truncate(known.len() - 5);
                known.push(42);
            }
        }
    }
}

/// A chain whose first step prefills several tokens (its last row draws the first id)
/// and decodes after it gives the ids of the prefill's forward pass followed by a chain of
/// decode steps, and the same logits after.
#[test]
fn a_chain_may_start_with_a_prefill_chunk() {
    use headroom::model::gpu_model::{PartLogits, SequencePart};
    let src = SyntheticModel::new(config(Arch::Llama, 6, 2, 16, false), 9).unwrap();
    let load = || GpuModel::load(gpu(), &src, f32_options(64), &mut |_, _, _| {}).unwrap();
    let (a, b) = (load(), load());
    let prompt: Vec<u32> = (0..9).map(|i| (i * 41 + 3) % 300).collect();
    let chain = |model: &GpuModel, tokens: &[u32], pos0: usize, steps: usize| -> Vec<u32> {
        let p = SequencePart {
            tokens,
            pos0,
            table: model.sequence_table(0).unwrap(),
            sample: Some((SamplingParams::default(), 0)),
            logits: PartLogits::None,
        };
        model.decode_chain(&[p], steps).unwrap().concat()
    };
    // a: the prefill alone, then a chain of 5 decode steps
    let mut want = chain(&a, &prompt, 0, 1);
    let rest = chain(&a, &want, prompt.len(), 5);
    want.extend(rest);
    // b: one chain of 6 steps starting with the prefill
    let got = chain(&b, &prompt, 0, 6);
    assert_eq!(got, want);
    assert_eq!(got.len(), 6);
}
