//! Attention over the paged KV cache with shared KV heads: decode attention, split-K over
//! the context (shaders/decode_attention.wgsl, merged by shaders/decode_attention_merge.wgsl),
//! and for prefill chunks the same op's tiled form (shaders/prefill_attention.wgsl).
//!
//! One workgroup serves the G query heads of one KV head: MHA (G = 1), GQA, MQA, and MLA
//! in its absorbed form (one latent "KV head" whose value is the first `value_dim` values
//! of the key). How the context is split is chosen per step from the shape (queries, head
//! blocks, longest context) and the adapter (how many workgroups keep it busy). Steps
//! whose queries are mostly prefill chunks take them in tiles of consecutive queries of
//! one sequence instead (`query_tiles`): each key and value is loaded once per tile, not
//! once per query.

use super::matmul::{with_q8_store, Q8_BLOCK_BYTES, VEC_MAX_ROWS};
use super::{Cost, StepShape};
use crate::gpu::{BindingKind, GpuContext, GpuError, KernelSource, SharedLayout};
use crate::kv::{KvLayout, LayerPool, StepMeta};
use std::sync::Arc;

/// Threads per workgroup, and positions per tile (one per thread in the score phase).
const WG: usize = 128;
/// Most query heads one workgroup serves: each keeps 8 accumulators per head per thread
/// in registers. Larger groups are split into head blocks (each reads the shared KV head
/// again, mostly from cache: head blocks of one KV head are dispatched next to each other).
/// On the H100, 8 heads ran 2-5x slower than 4 (registers spill), 2 slightly slower than
/// 4 (bench/2026-11-24-h100-attention).
pub const MAX_GROUP: usize = 4;
/// Value rows (of 8 values) one thread loads before it uses any, and the most key chunks
/// (clamped to the key's): loads in flight together, against registers held. On the H200
/// (bench/2026-12-01-h200-packed-dot) 8 and 16 took 0.8-2% off whole decode steps against
/// 4 and 4 (7B GQA-8 and SmolLM2 shapes, contexts 128 to 2048).
const VALUE_ROWS_IN_FLIGHT: usize = 8;
const KEY_CHUNKS_IN_FLIGHT: usize = 16;

/// Parameters of one dispatch (mirrors shaders/decode_attention_params.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    table_base: u32,
    chunk: u32,
    n_splits: u32,
    q_stride4: u32,
    out_stride4: u32,
    ml_base4: u32,
    /// 1: the first pass leaves partials even from one split, and the merge runs
    merge_always: u32,
    scale: f32,
}

/// The specialisation of the kernel for one attention shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionPlan {
    /// query heads per workgroup
    pub group: usize,
    /// head blocks per KV head (more than 1 when the group is over MAX_GROUP or its
    /// queries would not fit workgroup memory)
    pub blocks_per_kv_head: usize,
    /// positions per tile
    pub tile: usize,
    /// smallest split: below it the partial results cost more than they save
    pub min_chunk: usize,
    /// splits are multiples of this many positions (a tile, or less where short contexts
    /// are split finer)
    pub split_align: usize,
    /// key chunks (8 values) and value rows each thread has in flight together
    pub key_chunks: usize,
    pub value_rows: usize,
    /// workgroups that keep this adapter busy
    pub target_workgroups: usize,
    /// workgroup memory the kernel uses, in bytes
    pub workgroup_bytes: usize,
}

/// What the plan takes from the adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionTuning {
    /// workgroups that keep the adapter busy (see `target_workgroups`)
    pub target_workgroups: usize,
    /// bytes of workgroup memory one workgroup may use
    pub workgroup_memory: usize,
    /// smallest split in positions, overriding the plan's (`HEADROOM_ATTN_MIN_CHUNK`, for
    /// tuning); rounded up to the tile
    pub min_chunk: Option<usize>,
    /// most query heads per workgroup (`HEADROOM_ATTN_MAX_GROUP`, for tuning)
    pub max_group: usize,
    /// splits are multiples of this many positions, a power of two up to a tile
    /// (`HEADROOM_ATTN_SPLIT_ALIGN`, for tuning; None: a tile)
    pub split_align: Option<usize>,
    /// loads each thread keeps in flight: key chunks of 8 values (at most the key's
    /// chunks) and value rows (`HEADROOM_ATTN_KEY_CHUNKS`, `HEADROOM_ATTN_VALUE_ROWS`)
    pub key_chunks: usize,
    pub value_rows: usize,
    /// whether prefill chunks take their queries in tiles (shaders/prefill_attention.wgsl)
    /// where the workgroup memory holds one: on CPU adapters, where it took a SmolLM2
    /// prefill chunk's attention 1.8x faster on lavapipe; not on GPUs, where its scalar
    /// arithmetic ran 5-6x slower than per-query decode attention fed from the cache
    /// (H200, bench/2026-12-01-h200-gemm-loads). `HEADROOM_PREFILL_ATTENTION=0|1`
    /// overrides.
    pub prefill_tiles: bool,
}

