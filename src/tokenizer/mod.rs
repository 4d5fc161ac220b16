//! Text <-> token ids, and chat templates.
//!
//! One [`Tokenizer`] type wraps HF `tokenizers`, whatever it was built from:
//! - a GGUF vocabulary ([`GgufVocab`], see `gguf_vocab.rs`), rebuilt to tokenize exactly as
//!   llama.cpp does (byte-level BPE for `gpt2`, SentencePiece-style BPE for `llama`);
//! - an HF directory (`tokenizer.json`, `tokenizer_config.json`, `generation_config.json`),
//!   or the same files as bytes (the browser has no file system).
//!
//! Special tokens written in the text (`<|im_start|>`) are always matched whole, as
//! llama.cpp's `tokenize(special=true)` and HF's `encode` do. [`StreamDecoder`] turns ids
//! into text one at a time without ever splitting a character; [`render_chat`] renders an
//! HF chat template the way transformers does.

mod chat;
mod gguf_vocab;
mod hf;
mod pretok;
mod stream;

pub use chat::{render_chat, render_chat_with, ChatMessage};
pub use gguf_vocab::{token_type, vocab_from_gguf, GgufVocab};
pub use pretok::supported_pre;
pub use stream::StreamDecoder;

/// Everything that can go wrong building or using a tokenizer. Messages name the file,
/// key or token at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("missing {what} at {path}")]
    MissingFile { what: &'static str, path: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bad JSON in {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("bad {what}: {message}")]
    Invalid { what: String, message: String },
    #[error("unsupported tokenizer model '{0}' (tokenizer.ggml.model); supported: gpt2, llama")]
    UnsupportedModel(String),
    #[error("unsupported pre-tokenizer '{pre}' (tokenizer.ggml.pre); supported: {}", supported_pre().collect::<Vec<_>>().join(", "))]
    UnsupportedPre { pre: String },
    #[error("merge #{index} '{merge}' {problem}")]
    BadMerge {
        index: usize,
        merge: String,
        problem: String,
    },
    #[error("duplicate token {token:?} in the vocabulary (ids {first} and {second})")]
    DuplicateToken {
        token: String,
        first: u32,
        second: u32,
    },
    #[error("{what} = {id} is outside the vocabulary of {vocab_size} tokens")]
    IdOutOfRange {
        what: &'static str,
        id: u32,
        vocab_size: usize,
    },
    #[error("reading the GGUF tokenizer metadata: {0}")]
    Gguf(#[from] crate::formats::LoadError),
    #[error("the model has no chat template (no tokenizer.chat_template / chat_template)")]
    NoChatTemplate,
    #[error("chat template: {0}")]
    Template(String),
    #[error("tokenizers: {0}")]
    Hf(String),
}

impl TokenizerError {
    fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        TokenizerError::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }
    fn hf(e: tokenizers::Error) -> Self {
        TokenizerError::Hf(e.to_string())
    }
}

/// Token texts that end a turn in chat models; any of them present in the vocabulary is a
/// stop token. The same list llama.cpp uses to find end-of-generation tokens (the FIM
/// tokens it also adds are left out: they do not end a chat turn).
const STOP_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<｜end▁of▁sentence｜>",
];

/// A tokenizer with the model's special tokens, stop tokens and chat template.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_id: Option<u32>,
    /// Tokens that end generation: eos, eot and the turn-end tokens of [`STOP_TEXTS`].
    eos_ids: Vec<u32>,
    add_bos: bool,
    /// Appended by `encode(.., add_special = true)` when the model asks for EOS.
    add_eos_id: Option<u32>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_ids", &self.eos_ids)
            .field("add_bos", &self.add_bos)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

