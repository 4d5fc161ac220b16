//! Decode attention measured alone at one shape: a synthetic paged KV cache filled on the
//! GPU, the real kernel timed, and its bytes set beside the probed copy bandwidth. The
//! attention benchmark and the viewer's explorer both measure through [`measure`].

use super::attention::Variant;
use crate::gpu::fill::fill_random;
use crate::gpu::timing::{GpuTimer, TimingSource};
use crate::gpu::{GpuContext, GpuError, StorageFormat};
use crate::kv::{KvPool, QueryRow, StepMeta};
use crate::ops::decode_attention::{AttentionIo, AttentionScratch, DecodeAttention, Split};
use std::sync::Arc;

/// One measured shape.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AttentionResult {
    pub variant: String,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub key_dim: usize,
    pub value_dim: usize,
    pub batch: usize,
    pub context: usize,
    pub group: usize,
    pub head_blocks_per_kv_head: usize,
    pub splits: usize,
    pub chunk: usize,
    /// bytes of the KV cache the step attends over (the roofline reads each once)
    pub kv_bytes: u64,
    /// all bytes the kernels move: KV, queries, outputs, split partials
    pub total_bytes: u64,
    pub median_us: f64,
    pub min_us: f64,
    /// total bytes / median time
    pub effective_gbps: f64,
    pub pct_of_copy_bandwidth: f64,
    /// KV bytes / probed copy bandwidth
    pub roofline_us: f64,
    pub speedup_over_mha: Option<f64>,
    pub kv_bytes_ratio_vs_mha: Option<f64>,
    pub timing: String,
}

/// A variant's synthetic setup at one (batch, context): pool, queries, op.
struct Setup {
    _pool: KvPool,
    _buffers: Vec<wgpu::Buffer>,
    scratch: Arc<AttentionScratch>,
    op: DecodeAttention,
    meta: StepMeta,
}

fn setup(
    gpu: &GpuContext,
    v: &Variant,
    batch: usize,
    context: usize,
    block_size: usize,
) -> Result<Setup, GpuError> {
    let layout = v.layout(block_size);
    let per_seq = context.div_ceil(block_size);
    let blocks = batch * per_seq;
    let pool = KvPool::new(gpu, layout, blocks)?;
    let eb = layout.format.bytes_per_element() as u64;
    for (i, pair) in [&pool.layers[0].k, &pool.layers[0].v].iter().enumerate() {
        for (j, buf) in pair.iter().enumerate() {
            let elems = buf.size() / eb;
            fill_random(
                gpu,
                buf,
                layout.format,
                elems & !1,
                (2 * i + j) as u32 + 1,
                1.0,
            )?;
        }
    }
    // each sequence's blocks scattered over the pool, as a serving cache would have them
    let mut ids: Vec<u32> = (0..blocks as u32).collect();
    let mut state = 0x9e37_79b9u32;
    for i in (1..ids.len()).rev() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        ids.swap(i, state as usize % (i + 1));
    }
    let tables: Vec<&[u32]> = ids.chunks(per_seq).collect();
    let rows: Vec<QueryRow> = (0..batch)
        .map(|i| QueryRow {
            context_len: context as u32,
            table: tables[i],
            q_row: i as u32,
            out_row: i as u32,
        })
        .collect();
    let meta = StepMeta::new(&rows, batch);
    let meta_buf = gpu.storage_init("bench.meta", bytemuck::cast_slice(&meta.words))?;
    let (kd, vd) = (v.key_dim(), v.value_dim());
    let q = gpu.storage("bench.q", (batch * v.heads * kd * 4) as u64)?;
    fill_random(
        gpu,
        &q,
        StorageFormat::F32,
        (batch * v.heads * kd) as u64,
        7,
        1.0,
    )?;
    let out = gpu.storage("bench.out", (batch * v.heads * vd * 4) as u64)?;
    let scratch = Arc::new(AttentionScratch::new(
        gpu,
        v.heads,
        &layout,
        1.0 / (kd as f32).sqrt(),
        batch,
        context,
        v.heads * kd,
        v.heads * vd,
    )?);
    let op = DecodeAttention::new(
        gpu,
        &scratch,
        pool.blocks_per_binding,
        &AttentionIo {
            meta: &meta_buf,
            q: &q,
            out: &out,
            out_blocks: None,
            pool: &pool.layers[0],
            window: None,
            softcap: None,
        },
    )?;
    Ok(Setup {
        _pool: pool,
        _buffers: vec![meta_buf, q, out],
        scratch,
        op,
        meta,
    })
}