impl AttentionTuning {
    pub fn for_adapter(gpu: &GpuContext) -> Self {
        AttentionTuning {
            target_workgroups: target_workgroups(gpu),
            workgroup_memory: gpu.limits.max_compute_workgroup_storage_size as usize,
            min_chunk: env_usize("HEADROOM_ATTN_MIN_CHUNK"),
            max_group: env_usize("HEADROOM_ATTN_MAX_GROUP").unwrap_or(MAX_GROUP),
            split_align: env_usize("HEADROOM_ATTN_SPLIT_ALIGN"),
            key_chunks: env_usize("HEADROOM_ATTN_KEY_CHUNKS").unwrap_or(KEY_CHUNKS_IN_FLIGHT),
            value_rows: env_usize("HEADROOM_ATTN_VALUE_ROWS").unwrap_or(VALUE_ROWS_IN_FLIGHT),
            prefill_tiles: match std::env::var("HEADROOM_PREFILL_ATTENTION").as_deref() {
                Ok("0") => false,
                Ok("1") => true,
                _ => gpu.adapter_info.device_type == wgpu::DeviceType::Cpu,
            },
        }
    }
}

/// Workgroup memory of the kernel for `group` heads: two score tiles (at least the
/// [WG][8] of the final merge), the tiles' block ids, each position group's max and sum
/// per head, and the group's queries.
fn workgroup_bytes(group: usize, kv: &KvLayout) -> usize {
    let position_groups = WG / (kv.value_dim / 8);
    let scores = (2 * WG * group).max(8 * WG);
    4 * (scores + 2 * WG + 2 * position_groups * group + group * kv.key_dim + 1)
}

impl AttentionPlan {
    pub fn new(heads: usize, kv: &KvLayout, tuning: AttentionTuning) -> Result<Self, GpuError> {
        kv.validate()?;
        if heads == 0 || !heads.is_multiple_of(kv.kv_heads) {
            return Err(GpuError::Other(format!(
                "{heads} query heads do not divide into {} KV heads",
                kv.kv_heads
            )));
        }
        let dc = kv.value_dim / 8;
        if dc > WG {
            return Err(GpuError::Other(format!(
                "value dim {} is over the {} a workgroup covers",
                kv.value_dim,
                WG * 8
            )));
        }
        let per_kv = heads / kv.kv_heads;
        // the largest divisor of the group that fits one workgroup's registers and memory
        let group = (1..=per_kv.min(tuning.max_group.max(1)))
            .rev()
            .find(|&g| {
                per_kv.is_multiple_of(g) && workgroup_bytes(g, kv) <= tuning.workgroup_memory
            })
            .ok_or_else(|| GpuError::OverLimit {
                what: format!("attention scratch for one head of dim {}", kv.key_dim),
                bytes: workgroup_bytes(1, kv) as u64,
                limit: tuning.workgroup_memory as u64,
                limit_name: "max_compute_workgroup_storage_size",
            })?;
        // partials are group x value_dim f32 per split, against chunk x (K + V) values
        let split_align = tuning
            .split_align
            .map_or(WG, |a| a.clamp(1, WG).next_power_of_two());
        let min_chunk = tuning.min_chunk.unwrap_or(16 * group).div_ceil(split_align) * split_align;
        Ok(AttentionPlan {
            group,
            blocks_per_kv_head: per_kv / group,
            tile: WG,
            min_chunk,
            split_align,
            key_chunks: tuning.key_chunks.clamp(1, kv.key_dim / 8),
            value_rows: tuning.value_rows.clamp(1, WG),
            target_workgroups: tuning.target_workgroups,
            workgroup_bytes: workgroup_bytes(group, kv),
        })
    }

    /// How to split contexts of up to `max_context` over workgroups when `n_queries`
    /// queries each have `head_blocks` head blocks.
    pub fn split(&self, n_queries: usize, head_blocks: usize, max_context: usize) -> Split {
        let ctx = max_context.max(1);
        let busy = (n_queries * head_blocks).max(1);
        let wanted = self.target_workgroups.div_ceil(busy).max(1);
        let most = ctx.div_ceil(self.min_chunk).max(1);
        let splits = wanted.min(most);
        let chunk = ctx.div_ceil(splits).div_ceil(self.split_align) * self.split_align;
        Split {
            chunk,
            n_splits: ctx.div_ceil(chunk),
        }
    }
}

/// A split of the context: `n_splits` workgroups per (query, head block), each over
/// `chunk` positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub chunk: usize,
    pub n_splits: usize,
}

