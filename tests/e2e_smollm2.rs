//! End to end on the real default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against the
//! llama.cpp reference in fixtures/smollm2 (made by scripts/make-fixtures.py): prompt
//! token ids, greedy continuations and the logits after each prompt.

use headroom::engine::{self, GenerateRequest};
use headroom::gpu::{GpuContext, GpuOptions, StorageFormat};
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
    assert!(std::env::var_os("CI").is_none(), "the default model is missing at {} (.ci/run fetches it with scripts/fetch-model.sh)", p.display());
    eprintln!("skipping: no model at {} (run scripts/fetch-model.sh)", p.display());
    None
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).expect("fixtures/smollm2/reference.json");
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
    let specs: Vec<PromptSpec> = serde_json::from_str(&std::fs::read_to_string(fixtures().join("prompts.json")).unwrap()).unwrap();
    let reference = reference();
    assert!(reference.prompts.len() >= 5);
    assert!(reference.prompts.iter().any(|p| p.prompt_ids.len() >= 500), "a prompt of 500+ tokens");
    for p in &reference.prompts {
        let spec = specs.iter().find(|s| s.name == p.name).expect("prompt spec");
        if spec.kind == "chat" {
            // our chat template rendering gives the same text as jinja2 did
            assert_eq!(tok.apply_chat(&spec.messages, true).unwrap(), p.text, "{}: chat template", p.name);
        }
        let ids = tok.encode(&p.text, true).unwrap();
        assert_eq!(ids, p.prompt_ids, "{}: prompt token ids", p.name);
    }
}

/// Runs every reference prompt greedily on `options` and checks tokens and logits.
/// `logit_tol` is the largest allowed |logit - reference| at the first generated position.
fn check_greedy(weights: StorageFormat, kv: StorageFormat, logit_tol: f32) {
    let Some(path) = model_path() else { return };
    let files = engine::open(&path).unwrap();
    let gpu = GpuContext::new_blocking(&GpuOptions::default()).unwrap();
    let options = GpuModelOptions { weights, kv, context: 1024, max_chunk: 256 };
    let model = GpuModel::load(gpu, files.weights.as_ref(), options, &mut |_, _, _| {}).unwrap();
    for p in reference().prompts {
        // the first generated position: logits after the whole prompt
        let req = GenerateRequest { prompt_ids: p.prompt_ids.clone(), max_tokens: 1, sampling: SamplingParams::default(), stop_ids: vec![] };
        engine::generate(&model, &req, &mut |_| true).unwrap();
        let got = model.last_logits().unwrap();
        let want = read_logits(&p.first_logits_file);
        assert_eq!(got.len(), want.len());
        let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("{} ({weights:?} weights, {kv:?} KV): {} prompt tokens, max |logit diff| {max_diff:.4}", p.name, p.prompt_ids.len());
        assert!(max_diff <= logit_tol, "{}: logits differ by up to {max_diff} (tolerance {logit_tol})", p.name);

        let n = p.generated_ids.len();
        let req = GenerateRequest { max_tokens: n, ..req };
        let out = engine::generate(&model, &req, &mut |_| true).unwrap();
        let same = out.ids.iter().zip(&p.generated_ids).take_while(|(a, b)| a == b).count();
        eprintln!("{}: {same}/{n} greedy tokens equal the reference", p.name);
        // a divergence is only acceptable at a near-tie of the reference's top two logits
        if same < n {
            let margin = p.margins[same];
            assert!(
                same >= 32 && margin < 2.0 * logit_tol as f64,
                "{}: greedy tokens diverge at step {same} (reference margin there {margin:.4}); got {:?}, want {:?}",
                p.name,
                &out.ids[..(same + 1).min(out.ids.len())],
                &p.generated_ids[..same + 1]
            );
        }
    }
}

#[test]
fn greedy_continuations_match_llama_cpp_f32() {
    check_greedy(StorageFormat::F32, StorageFormat::F32, 0.02);
}

#[test]
fn greedy_continuations_match_llama_cpp_f16_storage() {
    check_greedy(StorageFormat::F16, StorageFormat::F16, 0.15);
}
