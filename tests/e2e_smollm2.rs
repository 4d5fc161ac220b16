//! End to end on the real default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against the
//! llama.cpp reference in fixtures/smollm2 (made by scripts/make-fixtures.py): prompt
//! token ids, greedy continuations and the logits after each prompt.

mod common;

use common::{default_model, fused_gpu, gpu, greedy_step, last_logits, WithConfig};
use headroom::engine;
use headroom::gpu::{GpuContext, GpuOptions, StorageFormat};
use headroom::model::gpu_model::{GpuModel, GpuModelOptions};
use headroom::ops::sample::SamplingParams;
use headroom::tokenizer::ChatMessage;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

#[derive(Deserialize)]
struct Reference {
    prompts: Vec<RefPrompt>,
}

#[derive(Deserialize)]
struct RefPrompt {
    name: String,
    text: String,
    prompt_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    first_logits_file: String,
    /// per generated token: the logit of the chosen id, and of the runner-up
    chosen_logits: Vec<f32>,
    runner_up_ids: Vec<u32>,
    /// chosen minus runner-up
    margins: Vec<f64>,
}

#[derive(Deserialize)]
struct PromptSpec {
    name: String,
    kind: String,
    #[serde(default)]
    messages: Vec<ChatMessage>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/smollm2")
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixtures().join("reference.json"))
        .expect("fixtures/smollm2/reference.json");
    serde_json::from_str(&text).expect("reference.json parses")
}

fn read_logits(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixtures().join(name)).expect("logits fixture");
    bytemuck::cast_slice(&bytes).to_vec()
}

#[test]
fn prompt_token_ids_match_llama_cpp() {
    let Some(path) = default_model() else { return };
    let files = engine::open(&path).unwrap();
    let tok = &files.tokenizer;
    let specs: Vec<PromptSpec> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("prompts.json")).unwrap())
            .unwrap();
    let reference = reference();
    assert!(reference.prompts.len() >= 5);
    assert!(
        reference.prompts.iter().any(|p| p.prompt_ids.len() >= 500),
        "a prompt of 500+ tokens"
    );
    for p in &reference.prompts {
        let spec = specs
            .iter()
            .find(|s| s.name == p.name)
            .expect("prompt spec");
        if spec.kind == "chat" {
            // our chat template rendering gives the same text as jinja2 did
            assert_eq!(
                tok.apply_chat(&spec.messages, true).unwrap(),
                p.text,
                "{}: chat template",
                p.name
            );
        }
        let ids = tok.encode(&p.text, true).unwrap();
        assert_eq!(ids, p.prompt_ids, "{}: prompt token ids", p.name);
    }
}

/// How far headroom's logits may be from llama.cpp's: just above what lavapipe measures
/// (see the tests below), far below what a wrong epsilon, scale or position moves them.
#[derive(Clone, Copy, Debug)]
struct Tolerance {
    /// largest |logit - reference| over all 49 152 logits after the prompt
    first_logits: f32,
    /// largest |logit - reference| of the chosen and runner-up ids at every decode step
    step_logits: f32,
}

/// A context whose decode matmuls keep x in f32 for quantized weights.
fn exact_gpu() -> Arc<GpuContext> {
    static EXACT: OnceLock<Arc<GpuContext>> = OnceLock::new();
    EXACT
        .get_or_init(|| {
            GpuContext::new_blocking(&GpuOptions {
                no_q8_dot: true,
                no_coopmat: true,
                ..Default::default()
            })
            .unwrap()
        })
        .clone()
}

/// How the run stores the weights.
#[derive(Clone, Copy, Debug)]
enum Weights {
    Float(StorageFormat),
    /// the file's Q4_1 blocks as stored (the rest f16), x kept in f32 at decode
    /// (`GpuOptions::no_q8_dot`)
    Native,
    /// the same blocks, meeting x as 8-bit blocks in integer dot products at decode where
    /// the adapter has subgroups, RMSNorm and SiLU·mul inside those matmuls (the engine's
    /// default on GPUs; llama.cpp's GPU backends do the same)
    NativeQ8Dot,
    /// as NativeQ8Dot, with every prefill matmul on the matrix units (x and the weights
    /// rounded to f16 on the way in), where the adapter has cooperative matrices
    NativeMatrixUnits,
}