/// Workgroups that keep this adapter busy: an adapter property, since WebGPU does not
/// report core counts. `HEADROOM_ATTN_WORKGROUPS` overrides it (for tuning).
pub fn target_workgroups(gpu: &GpuContext) -> usize {
    if let Some(n) = env_usize("HEADROOM_ATTN_WORKGROUPS") {
        return n;
    }
    match gpu.adapter_info.device_type {
        wgpu::DeviceType::DiscreteGpu => 2048,
        wgpu::DeviceType::IntegratedGpu | wgpu::DeviceType::VirtualGpu => 512,
        wgpu::DeviceType::Cpu => 4 * std::thread::available_parallelism().map_or(4, |n| n.get()),
        wgpu::DeviceType::Other => 1024,
    }
}

/// A positive number from the environment (tuning overrides).
fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
}

/// Key positions a workgroup of prefill attention loads at a time, and the most rows
/// (queries x heads) it takes: 32 rows of head dim 128 and 16 keys are 34 KiB of
/// workgroup memory.
const PREFILL_KEYS: usize = 16;
const PREFILL_ROWS: usize = 32;
/// Threads of a prefill attention workgroup (at least `PREFILL_ROWS`: one a row in the
/// softmax).
const PREFILL_WG: usize = 128;

/// How prefill attention tiles its queries: `queries` consecutive queries of one sequence
/// for the grouped plan's heads, `keys` positions at a time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrefillPlan {
    pub queries: usize,
    pub keys: usize,
    /// workgroup memory the kernel uses, in bytes
    pub workgroup_bytes: usize,
}

/// Workgroup memory of prefill attention for `rows` rows and `keys` positions: the rows'
/// queries, the keys and values, the scores, and two words a row.
fn prefill_workgroup_bytes(rows: usize, keys: usize, kv: &KvLayout) -> usize {
    4 * (rows * kv.key_dim + keys * (kv.key_dim + kv.value_dim) + rows * keys + 2 * rows + 4)
}

impl PrefillPlan {
    /// The most queries a tile (up to `PREFILL_ROWS` rows with `group` heads) whose
    /// workgroup fits `memory`; None below two, and for MLA (whose values are its keys'
    /// first dims: decode attention serves its prefill).
    pub fn new(group: usize, kv: &KvLayout, memory: usize) -> Option<Self> {
        if kv.latent || group > PREFILL_ROWS {
            return None;
        }
        let mut queries = PREFILL_ROWS / group;
        while queries >= 2 {
            let bytes = prefill_workgroup_bytes(queries * group, PREFILL_KEYS, kv);
            if bytes <= memory {
                return Some(PrefillPlan {
                    queries,
                    keys: PREFILL_KEYS,
                    workgroup_bytes: bytes,
                });
            }
            queries /= 2;
        }
        None
    }
}

/// Tiles of at most `per_tile` queries out of a step's (context length, block-table
/// offset) per query: runs of queries of one table whose contexts grow by one (a prefill
/// chunk's), cut every `per_tile`. Each tile is (first query, queries).
pub fn query_tiles(
    queries: impl IntoIterator<Item = (u32, u32)>,
    per_tile: usize,
) -> Vec<(u32, u32)> {
    let mut tiles: Vec<(u32, u32)> = Vec::new();
    let mut prev: Option<(u32, u32)> = None;
    for (i, (ctx, table)) in queries.into_iter().enumerate() {
        let joins = match (prev, tiles.last()) {
            (Some((c, t)), Some(&(_, n))) => t == table && ctx == c + 1 && (n as usize) < per_tile,
            _ => false,
        };
        match joins {
            true => tiles.last_mut().expect("a tile to join").1 += 1,
            false => tiles.push((i as u32, 1)),
        }
        prev = Some((ctx, table));
    }
    tiles
}

/// Where one attention layer reads and writes.
pub struct AttentionIo<'a> {
    /// per-step metadata (see `kv::StepMeta`)
    pub meta: &'a wgpu::Buffer,
    /// query rows (see `AttentionScratch::new`); head `h` of a row at `h * key_dim`
    pub q: &'a wgpu::Buffer,
    /// output rows; head `h` of a row at `h * value_dim`
    pub out: &'a wgpu::Buffer,
    /// where the merge also stores the outputs as 8-bit blocks, on a scratch built
    /// `with_output_blocks` (`ops::matmul::q8_scratch`)
    pub out_blocks: Option<&'a wgpu::Buffer>,
    pub pool: &'a LayerPool,
    /// the layer's sliding window: each query sees its last `window` positions only
    pub window: Option<usize>,
    /// scores soft-capped to ±cap (cap * tanh(score / cap), gemma2), after the scale
    pub softcap: Option<f32>,
}

