//! A tokenizer rebuilt from GGUF metadata (`tokenizer.ggml.*`), tokenizing exactly as
//! llama.cpp's `llama-vocab.cpp` does.
//!
//! - `gpt2`: byte-level BPE with the file's merges and the pre-tokenizer named by
//!   `tokenizer.ggml.pre` (see `pretok.rs`).
//! - `llama`: SentencePiece BPE (Llama 2, TinyLlama, Mistral). llama.cpp merges, again and
//!   again, the adjacent pair whose concatenation is the vocabulary token with the highest
//!   score, falling back to `<0xNN>` byte tokens. That is BPE over merges derived from the
//!   vocabulary (every split of a token into two vocabulary tokens is a merge, ranked by
//!   the token's score), as HF's converters derive them. The normalizer turns ' ' into '▁'
//!   and, with `add_space_prefix`, prepends '▁' to each run of text not interrupted by a
//!   special token (llama.cpp's "prefix with space if previous is special").
//!   One known difference: when two *different* tokens with *equal* scores compete for a
//!   symbol ("a b a" with "ab" and "ba" scored alike), llama.cpp merges the leftmost pair
//!   and HF BPE the pair ranked first. SentencePiece BPE vocabularies (Llama 2, Mistral)
//!   normally give each normal token its own score (its merge rank), so this should not
//!   arise with them.
//!
//! Token types 2 (unknown), 3 (control) and 4 (user-defined) become HF added tokens, so
//! they are matched whole in the text, before normalization (llama.cpp's
//! `tokenizer_st_partition` with `parse_special = true`).

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper};

use super::{pretok, Tokenizer, TokenizerError};
use crate::formats::gguf::GgufFile;

/// GGUF token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// The tokenizer part of a GGUF's metadata, as plain data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer of a BPE vocabulary.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub scores: Option<Vec<f32>>,
    /// 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub token_types: Option<Vec<i32>>,
    /// "left right" strings, best first.
    pub merges: Option<Vec<String>>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub eot_id: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    pub chat_template: Option<String>,
}

/// Reads the `tokenizer.*` metadata of a GGUF file.
pub fn vocab_from_gguf(g: &GgufFile) -> Result<GgufVocab, TokenizerError> {
    let missing = |key: &str| {
        TokenizerError::invalid(
            format!("GGUF {}", g.path()),
            format!("no '{key}' in the metadata"),
        )
    };
    let model = g
        .get_str("tokenizer.ggml.model")?
        .ok_or_else(|| missing("tokenizer.ggml.model"))?
        .to_string();
    let owned = |v: Option<Vec<&str>>| v.map(|v| v.into_iter().map(str::to_string).collect());
    let tokens: Vec<String> = owned(g.get_string_array("tokenizer.ggml.tokens")?)
        .ok_or_else(|| missing("tokenizer.ggml.tokens"))?;
    Ok(GgufVocab {
        model,
        pre: g.get_str("tokenizer.ggml.pre")?.map(str::to_string),
        tokens,
        scores: g.get_f32_array("tokenizer.ggml.scores")?,
        token_types: g.get_i32_array("tokenizer.ggml.token_type")?,
        merges: owned(g.get_string_array("tokenizer.ggml.merges")?),
        bos_id: g.get_u32("tokenizer.ggml.bos_token_id")?,
        eos_id: g.get_u32("tokenizer.ggml.eos_token_id")?,
        unk_id: g.get_u32("tokenizer.ggml.unknown_token_id")?,
        pad_id: g.get_u32("tokenizer.ggml.padding_token_id")?,
        eot_id: g.get_u32("tokenizer.ggml.eot_token_id")?,
        add_bos: g.get_bool("tokenizer.ggml.add_bos_token")?,
        add_eos: g.get_bool("tokenizer.ggml.add_eos_token")?,
        add_space_prefix: g.get_bool("tokenizer.ggml.add_space_prefix")?,
        chat_template: g.get_str("tokenizer.chat_template")?.map(str::to_string),
    })
}

