//! Byte-level BPE (`gpt2`) pre-tokenizers against llama.cpp itself: a synthetic vocabulary
//! (256 byte symbols, a control token, a merge for every pair of the ASCII symbols used) and
//! llama.cpp's ids for ~300 strings under each `tokenizer.ggml.pre` it was made with
//! (`tests/data/tokenizer/bpe_synthetic.json`, from `scripts/make-tokenizer-fixtures.py`).
//! With every pair mergeable, the ids show exactly where the text was cut into pieces.

use headroom::tokenizer::{GgufVocab, Tokenizer};
use serde_json::Value;

#[test]
fn pre_tokenizers_match_llama_cpp() {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tokenizer/bpe_synthetic.json"
    );
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let get = |k: &str| fx[k].clone();
    let texts: Vec<String> = serde_json::from_value(get("texts")).unwrap();
    let mut failures = Vec::new();
    for entry in fx["pres"].as_array().unwrap() {
        let pre = entry["pre"].as_str().unwrap();
        let v = GgufVocab {
            model: "gpt2".into(),
            pre: Some(pre.into()),
            tokens: serde_json::from_value(get("tokens")).unwrap(),
            token_types: Some(serde_json::from_value(get("token_types")).unwrap()),
            merges: Some(serde_json::from_value(get("merges")).unwrap()),
            add_bos: Some(false),
            ..Default::default()
        };
        let tok = Tokenizer::from_gguf_vocab(&v).unwrap();
        let want: Vec<Vec<u32>> = serde_json::from_value(entry["ids"].clone()).unwrap();
        assert_eq!(want.len(), texts.len());
        let mut bad = 0;
        for (t, want) in texts.iter().zip(&want) {
            let ours = tok.encode(t, false).unwrap();
            if &ours != want {
                bad += 1;
                if bad <= 3 {
                    failures.push(format!("{pre}: {t:?}\n  ours  {ours:?}\n  llama {want:?}"));
                }
            }
            assert_eq!(tok.decode(&ours), *t);
        }
        eprintln!(
            "pre {pre:>10}: {} of {} strings as llama.cpp",
            texts.len() - bad,
            texts.len()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