/// What the attention layers of a model share: the per-step parameters (written once per
/// step) and the scratch for split partials (layers run one after another).
pub struct AttentionScratch {
    /// the grouped plan: a workgroup serves `plan.group` query heads of one KV head
    pub plan: AttentionPlan,
    /// `GROUPED` (`plan`), then `PER_HEAD` (one query head per workgroup) where the
    /// grouped plan serves more: the steps it would leave the adapter idle run that one
    /// (`variant_for`)
    variants: Vec<Variant>,
    pub heads: usize,
    pub kv: KvLayout,
    params: wgpu::Buffer,
    partials: wgpu::Buffer,
    /// prefill attention's tiling (None: decode attention serves every step), and the
    /// step's tiles (first query, queries, -, -) it reads
    pub prefill: Option<PrefillPlan>,
    tiles: wgpu::Buffer,
    /// the layers' outputs are also stored as 8-bit blocks (by the merge, which then runs
    /// on every step of at most `VEC_MAX_ROWS` queries) for the integer-dot matmul that
    /// reads them (`with_output_blocks`)
    pub output_blocks: bool,
    scale: f32,
    q_stride: usize,
    out_stride: usize,
}

/// A plan and its room in the shared partials buffer.
struct Variant {
    plan: AttentionPlan,
    /// partial slots (one per query, head block and split)
    partial_slots: usize,
    /// vec4 offset of the (max, sum) pairs in `partials`
    ml_base4: usize,
}

/// Which plan a step runs: `GROUPED` (`AttentionScratch::plan`) or `PER_HEAD`.
pub const GROUPED: usize = 0;
pub const PER_HEAD: usize = 1;