/// One measured shape: a variant at one (batch, context).
pub struct Shape<'a> {
    pub variant: &'a Variant,
    pub batch: usize,
    pub context: usize,
    pub block_size: usize,
}

/// Measures one shape, `runs` timed runs; `copy_gbps` is the probed
/// copy bandwidth the result is compared with.
#[cfg(not(target_arch = "wasm32"))]
pub fn measure(
    gpu: &GpuContext,
    timer: &GpuTimer,
    shape: &Shape,
    runs: usize,
    copy_gbps: f64,
) -> Result<AttentionResult, GpuError> {
    crate::gpu::block_on(measure_async(gpu, timer, shape, runs, copy_gbps))
}

/// [`measure`], awaited (the browser's kernel lab).
pub async fn measure_async(
    gpu: &GpuContext,
    timer: &GpuTimer,
    shape: &Shape<'_>,
    runs: usize,
    copy_gbps: f64,
) -> Result<AttentionResult, GpuError> {
    let &Shape {
        variant: v,
        batch,
        context,
        block_size,
    } = shape;
    let s = setup(gpu, v, batch, context, block_size)?;
    let split: Split = s.scratch.prepare(gpu, &s.meta);
    gpu.wait_async().await?;
    let lens = vec![context as u32; batch];
    let cost = s.op.cost(&lens, split);
    let kv_bytes = s.op.kv_bytes(&lens);
    let total = cost.bytes_read + cost.bytes_written;
    // repeat inside one pass so that each sample lasts about a millisecond
    let single = timer
        .time_pass_async(gpu, "attention", &mut |pass| {
            s.op.record(pass, batch as u32, split)
        })
        .await?;
    let reps = ((1e-3 / single.seconds.max(1e-7)).ceil() as u32).clamp(1, 200);
    let m = timer
        .measure_async(gpu, "attention", 3, runs.max(1), reps, &mut |pass| {
            s.op.record(pass, batch as u32, split)
        })
        .await?;
    let roofline = kv_bytes as f64 / (copy_gbps * 1e9);
    Ok(AttentionResult {
        variant: v.name.to_string(),
        heads: v.heads,
        kv_heads: v.kv_heads,
        head_dim: v.head_dim,
        key_dim: v.key_dim(),
        value_dim: v.value_dim(),
        batch,
        context,
        group: s.op.plan.group,
        head_blocks_per_kv_head: s.op.plan.blocks_per_kv_head,
        splits: split.n_splits,
        chunk: split.chunk,
        kv_bytes,
        total_bytes: total,
        median_us: m.median_s * 1e6,
        min_us: m.min_s * 1e6,
        effective_gbps: total as f64 / m.median_s / 1e9,
        pct_of_copy_bandwidth: 100.0 * total as f64 / m.median_s / 1e9 / copy_gbps,
        roofline_us: roofline * 1e6,
        speedup_over_mha: None,
        kv_bytes_ratio_vs_mha: None,
        timing: format!("{} (x{reps} per sample)", timing_name(m.source)),
    })
}

/// How a measurement was timed, as the benchmark tables say it.
pub fn timing_name(s: TimingSource) -> &'static str {
    match s {
        TimingSource::Timestamps => "gpu timestamps",
        TimingSource::WallClock => "wall clock (no timestamps)",
    }
}
