//! Hostile inputs to the loaders and the chat template: each one a clear error, quickly,
//! never a panic, a hang or an allocation sized by a number the file merely declares.
//! Inputs the fuzzers (`fuzz/`) found live in `fuzz/regressions/<target>/` and are replayed
//! here through the same calls the fuzz targets make.

use std::path::{Path, PathBuf};

#[path = "../fuzz/harness.rs"]
mod harness;
use std::time::{Duration, Instant};

use headroom::formats::gguf::{GgufBuilder, GgufFile, MetaValue};
use headroom::formats::safetensors::read_tensors;
use headroom::model::gguf_model::GgufModel;
use headroom::model::hf::{parse_hf_config, HfModel};
use headroom::model::synthetic::{
    gguf_builder, tiny_config, write_hf_dir, GgufWriteOptions, HfDtype, SyntheticModel,
};
use headroom::model::Arch;
use headroom::tokenizer::{render_chat, ChatMessage, GgufVocab, Tokenizer};

/// Runs `f`, which must fail, within a few seconds; returns its message.
fn fails_fast<T, E: std::fmt::Display>(what: &str, f: impl FnOnce() -> Result<T, E>) -> String {
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
    match r {
        Ok(_) => panic!("{what}: should fail"),
        Err(e) => e.to_string(),
    }
}

fn tiny_gguf() -> GgufBuilder {
    let src = SyntheticModel::new(tiny_config(Arch::Llama, 4, 2, true), 3).unwrap();
    gguf_builder(&src, &GgufWriteOptions::default()).unwrap()
}

fn set_meta(b: &mut GgufBuilder, key: &str, v: MetaValue) {
    b.metadata.retain(|(k, _)| k != key);
    b.meta(key, v);
}

fn open_gguf(b: &GgufBuilder) -> Result<GgufModel, headroom::model::LoadError> {
    GgufModel::from_gguf(GgufFile::from_bytes("m.gguf", b.to_bytes())?)
}

#[test]
fn gguf_header_counts_beyond_the_file() {
    // 2^40 metadata entries, 2^62 tensors, in a 24-byte file
    let mut bytes = b"GGUF\x03\0\0\0".to_vec();
    bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
    bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let e = fails_fast("counts", || GgufFile::from_bytes("h.gguf", bytes.clone()));
    assert!(
        e.contains("metadata count 1099511627776 is larger")
            && e.contains("tensor count 4611686018427387904 is larger"),
        "{e}"
    );
    // a key of 2^62 bytes
    let mut b = bytes[..16].to_vec();
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&(1u64 << 62).to_le_bytes());
    b.extend_from_slice(b"abc");
    let e = fails_fast("string", || GgufFile::from_bytes("s.gguf", b.clone()));
    assert!(e.contains("string length 4611686018427387904"), "{e}");
}

#[test]
fn gguf_layer_count_beyond_the_file() {
    let mut b = tiny_gguf();
    set_meta(&mut b, "llama.block_count", MetaValue::U32(u32::MAX));
    let e = fails_fast("block_count", || open_gguf(&b));
    assert!(
        e.contains("llama.block_count is 4294967295 layers, but the file has only"),
        "{e}"
    );
}

#[test]
fn gguf_sizes_that_overflow() {
    // head_count * key_length * embedding_length overflows on 32 bits only; the KV bytes
    // per token (2 * layers * kv heads * head_dim * 4) overflow 64 bits here
    let mut b = tiny_gguf();
    for (k, v) in [
        ("llama.attention.head_count", 1 << 31),
        ("llama.attention.head_count_kv", 1 << 31),
        ("llama.attention.key_length", 1 << 31),
        ("llama.attention.value_length", 1 << 31),
        ("llama.rope.dimension_count", 1 << 31),
        ("llama.block_count", 1 << 31),
    ] {
        set_meta(&mut b, k, MetaValue::U32(v));
    }
    let e = fails_fast("overflow", || open_gguf(&b));
    assert!(e.contains("overflows"), "{e}");
}

