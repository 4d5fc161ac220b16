//! The model families against Hugging Face `transformers`, their authors' implementation:
//! tiny random models built with each family's own class, saved as safetensors and
//! converted to GGUF by llama.cpp's converter, with transformers' greedy tokens and logits
//! at every prompt position (fixtures/families, made by scripts/make-family-fixtures.py;
//! its README lists each family's features and the converter's quirks). Both files of
//! each family load here and must give those tokens and logits, the prompts tokenize to the
//! same ids, and the chat template renders the same text.

mod common;

use common::{argmax, gpu, greedy_step, last_logits, WithConfig};
use headroom::engine;
use headroom::gpu::StorageFormat;
use headroom::model::gpu_model::{GpuModel, GpuModelOptions};
use headroom::model::{ModelConfig, WeightSource};
use headroom::tokenizer::ChatMessage;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Reference {
    prompts: Vec<RefPrompt>,
    chat: RefChat,
}

#[derive(Deserialize)]
struct RefPrompt {
    name: String,
    text: String,
    ids: Vec<u32>,
    /// transformers' greedy continuation
    greedy: Vec<u32>,
    /// `[ids.len(), vocab]`, the logits after every prompt position
    logits_file: String,
    /// the same without the sliding window (mistral: what a GGUF of it computes, since
    /// llama.cpp's converter drops the window)
    no_window: Option<RefNoWindow>,
    /// LongRoPE's factors transformers used for the prompt: "short" or "long" (phi3)
    longrope_factors: Option<String>,
}

#[derive(Deserialize)]
struct RefNoWindow {
    greedy: Vec<u32>,
    logits_file: String,
}

#[derive(Deserialize)]
struct RefChat {
    messages: Vec<ChatMessage>,
    text: String,
    ids: Vec<u32>,
}

fn dir(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/families")
        .join(family)
}

fn reference(family: &str) -> Reference {
    let path = dir(family).join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).expect("reference.json parses")
}

fn read_logits(family: &str, file: &str) -> Vec<f32> {
    let bytes = std::fs::read(dir(family).join(file)).expect("logits fixture");
    bytemuck::pod_collect_to_vec(&bytes)
}

/// Which of a family's files to load.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    /// `config.json` + `model.safetensors` + tokenizer files
    Safetensors,
    /// `model.gguf`, as llama.cpp's converter wrote it
    Gguf,
}

/// How far from transformers' f32 logits headroom's f32 ones may be: the largest difference
/// seen on lavapipe was 2.1e-4 (llama3; summation order), the smallest greedy margin in the
/// fixtures is 0.06, and a dropped window or q/k norm moves logits by 0.1 and more.
const LOGIT_TOLERANCE: f32 = 2e-3;

/// Loads `family` from `format` with f32 weights and KV cache (transformers' precision),
/// and checks each prompt:
/// - its text tokenizes to the reference ids;
/// - prefilled in one pass, the next 16 greedy tokens are transformers';
/// - replayed one token at a time, the logits after every position are transformers'.
///
/// A GGUF of a windowed family whose converter dropped the window is checked against the
/// reference computed without it.
///
/// LongRoPE's factors follow the KV cache's size, as in llama.cpp: a prompt transformers
/// ran with the short factors runs on a cache of the original context, one it ran with the
/// long ones on a larger cache. `llama_cpp_spm` is the BOS id where a file's SentencePiece
/// vocabulary is tokenized by llama.cpp's rules, which differ from transformers' for
/// phi3's GGUF: it has no add_bos_token key, so BOS goes first, and a space prefix follows
/// every special token (llama.cpp's `is_prev_special`), so the chat's ids differ.
fn check_family(family: &str, format: Format, llama_cpp_spm: Option<u32>) {
    check_family_with(family, format, llama_cpp_spm, |_| {})
}