impl AttentionScratch {
    /// For `heads` query heads over `kv`, at most `max_queries` query rows per step with
    /// contexts up to `max_context`; queries and outputs are rows `q_stride` and
    /// `out_stride` f32 apart.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &GpuContext,
        heads: usize,
        kv: &KvLayout,
        scale: f32,
        max_queries: usize,
        max_context: usize,
        q_stride: usize,
        out_stride: usize,
    ) -> Result<Self, GpuError> {
        let tuning = AttentionTuning::for_adapter(gpu);
        Self::with_tuning(
            gpu,
            heads,
            kv,
            scale,
            max_queries,
            max_context,
            q_stride,
            out_stride,
            tuning,
        )
    }

    /// As `new`, with the adapter properties given (tests use it to force split-K and the
    /// queries-in-global-memory path).
    #[allow(clippy::too_many_arguments)]
    pub fn with_tuning(
        gpu: &GpuContext,
        heads: usize,
        kv: &KvLayout,
        scale: f32,
        max_queries: usize,
        max_context: usize,
        q_stride: usize,
        out_stride: usize,
        tuning: AttentionTuning,
    ) -> Result<Self, GpuError> {
        let plan = AttentionPlan::new(heads, kv, tuning)?;
        let mut plans = vec![plan];
        if plan.group > 1 {
            let per_head = AttentionTuning {
                max_group: 1,
                ..tuning
            };
            plans.push(AttentionPlan::new(heads, kv, per_head)?);
        }
        // room for the partials of the widest split any step can choose, per variant; the
        // variants share the buffer (a step runs one)
        let variants: Vec<Variant> = plans
            .into_iter()
            .map(|p| {
                let head_blocks = heads / p.group;
                let worst = p.split(1, head_blocks, max_context).n_splits * head_blocks;
                let partial_slots = (max_queries * head_blocks).max(worst) + p.target_workgroups;
                Variant {
                    plan: p,
                    partial_slots,
                    ml_base4: partial_slots * p.group * kv.value_dim / 4,
                }
            })
            .collect();
        let bytes = variants
            .iter()
            .map(|v| (v.ml_base4 + v.partial_slots * v.plan.group) * 16)
            .max()
            .unwrap_or(16);
        let partials = gpu.storage("attention.partials", bytes as u64)?;
        let params = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("attention.params"),
            size: std::mem::size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let prefill = match tuning.prefill_tiles {
            true => PrefillPlan::new(plan.group, kv, tuning.workgroup_memory),
            false => None,
        };
        let tiles = gpu.storage("attention.tiles", (max_queries.max(1) * 16) as u64)?;
        Ok(AttentionScratch {
            plan,
            variants,
            heads,
            kv: *kv,
            params,
            partials,
            prefill,
            tiles,
            output_blocks: false,
            scale,
            q_stride,
            out_stride,
        })
    }

    /// As built, with the layers' outputs also stored as 8-bit blocks on steps of at most
    /// `VEC_MAX_ROWS` queries (`AttentionIo::out_blocks`): the integer-dot matmul after
    /// attention then needs no quantize dispatch of its own. Needs whole blocks per head.
    pub fn with_output_blocks(mut self, on: bool) -> Self {
        self.output_blocks = on && self.kv.value_dim.is_multiple_of(32);
        self
    }

    /// Whether a step of `n_queries` queries runs the merge whatever its split.
    pub fn merge_always(&self, n_queries: usize) -> bool {
        self.output_blocks && n_queries <= VEC_MAX_ROWS as usize
    }

    /// The plan of variant `v` (`GROUPED`, or `PER_HEAD` where `variant_for` chose it).
    pub fn plan_of(&self, v: usize) -> &AttentionPlan {
        &self.variants[v].plan
    }

    /// How many variants there are (2 where the grouped plan serves more than one head).
    pub fn variant_count(&self) -> usize {
        self.variants.len()
    }

    fn head_blocks(&self, v: usize) -> usize {
        self.heads / self.plan_of(v).group
    }

    /// The variant a step of `n_queries` queries with contexts up to `max_context` runs:
    /// one head per workgroup where the grouped plan would run fewer workgroups than keep
    /// the adapter busy. Each KV head is then read once per query head, mostly from L2; on
    /// the H200 at batch 1 that decoded SmolLM2 16% and a 7B shape 4-5% faster at every
    /// context measured (bench/2026-11-30-h200-fused), while at batch 16 four heads a
    /// workgroup beat two (bench/2026-11-24-h100-attention).
    pub fn variant_for(&self, n_queries: usize, max_context: usize) -> usize {
        if self.variants.len() == 1 {
            return GROUPED;
        }
        let s = self.split_of(GROUPED, n_queries, max_context);
        let busy = n_queries * self.head_blocks(GROUPED) * s.n_splits;
        match busy < self.plan.target_workgroups {
            true => PER_HEAD,
            false => GROUPED,
        }
    }

    /// The grouped plan's split for `n_queries` queries with contexts up to `max_context`.
    pub fn split(&self, n_queries: usize, max_context: usize) -> Split {
        self.split_of(GROUPED, n_queries, max_context)
    }

    /// Variant `v`'s split.
    pub fn split_of(&self, v: usize, n_queries: usize, max_context: usize) -> Split {
        let head_blocks = self.head_blocks(v);
        let mut s = self.plan_of(v).split(n_queries, head_blocks, max_context);
        // never more partials than were allocated
        let per_split = n_queries * head_blocks;
        while s.n_splits > 1 && s.n_splits * per_split > self.variants[v].partial_slots {
            let chunk = s.chunk * 2;
            s = Split {
                chunk,
                n_splits: max_context.div_ceil(chunk),
            };
        }
        s
    }

    /// Writes this step's parameters for the grouped plan (`DecodeAttention::record`);
    /// call before the submit that records the step.
    pub fn prepare(&self, gpu: &GpuContext, meta: &StepMeta) -> Split {
        self.prepare_variant(gpu, meta, GROUPED)
    }

    /// Writes this step's parameters for the variant it runs (`variant_for`; what the op
    /// records in a model's step).
    pub fn prepare_step(&self, gpu: &GpuContext, meta: &StepMeta) -> Split {
        let v = self.variant_for(meta.n_queries as usize, meta.max_context as usize);
        self.prepare_variant(gpu, meta, v)
    }

    /// Whether tiles pay for a step of `queries` queries: two queries a tile or more on
    /// average (decode rows are tiles of one and keep decode attention, which splits long
    /// contexts over workgroups), and not on steps whose merge stores the outputs as
    /// 8-bit blocks for the next matmul (`merge_always`: prefill attention has no merge).
    fn tiles_pay(&self, queries: usize, tiles: usize) -> bool {
        tiles > 0 && queries >= 2 * tiles && !self.merge_always(queries)
    }

    /// The tiles of a step's queries, given as (context length, block-table offset), where
    /// they pay; None where decode attention takes the step.
    fn tiles_of(&self, queries: &[(u32, u32)]) -> Option<Vec<(u32, u32)>> {
        let tiles = query_tiles(queries.iter().copied(), self.prefill?.queries);
        self.tiles_pay(queries.len(), tiles.len()).then_some(tiles)
    }

    /// Writes this step's query tiles where they pay (prefill chunks); returns how many
    /// (`StepShape::query_tiles`), 0 where decode attention takes the step.
    pub fn prepare_tiles(&self, gpu: &GpuContext, meta: &StepMeta) -> u32 {
        if self.prefill.is_none() {
            return 0;
        }
        let n = meta.n_queries as usize;
        let queries: Vec<(u32, u32)> = meta.words[..4 * n]
            .chunks_exact(4)
            .map(|w| (w[0], w[1]))
            .collect();
        let Some(tiles) = self.tiles_of(&queries) else {
            return 0;
        };
        let words: Vec<u32> = tiles.iter().flat_map(|&(f, c)| [f, c, 0, 0]).collect();
        gpu.queue
            .write_buffer(&self.tiles, 0, bytemuck::cast_slice(&words));
        tiles.len() as u32
    }

    /// The tiles a step of queries with these context lengths would take (one sequence's
    /// queries being those whose contexts grow by one), 0 where decode attention takes it.
    pub fn tiles_of_lens(&self, context_lens: &[u32]) -> u32 {
        if self.prefill.is_none() {
            return 0;
        }
        let queries: Vec<(u32, u32)> = context_lens.iter().map(|&c| (c, 0)).collect();
        self.tiles_of(&queries).map_or(0, |t| t.len() as u32)
    }

    fn prepare_variant(&self, gpu: &GpuContext, meta: &StepMeta, v: usize) -> Split {
        let split = self.split_of(v, meta.n_queries as usize, meta.max_context as usize);
        let p = Params {
            table_base: meta.table_base,
            chunk: split.chunk as u32,
            n_splits: split.n_splits as u32,
            q_stride4: (self.q_stride / 4) as u32,
            out_stride4: (self.out_stride / 4) as u32,
            ml_base4: self.variants[v].ml_base4 as u32,
            merge_always: self.merge_always(meta.n_queries as usize) as u32,
            scale: self.scale,
        };
        gpu.queue
            .write_buffer(&self.params, 0, bytemuck::bytes_of(&p));
        split
    }
}