/// Token texts (empty ones renamed as llama.cpp does) and the text -> id map.
fn vocab_map(v: &GgufVocab) -> Result<(Vec<String>, HashMap<String, u32>), TokenizerError> {
    let n = v.tokens.len();
    if n == 0 {
        return Err(TokenizerError::invalid(
            "GGUF vocabulary",
            "tokenizer.ggml.tokens is empty",
        ));
    }
    if u32::try_from(n).is_err() {
        return Err(TokenizerError::invalid(
            "GGUF vocabulary",
            format!("{n} tokens do not fit u32 ids"),
        ));
    }
    for (what, len) in [
        ("tokenizer.ggml.scores", v.scores.as_ref().map(Vec::len)),
        (
            "tokenizer.ggml.token_type",
            v.token_types.as_ref().map(Vec::len),
        ),
    ] {
        if let Some(len) = len {
            if len < n {
                return Err(TokenizerError::invalid(
                    "GGUF vocabulary",
                    format!("{what} has {len} entries for {n} tokens"),
                ));
            }
        }
    }
    let texts: Vec<String> = v
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                t.clone()
            }
        })
        .collect();
    let mut map = HashMap::with_capacity(n);
    for (i, t) in texts.iter().enumerate() {
        if let Some(first) = map.insert(t.clone(), i as u32) {
            return Err(TokenizerError::DuplicateToken {
                token: t.clone(),
                first,
                second: i as u32,
            });
        }
    }
    Ok((texts, map))
}

/// `Some(id)` when `id` indexes the vocabulary; llama.cpp disables out-of-range defaults,
/// but an out-of-range id written in the file is an error here.
fn checked_id(
    what: &'static str,
    id: Option<u32>,
    n: usize,
) -> Result<Option<u32>, TokenizerError> {
    match id {
        Some(id) if id as usize >= n => Err(TokenizerError::IdOutOfRange {
            what,
            id,
            vocab_size: n,
        }),
        other => Ok(other),
    }
}

/// Splits a "left right" merge at the first space after the first byte, as llama.cpp
/// does, and checks that both halves and their concatenation are tokens.
fn parse_merges(
    merges: &[String],
    vocab: &HashMap<String, u32>,
) -> Result<Vec<(String, String)>, TokenizerError> {
    merges
        .iter()
        .enumerate()
        .map(|(index, m)| {
            let bad = |problem: String| TokenizerError::BadMerge {
                index,
                merge: m.clone(),
                problem,
            };
            let pos = m
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(i, _)| i)
                .ok_or_else(|| bad("is not two tokens separated by a space".into()))?;
            let (left, right) = (&m[..pos], &m[pos + 1..]);
            for part in [left, right] {
                if !vocab.contains_key(part) {
                    return Err(bad(format!("refers to unknown token {part:?}")));
                }
            }
            let merged = format!("{left}{right}");
            if !vocab.contains_key(&merged) {
                return Err(bad(format!(
                    "makes {merged:?}, which is not in the vocabulary"
                )));
            }
            Ok((left.to_string(), right.to_string()))
        })
        .collect()
}

/// SentencePiece merges from the vocabulary: for every token, each split into two tokens
/// of the vocabulary; ordered by the token's score, best first (ties: longer left piece,
/// then longer right piece, then vocabulary order), as transformers' `generate_merges`.
///
/// Every split of a token costs its length (hashing both halves, and the merge's strings
/// when both are tokens), so a vocabulary of long tokens costs the square of their
/// lengths: a hostile file of all prefixes of one long run, or one token of megabytes,
/// would take minutes and gigabytes. That work is bounded by [`spm_merge_budget`] bytes.
pub(crate) fn spm_merges(
    texts: &[String],
    scores: &[f32],
    vocab: &HashMap<String, u32>,
) -> Result<Vec<(String, String)>, TokenizerError> {
    let budget = spm_merge_budget(texts);
    let mut work = 0usize;
    let mut merges: Vec<(String, String, f32, usize, usize)> = Vec::new();
    for (id, tok) in texts.iter().enumerate() {
        let start = merges.len();
        for (b, _) in tok.char_indices().skip(1) {
            work += tok.len();
            if work > budget {
                return Err(TokenizerError::invalid(
                    "GGUF vocabulary",
                    format!(
                        "deriving the SentencePiece merges would take more than {budget} bytes \
                         of work (at token {id}, of {} bytes): tokens this long are not a \
                         real vocabulary",
                        tok.len()
                    ),
                ));
            }
            let (l, r) = (&tok[..b], &tok[b..]);
            if vocab.contains_key(l) && vocab.contains_key(r) {
                merges.push((
                    l.to_string(),
                    r.to_string(),
                    scores[id],
                    l.chars().count(),
                    r.chars().count(),
                ));
            }
        }
        merges[start..].sort_by_key(|m| (vocab[&m.0], vocab[&m.1]));
    }
    // Stable: equal keys keep the order above, like Python's sorted(reverse=True).
    merges.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)).then(b.4.cmp(&a.4)));
    Ok(merges.into_iter().map(|m| (m.0, m.1)).collect())
}