/// As `check_family`, with the loaded config changed by `fix` first (what a file leaves
/// out and the reference model has).
fn check_family_with(
    family: &str,
    format: Format,
    llama_cpp_spm: Option<u32>,
    fix: impl Fn(&mut ModelConfig),
) {
    let path = match format {
        Format::Safetensors => dir(family),
        Format::Gguf => dir(family).join("model.gguf"),
    };
    let files = engine::open(&path).unwrap_or_else(|e| panic!("{family} {format:?}: {e}"));
    let mut fixed = files.weights.config().clone();
    fix(&mut fixed);
    let source = WithConfig {
        inner: files.weights.as_ref(),
        config: fixed,
    };
    let load = |context: usize| {
        GpuModel::load(
            gpu(),
            &source,
            GpuModelOptions {
                weights: StorageFormat::F32,
                kv: StorageFormat::F32,
                context,
                max_chunk: 64,
                kv_block_size: 16,
                ..Default::default()
            },
            &mut |_, _, _| {},
        )
        .unwrap()
    };
    let config = source.config();
    let windowless = format == Format::Gguf && config.sliding_window.is_none();
    let reference = reference(family);
    let mut worst = 0f32;
    for p in &reference.prompts {
        let what = format!("{family} {format:?} prompt '{}'", p.name);
        let ids = files.tokenizer.encode(&p.text, true).unwrap();
        let want_ids: Vec<u32> = llama_cpp_spm
            .into_iter()
            .chain(p.ids.iter().copied())
            .collect();
        assert_eq!(ids, want_ids, "{what}: token ids");
        let context = match (&config.longrope, p.longrope_factors.as_deref()) {
            (Some(r), Some("short")) => r.original_max_position_embeddings,
            (Some(r), _) => r.original_max_position_embeddings.max(128) + 1,
            (None, _) => 128,
        };
        assert!(
            p.ids.len() + p.greedy.len() <= context,
            "{what}: fits the cache"
        );
        let model = load(context);
        let (greedy, logits_file) = match (&p.no_window, windowless) {
            (Some(n), true) => (&n.greedy, &n.logits_file),
            _ => (&p.greedy, &p.logits_file),
        };
        let want = read_logits(family, logits_file);
        let vocab = config.vocab_size;
        assert_eq!(
            want.len(),
            p.ids.len() * vocab,
            "{what}: logits fixture size"
        );

        // one prefill pass, then greedy decoding
        let mut next = greedy_step(&model, 0, &p.ids, 0);
        let mut got = vec![next];
        for pos in p.ids.len()..p.ids.len() + greedy.len() - 1 {
            next = greedy_step(&model, 0, &[next], pos);
            got.push(next);
        }
        assert_eq!(&got, greedy, "{what}: greedy tokens");

        // the prompt again, one position at a time
        for (pos, &t) in p.ids.iter().enumerate() {
            let chosen = greedy_step(&model, 0, &[t], pos);
            let logits = last_logits(&model);
            let row = &want[pos * vocab..(pos + 1) * vocab];
            assert_eq!(chosen, argmax(&logits), "{what}: sampled id at {pos}");
            let diff = logits
                .iter()
                .zip(row)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            worst = worst.max(diff);
            assert!(
                diff <= LOGIT_TOLERANCE,
                "{what}: logits after position {pos} differ by {diff} (tolerance \
                 {LOGIT_TOLERANCE})"
            );
        }
    }
    eprintln!("{family} {format:?}: largest logit difference {worst}");

    // the chat template, and its text's ids
    let chat = &reference.chat;
    let text = files.tokenizer.apply_chat(&chat.messages, true).unwrap();
    assert_eq!(text, chat.text, "{family} {format:?}: chat template");
    if llama_cpp_spm.is_none() {
        let ids = files.tokenizer.encode(&text, false).unwrap();
        assert_eq!(ids, chat.ids, "{family} {format:?}: chat ids");
    }
}

/// Llama 3: GQA, tied embeddings (no output tensor), llama-3 RoPE scaling.
#[test]
fn llama3_matches_transformers() {
    check_family("llama3", Format::Safetensors, None);
    check_family("llama3", Format::Gguf, None);
}

/// Mistral: a sliding window of 8 positions against prompts of 9 and 53 tokens. The GGUF
/// (llama.cpp's converter writes Mistral as llama, without the window) runs without it,
/// as llama.cpp does, and matches transformers run without it.
#[test]
fn mistral_matches_transformers() {
    check_family("mistral", Format::Safetensors, None);
    check_family("mistral", Format::Gguf, None);
}

/// Qwen3: q/k norms per head before RoPE, head_dim apart from hidden / heads, untied head.
#[test]
fn qwen3_matches_transformers() {
    check_family("qwen3", Format::Safetensors, None);
    check_family("qwen3", Format::Gguf, None);
}

/// Phi-3: q/k/v and gate/up fused in both files, LongRoPE (short factors for the short
/// prompt, long ones for the long prompt past the original context of 32, the attention
/// factor on both), no BOS from transformers' tokenizer.
#[test]
fn phi3_matches_transformers() {
    check_family("phi3", Format::Safetensors, None);
    check_family("phi3", Format::Gguf, Some(1));
}

