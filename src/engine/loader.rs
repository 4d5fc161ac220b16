//! Finding and opening a model with its tokenizer.

use crate::model::gguf::GgufFile;
use crate::model::gguf_model::GgufModel;
use crate::model::hf::{HfModel, MemoryFiles};
#[cfg(not(target_arch = "wasm32"))]
use crate::model::load::open_model;
use crate::model::{LoadError, WeightSource};
use crate::tokenizer::{vocab_from_gguf, Tokenizer};
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::path::PathBuf;

/// The default model's file name, as `scripts/fetch-model.sh` stores it.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `HEADROOM_MODEL`, else `$HEADROOM_MODEL_DIR`, `$XDG_CACHE_HOME/headroom/models` or
/// `~/.cache/headroom/models`, joined with the default model's file name.
pub fn default_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("HEADROOM_MODEL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let dir = std::env::var_os("HEADROOM_MODEL_DIR")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .filter(|p| !p.is_empty())
                .map(|c| PathBuf::from(c).join("headroom/models"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/headroom/models"))
        })
        .unwrap_or_else(|| PathBuf::from("."));
    dir.join(DEFAULT_MODEL_FILE)
}

/// A model's weights and its tokenizer.
pub struct ModelFiles {
    pub weights: Box<dyn WeightSource>,
    pub tokenizer: Tokenizer,
}

/// Opens a GGUF file or an HF directory, with the tokenizer that belongs to it.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &Path) -> Result<ModelFiles, LoadError> {
    let label = path.display().to_string();
    let weights = open_model(path)?;
    let tokenizer = if path.is_dir() {
        Tokenizer::from_hf_dir(path)
            .map_err(|e| LoadError::new(&label, format!("tokenizer: {e}")))?
    } else {
        let g = GgufFile::open(path)?;
        let vocab =
            vocab_from_gguf(&g).map_err(|e| LoadError::new(&label, format!("tokenizer: {e}")))?;
        Tokenizer::from_gguf_vocab(&vocab)
            .map_err(|e| LoadError::new(&label, format!("tokenizer: {e}")))?
    };
    check_vocab(&label, weights, tokenizer)
}

/// Parses a GGUF file held in memory (the browser's picked, dropped or downloaded file;
/// `name` labels it in messages), with the tokenizer from its metadata.
pub fn open_gguf_bytes(name: &str, bytes: Vec<u8>) -> Result<ModelFiles, LoadError> {
    let model = GgufModel::from_gguf(GgufFile::from_bytes(name, bytes)?)?;
    let vocab = vocab_from_gguf(model.gguf())
        .map_err(|e| LoadError::new(name, format!("tokenizer: {e}")))?;
    let tokenizer = Tokenizer::from_gguf_vocab(&vocab)
        .map_err(|e| LoadError::new(name, format!("tokenizer: {e}")))?;
    check_vocab(name, Box::new(model), tokenizer)
}

/// Opens a Hugging Face model from its files held in memory, by file name (config.json,
/// tokenizer.json and the optional tokenizer/generation configs and chat template, and
/// model.safetensors or the shards with model.safetensors.index.json); `label` names it.
pub fn open_hf_files(
    label: &str,
    files: std::collections::HashMap<String, Vec<u8>>,
) -> Result<ModelFiles, LoadError> {
    let tokenizer = Tokenizer::from_hf_files(&|name| name.to_string(), &mut |name| {
        Ok(files.get(name).cloned())
    })
    .map_err(|e| LoadError::new(label, format!("tokenizer: {e}")))?;
    let weights = HfModel::open_files(label, &mut MemoryFiles(files))?;
    check_vocab(label, Box::new(weights), tokenizer)
}

/// The tokenizer's ids must all be rows of the embedding.
fn check_vocab(
    label: &str,
    weights: Box<dyn WeightSource>,
    tokenizer: Tokenizer,
) -> Result<ModelFiles, LoadError> {
    if tokenizer.vocab_size() > weights.config().vocab_size {
        return Err(LoadError::new(
            label,
            format!(
                "the tokenizer has {} tokens but the model only {}",
                tokenizer.vocab_size(),
                weights.config().vocab_size
            ),
        ));
    }
    Ok(ModelFiles { weights, tokenizer })
}
