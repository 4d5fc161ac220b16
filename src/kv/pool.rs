//! The KV pool on the GPU: layout, per-layer block buffers, and per-step metadata.

use crate::gpu::{GpuContext, GpuError, StorageFormat};

/// The shape of a paged KV cache.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KvLayout {
    pub layers: usize,
    pub kv_heads: usize,
    pub key_dim: usize,
    pub value_dim: usize,
    pub block_size: usize,
    pub format: StorageFormat,
    /// MLA: the value is read from the key pool (no V pool).
    pub latent: bool,
}

impl KvLayout {
    /// Values of one block of the K pool (all KV heads).
    pub fn key_block_elems(&self) -> usize {
        self.kv_heads * self.block_size * self.key_dim
    }

    /// Values of one block of the V pool (0 for MLA).
    pub fn value_block_elems(&self) -> usize {
        if self.latent {
            0
        } else {
            self.kv_heads * self.block_size * self.value_dim
        }
    }

    /// Index within a block of key value `e` of KV head `kvh` at position `off` of the block.
    pub fn key_offset(&self, kvh: usize, off: usize, e: usize) -> usize {
        ((kvh * self.key_dim / 8 + e / 8) * self.block_size + off) * 8 + e % 8
    }

    /// Index within a block of value `e` of KV head `kvh` at position `off` of the block.
    pub fn value_offset(&self, kvh: usize, off: usize, e: usize) -> usize {
        (kvh * self.block_size + off) * self.value_dim + e
    }

    /// Bytes of KV cache per cached token, over all layers.
    pub fn bytes_per_token(&self) -> u64 {
        let per_layer =
            self.kv_heads * (self.key_dim + if self.latent { 0 } else { self.value_dim });
        (self.layers * per_layer * self.format.bytes_per_element()) as u64
    }

    /// Bytes of one block over all layers.
    pub fn bytes_per_block(&self) -> u64 {
        self.bytes_per_token() * self.block_size as u64
    }

    /// Checks the dimensions the kernels rely on.
    pub fn validate(&self) -> Result<(), GpuError> {
        let bad = |m: String| Err(GpuError::Other(format!("KV layout {self:?}: {m}")));
        if self.key_dim == 0 || !self.key_dim.is_multiple_of(8) {
            return bad(format!(
                "key dim {} is not a positive multiple of 8",
                self.key_dim
            ));
        }
        if self.value_dim == 0 || !self.value_dim.is_multiple_of(8) {
            return bad(format!(
                "value dim {} is not a positive multiple of 8",
                self.value_dim
            ));
        }
        if self.latent && self.value_dim > self.key_dim {
            return bad("the latent value is longer than the key".into());
        }
        if !self.latent && self.value_dim != self.key_dim {
            return bad("separate K and V pools need equal key and value dims".into());
        }
        if self.block_size == 0 || self.kv_heads == 0 || self.layers == 0 {
            return bad("block size, KV heads and layers must be positive".into());
        }
        Ok(())
    }
}

/// One layer's pools. Each pool spans up to two bindings; where one binding holds all
/// blocks, the second is a small placeholder that the kernels never touch.
pub struct LayerPool {
    pub k: [wgpu::Buffer; 2],
    pub v: [wgpu::Buffer; 2],
}

/// Blocks of KV cache for every layer, on the GPU.
pub struct KvPool {
    pub layout: KvLayout,
    pub blocks: usize,
    /// blocks held by the first binding of each pool
    pub blocks_per_binding: usize,
    pub layers: Vec<LayerPool>,
}

impl KvPool {
    /// Allocates `blocks` blocks for every layer. Fails with a clear error when a layer's
    /// pool would need more than two bindings.
    pub fn new(gpu: &GpuContext, layout: KvLayout, blocks: usize) -> Result<Self, GpuError> {
        Self::with_binding_limit(gpu, layout, blocks, gpu.max_binding())
    }

    /// As `new`, with at most `max_binding` bytes per binding (tests use it to exercise
    /// pools split over two bindings).
    pub fn with_binding_limit(
        gpu: &GpuContext,
        layout: KvLayout,
        blocks: usize,
        max_binding: u64,
    ) -> Result<Self, GpuError> {
        layout.validate()?;
        let eb = layout.format.bytes_per_element() as u64;
        let k_block = layout.key_block_elems() as u64 * eb;
        let per_binding = (max_binding / k_block) as usize;
        if per_binding == 0 || blocks > 2 * per_binding {
            return Err(GpuError::OverLimit {
                what: format!(
                    "a KV pool of {blocks} blocks x {k_block} bytes (more than two bindings)"
                ),
                bytes: blocks as u64 * k_block,
                limit: max_binding,
                limit_name: "max_storage_buffer_binding_size",
            });
        }
        let blocks_per_binding = per_binding.min(blocks);
        let split = |label: &str, block_bytes: u64| -> Result<[wgpu::Buffer; 2], GpuError> {
            if block_bytes == 0 {
                return Ok([gpu.storage(label, 16)?, gpu.storage(label, 16)?]);
            }
            let first = gpu.storage(label, blocks_per_binding as u64 * block_bytes)?;
            let rest = (blocks - blocks_per_binding) as u64 * block_bytes;
            let second = gpu.storage(&format!("{label}.hi"), rest.max(16))?;
            Ok([first, second])
        };
        let v_block = layout.value_block_elems() as u64 * eb;
        let layers = (0..layout.layers)
            .map(|l| {
                Ok(LayerPool {
                    k: split(&format!("layers.{l}.k_pool"), k_block)?,
                    v: split(&format!("layers.{l}.v_pool"), v_block)?,
                })
            })
            .collect::<Result<Vec<_>, GpuError>>()?;
        Ok(KvPool {
            layout,
            blocks,
            blocks_per_binding,
            layers,
        })
    }