/// A context that runs every matmul of many token rows on the matrix units, where the
/// adapter has them (the engine picks them by shape; SmolLM2's are too small for them).
fn matrix_unit_gpu() -> Arc<GpuContext> {
    static COOP: OnceLock<Arc<GpuContext>> = OnceLock::new();
    COOP.get_or_init(|| {
        GpuContext::new_blocking(&GpuOptions {
            gemm: Some(headroom::gpu::GemmKernel::Coop),
            ..Default::default()
        })
        .unwrap()
    })
    .clone()
}

/// A bug planted in an otherwise correct run, to show that the checks see it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Plant {
    None,
    /// RMSNorm with this epsilon instead of the model's 1e-5
    Epsilon(f32),
    /// each decode step's key and value appended one position late (and its query
    /// rotated for that position): the step attends over one unwritten slot
    KvOneLate,
}

/// Runs the reference prompts named in `names` (all when empty) greedily with weights and
/// KV cache stored as `weights`/`kv`, and checks every prompt's logits, then at every
/// decode step the chosen and runner-up logits and the chosen id, against llama.cpp.
fn check_greedy(weights: Weights, kv: StorageFormat, tol: Tolerance, names: &[&str], plant: Plant) {
    let Some(path) = default_model() else { return };
    let files = engine::open(&path).unwrap();
    let mut config = files.weights.config().clone();
    if let Plant::Epsilon(eps) = plant {
        config.rms_norm_eps = eps;
    }
    let source = WithConfig {
        inner: files.weights.as_ref(),
        config,
    };
    let (format, quantized) = match weights {
        Weights::Float(f) => (f, false),
        Weights::Native | Weights::NativeQ8Dot | Weights::NativeMatrixUnits => {
            (StorageFormat::F16, true)
        }
    };
    let context = match weights {
        Weights::Native => exact_gpu(),
        Weights::NativeQ8Dot => fused_gpu(),
        Weights::NativeMatrixUnits => matrix_unit_gpu(),
        _ => gpu(),
    };
    let options = GpuModelOptions {
        weights: format,
        quantized,
        kv,
        context: 1024,
        max_chunk: 256,
        ..Default::default()
    };
    let model = GpuModel::load(context, &source, options, &mut |_, _, _| {}).unwrap();
    let late = usize::from(plant == Plant::KvOneLate);
    let (mut worst_first, mut worst_step) = (0f32, 0f32);
    for p in reference()
        .prompts
        .into_iter()
        .filter(|p| names.is_empty() || names.contains(&p.name.as_str()))
    {
        // prefill in chunks, then the logits at the first generated position
        let mut pos = 0;
        let mut next = 0;
        for part in p.prompt_ids.chunks(model.options.max_chunk) {
            next = greedy_step(&model, 0, part, pos);
            pos += part.len();
        }
        let got = last_logits(&model);
        let want = read_logits(&p.first_logits_file);
        assert_eq!(got.len(), want.len());
        let first = max_abs_diff(&got, &want);
        worst_first = worst_first.max(first);
        eprintln!(
            "{} ({weights:?} weights, {kv:?} KV): {} prompt tokens, max |logit diff| {first:.5}",
            p.name,
            p.prompt_ids.len()
        );
        assert!(
            first <= tol.first_logits,
            "{}: logits after the prompt differ by up to {first} (tolerance {})",
            p.name,
            tol.first_logits
        );

        // greedy decode, one step per token, as long as the reference's tokens
        let mut step_diff = 0f32;
        for (i, &want_id) in p.generated_ids.iter().enumerate() {
            if i > 0 {
                next = greedy_step(&model, 0, &[next], pos + late);
                pos += 1;
            }
            let logits = last_logits(&model);
            let (chosen, runner_up) =
                (p.chosen_logits[i], p.chosen_logits[i] - p.margins[i] as f32);
            let d = (logits[want_id as usize] - chosen)
                .abs()
                .max((logits[p.runner_up_ids[i] as usize] - runner_up).abs());
            step_diff = step_diff.max(d);
            assert!(
                d <= tol.step_logits,
                "{}: step {i}: the chosen/runner-up logits differ from llama.cpp's by {d} \
                 (tolerance {})",
                p.name,
                tol.step_logits
            );
            if next != want_id {
                // only a near-tie (within the tolerance) may choose otherwise; then the
                // sequences part ways and the comparison of this prompt ends
                assert!(
                    p.margins[i] < 2.0 * tol.step_logits as f64,
                    "{}: step {i}: chose {next}, llama.cpp {want_id} (its margin {:.4})",
                    p.name,
                    p.margins[i]
                );
                eprintln!("{}: parted at a near-tie at step {i}", p.name);
                break;
            }
        }
        worst_step = worst_step.max(step_diff);
        eprintln!(
            "{}: {} steps, chosen/runner-up logits within {step_diff:.5}",
            p.name,
            p.generated_ids.len()
        );
    }
    eprintln!("worst: after the prompt {worst_first:.5}, at a step {worst_step:.5}");
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// f32 weights and cache: the same arithmetic as llama.cpp's f32 CPU run up to rounding
/// order. lavapipe, 2026-11-30, all six prompts: at most 5e-5 after the prompt and 1.1e-4
/// at a step; an RMSNorm epsilon of 1e-6 instead of 1e-5 moves them by 0.004-0.010.
const F32: Tolerance = Tolerance {
    first_logits: 5e-4,
    step_logits: 5e-4,
};
/// f16 weights and cache: storing in f16 moves the logits; lavapipe, 2026-11-30: at most
/// 0.036 after the prompt and 0.017 at a step.
const F16: Tolerance = Tolerance {
    first_logits: 0.05,
    step_logits: 0.03,
};

#[test]
fn greedy_continuations_match_llama_cpp_f32() {
    check_greedy(
        Weights::Float(StorageFormat::F32),
        StorageFormat::F32,
        F32,
        &[],
        Plant::None,
    );
}

/// The weights as the file stores them (Q4_1 blocks, dequantized in registers) with an f32
/// KV cache: llama.cpp ran the same dequantized weights in f32, so the f32 tolerance holds.
#[test]
fn greedy_continuations_match_llama_cpp_native_weights() {
    check_greedy(Weights::Native, StorageFormat::F32, F32, &[], Plant::None);
}

/// Q4_1 blocks times x rounded to 8-bit blocks at decode: x moves by up to half a step of
/// its block's largest value, and the error feeds the KV cache of later steps. The prompt
/// (prefill keeps x in f32) and every lm_head (the logits keep x in f32) are exact, so the
/// logits after the prompt meet the f32 tolerance. lavapipe, 2026-11-30, all six prompts:
/// 5e-5 after the prompt, at most 1.22 at a step. The kernel itself is checked exactly
/// against the same rounding in tests/kernels.rs.
const Q8_DOT: Tolerance = Tolerance {
    first_logits: 5e-4,
    step_logits: 1.5,
};

/// Where the adapter has cooperative matrices, this (the engine's default) context runs
/// the long prompt's chunks of 256 on them, so MATRIX_UNITS' tolerance applies there.
#[test]
fn greedy_continuations_match_llama_cpp_native_weights_q8_dot() {
    let tol = match fused_gpu().features.coopmat {
        true => MATRIX_UNITS,
        false => Q8_DOT,
    };
    check_greedy(
        Weights::NativeQ8Dot,
        StorageFormat::F32,
        tol,
        &[],
        Plant::None,
    );
}

/// Q8_DOT's decode, with the prompt's matmuls on the matrix units: x and the Q4_1 values
/// rounded to f16 there move the logits after the prompt as f16 storage does. H200,
/// 2026-11-30: 0.021 after the "factual" prompt (bench/2026-11-30-h200-gemm).
const MATRIX_UNITS: Tolerance = Tolerance {
    first_logits: 0.05,
    step_logits: 1.5,
};

/// Runs where the adapter has cooperative matrices (the H200 runs of bench/; lavapipe has
/// none, and says so).
#[test]
fn greedy_continuations_match_llama_cpp_on_the_matrix_units() {
    if !matrix_unit_gpu().features.coopmat {
        eprintln!("no cooperative matrices on this adapter: nothing runs on matrix units");
        return;
    }
    check_greedy(
        Weights::NativeMatrixUnits,
        StorageFormat::F32,
        MATRIX_UNITS,
        &[],
        Plant::None,
    );
}

#[test]
fn greedy_continuations_match_llama_cpp_f16_storage() {
    check_greedy(
        Weights::Float(StorageFormat::F16),
        StorageFormat::F16,
        F16,
        &[],
        Plant::None,
    );
}

// The planted bugs: each must fail the same checks (on one short prompt, on the f32 path:
// the f16 path's tolerance is above what an epsilon of 1e-4 moves on some prompts, so the
// f32 path is the one that guards the arithmetic; both run the same kernels).

#[test]
#[should_panic(expected = "factual: logits after the prompt differ")]
fn planted_rmsnorm_epsilon_1e_6_is_caught() {
    check_greedy(
        Weights::Float(StorageFormat::F32),
        StorageFormat::F32,
        F32,
        &["factual"],
        Plant::Epsilon(1e-6),
    );
}

#[test]
#[should_panic(expected = "factual: logits after the prompt differ")]
fn planted_rmsnorm_epsilon_1e_4_is_caught() {
    check_greedy(
        Weights::Float(StorageFormat::F32),
        StorageFormat::F32,
        F32,
        &["factual"],
        Plant::Epsilon(1e-4),
    );
}

#[test]
#[should_panic(expected = "factual: step 1: the chosen/runner-up logits differ")]
fn planted_kv_append_one_position_late_is_caught() {
    check_greedy(
        Weights::Float(StorageFormat::F32),
        StorageFormat::F32,
        F32,
        &["factual"],
        Plant::KvOneLate,
    );
}

/// Greedy ids (and the logits after the prompt) for `prompt` on `files`' weights.
fn greedy_run(files: &engine::ModelFiles, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<f32>) {
    let gpu = gpu();
    let options = GpuModelOptions {
        context: 256,
        ..Default::default()
    };
    let model = GpuModel::load(gpu, files.weights.as_ref(), options, &mut |_, _, _| {}).unwrap();
    let mut next = greedy_step(&model, 0, prompt, 0);
    let logits = last_logits(&model);
    let mut ids = vec![next];
    for pos in prompt.len()..prompt.len() + n - 1 {
        next = greedy_step(&model, 0, &[next], pos);
        ids.push(next);
    }
    (ids, logits)
}

#[test]
fn hf_directory_made_from_the_gguf_gives_the_same_tokens() {
    use headroom::model::synthetic::{write_hf_dir, HfDtype};
    let Some(path) = default_model() else { return };
    let gguf = engine::open(&path).unwrap();
    let dir = std::env::temp_dir().join(format!("headroom-hf-{}", std::process::id()));
    // f16 safetensors: the default GPU path stores f16 weights, so both sources give the
    // GPU the same bits
    write_hf_dir(&dir, gguf.weights.as_ref(), HfDtype::F16, 2).unwrap();
    std::fs::write(dir.join("tokenizer.json"), gguf.tokenizer.to_json()).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        gguf.tokenizer.to_tokenizer_config_json(),
    )
    .unwrap();
    let hf = engine::open(&dir).unwrap();
    assert_eq!(hf.weights.config(), gguf.weights.config());

    let chat = vec![ChatMessage::new("user", "What is the capital of France?")];
    let text = gguf.tokenizer.apply_chat(&chat, true).unwrap();
    assert_eq!(hf.tokenizer.apply_chat(&chat, true).unwrap(), text);
    let prompt = gguf.tokenizer.encode(&text, true).unwrap();
    assert_eq!(hf.tokenizer.encode(&text, true).unwrap(), prompt);

    let (from_gguf, logits_gguf) = greedy_run(&gguf, &prompt, 8);
    let (from_hf, logits_hf) = greedy_run(&hf, &prompt, 8);
    std::fs::remove_dir_all(&dir).ok();
    eprintln!("gguf: {from_gguf:?} hf: {from_hf:?}");
    assert_eq!(from_hf, from_gguf);
    assert_eq!(
        logits_hf, logits_gguf,
        "the same f16 weights give bit-identical logits"
    );
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let Some(path) = default_model() else { return };
    let files = engine::open(&path).unwrap();
    let gpu = gpu();
    let options = GpuModelOptions {
        context: 64,
        max_chunk: 32,
        ..Default::default()
    };
    let model = GpuModel::load(gpu, files.weights.as_ref(), options, &mut |_, _, _| {}).unwrap();
    let req = engine::GenerateRequest {
        prompt_ids: vec![1; 64],
        max_tokens: 4,
        sampling: SamplingParams::default(),
        stop_ids: vec![],
        draft_tokens: 4,
    };
    let err = engine::generate(&model, &req, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("64 tokens") && err.contains("context"),
        "{err}"
    );
    // one token less fits, and generation stops when the context is full
    let req = engine::GenerateRequest {
        prompt_ids: vec![1; 60],
        max_tokens: 100,
        ..req
    };
    let out = engine::generate(&model, &req, &mut |_| true).unwrap();
    assert_eq!(out.finish, engine::FinishReason::Context);
    assert_eq!(
        60 + out.ids.len(),
        65,
        "positions 0..64 filled, plus the token sampled from the last"
    );
}