/// Decode attention for one layer, over one layer's pool.
pub struct DecodeAttention {
    /// per variant (`GROUPED`, then `PER_HEAD` where the scratch has it): the split-K
    /// kernel and its merge
    kernels: Vec<(Arc<wgpu::ComputePipeline>, Arc<wgpu::ComputePipeline>)>,
    /// the merge also stores the outputs as 8-bit blocks (`AttentionIo::out_blocks`)
    blocks: bool,
    /// prefill attention over the step's query tiles, where the scratch plans it
    prefill: Option<(Arc<wgpu::ComputePipeline>, wgpu::BindGroup)>,
    group: wgpu::BindGroup,
    merge_group: wgpu::BindGroup,
    /// the grouped plan
    pub plan: AttentionPlan,
    pub kv: KvLayout,
    pub heads: usize,
    /// positions each query sees at most (0: all)
    window: u32,
    scratch: Arc<AttentionScratch>,
}

impl DecodeAttention {
    pub fn new(
        gpu: &GpuContext,
        scratch: &Arc<AttentionScratch>,
        blocks_per_binding: usize,
        io: &AttentionIo<'_>,
    ) -> Result<Self, GpuError> {
        let kv = scratch.kv;
        use BindingKind::{Read, ReadWrite, Uniform};
        let layout = gpu.pipelines.layout(
            "decode_attention",
            &[
                Uniform, Read, Read, Read, Read, Read, Read, ReadWrite, ReadWrite,
            ],
        );
        let blocks = io.out_blocks.filter(|_| scratch.output_blocks);
        let window = io.window.unwrap_or(0);
        // a WGSL f32 literal ("2.0", not "2")
        let softcap = format!("{:?}", io.softcap.unwrap_or(0.0));
        let merge_layout: Arc<SharedLayout> = match blocks {
            Some(_) => gpu.pipelines.layout(
                "decode_attention_merge_q8",
                &[Uniform, Read, Read, ReadWrite, ReadWrite],
            ),
            None => gpu
                .pipelines
                .layout("decode_attention_merge", &[Uniform, Read, Read, ReadWrite]),
        };
        let kernels = (0..scratch.variant_count())
            .map(|v| {
                let plan = scratch.plan_of(v);
                let src = KernelSource::new(
                    "decode_attention",
                    include_str!("../../shaders/decode_attention.wgsl"),
                )
                .kv(kv.format)
                .constant("G", plan.group)
                .constant("HBPK", plan.blocks_per_kv_head)
                .constant("KVH", kv.kv_heads)
                .constant("KD", kv.key_dim)
                .constant("VD", kv.value_dim)
                .constant("BS", kv.block_size)
                .constant("V_ALIASED", kv.latent)
                .constant("BLOCK_ELEMS", kv.key_block_elems())
                .constant("BPB", blocks_per_binding)
                .constant("WG", WG)
                .constant(
                    "CU",
                    (1..=plan.key_chunks)
                        .rev()
                        .find(|u| (kv.key_dim / 8).is_multiple_of(*u))
                        .unwrap_or(1),
                )
                .constant("VU", plan.value_rows)
                .constant("SCORES", (2 * WG * plan.group).max(8 * WG))
                .constant("WINDOW", window)
                .constant("SOFTCAP", &softcap);
                let merge_src = with_q8_store(
                    KernelSource::new(
                        "decode_attention_merge",
                        include_str!("../../shaders/decode_attention_merge.wgsl"),
                    ),
                    4,
                    blocks.is_some(),
                )
                .constant("G", plan.group)
                .constant("NHB", scratch.head_blocks(v))
                .constant("VD", kv.value_dim)
                .constant("WINDOW", window)
                .constant("SOFTCAP", &softcap);
                (
                    gpu.pipelines.get_with_layout(&src, Some(&layout)),
                    gpu.pipelines
                        .get_with_layout(&merge_src, Some(&merge_layout)),
                )
            })
            .collect();
        // MLA has no V pool: bind the K pool in its place (read-only, never read)
        let v = if kv.latent { &io.pool.k } else { &io.pool.v };
        let group = super::bind_layout(
            gpu,
            &layout,
            "decode_attention",
            &[
                &scratch.params,
                io.meta,
                io.q,
                &io.pool.k[0],
                &io.pool.k[1],
                &v[0],
                &v[1],
                io.out,
                &scratch.partials,
            ],
        );
        let prefill = scratch.prefill.map(|p| {
            let layout = gpu.pipelines.layout(
                "prefill_attention",
                &[Uniform, Read, Read, Read, Read, Read, Read, ReadWrite, Read],
            );
            let src = KernelSource::new(
                "prefill_attention",
                include_str!("../../shaders/prefill_attention.wgsl"),
            )
            .kv(kv.format)
            .constant("G", scratch.plan.group)
            .constant("HBPK", scratch.plan.blocks_per_kv_head)
            .constant("KD", kv.key_dim)
            .constant("VD", kv.value_dim)
            .constant("BS", kv.block_size)
            .constant("BLOCK_ELEMS", kv.key_block_elems())
            .constant("BPB", blocks_per_binding)
            .constant("QT", p.queries)
            .constant("BK", p.keys)
            .constant("WG", PREFILL_WG)
            .constant("WINDOW", window)
            .constant("SOFTCAP", &softcap);
            let group = super::bind_layout(
                gpu,
                &layout,
                "prefill_attention",
                &[
                    &scratch.params,
                    io.meta,
                    io.q,
                    &io.pool.k[0],
                    &io.pool.k[1],
                    &io.pool.v[0],
                    &io.pool.v[1],
                    io.out,
                    &scratch.tiles,
                ],
            );
            (gpu.pipelines.get_with_layout(&src, Some(&layout)), group)
        });
        let mut merge_buffers = vec![&scratch.params, io.meta, &scratch.partials, io.out];
        merge_buffers.extend(blocks);
        let merge_group =
            super::bind_layout(gpu, &merge_layout, "decode_attention_merge", &merge_buffers);
        Ok(DecodeAttention {
            kernels,
            blocks: blocks.is_some(),
            prefill,
            group,
            merge_group,
            plan: scratch.plan,
            kv,
            heads: scratch.heads,
            window: window as u32,
            scratch: scratch.clone(),
        })
    }