#[test]
fn gguf_vocabulary_of_long_tokens() {
    // SentencePiece merges are derived from every split of every token: one token of
    // 2 MiB is 2 million splits of 2 MiB each, all prefixes of a run a cube of its length
    let long = GgufVocab {
        model: "llama".into(),
        tokens: vec!["<unk>".into(), "a".into(), "a".repeat(2 << 20)],
        scores: Some(vec![0.0; 3]),
        ..Default::default()
    };
    let prefixes = GgufVocab {
        tokens: (1..3000).map(|n| "a".repeat(n)).collect(),
        scores: Some(vec![0.0; 2999]),
        ..long.clone()
    };
    for v in [long, prefixes] {
        let e = fails_fast("spm", || Tokenizer::from_gguf_vocab(&v));
        assert!(
            e.contains("deriving the SentencePiece merges would take more than"),
            "{e}"
        );
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("headroom-fuzzreg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn hf_config_counts_beyond_the_files() {
    let dir = temp_dir("hf");
    let src = SyntheticModel::new(tiny_config(Arch::Llama, 4, 2, true), 3).unwrap();
    write_hf_dir(&dir, &src, HfDtype::F32, 1).unwrap();
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["num_hidden_layers"] = 1_000_000_000u64.into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let e = fails_fast("layers", || HfModel::open(&dir));
    assert!(
        e.contains("num_hidden_layers is 1000000000 layers, but the file has only"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hf_config_sizes_that_overflow() {
    let cfg = |extra: &str| {
        format!(
            r#"{{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 128,
                "max_position_embeddings": 64, "rms_norm_eps": 1e-5{extra}}}"#
        )
    };
    assert!(parse_hf_config("config.json", &cfg("")).is_ok());
    for (extra, what) in [
        (
            r#", "vocab_size": 4611686018427387904"#,
            "vocab_size * hidden_size overflows",
        ),
        (
            r#", "head_dim": 4611686018427387904"#,
            "num_heads * head_dim * hidden_size overflows",
        ),
        (
            r#", "intermediate_size": 4611686018427387904"#,
            "intermediate_size * hidden_size overflows",
        ),
        (
            r#", "num_hidden_layers": 4611686018427387904"#,
            "KV bytes per token",
        ),
    ] {
        let e = fails_fast(what, || parse_hf_config("config.json", &cfg(extra)));
        assert!(e.contains(what), "{e}");
    }
}

#[test]
fn safetensors_header_beyond_the_file() {
    // header length 2^62 in a 16-byte file
    let mut b = (1u64 << 62).to_le_bytes().to_vec();
    b.extend_from_slice(b"{}      ");
    let e = fails_fast("header", || read_tensors("h.safetensors", &b));
    assert!(e.contains("h.safetensors: invalid safetensors file"), "{e}");
    // a tensor of 2^32 x 2^32 elements over 8 bytes of data
    let header = r#"{"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#;
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(&[0; 8]);
    let e = fails_fast("shape", || read_tensors("s.safetensors", &b));
    assert!(e.contains("s.safetensors: invalid safetensors file"), "{e}");
}

/// A minimal byte-level tokenizer.json; `extra` is spliced into its top-level object.
fn tokenizer_json(extra: &str) -> String {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<s>", "a", "b", "ab"].iter().enumerate() {
        vocab.insert(t.to_string(), i.into());
    }
    format!(
        r#"{{"version": "1.0", {extra}
            "added_tokens": [{{"id": 0, "content": "<s>", "single_word": false,
              "lstrip": false, "rstrip": false, "normalized": false, "special": true}}],
            "normalizer": null, "pre_tokenizer": null, "decoder": null,
            "post_processor": {{"type": "TemplateProcessing",
              "single": [{{"SpecialToken": {{"id": "<s>", "type_id": 0}}}},
                         {{"Sequence": {{"id": "A", "type_id": 0}}}}],
              "pair": [{{"Sequence": {{"id": "A", "type_id": 0}}}}],
              "special_tokens": {{"<s>": {{"id": "<s>", "ids": [0], "tokens": ["<s>"]}}}}}},
            "model": {{"type": "BPE", "vocab": {}, "merges": ["a b"]}}}}"#,
        serde_json::Value::Object(vocab)
    )
}