/// Bytes of work [`spm_merges`] may do: 64 per byte of vocabulary, and at least 256 MiB.
/// A vocabulary needs about its mean token length (in bytes) per byte, a few for real ones.
pub(crate) fn spm_merge_budget(texts: &[String]) -> usize {
    let bytes: usize = texts.iter().map(String::len).sum();
    bytes.saturating_mul(64).max(256 << 20)
}

fn build_bpe(
    vocab: HashMap<String, u32>,
    merges: Vec<(String, String)>,
    configure: impl FnOnce(tokenizers::models::bpe::BpeBuilder) -> tokenizers::models::bpe::BpeBuilder,
) -> Result<BPE, TokenizerError> {
    let vocab: tokenizers::models::bpe::Vocab = vocab.into_iter().collect();
    configure(BPE::builder().vocab_and_merges(vocab, merges))
        .build()
        .map_err(TokenizerError::hf)
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF describes (see the module comment for how).
    pub fn from_gguf_vocab(v: &GgufVocab) -> Result<Tokenizer, TokenizerError> {
        let (texts, vocab) = vocab_map(v)?;
        let n = texts.len();
        let bos_id;
        let eos_id;
        let add_bos;
        let mut inner = match v.model.as_str() {
            "gpt2" => {
                let spec = pretok::spec_for(v.pre.as_deref())?;
                let merges = v.merges.as_deref().ok_or_else(|| {
                    TokenizerError::invalid(
                        "GGUF vocabulary",
                        "a gpt2 (BPE) vocabulary needs tokenizer.ggml.merges",
                    )
                })?;
                let merges = parse_merges(merges, &vocab)?;
                let bpe = build_bpe(vocab, merges, |b| b.ignore_merges(spec.ignore_merges))?;
                let mut t = tokenizers::Tokenizer::new(bpe);
                t.with_pre_tokenizer(Some(pretok::build(spec.kind)?));
                t.with_decoder(Some(ByteLevel::new(false, true, true)));
                // llama.cpp's defaults for BPE (bos = eos = 11) are GPT-2 relics; take
                // only what the file says.
                bos_id = checked_id("tokenizer.ggml.bos_token_id", v.bos_id, n)?;
                eos_id = checked_id("tokenizer.ggml.eos_token_id", v.eos_id, n)?;
                add_bos = v.add_bos.unwrap_or(spec.add_bos_default);
                t
            }
            "llama" => {
                let scores = v.scores.as_deref().ok_or_else(|| {
                    TokenizerError::invalid(
                        "GGUF vocabulary",
                        "a llama (SentencePiece) vocabulary needs tokenizer.ggml.scores",
                    )
                })?;
                let merges = spm_merges(&texts, scores, &vocab)?;
                // llama.cpp's SPM defaults: unk 0, bos 1, eos 2, when the file is silent.
                let default = |id: u32| (id as usize) < n;
                let unk_id = checked_id("tokenizer.ggml.unknown_token_id", v.unk_id, n)?
                    .or(Some(0).filter(|&i| default(i)));
                bos_id = checked_id("tokenizer.ggml.bos_token_id", v.bos_id, n)?
                    .or(Some(1).filter(|&i| default(i)));
                eos_id = checked_id("tokenizer.ggml.eos_token_id", v.eos_id, n)?
                    .or(Some(2).filter(|&i| default(i)));
                let unk_text = unk_id.map(|i| texts[i as usize].clone());
                let bpe = build_bpe(vocab, merges, |b| {
                    let b = b.byte_fallback(true).fuse_unk(true);
                    match unk_text {
                        Some(u) => b.unk_token(u),
                        None => b,
                    }
                })?;
                let space_prefix = v.add_space_prefix.unwrap_or(true);
                let mut norm: Vec<NormalizerWrapper> = Vec::new();
                if space_prefix {
                    norm.push(Prepend::new("▁".into()).into());
                }
                norm.push(Replace::new(" ", "▁").map_err(TokenizerError::hf)?.into());
                let mut dec: Vec<DecoderWrapper> = vec![
                    Replace::new("▁", " ").map_err(TokenizerError::hf)?.into(),
                    ByteFallback::new().into(),
                    Fuse::new().into(),
                ];
                if space_prefix {
                    dec.push(Strip::new(' ', 1, 0).into());
                }
                let mut t = tokenizers::Tokenizer::new(bpe);
                t.with_normalizer(Some(NormalizerSequence::new(norm)));
                t.with_decoder(Some(DecoderSequence::new(dec)));
                add_bos = v.add_bos.unwrap_or(true);
                t
            }
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };

        // Control, unknown and user-defined tokens are matched whole in the raw text. Like
        // llama.cpp, turn-end tokens (`<|im_end|>`, ...) count as control whatever their type.
        let types = v.token_types.as_deref().unwrap_or(&[]);
        let type_of = |i: usize, text: &str| {
            if super::STOP_TEXTS.contains(&text) {
                token_type::CONTROL
            } else {
                types.get(i).copied().unwrap_or(token_type::NORMAL)
            }
        };
        let added = |want: &[i32], special: bool| -> Vec<AddedToken> {
            texts
                .iter()
                .enumerate()
                .filter(|(i, text)| want.contains(&type_of(*i, text)))
                .map(|(_, text)| AddedToken::from(text.clone(), special).normalized(false))
                .collect()
        };
        inner.add_special_tokens(&added(&[token_type::CONTROL, token_type::UNKNOWN], true));
        inner.add_tokens(&added(&[token_type::USER_DEFINED], false));
        if inner.get_vocab_size(true) != n {
            return Err(TokenizerError::invalid(
                "GGUF vocabulary",
                format!(
                    "built {} ids from {n} tokens (an added token is missing from the vocabulary)",
                    inner.get_vocab_size(true)
                ),
            ));
        }

        // For `to_json`: HF tools add BOS through the post-processor. `encode` here adds it
        // itself (once), so the post-processor is never run by this crate.
        if add_bos {
            if let Some(bos) = bos_id {
                let text = texts[bos as usize].clone();
                let pp = TemplateProcessing::builder()
                    .try_single(vec![text.clone(), "$A".to_string()])
                    .and_then(|b| {
                        b.try_pair(vec![
                            text.clone(),
                            "$A".to_string(),
                            text.clone(),
                            "$B:1".to_string(),
                        ])
                    })
                    .map_err(TokenizerError::Hf)?
                    .special_tokens(vec![(text, bos)])
                    .build()
                    .map_err(|e| TokenizerError::Hf(e.to_string()))?;
                inner.with_post_processor(Some(PostProcessorWrapper::Template(pp)));
            }
        }

        let eot_id = checked_id("tokenizer.ggml.eot_token_id", v.eot_id, n)?;
        checked_id("tokenizer.ggml.padding_token_id", v.pad_id, n)?;
        let stops = eos_id.into_iter().chain(eot_id).collect();
        let mut tok = Tokenizer::assemble(inner, bos_id, stops, add_bos, v.chat_template.clone())?;
        if v.add_eos == Some(true) {
            tok.set_add_eos(eos_id)?;
        }
        Ok(tok)
    }
}
