//! End to end on the real default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against the
//! llama.cpp reference in fixtures/smollm2 (made by scripts/make-fixtures.py): prompt
//! token ids, greedy continuations and the logits after each prompt.

mod common;

use common::{gpu, greedy_step, last_logits};
use headroom::engine;
use headroom::gpu::StorageFormat;
use headroom::model::gpu_model::{GpuModel, GpuModelOptions};
use headroom::ops::sample::SamplingParams;
use headroom::tokenizer::ChatMessage;
use serde::Deserialize;
use std::path::{Path, PathBuf};

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

/// The model path, or None (with a note) when it is absent outside CI.
fn model_path() -> Option<PathBuf> {
    let p = engine::default_model_path();
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the default model is missing at {} (.ci/run fetches it with scripts/fetch-model.sh)",
        p.display()
    );
    eprintln!(
        "skipping: no model at {} (run scripts/fetch-model.sh)",
        p.display()
    );
    None
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
    let Some(path) = model_path() else { return };
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

/// Runs every reference prompt greedily on `options` and checks tokens and logits.
/// `logit_tol` is the largest allowed |logit - reference| at the first generated position.
/// Prompts longer than `max_prompt` are skipped (lavapipe prefills at ~100 tokens/s).
fn check_greedy(weights: StorageFormat, kv: StorageFormat, logit_tol: f32, max_prompt: usize) {
    let Some(path) = model_path() else { return };
    let files = engine::open(&path).unwrap();
    let gpu = gpu();
    let options = GpuModelOptions {
        weights,
        kv,
        context: 1024,
        max_chunk: 256,
        ..Default::default()
    };
    let model = GpuModel::load(gpu, files.weights.as_ref(), options, &mut |_, _, _| {}).unwrap();
    for p in reference()
        .prompts
        .into_iter()
        .filter(|p| p.prompt_ids.len() <= max_prompt)
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
        let max_diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{} ({weights:?} weights, {kv:?} KV): {} prompt tokens, max |logit diff| {max_diff:.4}",
            p.name,
            p.prompt_ids.len()
        );
        assert!(
            max_diff <= logit_tol,
            "{}: logits differ by up to {max_diff} (tolerance {logit_tol})",
            p.name
        );

        // greedy decode, one step per token, as many tokens as the reference has
        let n = p.generated_ids.len();
        let mut ids = vec![next];
        while ids.len() < n {
            next = greedy_step(&model, 0, &[next], pos);
            pos += 1;
            ids.push(next);
        }
        let same = ids
            .iter()
            .zip(&p.generated_ids)
            .take_while(|(a, b)| a == b)
            .count();
        eprintln!("{}: {same}/{n} greedy tokens equal the reference", p.name);
        // a divergence is only acceptable at a near-tie of the reference's top two logits
        if same < n {
            let margin = p.margins[same];
            assert!(
                same >= 32 && margin < 2.0 * logit_tol as f64,
                "{}: greedy tokens diverge at step {same} (reference margin there {margin:.4}); got {:?}, want {:?}",
                p.name,
                &ids[..same + 1],
                &p.generated_ids[..same + 1]
            );
        }
    }
}

#[test]
fn greedy_continuations_match_llama_cpp_f32() {
    // the long prompt runs on the default (f16) path below; here the short ones, in f32
    check_greedy(StorageFormat::F32, StorageFormat::F32, 0.02, 300);
}

#[test]
fn greedy_continuations_match_llama_cpp_f16_storage() {
    check_greedy(StorageFormat::F16, StorageFormat::F16, 0.15, usize::MAX);
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
    let Some(path) = model_path() else { return };
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
    let Some(path) = model_path() else { return };
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