impl Tokenizer {
    /// Assembles a tokenizer; fills `eos_ids` from `eos_ids` plus the turn-end tokens found
    /// in the vocabulary.
    fn assemble(
        inner: tokenizers::Tokenizer,
        bos_id: Option<u32>,
        eos_ids: Vec<u32>,
        add_bos: bool,
        chat_template: Option<String>,
    ) -> Result<Tokenizer, TokenizerError> {
        let vocab_size = inner.get_vocab_size(true);
        let check = |what: &'static str, id: u32| {
            if (id as usize) < vocab_size {
                Ok(id)
            } else {
                Err(TokenizerError::IdOutOfRange {
                    what,
                    id,
                    vocab_size,
                })
            }
        };
        let bos_id = bos_id.map(|id| check("bos token id", id)).transpose()?;
        let mut stops = Vec::new();
        for id in eos_ids {
            let id = check("eos token id", id)?;
            if !stops.contains(&id) {
                stops.push(id);
            }
        }
        // gpt-oss: `<|end|>` ends a message but not the generation when `<|return|>` and
        // `<|call|>` exist (llama.cpp does the same).
        let has = |t: &str| inner.token_to_id(t).is_some();
        let end_is_stop = !(has("<|return|>") && has("<|call|>"));
        for text in STOP_TEXTS {
            if *text == "<|end|>" && !end_is_stop {
                continue;
            }
            if let Some(id) = inner.token_to_id(text) {
                if !stops.contains(&id) {
                    stops.push(id);
                }
            }
        }
        if add_bos && bos_id.is_none() {
            return Err(TokenizerError::invalid(
                "tokenizer",
                "add_bos is set but there is no bos token",
            ));
        }
        let token_text = |id: Option<u32>| id.and_then(|id| inner.id_to_token(id));
        Ok(Tokenizer {
            bos_token: token_text(bos_id),
            eos_token: token_text(stops.first().copied()),
            inner,
            bos_id,
            eos_ids: stops,
            add_bos,
            add_eos_id: None,
            chat_template,
        })
    }

    /// Makes `encode(.., add_special = true)` append `eos` (llama.cpp's `add_eos`).
    fn set_add_eos(&mut self, eos: Option<u32>) -> Result<(), TokenizerError> {
        let eos = eos.ok_or_else(|| {
            TokenizerError::invalid("tokenizer", "add_eos is set but there is no eos token")
        })?;
        self.add_eos_id = Some(eos);
        Ok(())
    }

    /// Text to ids. With `add_special` and a model that wants BOS, BOS is prepended once
    /// (not again when the text already starts with it, e.g. from a chat template). Special
    /// tokens written in the text are recognised as single tokens.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(TokenizerError::hf)?;
        let ids = enc.get_ids();
        let mut out = Vec::with_capacity(ids.len() + 2);
        if let Some(bos) = self.bos_id {
            if add_special && self.add_bos && ids.first() != Some(&bos) {
                out.push(bos);
            }
        }
        out.extend_from_slice(ids);
        if let (true, Some(eos)) = (add_special, self.add_eos_id) {
            out.push(eos);
        }
        Ok(out)
    }

    /// Ids to text, special tokens included (so `decode(encode(s)) == s`). Ids outside the
    /// vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_with(ids, false)
    }

    /// Ids to text; with `skip_special`, special tokens (bos, `<|im_end|>`, ...) are left out.
    pub fn decode_with(&self, ids: &[u32], skip_special: bool) -> String {
        // The decoders used here (ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace,
        // WordPiece) cannot fail; should a custom one fail, the text is empty rather than a panic.
        self.inner.decode(ids, skip_special).unwrap_or_default()
    }

    /// Number of token ids, added tokens included (the embedding rows the ids index).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Whether generating `id` ends the sequence.
    pub fn is_stop(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Stop tokens, the model's own eos first.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Whether `id` is a special (control) token.
    pub fn is_special(&self, id: u32) -> bool {
        self.inner
            .get_added_vocabulary()
            .simple_id_to_token(id)
            .is_some_and(|t| self.inner.get_added_vocabulary().is_special_token(&t))
    }

    /// The wrapped HF tokenizer.
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The HF `tokenizer.json` of this tokenizer, so that an HF directory can be written
    /// from a GGUF (see also [`Tokenizer::to_tokenizer_config_json`]).
    pub fn to_json(&self) -> String {
        // Serialising the structures built here cannot fail (only maps with non-string keys
        // could); keep the signature infallible and say so if it ever does.
        self.inner
            .to_string(false)
            .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
    }

    /// A `tokenizer_config.json` to go with [`Tokenizer::to_json`]: special tokens,
    /// `add_bos_token`, the chat template.
    pub fn to_tokenizer_config_json(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("add_bos_token".into(), self.add_bos.into());
        m.insert("add_eos_token".into(), false.into());
        m.insert("bos_token".into(), self.bos_token.clone().into());
        m.insert("eos_token".into(), self.eos_token.clone().into());
        m.insert("clean_up_tokenization_spaces".into(), false.into());
        m.insert(
            "tokenizer_class".into(),
            "PreTrainedTokenizerFast".to_string().into(),
        );
        if let Some(t) = &self.chat_template {
            m.insert("chat_template".into(), t.clone().into());
        }
        serde_json::Value::Object(m).to_string()
    }

    /// Renders the model's chat template (see [`render_chat`]).
    pub fn apply_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or(TokenizerError::NoChatTemplate)?;
        render_chat(
            template,
            messages,
            add_generation_prompt,
            self.bos_token.as_deref().unwrap_or(""),
            self.eos_token.as_deref().unwrap_or(""),
        )
    }

    /// A fresh streaming decoder (see [`StreamDecoder`]).
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder {
        StreamDecoder::new(skip_special)
    }
}
