//! Opening a model for serving: the GPU, the weights, and a KV pool sized from a memory
//! budget.

use super::engine::EngineOptions;
use crate::gpu::GpuContext;
use crate::kv::KvLayout;
use crate::model::gpu_model::{GpuModel, GpuModelOptions, ModelError};
use crate::model::WeightSource;
use std::path::PathBuf;
use std::sync::Arc;
#[cfg(not(target_arch = "wasm32"))]
use {super::engine::Engine, crate::engine::open, crate::gpu::GpuOptions};

/// Largest KV pool chosen without `--kv-memory`.
pub const DEFAULT_KV_MEMORY_CAP: u64 = 4 << 30;

/// What to load and how much KV cache to give it.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub model: PathBuf,
    /// adapter name or backend (see `GpuOptions`)
    pub adapter: Option<String>,
    /// storage formats, context (per sequence), rows per step, block size
    pub gpu: GpuModelOptions,
    /// bytes for the KV pool; None: enough for every running sequence at full context,
    /// at most a quarter of what the adapter's bindings allow and at most 4 GiB
    pub kv_memory: Option<u64>,
    pub engine: EngineOptions,
}

/// Blocks a pool of `kv_memory` bytes holds (or the default budget, see
/// [`ServeOptions::kv_memory`]); an error when not even one sequence's block fits.
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
pub fn open_engine(o: &ServeOptions) -> Result<Engine, ModelError> {
    let o = o.clone();
    Engine::start(o.engine.clone(), move || {
        let files = open(&o.model)?;
        let gpu = GpuContext::new_blocking(&GpuOptions {
            adapter: o.adapter.clone(),
            ..Default::default()
        })?;
        let model = crate::gpu::block_on(upload_paged(
            gpu,
            files.weights.as_ref(),
            &o.gpu,
            o.kv_memory,
            o.engine.max_running,
            &mut |_, _, _| {},
        ))?;
        Ok((model, files.tokenizer))
    })
}

/// Uploads `weights` as a paged model whose KV pool is sized by `kv_memory` (see
/// [`ServeOptions::kv_memory`]) for up to `max_running` sequences.
pub async fn upload_paged(
    gpu: Arc<GpuContext>,
    weights: &dyn WeightSource,
    options: &GpuModelOptions,
    kv_memory: Option<u64>,
    max_running: usize,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<GpuModel, ModelError> {
    let cfg = weights.config();
    let layout = KvLayout {
        layers: cfg.num_layers,
        kv_heads: cfg.num_kv_heads,
        key_dim: cfg.head_dim,
        value_dim: cfg.head_dim,
        block_size: options.kv_block_size,
        format: options.kv,
        latent: false,
    };
    let max_running = max_running.min(options.max_chunk);
    let blocks = pool_blocks(
        &layout,
        kv_memory,
        max_running,
        options.context,
        gpu.max_binding(),
    )?;
    GpuModel::load_paged(gpu, weights, options.clone(), blocks, max_running, progress).await
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