    /// The grouped plan's split for a step of `n_queries` queries with contexts up to
    /// `max_context` (the same as `AttentionScratch::prepare` wrote).
    pub fn split(&self, n_queries: usize, max_context: usize) -> Split {
        self.scratch.split(n_queries, max_context)
    }

    /// Records the grouped plan's attention (and, when split, the merge) for `n_queries`
    /// queries, after `AttentionScratch::prepare`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_queries: u32, split: Split) {
        self.record_variant(GROUPED, pass, n_queries, split);
    }

    fn record_variant(
        &self,
        v: usize,
        pass: &mut wgpu::ComputePass<'_>,
        n_queries: u32,
        split: Split,
    ) {
        let (pipeline, merge) = &self.kernels[v];
        let hb = self.scratch.head_blocks(v) as u32;
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(hb, split.n_splits as u32, n_queries);
        let always = self.scratch.merge_always(n_queries as usize);
        if split.n_splits > 1 || always {
            let outputs4 = (self.scratch.plan_of(v).group * self.kv.value_dim / 4) as u32;
            pass.set_pipeline(merge);
            pass.set_bind_group(0, &self.merge_group, &[]);
            pass.dispatch_workgroups(outputs4.div_ceil(64), hb, n_queries);
        }
    }

    /// The variant and split a step of this shape runs (`AttentionScratch::prepare_step`).
    fn step_variant(&self, s: &StepShape) -> (usize, Split) {
        let (n, ctx) = (s.n_tokens as usize, s.max_context as usize);
        let v = self.scratch.variant_for(n, ctx);
        (v, self.scratch.split_of(v, n, ctx))
    }

    /// Bytes and flops of one step of the grouped plan (see `cost_of`).
    pub fn cost(&self, context_lens: &[u32], split: Split) -> Cost {
        self.cost_of(GROUPED, context_lens, split)
    }

    /// Bytes and flops of one step of variant `v` over queries with these context lengths:
    /// each KV head (latent) is read once per head block, plus the queries, outputs and
    /// partials.
    pub fn cost_of(&self, v: usize, context_lens: &[u32], split: Split) -> Cost {
        let context_lens = &*self.seen(context_lens);
        let plan = self.scratch.plan_of(v);
        let eb = self.kv.format.bytes_per_element() as u64;
        let positions: u64 = context_lens.iter().map(|&c| c as u64).sum();
        let kv_row = (self.kv.key_dim + if self.kv.latent { 0 } else { self.kv.value_dim }) as u64;
        let kv_reads = positions * self.kv.kv_heads as u64 * plan.blocks_per_kv_head as u64;
        let nq = context_lens.len() as u64;
        let q = nq * (self.heads * self.kv.key_dim) as u64 * 4;
        let o = nq * (self.heads * self.kv.value_dim) as u64 * 4;
        let merged = split.n_splits > 1 || self.scratch.merge_always(context_lens.len());
        let partial = if merged {
            let slots: u64 = context_lens
                .iter()
                .map(|&c| (c as u64).div_ceil(split.chunk as u64))
                .sum::<u64>()
                * self.heads as u64;
            slots * (self.kv.value_dim as u64 + 4) * 4
        } else {
            0
        };
        let blocks = match self.blocks && self.scratch.merge_always(context_lens.len()) {
            true => nq * (self.heads * self.kv.value_dim / 32) as u64 * Q8_BLOCK_BYTES,
            false => 0,
        };
        Cost {
            bytes_read: kv_reads * kv_row * eb + q + partial,
            bytes_written: o + partial + blocks,
            flops: positions * self.heads as u64 * 2 * (self.kv.key_dim + self.kv.value_dim) as u64,
            weight_bytes: 0,
            kv_bytes: kv_reads * kv_row * eb,
        }
    }

    /// Bytes and flops of one step of prefill attention over queries with these context
    /// lengths: each KV head read once per tile (up to its last query's context) and head
    /// block, plus the queries and outputs.
    fn cost_tiled(&self, context_lens: &[u32], per_tile: usize) -> Cost {
        let context_lens = &*self.seen(context_lens);
        let eb = self.kv.format.bytes_per_element() as u64;
        let kv_row = (self.kv.key_dim + self.kv.value_dim) as u64;
        let tiles = query_tiles(context_lens.iter().map(|&c| (c, 0)), per_tile);
        let positions: u64 = tiles
            .iter()
            .map(|&(f, n)| context_lens[(f + n - 1) as usize] as u64)
            .sum();
        let kv_reads =
            positions * self.kv.kv_heads as u64 * self.scratch.plan.blocks_per_kv_head as u64;
        let nq = context_lens.len() as u64;
        let attended: u64 = context_lens.iter().map(|&c| c as u64).sum();
        Cost {
            bytes_read: kv_reads * kv_row * eb + nq * (self.heads * self.kv.key_dim) as u64 * 4,
            bytes_written: nq * (self.heads * self.kv.value_dim) as u64 * 4,
            flops: attended * self.heads as u64 * 2 * kv_row,
            weight_bytes: 0,
            kv_bytes: kv_reads * kv_row * eb,
        }
    }

    /// Whether a step of this shape runs prefill attention over its query tiles.
    fn takes_tiles(&self, s: &StepShape) -> bool {
        s.query_tiles > 0 && self.prefill.is_some()
    }

    /// The positions each query sees: its context, or its window where shorter.
    fn seen<'a>(&self, context_lens: &'a [u32]) -> std::borrow::Cow<'a, [u32]> {
        match self.window {
            0 => context_lens.into(),
            w => context_lens.iter().map(|&c| c.min(w)).collect(),
        }
    }

    /// The KV bytes alone (what the roofline is about).
    pub fn kv_bytes(&self, context_lens: &[u32]) -> u64 {
        let context_lens = &*self.seen(context_lens);
        let eb = self.kv.format.bytes_per_element() as u64;
        let positions: u64 = context_lens.iter().map(|&c| c as u64).sum();
        let kv_row = (self.kv.key_dim + if self.kv.latent { 0 } else { self.kv.value_dim }) as u64;
        positions * self.kv.kv_heads as u64 * kv_row * eb
    }
}

