//! The one way to open a model: find it, parse its files with the tokenizer that
//! belongs to it, upload it to the GPU as a paged model with a KV pool sized from a
//! memory budget, and start the engine on it.

use super::runner::EngineOptions;
use crate::formats::gguf::GgufFile;
use crate::gpu::GpuContext;
use crate::kv::KvLayout;
use crate::model::gguf_model::GgufModel;
use crate::model::gpu_model::{GpuModel, GpuModelOptions, ModelError};
use crate::model::hf::{HfModel, MemoryFiles};
use crate::model::{LoadError, WeightSource};
use crate::tokenizer::{vocab_from_gguf, Tokenizer};
use std::path::PathBuf;
use std::sync::Arc;
#[cfg(not(target_arch = "wasm32"))]
use {
    super::draft_model::{check_draft_model, check_same_tokenizer},
    super::runner::{Drafter, Engine, DRAFT_MODEL_SLOTS},
    crate::gpu::GpuOptions,
    crate::model::load::open_model,
    std::path::Path,
};

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

/// The default model for a test that needs it: its path when it is there. When it is
/// missing, None if `HEADROOM_SKIP_MODEL_TESTS=1` says to skip (and it says so), else a
/// panic that names the fix. `.ci/run` never sets the variable.
#[doc(hidden)]
pub fn default_model_for_tests() -> Option<PathBuf> {
    let path = default_model_path();
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("HEADROOM_SKIP_MODEL_TESTS").is_some_and(|v| v == "1") {
        eprintln!(
            "SKIPPED: no model at {} and HEADROOM_SKIP_MODEL_TESTS=1",
            path.display()
        );
        return None;
    }
    panic!(
        "the default model is missing at {}: run scripts/fetch-model.sh (or set \
         HEADROOM_SKIP_MODEL_TESTS=1 to skip the tests that need it)",
        path.display()
    );
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

/// Largest KV pool chosen without `--kv-memory`.
pub const DEFAULT_KV_MEMORY_CAP: u64 = 4 << 30;

/// What to load and how much KV cache to give it.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub model: PathBuf,
    /// adapter name or backend (see `GpuOptions`)
    pub adapter: Option<String>,
    /// storage formats, context (per sequence), rows per step, block size
    pub gpu: GpuModelOptions,
    /// bytes for the KV pool; None: enough for every running sequence at full context,
    /// at most a quarter of what the adapter's bindings allow and at most 4 GiB
    pub kv_memory: Option<u64>,
    pub engine: EngineOptions,
    /// a small model with the same tokenizer whose greedy continuations are the drafts
    /// (speculative decoding; `engine.draft_tokens` a step), else prompt lookup's
    pub draft_model: Option<PathBuf>,
}

/// Blocks a pool of `kv_memory` bytes holds (or the default budget, see
/// [`LoadOptions::kv_memory`]); an error when not even one sequence's block fits.
pub fn pool_blocks(
    layout: &KvLayout,
    kv_memory: Option<u64>,
    max_running: usize,
    context: usize,
    max_binding: u64,
) -> Result<usize, ModelError> {
    let per_block = layout.bytes_per_block();
    let budget = kv_memory.unwrap_or_else(|| {
        let full = (max_running * context) as u64 * layout.bytes_per_token();
        // each layer's K and V pools may span two bindings
        let allowed = layout.layers as u64 * 2 * 2 * max_binding;
        full.min(allowed / 4).min(DEFAULT_KV_MEMORY_CAP)
    });
    let blocks = (budget / per_block) as usize;
    if blocks < 2 {
        return Err(ModelError::Invalid(format!(
            "a KV memory of {budget} bytes holds {blocks} blocks of {per_block} bytes ({} tokens each); give --kv-memory at least {}",
            layout.block_size,
            2 * per_block
        )));
    }
    Ok(blocks)
}

/// "4096", "512K", "2M", "4G" (binary units) as bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s
        .trim()
        .trim_end_matches(['B', 'b'])
        .trim_end_matches(['i', 'I']);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 4096, 512M or 2G"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("{s:?} must be positive"));
    }
    Ok((v * (1u64 << shift) as f64) as u64)
}

/// Opens the model, uploads it and starts the engine on it.
#[cfg(not(target_arch = "wasm32"))]
pub fn open_engine(o: &LoadOptions) -> Result<Engine, ModelError> {
    let o = o.clone();
    Engine::start_drafted(o.engine.clone(), move || {
        let files = open(&o.model)?;
        let gpu = GpuContext::new_blocking(&GpuOptions {
            adapter: o.adapter.clone(),
            ..Default::default()
        })?;
        let model = crate::gpu::block_on(upload_paged(
            gpu.clone(),
            files.weights.as_ref(),
            &o.gpu,
            o.kv_memory,
            o.engine.max_running,
            o.engine.draft_tokens,
            &mut |_, _, _| {},
        ))?;
        let drafter = match &o.draft_model {
            Some(path) => {
                let draft = open(path)?;
                check_same_tokenizer(&draft.tokenizer, &files.tokenizer)?;
                let slots = DRAFT_MODEL_SLOTS.min(o.engine.max_running.max(1));
                let m = GpuModel::load_sequences(
                    gpu,
                    draft.weights.as_ref(),
                    o.gpu.clone(),
                    slots,
                    &mut |_, _, _| {},
                )?;
                check_draft_model(&m, model.config.vocab_size, model.options.context)?;
                Some(Drafter::new(m))
            }
            None => None,
        };
        Ok((model, files.tokenizer, drafter))
    })
}

/// Most logits rows a paged model keeps room for beyond one per running sequence: room
/// for speculative drafts, bounded so that a large vocabulary's logits stay modest.
const MAX_DRAFT_LOGITS_ROWS: usize = 256;

/// Uploads `weights` as a paged model whose KV pool is sized by `kv_memory` (see
/// [`LoadOptions::kv_memory`]) for up to `max_running` sequences, each verifying up to
/// `draft_tokens` speculative tokens a step where the logits rows allow.
pub async fn upload_paged(
    gpu: Arc<GpuContext>,
    weights: &dyn WeightSource,
    options: &GpuModelOptions,
    kv_memory: Option<u64>,
    max_running: usize,
    draft_tokens: usize,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<GpuModel, ModelError> {
    let cfg = weights.config();
    let layout = options.kv_layout(cfg);
    let max_running = max_running.min(options.max_chunk);
    let blocks = pool_blocks(
        &layout,
        kv_memory,
        max_running,
        options.context,
        gpu.max_binding(),
    )?;
    let logits_rows = (max_running * (1 + draft_tokens))
        .min(MAX_DRAFT_LOGITS_ROWS)
        .max(max_running);
    GpuModel::load_paged(gpu, weights, options.clone(), blocks, logits_rows, progress).await
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("512K"), Ok(512 << 10));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("64mb"), Ok(64 << 20));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1G").is_err());
    }
}