/// `generate` with speculative decoding (prompt lookup, verified a draft at a time) gives
/// the ids it gives without, and drafts were confirmed on a reply that copies its prompt.
#[test]
fn generate_with_drafts_gives_the_ids_of_plain_decoding() {
    let Some(path) = default_model() else { return };
    let files = engine::open(&path).unwrap();
    let options = GpuModelOptions {
        context: 256,
        max_chunk: 64,
        ..Default::default()
    };
    let model = GpuModel::load(gpu(), files.weights.as_ref(), options, &mut |_, _, _| {}).unwrap();
    let tok = &files.tokenizer;
    let req = greedy_chat_request(
        tok,
        "Copy this list: apples, pears, plums, cherries, grapes, lemons, limes.",
        20,
    );
    let plain = engine::generate(&model, &req, &mut |_| true).unwrap();
    let drafted = engine::generate(
        &model,
        &engine::GenerateRequest {
            draft_tokens: 4,
            ..req.clone()
        },
        &mut |_| true,
    )
    .unwrap();
    eprintln!("{:?}", tok.decode(&plain.ids));
    assert_eq!(drafted.ids, plain.ids);
    assert_eq!(drafted.finish, plain.finish);
    assert_eq!(plain.stats.drafted_tokens, 0);
    assert!(
        drafted.stats.accepted_tokens > 0,
        "no draft was confirmed: {:?}",
        drafted.stats
    );
}

