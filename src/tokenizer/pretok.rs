//! Byte-level BPE pre-tokenizers, chosen from `tokenizer.ggml.pre` the way llama.cpp's
//! `llama-vocab.cpp` does (`llm_tokenizer_bpe` constructor and the `tokenizer_pre` name
//! table in `llama_vocab::impl::load`).
//!
//! llama.cpp applies a list of regexes in turn; each one splits every piece left by the
//! previous one, keeping the text between matches as pieces of its own. That is HF's
//! `Split(regex, Isolated)`, so each list becomes a `Sequence` of those, followed by
//! `ByteLevel` (which maps bytes to the GPT-2 alphabet). The GPT-2 regex is written as HF's
//! `ByteLevel(use_regex=true)`, which is the same regex and what HF's own `tokenizer.json`
//! files say.

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use super::TokenizerError;

/// GPT-2's split (llama.cpp writes it without the final `|\s+`; with isolated splitting the
/// text that alternative would match is a piece of its own either way).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's split as llama.cpp writes it: HF's `(?i:'s|'t|...)` spelled out by case.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split: Llama 3's with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Tekken's split (Mistral Nemo, Pixtral), as its tokenizer.json writes it; llama.cpp
/// spells the case classes out for its own regex engine.
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer families this crate builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreKind {
    /// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_DEFAULT`: punctuation runs, GPT-2, digit runs,
    /// then digit triples. Also what llama.cpp uses when `pre` is missing.
    Default,
    /// `LLAMA_VOCAB_PRE_TYPE_GPT2`: the GPT-2 regex alone.
    Gpt2,
    /// `LLAMA_VOCAB_PRE_TYPE_SMOLLM` (and starcoder, refact, ...): every digit on its own,
    /// then GPT-2.
    DigitsGpt2,
    /// `LLAMA_VOCAB_PRE_TYPE_LLAMA3`, also dbrx and smaug.
    Llama3,
    /// `LLAMA_VOCAB_PRE_TYPE_QWEN2`, also stablelm2 and hunyuan.
    Qwen2,
    /// `LLAMA_VOCAB_PRE_TYPE_TEKKEN`.
    Tekken,
    /// `LLAMA_VOCAB_PRE_TYPE_FALCON`.
    Falcon,
    /// `LLAMA_VOCAB_PRE_TYPE_BLOOM` (and poro, gpt3-finnish).
    Bloom,
}

/// What a `tokenizer.ggml.pre` name means.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreSpec {
    pub kind: PreKind,
    /// llama.cpp's `ignore_merges`: a piece that is a whole vocabulary token is taken as is.
    pub ignore_merges: bool,
    /// llama.cpp's default for `add_bos` when the GGUF does not say.
    pub add_bos_default: bool,
}

/// (names, kind, ignore_merges, add_bos default), from llama.cpp's name table.
const TABLE: &[(&[&str], PreKind, bool, bool)] = &[
    (&["default"], PreKind::Default, false, false),
    (
        &[
            "gpt-2",
            "gpt2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "mpt",
            "olmo",
            "jais",
            "trillion",
            "granite-docling",
            "exaone4",
        ],
        PreKind::Gpt2,
        false,
        false,
    ),
    (
        &[
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
            "minerva-7b",
            "mellum2",
        ],
        PreKind::DigitsGpt2,
        false,
        false,
    ),
    (
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        PreKind::Llama3,
        true,
        true,
    ),
    (&["dbrx", "smaug-bpe"], PreKind::Llama3, false, false),
    (
        &[
            "qwen2",
            "deepseek-r1-qwen",
            "kormo",
            "f2llmv2",
            "megrez",
            "stablelm2",
            "hunyuan",
            "solar-open",
        ],
        PreKind::Qwen2,
        false,
        false,
    ),
    (&["tekken"], PreKind::Tekken, true, true),
    (&["falcon"], PreKind::Falcon, false, false),
    (
        &["bloom", "poro-chat", "gpt3-finnish"],
        PreKind::Bloom,
        false,
        false,
    ),
];

/// Every `tokenizer.ggml.pre` value accepted (from the table), for error messages.
pub fn supported_pre() -> impl Iterator<Item = &'static str> {
    TABLE.iter().flat_map(|(names, ..)| names.iter().copied())
}

/// The spec for a `pre` name; a missing name is llama.cpp's "default" (which it warns
/// about, as the result is poor for most models). Unknown names are an error, as in
/// llama.cpp: guessing a regex silently changes the token ids.
pub(crate) fn spec_for(pre: Option<&str>) -> Result<PreSpec, TokenizerError> {
    let name = pre.unwrap_or("default");
    TABLE
        .iter()
        .find(|(names, ..)| names.contains(&name))
        .map(|&(_, kind, ignore_merges, add_bos_default)| PreSpec {
            kind,
            ignore_merges,
            add_bos_default,
        })
        .ok_or_else(|| TokenizerError::UnsupportedPre {
            pre: name.to_string(),
        })
}

fn isolated(regex: &str) -> Result<PreTokenizerWrapper, TokenizerError> {
    Split::new(
        SplitPattern::Regex(regex.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map(PreTokenizerWrapper::Split)
    .map_err(|e| TokenizerError::Hf(format!("pre-tokenizer regex {regex:?}: {e}")))
}

/// Isolated splits on `regexes` in turn, then bytes to the GPT-2 alphabet.
fn splits_then_bytes(regexes: &[&str]) -> Result<PreTokenizerWrapper, TokenizerError> {
    let mut seq = regexes
        .iter()
        .map(|r| isolated(r))
        .collect::<Result<Vec<_>, _>>()?;
    seq.push(ByteLevel::new(false, true, false).into());
    Ok(PreTokenizerWrapper::Sequence(Sequence::new(seq)))
}

/// The HF pre-tokenizer for a byte-level BPE vocabulary.
pub(crate) fn build(kind: PreKind) -> Result<PreTokenizerWrapper, TokenizerError> {
    let gpt2 = || PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
    match kind {
        PreKind::Gpt2 => Ok(gpt2()),
        PreKind::DigitsGpt2 => Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            Digits::new(true).into(),
            gpt2(),
        ]))),
        PreKind::Default => {
            splits_then_bytes(&[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"])
        }
        PreKind::Llama3 => splits_then_bytes(&[LLAMA3]),
        PreKind::Qwen2 => splits_then_bytes(&[QWEN2]),
        PreKind::Tekken => splits_then_bytes(&[TEKKEN]),
        PreKind::Falcon => splits_then_bytes(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"]),
        PreKind::Bloom => splits_then_bytes(&[r" ?[^(\s|.,!?…。，、।۔،)]+"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_resolves_and_every_regex_compiles() {
        for name in supported_pre() {
            let spec = spec_for(Some(name)).unwrap();
            build(spec.kind).unwrap();
        }
        let mut names: Vec<&str> = supported_pre().collect();
        let listed = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), listed, "a name appears twice in the table");
    }

    #[test]
    fn unknown_name_is_a_clear_error() {
        let e = spec_for(Some("nope")).unwrap_err().to_string();
        assert!(e.contains("'nope'") && e.contains("smollm"), "{e}");
        assert_eq!(spec_for(None).unwrap().kind, PreKind::Default);
    }
}