#[test]
fn tokenizer_json_padding_and_truncation_are_ignored() {
    let plain = Tokenizer::from_json_bytes(tokenizer_json("").as_bytes(), None, None).unwrap();
    assert_eq!(plain.encode("abab", true).unwrap(), vec![0, 3, 3]);
    // fixed padding to 2^40 tokens would allocate terabytes at every encode; a
    // truncation shorter than the special tokens underflows in tokenizers
    for extra in [
        r#""padding": {"strategy": {"Fixed": 1099511627776}, "direction": "Right",
            "pad_to_multiple_of": null, "pad_id": 1, "pad_type_id": 0, "pad_token": "a"},"#,
        r#""truncation": {"direction": "Right", "max_length": 0, "strategy": "LongestFirst",
            "stride": 0},"#,
    ] {
        let json = tokenizer_json(extra);
        let start = Instant::now();
        let tok = Tokenizer::from_json_bytes(json.as_bytes(), None, None).unwrap();
        assert_eq!(tok.encode("abab", true).unwrap(), vec![0, 3, 3], "{extra}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn chat_template_filters_sized_by_the_template() {
    let msgs = [ChatMessage::new("user", "hi")];
    for (template, why) in [
        ("{{ 'a\nb' | indent(1000000000000) }}", "indent width"),
        ("{{ 'a\nb' | indent(width=1000000000000) }}", "indent width"),
        ("{{ ('\n' * 10000000) | indent(100) }}", "indenting"),
        ("{{ '%1000000000000s' | format('x') }}", "format width"),
        ("{{ '%.1000000000000f' | format(1.5) }}", "format width"),
        ("{{ '{:>1000000000000}'.format('x') }}", "format width"),
        ("{{ [1] | slice(1000000000000) | list }}", "slice count"),
        (
            "{{ [1] | batch(1000000000000, 'x') | list }}",
            "batch count",
        ),
        (
            "{{ ('x' * 10000000) | replace('', 'yyyyyyyyyy') }}",
            "replace result",
        ),
        (
            "{{ ('x' * 10000000).replace('x', 'yyyyyyyyyy') }}",
            "replace result",
        ),
        ("{{ [1] | tojson(indent=1000000000000) }}", "tojson indent"),
        ("{{ [1] | tojson(indent=' ' * 1000000) }}", "tojson indent"),
    ] {
        let e = fails_fast(template, || render_chat(template, &msgs, true, "", ""));
        assert!(
            e.contains(why) && e.contains("too large"),
            "{template}: {e}"
        );
    }
    // what real templates do still works
    let t = "{{ 'a\nb' | indent(2, first=true) }}|{{ '%5.1f' | format(1.25) }}|{{ '{:>3}'.format('x') }}|{{ 'abc'.replace('b', 'xx') }}|{{ [1, 2, 3] | batch(2) | list }}|{{ {'k': [1]} | tojson(indent=2) }}";
    let out = render_chat(t, &msgs, true, "", "").unwrap();
    assert_eq!(
        out,
        "  a\n  b|  1.2|  x|axxc|[[1, 2], [3]]|{\n  \"k\": [\n    1\n  ]\n}"
    );
}

/// Every committed fuzz finding of `target`, as (file name, bytes).
fn regressions(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Replays `fuzz/regressions/<target>/*` through the target's harness, each within
/// seconds (a panic fails the test).
fn replay(target: &str, harness: fn(&[u8])) {
    for (name, bytes) in regressions(target) {
        let start = Instant::now();
        harness(&bytes);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "{target}/{name}: took {took:?}"
        );
    }
}

#[test]
fn replay_gguf_findings() {
    replay("gguf", harness::gguf);
}

#[test]
fn replay_safetensors_findings() {
    replay("safetensors", harness::safetensors);
}

#[test]
fn replay_tokenizer_json_findings() {
    replay("tokenizer_json", harness::tokenizer_json);
}

#[test]
fn replay_chat_template_findings() {
    replay("chat_template", harness::chat_template);
}

#[test]
fn replay_openai_request_findings() {
    replay("openai_request", harness::openai_request);
}

/// The seed corpora stay what they claim to be: the tiny models open, their tokenizers
/// build (a seed that no longer parses would silently stop guiding the fuzzer).
#[test]
fn seeds_parse() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for name in [
        "tiny_llama_q8.gguf",
        "tiny_llama_f32.gguf",
        "tiny_qwen2_spm.gguf",
    ] {
        let bytes = std::fs::read(seeds.join("gguf").join(name)).unwrap();
        let f = GgufFile::from_bytes(name, bytes).unwrap();
        let v = headroom::tokenizer::vocab_from_gguf(&f).unwrap();
        Tokenizer::from_gguf_vocab(&v).unwrap();
        GgufModel::from_gguf(f).unwrap();
    }
    for name in [
        "smollm2_cut.json",
        "unigram.json",
        "wordpiece.json",
        "wordlevel.json",
    ] {
        let bytes = std::fs::read(seeds.join("tokenizer_json").join(name)).unwrap();
        let tok = Tokenizer::from_json_bytes(&bytes, None, None).unwrap();
        assert!(!tok.encode("hello", false).unwrap().is_empty(), "{name}");
    }
    for name in [
        "config_smollm2.json",
        "config_llama3.json",
        "config_qwen2.json",
    ] {
        let text = std::fs::read_to_string(seeds.join("safetensors").join(name)).unwrap();
        parse_hf_config(name, &text).unwrap();
    }
    let bytes = std::fs::read(seeds.join("safetensors/small.safetensors")).unwrap();
    assert_eq!(read_tensors("small", &bytes).unwrap().len(), 4);
}