/// `generate` with drafts from a draft model (here the model itself, loaded again with f32
/// weights: drafts it mostly confirms) gives the ids of plain decoding.
#[test]
fn generate_with_a_draft_model_gives_the_ids_of_plain_decoding() {
    use headroom::engine::draft_model::{check_same_tokenizer, DraftModel};
    let Some(path) = default_model() else { return };
    let files = engine::open(&path).unwrap();
    let options = GpuModelOptions {
        context: 256,
        max_chunk: 64,
        ..Default::default()
    };
    let load = |options: GpuModelOptions| {
        GpuModel::load(gpu(), files.weights.as_ref(), options, &mut |_, _, _| {}).unwrap()
    };
    let model = load(options.clone());
    let draft = load(GpuModelOptions {
        weights: StorageFormat::F32,
        quantized: false,
        ..options
    });
    let tok = &files.tokenizer;
    check_same_tokenizer(tok, tok).unwrap();
    let req = greedy_chat_request(tok, "Name three rivers of Europe.", 24);
    let plain = engine::generate(&model, &req, &mut |_| true).unwrap();
    let mut drafter = DraftModel::new(&draft, &model).unwrap();
    let spec = engine::GenerateRequest {
        draft_tokens: 4,
        ..req
    };
    let out = engine::generate_drafted(&model, Some(&mut drafter), &spec, &mut |_| true).unwrap();
    assert_eq!(out.ids, plain.ids);
    assert_eq!(out.finish, plain.finish);
    assert!(
        out.stats.accepted_tokens > out.stats.drafted_tokens / 2,
        "its own f32 weights drafted for it: {:?}",
        out.stats
    );
}

/// `message` as the user's turn of the model's chat, greedy, up to `max_tokens`, stopping
/// at its end-of-turn tokens, without speculation.
fn greedy_chat_request(
    tok: &headroom::tokenizer::Tokenizer,
    message: &str,
    max_tokens: usize,
) -> engine::GenerateRequest {
    let text = tok
        .apply_chat(&[ChatMessage::new("user", message)], true)
        .unwrap();
    engine::GenerateRequest {
        prompt_ids: tok.encode(&text, true).unwrap(),
        max_tokens,
        sampling: SamplingParams::default(),
        stop_ids: tok.eos_ids().to_vec(),
        draft_tokens: 0,
    }
}