    /// Writes whole blocks `first..first + n` of a layer's K (or V) pool from `values`
    /// (`n * block elems` f32, in the pool's layout), split over the two bindings.
    pub fn write_blocks(
        &self,
        gpu: &GpuContext,
        layer: usize,
        value_pool: bool,
        first: usize,
        values: &[f32],
    ) -> Result<(), GpuError> {
        let elems = if value_pool {
            self.layout.value_block_elems()
        } else {
            self.layout.key_block_elems()
        };
        if elems == 0
            || !values.len().is_multiple_of(elems)
            || first + values.len() / elems > self.blocks
        {
            return Err(GpuError::Other(format!(
                "write_blocks: {} values from block {first} do not fit the pool",
                values.len()
            )));
        }
        let pair = if value_pool {
            &self.layers[layer].v
        } else {
            &self.layers[layer].k
        };
        let eb = self.layout.format.bytes_per_element();
        for (i, block) in values.chunks(elems).enumerate() {
            let b = first + i;
            let (buf, local) = if b < self.blocks_per_binding {
                (&pair[0], b)
            } else {
                (&pair[1], b - self.blocks_per_binding)
            };
            let bytes = self.layout.format.encode(block);
            gpu.queue
                .write_buffer(buf, (local * elems * eb) as u64, &bytes);
        }
        Ok(())
    }

    /// Reads block `b` of a layer's K (or V) pool back as f32, in the pool's layout.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_block(
        &self,
        gpu: &GpuContext,
        layer: usize,
        value_pool: bool,
        b: usize,
    ) -> Result<Vec<f32>, GpuError> {
        crate::gpu::block_on(self.read_block_async(gpu, layer, value_pool, b))
    }

    /// [`read_block`](Self::read_block), awaited.
    pub async fn read_block_async(
        &self,
        gpu: &GpuContext,
        layer: usize,
        value_pool: bool,
        b: usize,
    ) -> Result<Vec<f32>, GpuError> {
        let elems = if value_pool {
            self.layout.value_block_elems()
        } else {
            self.layout.key_block_elems()
        };
        let pair = if value_pool {
            &self.layers[layer].v
        } else {
            &self.layers[layer].k
        };
        let (buf, local) = if b < self.blocks_per_binding {
            (&pair[0], b)
        } else {
            (&pair[1], b - self.blocks_per_binding)
        };
        let eb = self.layout.format.bytes_per_element();
        let bytes = gpu
            .read_bytes_at_async(buf, (local * elems * eb) as u64, (elems * eb) as u64)
            .await?;
        Ok(self.layout.format.decode(&bytes))
    }

    /// Bytes allocated for KV over all layers.
    pub fn bytes(&self) -> u64 {
        self.layout.bytes_per_block() * self.blocks as u64
    }
}

/// One query row of a step: the token at position `context_len - 1` of a sequence whose
/// blocks are `table`, with its query at activation row `q_row` and its output at `out_row`.
#[derive(Clone, Copy, Debug)]
pub struct QueryRow<'a> {
    pub context_len: u32,
    pub table: &'a [u32],
    pub q_row: u32,
    pub out_row: u32,
}

/// The `meta` words of a step: per query (context length, table offset, q row, out row),
/// then the block tables from word `table_base = 4 * max_rows` (fixed, so kernels can take
/// it as a constant parameter). Rows that share a table (the tokens of one prefill chunk)
/// pass the same slice and it is written once.
pub struct StepMeta {
    pub words: Vec<u32>,
    pub table_base: u32,
    pub n_queries: u32,
    pub max_context: u32,
}

impl StepMeta {
    /// Panics if `rows` has more than `max_rows` rows (a caller bug, not user input).
    pub fn new(rows: &[QueryRow<'_>], max_rows: usize) -> Self {
        assert!(
            rows.len() <= max_rows,
            "{} query rows > {max_rows}",
            rows.len()
        );
        let table_base = 4 * max_rows as u32;
        let mut words = Vec::with_capacity(table_base as usize + 64);
        let mut tables: Vec<u32> = Vec::new();
        let mut last: Option<(*const u32, usize, u32)> = None;
        for r in rows {
            let key = (r.table.as_ptr(), r.table.len());
            let offset = match last {
                Some((p, n, off)) if (p, n) == key => off,
                _ => {
                    let off = tables.len() as u32;
                    tables.extend_from_slice(r.table);
                    last = Some((key.0, key.1, off));
                    off
                }
            };
            words.extend_from_slice(&[r.context_len, offset, r.q_row, r.out_row]);
        }
        words.resize(table_base as usize, 0);
        words.extend_from_slice(&tables);
        // the kernels read whole vec4s
        while !words.len().is_multiple_of(4) {
            words.push(0);
        }
        StepMeta {
            words,
            table_base,
            n_queries: rows.len() as u32,
            max_context: rows.iter().map(|r| r.context_len).max().unwrap_or(0),
        }
    }
}
