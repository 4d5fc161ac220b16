//! A tokenizer from an HF model directory, or from the same files' bytes (browser).
//!
//! - `tokenizer.json` (required): the HF tokenizer itself.
//! - `tokenizer_config.json` (optional): `bos_token` / `eos_token` (a string or an
//!   AddedToken object), `add_bos_token`, `add_eos_token`, `chat_template` (a string, or a
//!   list of `{name, template}` of which "default" is taken, else the first).
//! - `chat_template.jinja` or `chat_template.json` (optional, newer layout): the template
//!   when `tokenizer_config.json` has none.
//! - `generation_config.json` (optional): `eos_token_id`, an integer or a list, all stops.
//!
//! Without `add_bos_token`, BOS is added when the `tokenizer.json` post-processor adds it
//! (Llama 3 style). The post-processor is otherwise not used: `encode` adds BOS itself.

use std::path::Path;

use serde_json::Value;

use super::{Tokenizer, TokenizerError};

/// Reads a model file by name: its bytes, or None when there is no such file.
pub type FileReader<'a> = dyn FnMut(&str) -> Result<Option<Vec<u8>>, TokenizerError> + 'a;

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, TokenizerError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TokenizerError::Io {
            path: path.display().to_string(),
            source: e,
        }),
    }
}

fn parse_json(what: &str, bytes: &[u8]) -> Result<Value, TokenizerError> {
    serde_json::from_slice(bytes).map_err(|source| TokenizerError::Json {
        what: what.to_string(),
        source,
    })
}

/// A special token written as a string or as an AddedToken object (`{"content": ...}`).
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// `chat_template` as a string, or a list of named templates ("default", else the first).
fn chat_template(v: Option<&Value>) -> Result<Option<String>, TokenizerError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(list)) => {
            let named = |o: &Value| -> Option<(String, String)> {
                Some((
                    o.get("name")?.as_str()?.to_string(),
                    o.get("template")?.as_str()?.to_string(),
                ))
            };
            let all: Vec<(String, String)> = list.iter().filter_map(named).collect();
            if all.len() != list.len() {
                return Err(TokenizerError::invalid(
                    "tokenizer_config.json",
                    "chat_template list entries must be {\"name\": .., \"template\": ..}",
                ));
            }
            Ok(all
                .iter()
                .find(|(n, _)| n == "default")
                .or(all.first())
                .map(|(_, t)| t.clone()))
        }
        Some(_) => Err(TokenizerError::invalid(
            "tokenizer_config.json",
            "chat_template must be a string or a list of {name, template}",
        )),
    }
}