/// Gemma 2: GeGLU, (1 + w) norms (the GGUF holds 1 + w), norms after attention and the
/// MLP, embeddings times sqrt(hidden), attention scores soft-capped at 2 and logits at 15,
/// a window of 8 on even layers only, query_pre_attn_scalar 16 where head_dim is 32, tied
/// embeddings. llama.cpp's converter drops query_pre_attn_scalar and llama.cpp scales by
/// 1/sqrt(head_dim) for every size but the 27B's 46 layers, as the GGUF loader here does;
/// the GGUF is checked with the fixture's scale put back.
#[test]
fn gemma2_matches_transformers() {
    check_family("gemma2", Format::Safetensors, None);
    let gguf_scale = |c: &mut ModelConfig| {
        assert_eq!(c.attention_scale(), 1.0 / 32f32.sqrt(), "llama.cpp's rule");
        c.variant.attention_scale = Some(0.25);
    };
    check_family_with("gemma2", Format::Gguf, None, gguf_scale);
}

/// Gemma 3: gemma2's block without soft-capping, q/k norms (1 + w as well), five windowed
/// layers with RoPE base 1e4 then one global layer with base 1e6.
#[test]
fn gemma3_matches_transformers() {
    check_family("gemma3", Format::Safetensors, None);
    check_family("gemma3", Format::Gguf, None);
}

/// The serving engine on the Mistral model (a window of 8 on every layer) with a KV pool
/// of 4 blocks of 16 positions: a request of 9 prompt tokens and 100 generated ones needs 7
/// blocks' worth of positions, so it finishes only because blocks its window has passed
/// go back to the pool as it decodes; and no block it still reads is reused, since its
/// tokens are the CPU reference's greedy ones throughout (until a near-tie, where f32
/// rounding may pick the other token; then the comparison ends).
#[test]
fn a_windowed_model_serves_past_its_pool_on_the_blocks_its_window_passed() {
    use headroom::engine::LoadOptions;
    use headroom::engine::{open_engine, Backend, CompletionRequest, EngineOptions, Event};
    use headroom::model::cpu_reference::CpuModel;
    use headroom::ops::sample::SamplingParams;

    let path = dir("mistral");
    let files = engine::open(&path).unwrap();
    let gpu_options = GpuModelOptions {
        weights: StorageFormat::F32,
        kv: StorageFormat::F32,
        context: 128,
        max_chunk: 64,
        kv_block_size: 16,
        ..Default::default()
    };
    let layout = gpu_options.kv_layout(files.weights.config());
    let e = open_engine(&LoadOptions {
        model: path,
        adapter: None,
        gpu: gpu_options,
        kv_memory: Some(4 * layout.bytes_per_block()),
        draft_model: None,
        engine: EngineOptions {
            max_running: 1,
            draft_tokens: 0,
            ..Default::default()
        },
    })
    .unwrap();
    let prompt = reference("mistral").prompts[0].ids.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let request = CompletionRequest {
        prompt_ids: prompt.clone(),
        max_tokens: 100,
        sampling: SamplingParams::default(),
        stop_ids: vec![],
        stop_strings: vec![],
        skip_special: true,
        probe_attention: false,
        logprobs: None,
        prompt_logprobs: false,
        speculate: false,
    };
    e.submit(request, Box::new(move |ev| tx.send(ev).is_ok()))
        .unwrap();
    let mut got = Vec::new();
    loop {
        match rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the request finishes (a pool of 4 blocks holds its window)")
        {
            Event::Delta { ids, .. } => got.extend(ids),
            Event::Done { .. } => break,
            Event::Failed(m) => panic!("request failed: {m}"),
            _ => {}
        }
    }
    assert_eq!(got.len(), 100);

    let mut cpu = CpuModel::new(files.weights.as_ref()).unwrap();
    let mut logits = vec![];
    for (pos, &t) in prompt.iter().enumerate() {
        logits = cpu.forward(t, pos);
    }
    for (i, &id) in got.iter().enumerate() {
        let best = argmax(&logits);
        if id != best {
            let margin = logits[best as usize] - logits[id as usize];
            assert!(
                margin < 1e-3,
                "token {i}: {id} against the reference's {best}"
            );
            return;
        }
        logits = cpu.forward(id, prompt.len() + i);
    }
}