impl super::Op for DecodeAttention {
    fn name(&self) -> &'static str {
        "attention"
    }
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, s: &StepShape) {
        if let Some((pipeline, group)) = self.prefill.as_ref().filter(|_| s.query_tiles > 0) {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(s.query_tiles, self.scratch.head_blocks(GROUPED) as u32, 1);
            return;
        }
        let (v, split) = self.step_variant(s);
        self.record_variant(v, pass, s.n_tokens, split);
    }
    /// For single-sequence steps: token t sees pos0 + t + 1 positions.
    fn cost(&self, s: &StepShape) -> Cost {
        let lens: Vec<u32> = (0..s.n_tokens).map(|t| s.pos0 + t + 1).collect();
        self.cost_of_rows(s, &lens)
    }
    fn cost_of_rows(&self, s: &StepShape, context_lens: &[u32]) -> Cost {
        if let Some(p) = self.scratch.prefill.filter(|_| self.takes_tiles(s)) {
            return self.cost_tiled(context_lens, p.queries);
        }
        let (v, split) = self.step_variant(s);
        self.cost_of(v, context_lens, split)
    }
    /// The split-K pass, and the merge where the context was split or blocks are stored;
    /// prefill attention's one pass.
    fn dispatches(&self, s: &StepShape) -> u32 {
        if self.takes_tiles(s) {
            return 1;
        }
        let (_, split) = self.step_variant(s);
        let always = self.scratch.merge_always(s.n_tokens as usize);
        1 + (split.n_splits > 1 || always) as u32
    }
}