/// Checks what `tokenizers` leaves unchecked when it reads a `TemplateProcessing`
/// post-processor (its builder would check it): each special token a template names is
/// defined, with as many ids as tokens, and the single template has no `$B`. Otherwise every
/// encode panics (a fuzz finding: `fuzz/regressions/tokenizer_json/`). `v` is the loaded
/// post-processor written back as JSON (canonical: pieces as objects).
fn check_post_processor(v: &Value) -> Result<(), TokenizerError> {
    let bad = |m: String| TokenizerError::invalid("tokenizer.json post_processor", m);
    match v.get("type").and_then(Value::as_str) {
        Some("Sequence") => {
            let parts = v.get("processors").and_then(Value::as_array);
            for p in parts.into_iter().flatten() {
                check_post_processor(p)?;
            }
        }
        Some("TemplateProcessing") => {
            let specials = v.get("special_tokens").and_then(Value::as_object);
            for (name, t) in specials.into_iter().flatten() {
                let len = |k: &str| t.get(k).and_then(Value::as_array).map_or(0, Vec::len);
                if len("ids") != len("tokens") {
                    return Err(bad(format!(
                        "special token {name:?} has {} ids for {} tokens",
                        len("ids"),
                        len("tokens")
                    )));
                }
            }
            for which in ["single", "pair"] {
                let pieces = v.get(which).and_then(Value::as_array);
                for piece in pieces.into_iter().flatten() {
                    if let Some(id) = piece.pointer("/SpecialToken/id").and_then(Value::as_str) {
                        if !specials.is_some_and(|s| s.contains_key(id)) {
                            return Err(bad(format!(
                                "the {which} template names {id:?}, which is not in special_tokens"
                            )));
                        }
                    }
                    let seq = piece.pointer("/Sequence/id").and_then(Value::as_str);
                    if which == "single" && seq == Some("B") {
                        return Err(bad(
                            "the single template uses $B, the second text of a pair".into(),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Refuses a `Strip` decoder that strips from the end (`stop > 0`): `tokenizers` cuts
/// past the start of a token shorter than that, a panic at decode (a fuzz finding:
/// `fuzz/regressions/tokenizer_json/strip-decoder-stop`). Real tokenizers strip one
/// leading space (`start: 1, stop: 0`).
fn check_decoder(v: &Value) -> Result<(), TokenizerError> {
    match v.get("type").and_then(Value::as_str) {
        Some("Sequence") => {
            let parts = v.get("decoders").and_then(Value::as_array);
            for d in parts.into_iter().flatten() {
                check_decoder(d)?;
            }
        }
        Some("Strip") => {
            let stop = v.get("stop").and_then(Value::as_u64).unwrap_or(0);
            if stop > 0 {
                return Err(TokenizerError::invalid(
                    "tokenizer.json decoder",
                    format!("a Strip decoder with stop {stop} is not supported (only stop 0)"),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Token ids from an integer or a list of integers.
fn id_list(what: &str, v: Option<&Value>) -> Result<Vec<u32>, TokenizerError> {
    let one = |x: &Value| {
        x.as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| TokenizerError::invalid(what, format!("{x} is not a token id")))
    };
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(list)) => list.iter().map(one).collect(),
        Some(x) => Ok(vec![one(x)?]),
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` and friends from an HF model directory (see the module
    /// comment for which files and keys).
    pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer, TokenizerError> {
        Self::from_hf_files(&|name| dir.join(name).display().to_string(), &mut |name| {
            read_optional(&dir.join(name))
        })
    }

    /// As [`Tokenizer::from_hf_dir`], for files named as in the directory: `read(name)`
    /// gives a file's bytes (None: absent), `label(name)` names it in messages.
    pub fn from_hf_files(
        label: &dyn Fn(&str) -> String,
        read: &mut FileReader<'_>,
    ) -> Result<Tokenizer, TokenizerError> {
        let tokenizer_json =
            read("tokenizer.json")?.ok_or_else(|| TokenizerError::MissingFile {
                what: "tokenizer.json",
                path: label("tokenizer.json"),
            })?;
        let config = read("tokenizer_config.json")?;
        let generation = read("generation_config.json")?;
        let mut tok =
            Tokenizer::from_json_bytes(&tokenizer_json, config.as_deref(), generation.as_deref())?;
        if tok.chat_template.is_none() {
            if let Some(b) = read("chat_template.jinja")? {
                let t = String::from_utf8(b).map_err(|_| {
                    TokenizerError::invalid("chat_template.jinja", "not UTF-8 text")
                })?;
                tok.chat_template = Some(t);
            } else if let Some(b) = read("chat_template.json")? {
                let v = parse_json("chat_template.json", &b)?;
                tok.chat_template = chat_template(v.get("chat_template"))?;
            }
        }
        Ok(tok)
    }

    /// The same as [`Tokenizer::from_hf_dir`] from the files' contents.
    pub fn from_json_bytes(
        tokenizer_json: &[u8],
        tokenizer_config_json: Option<&[u8]>,
        generation_config_json: Option<&[u8]>,
    ) -> Result<Tokenizer, TokenizerError> {
        // Parse once with serde_json first: its errors say where the JSON is broken.
        parse_json("tokenizer.json", tokenizer_json)?;
        let mut inner = tokenizers::Tokenizer::from_bytes(tokenizer_json)
            .map_err(|e| TokenizerError::invalid("tokenizer.json", e.to_string()))?;
        // A prompt is never padded or cut by the tokenizer (the server checks it against the
        // context): a file's `padding` would make every encode allocate its length (any
        // u64), and its `truncation` would cut prompts silently.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| TokenizerError::invalid("tokenizer.json", e.to_string()))?;
        if let Some(pp) = inner.get_post_processor() {
            let v = serde_json::to_value(pp)
                .map_err(|e| TokenizerError::invalid("tokenizer.json", e.to_string()))?;
            check_post_processor(&v)?;
        }
        if let Some(d) = inner.get_decoder() {
            let v = serde_json::to_value(d)
                .map_err(|e| TokenizerError::invalid("tokenizer.json", e.to_string()))?;
            check_decoder(&v)?;
        }
        let config = tokenizer_config_json
            .map(|b| parse_json("tokenizer_config.json", b))
            .transpose()?
            .unwrap_or(Value::Null);
        let generation = generation_config_json
            .map(|b| parse_json("generation_config.json", b))
            .transpose()?
            .unwrap_or(Value::Null);

        let lookup = |key: &str| -> Result<Option<u32>, TokenizerError> {
            match token_text(config.get(key)) {
                None => Ok(None),
                Some(text) => inner.token_to_id(&text).map(Some).ok_or_else(|| {
                    TokenizerError::invalid(
                        "tokenizer_config.json",
                        format!("{key} {text:?} is not in the vocabulary"),
                    )
                }),
            }
        };
        let mut bos_id = lookup("bos_token")?;
        let eos_id = lookup("eos_token")?;

        let add_bos = match config.get("add_bos_token").and_then(Value::as_bool) {
            Some(b) => b,
            None => {
                // Does the post-processor put a special token in front?
                let with = inner.encode_fast("", true).map_err(TokenizerError::hf)?;
                match (with.get_ids().first(), bos_id) {
                    (Some(&first), Some(bos)) => first == bos,
                    (Some(&first), None) => {
                        bos_id = Some(first);
                        true
                    }
                    (None, _) => false,
                }
            }
        };
        let mut stops: Vec<u32> = eos_id.into_iter().collect();
        stops.extend(id_list(
            "generation_config.json eos_token_id",
            generation.get("eos_token_id"),
        )?);
        let template = chat_template(config.get("chat_template"))?;
        let mut tok = Tokenizer::assemble(inner, bos_id, stops, add_bos, template)?;
        if config.get("add_eos_token").and_then(Value::as_bool) == Some(true) {
            tok.set_add_eos(eos_id)?;
        }
        Ok(tok)
    }
}
