//! Decode attention over the paged KV cache against an f64 CPU reference, on fresh random
//! inputs each run (the seed is printed): MHA, GQA, MQA and MLA, ragged context lengths,
//! block tables in shuffled order, lengths that are not multiples of the block or tile,
//! pools split over two bindings, and split-K forced on and off.

mod common;

use common::{assert_close, gpu, q8_round_trip, randn, rng, rounded};
use headroom::gpu::{GpuContext, StorageFormat};
use headroom::kv::{KvLayout, KvPool, QueryRow, StepMeta};
use headroom::ops::decode_attention::{
    AttentionIo, AttentionScratch, AttentionTuning, DecodeAttention, Split,
};
use headroom::ops::{Op, StepShape};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::sync::Arc;

/// Per sequence, per position, per KV head: a key_dim (or value_dim) vector.
type Cache = Vec<Vec<Vec<Vec<f32>>>>;

/// A pool holding the given per-sequence caches in shuffled blocks; unused slots are NaN
/// so a read outside a sequence's context poisons the result.
struct PagedCache {
    pool: KvPool,
    tables: Vec<Vec<u32>>,
}

fn build_pool(
    g: &GpuContext,
    r: &mut StdRng,
    layout: KvLayout,
    keys: &Cache,
    values: Option<&Cache>,
    split_bindings: bool,
) -> PagedCache {
    let bs = layout.block_size;
    let needed: usize = keys.iter().map(|s| s.len().div_ceil(bs)).sum();
    let blocks = needed + 3;
    let eb = layout.format.bytes_per_element() as u64;
    let max_binding = if split_bindings {
        (layout.key_block_elems() as u64 * eb) * (blocks as u64).div_ceil(2)
    } else {
        g.max_binding()
    };
    let pool = KvPool::with_binding_limit(g, layout, blocks, max_binding).unwrap();
    if split_bindings {
        assert!(
            pool.blocks_per_binding < blocks,
            "the pool should span two bindings"
        );
    }
    let mut ids: Vec<u32> = (0..blocks as u32).collect();
    ids.shuffle(r);
    let mut k_img = vec![f32::NAN; blocks * layout.key_block_elems()];
    let mut v_img = vec![f32::NAN; blocks * layout.value_block_elems()];
    let mut next = 0;
    let mut tables = Vec::new();
    for (s, seq) in keys.iter().enumerate() {
        let table: Vec<u32> = ids[next..next + seq.len().div_ceil(bs)].to_vec();
        next += table.len();
        for (p, heads) in seq.iter().enumerate() {
            let b = table[p / bs] as usize;
            for (h, k) in heads.iter().enumerate() {
                for (e, &x) in k.iter().enumerate() {
                    k_img[b * layout.key_block_elems() + layout.key_offset(h, p % bs, e)] = x;
                }
                if let Some(vals) = values {
                    for (e, &x) in vals[s][p][h].iter().enumerate() {
                        v_img[b * layout.value_block_elems() + layout.value_offset(h, p % bs, e)] =
                            x;
                    }
                }
            }
        }
        tables.push(table);
    }
    pool.write_blocks(g, 0, false, 0, &k_img).unwrap();
    if values.is_some() {
        pool.write_blocks(g, 0, true, 0, &v_img).unwrap();
    }
    PagedCache { pool, tables }
}

/// Softmax(q . k * scale) . v for one head, f64.
fn attend(q: &[f64], keys: &[Vec<f64>], values: &[Vec<f64>], scale: f64) -> Vec<f64> {
    attend_capped(q, keys, values, scale, None)
}

/// As `attend`, the scores soft-capped to ±cap (cap * tanh(score / cap)) where given.
fn attend_capped(
    q: &[f64],
    keys: &[Vec<f64>],
    values: &[Vec<f64>],
    scale: f64,
    softcap: Option<f32>,
) -> Vec<f64> {
    let cap = |s: f64| softcap.map_or(s, |c| c as f64 * (s / c as f64).tanh());
    let s: Vec<f64> = keys
        .iter()
        .map(|k| cap(q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() * scale))
        .collect();
    let m = s.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
    let z: f64 = e.iter().sum();
    let mut out = vec![0.0; values[0].len()];
    for (w, v) in e.iter().zip(values) {
        for (o, x) in out.iter_mut().zip(v) {
            *o += w / z * x;
        }
    }
    out
}

/// The first position a query with `len` positions of context sees through `window`.
fn seen_from(len: usize, window: Option<usize>) -> usize {
    window.map_or(0, |w| len.saturating_sub(w))
}

/// Aims split-K at `target` workgroups. Odd targets also leave only 9104 bytes of
/// workgroup memory (WebGPU's default is 16 KiB), so groups of wide heads are split into
/// more head blocks, and keep the default most heads per workgroup; even targets use the
/// adapter's memory and allow 8 heads per workgroup. Targets divisible by 3 allow splits
/// as short as one tile, divisible by 5 align splits to 32 positions; odd targets keep 4
/// key chunks and 4 value rows in flight, even ones 16 and 8.
fn tuning(g: &GpuContext, target: usize) -> AttentionTuning {
    let memory = g.limits.max_compute_workgroup_storage_size as usize;
    AttentionTuning {
        target_workgroups: target,
        workgroup_memory: if target % 2 == 1 { 9104 } else { memory },
        min_chunk: target.is_multiple_of(3).then_some(1),
        max_group: if target % 2 == 1 {
            headroom::ops::decode_attention::MAX_GROUP
        } else {
            8
        },
        // targets divisible by 5 split in chunks of 32 positions, part of a tile
        split_align: target.is_multiple_of(5).then_some(32),
        // odd targets keep fewer loads in flight than the defaults
        key_chunks: if target % 2 == 1 { 4 } else { 16 },
        value_rows: if target % 2 == 1 { 4 } else { 8 },
        prefill_tiles: true,
    }
}

/// Runs attention for one query per sequence; returns the outputs, the split and the plan
/// used. `as_step`: as a model's step records it (`Op::record` after `prepare_step`, the
/// variant chosen per step), else the grouped plan as the benchmarks record it.
#[allow(clippy::too_many_arguments)]
fn run_attention(
    g: &GpuContext,
    heads: usize,
    layout: KvLayout,
    cache: &PagedCache,
    lens: &[usize],
    q: &[f32],
    q_stride: usize,
    scale: f32,
    target: usize,
    as_step: bool,
    blocks: bool,
    window: Option<usize>,
    softcap: Option<f32>,
) -> (
    Vec<f32>,
    Split,
    headroom::ops::decode_attention::AttentionPlan,
    Option<Vec<u8>>,
) {
    let nq = lens.len();
    let out_stride = heads * layout.value_dim;
    let rows: Vec<QueryRow> = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| QueryRow {
            context_len: len as u32,
            table: &cache.tables[i],
            q_row: i as u32,
            out_row: i as u32,
        })
        .collect();
    let meta = StepMeta::new(&rows, nq);
    let meta_buf = g
        .storage_init("meta", bytemuck::cast_slice(&meta.words))
        .unwrap();
    let q_buf = g.storage_init("q", bytemuck::cast_slice(q)).unwrap();
    let out_buf = g
        .storage_init(
            "out",
            bytemuck::cast_slice(&vec![f32::NAN; nq * out_stride]),
        )
        .unwrap();
    let max_ctx = *lens.iter().max().unwrap();
    let scratch = Arc::new(
        AttentionScratch::with_tuning(
            g,
            heads,
            &layout,
            scale,
            nq,
            max_ctx,
            q_stride,
            out_stride,
            tuning(g, target),
        )
        .unwrap()
        .with_output_blocks(blocks),
    );
    let xq = blocks.then(|| headroom::ops::matmul::q8_scratch(g, out_stride).unwrap());
    let op = DecodeAttention::new(
        g,
        &scratch,
        cache.pool.blocks_per_binding,
        &AttentionIo {
            meta: &meta_buf,
            q: &q_buf,
            out: &out_buf,
            out_blocks: xq.as_ref(),
            pool: &cache.pool.layers[0],
            window,
            softcap,
        },
    )
    .unwrap();
    let shape = StepShape {
        n_tokens: nq as u32,
        pos0: 0,
        n_out_rows: 0,
        max_context: max_ctx as u32,
        query_tiles: 0,
    };
    let (split, plan) = match as_step {
        true => {
            let variant = scratch.variant_for(nq, max_ctx);
            (scratch.prepare_step(g, &meta), *scratch.plan_of(variant))
        }
        false => (scratch.prepare(g, &meta), op.plan),
    };
    let mut enc = g.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        match as_step {
            true => Op::record(&op, &mut pass, &shape),
            false => op.record(&mut pass, nq as u32, split),
        }
    }
    g.queue.submit([enc.finish()]);
    let block_bytes = (nq * out_stride / 32) as u64 * headroom::ops::matmul::Q8_BLOCK_BYTES;
    let blocks = xq.map(|b| g.read_bytes(&b, block_bytes).unwrap());
    (
        g.read_f32(&out_buf, nq * out_stride).unwrap(),
        split,
        plan,
        blocks,
    )
}

struct Case {
    heads: usize,
    kv_heads: usize,
    dim: usize,
    block: usize,
    format: StorageFormat,
    lens: &'static [usize],
    target: usize,
    split_bindings: bool,
    /// query heads per workgroup the plan should choose
    group: usize,
    /// keys uniform in ±key_scale (queries in ±1): 1.5 keeps scores small, 30 makes
    /// them reach 30 and more
    key_scale: f32,
    /// a sliding window: each query sees its last `window` positions
    window: Option<usize>,
    /// scores soft-capped to ±cap (gemma2)
    softcap: Option<f32>,
}

fn check(case: &Case, r: &mut StdRng, as_step: bool, blocks: bool) {
    let g = gpu();
    let (nh, nkv, d) = (case.heads, case.kv_heads, case.dim);
    let layout = KvLayout {
        layers: 1,
        kv_heads: nkv,
        key_dim: d,
        value_dim: d,
        block_size: case.block,
        format: case.format,
        latent: false,
    };
    let gen = |r: &mut StdRng, scale: f32| -> Cache {
        case.lens
            .iter()
            .map(|&len| {
                (0..len)
                    .map(|_| {
                        (0..nkv)
                            .map(|_| rounded(&randn(r, d, scale), case.format))
                            .collect()
                    })
                    .collect()
            })
            .collect()
    };
    let keys = gen(r, case.key_scale);
    let values = gen(r, 1.0);
    let cache = build_pool(&g, r, layout, &keys, Some(&values), case.split_bindings);
    // query rows wider than the heads (as in the fused qkv rows of the model)
    let q_stride = nh * d + 8;
    let q = randn(r, case.lens.len() * q_stride, 1.0);
    let scale = 1.0 / (d as f32).sqrt();
    let (got, split, plan, got_blocks) = run_attention(
        &g,
        nh,
        layout,
        &cache,
        case.lens,
        &q,
        q_stride,
        scale,
        case.target,
        as_step,
        blocks,
        case.window,
        case.softcap,
    );
    let mut want = Vec::new();
    let mut max_score = 0f64;
    for (i, &len) in case.lens.iter().enumerate() {
        for h in 0..nh {
            let kvh = h / (nh / nkv);
            let qh: Vec<f64> = q[i * q_stride + h * d..][..d]
                .iter()
                .map(|&x| x as f64)
                .collect();
            let to64 = |c: &Cache| -> Vec<Vec<f64>> {
                (seen_from(len, case.window)..len)
                    .map(|p| c[i][p][kvh].iter().map(|&x| x as f64).collect())
                    .collect()
            };
            let ks = to64(&keys);
            for k in &ks {
                let s = qh.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() * scale as f64;
                max_score = max_score.max(s.abs());
            }
            want.extend(attend_capped(
                &qh,
                &ks,
                &to64(&values),
                scale as f64,
                case.softcap,
            ));
        }
    }
    let what = format!(
        "heads {nh} kv {nkv} dim {d} block {} {:?} lens {:?} window {:?} softcap {:?} split \
         {split:?} target {} (heads per workgroup {}, workgroup memory {} B)",
        case.block,
        case.format,
        case.lens,
        case.window,
        case.softcap,
        case.target,
        plan.group,
        plan.workgroup_bytes
    );
    assert_close(&what, &got, &want, 1e-5, 1e-4);
    if let Some(b) = got_blocks {
        // the merge's 8-bit blocks are the f32 outputs rounded as the CPU rounds them, but
        // for the GPU's max / 127 and 1 / d, which WGSL lets differ by an ulp or two: each
        // value within a quantum of the CPU's (on the H200 the scale of some blocks was an
        // ulp off; lavapipe matched exactly)
        let dequantized: Vec<f32> = b
            .chunks_exact(48)
            .flat_map(|blk| {
                let d = f32::from_le_bytes(blk[32..36].try_into().unwrap());
                blk[..32].iter().map(move |&q| q as i8 as f32 * d)
            })
            .collect();
        let want_blocks = q8_round_trip(&got);
        for (i, (blk, want_blk)) in dequantized
            .chunks_exact(32)
            .zip(want_blocks.chunks_exact(32))
            .enumerate()
        {
            let amax = got[32 * i..32 * (i + 1)]
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
            let quantum = amax / 127.0;
            for (a, w) in blk.iter().zip(want_blk) {
                assert!(
                    (a - w).abs() <= quantum * 1.001,
                    "{what}: 8-bit block {i} of the outputs: {a} against {w} (quantum {quantum})"
                );
            }
            // and not wholly off: most values as the CPU has them to a few ulps
            let close = blk
                .iter()
                .zip(want_blk)
                .filter(|(a, w)| (*a - *w).abs() <= 4e-7 * amax.max(1e-30))
                .count();
            assert!(
                close >= 24,
                "{what}: 8-bit block {i}: only {close} of 32 values as the CPU's"
            );
        }
    }
    assert_eq!(plan.group, case.group, "{what}: heads per workgroup");
    assert_split(&what, split, case.target, *case.lens.iter().max().unwrap());
    if case.key_scale > 10.0 {
        assert!(max_score >= 30.0, "{what}: scores only reach {max_score}");
    }
}

/// A split target of one workgroup runs whole contexts; any larger target in these cases
/// forces split-K. Either way the splits cover the longest context with none empty.
fn assert_split(what: &str, split: Split, target: usize, longest: usize) {
    if target == 1 {
        assert_eq!(split.n_splits, 1, "{what}: no split-K without a target");
    } else {
        assert!(split.n_splits > 1, "{what}: the target forces split-K");
    }
    assert!(
        split.n_splits * split.chunk >= longest && (split.n_splits - 1) * split.chunk < longest,
        "{what}: {} splits of {} do not cover {longest} positions exactly",
        split.n_splits,
        split.chunk
    );
}

#[test]
fn gqa_family_matches_cpu_for_every_group_size() {
    use StorageFormat::{F16, F32};
    let mut r = rng();
    #[rustfmt::skip]
    let cases = [
        // MHA, no split and forced split, block 16
        Case { heads: 4, kv_heads: 4, dim: 64, block: 16, format: F32, lens: &[1, 17, 300], target: 1, split_bindings: false, group: 1, key_scale: 1.5, window: None, softcap: None },
        Case { heads: 4, kv_heads: 4, dim: 64, block: 16, format: F16, lens: &[1, 17, 300], target: 64, split_bindings: true, group: 1, key_scale: 1.5, window: None, softcap: None },
        // GQA-2, head dim 128, odd block size, pool over two bindings
        Case { heads: 8, kv_heads: 4, dim: 128, block: 5, format: F16, lens: &[33, 130, 7], target: 48, split_bindings: true, group: 2, key_scale: 1.5, window: None, softcap: None },
        // G = 3 (SmolLM2), head dim 64
        Case { heads: 9, kv_heads: 3, dim: 64, block: 16, format: F16, lens: &[200, 1000, 64], target: 32, split_bindings: false, group: 3, key_scale: 1.5, window: None, softcap: None },
        // G = 4, head dim 96
        Case { heads: 8, kv_heads: 2, dim: 96, block: 16, format: F32, lens: &[129, 45], target: 1, split_bindings: false, group: 4, key_scale: 1.5, window: None, softcap: None },
        // G = 8, head dim 80
        Case { heads: 16, kv_heads: 2, dim: 80, block: 8, format: F16, lens: &[257, 3], target: 40, split_bindings: false, group: 8, key_scale: 1.5, window: None, softcap: None },
        // MQA, G = 32, head dim 128
        Case { heads: 32, kv_heads: 1, dim: 128, block: 16, format: F16, lens: &[700, 65, 1], target: 24, split_bindings: true, group: 8, key_scale: 1.5, window: None, softcap: None },
        // 32 heads of dim 64 on one KV head: four head blocks of 8
        Case { heads: 32, kv_heads: 1, dim: 64, block: 16, format: F16, lens: &[300, 77], target: 30, split_bindings: false, group: 8, key_scale: 1.5, window: None, softcap: None },
        // head dim 256
        Case { heads: 4, kv_heads: 2, dim: 256, block: 16, format: F32, lens: &[150, 40], target: 16, split_bindings: false, group: 2, key_scale: 1.5, window: None, softcap: None },
        // 64 heads on one KV head, at most 4 per workgroup: 16 head blocks
        // 8 heads of dim 256 on one KV head: 4 would need 9348 bytes, so 4 head blocks of 2
        Case { heads: 8, kv_heads: 1, dim: 256, block: 16, format: F16, lens: &[140, 33], target: 9, split_bindings: false, group: 2, key_scale: 1.5, window: None, softcap: None },
        Case { heads: 64, kv_heads: 1, dim: 64, block: 32, format: F16, lens: &[100, 31], target: 1, split_bindings: false, group: 4, key_scale: 1.5, window: None, softcap: None },
        // a context past 4096 with scores of 30 and more: the online softmax's rescaling
        Case { heads: 8, kv_heads: 2, dim: 64, block: 16, format: F16, lens: &[4500, 37], target: 32, split_bindings: true, group: 4, key_scale: 30.0, window: None, softcap: None },
    ];
    for case in &cases {
        check(case, &mut r, false, false);
    }
}

/// Sliding windows (Mistral, Gemma): each query sees its last W positions only. Windows
/// shorter than a split, than a tile and than a block, a window past every context, with
/// whole contexts and with splits wholly before the window (which write nothing and the
/// merge skips), each against the f64 reference over the window.
#[test]
fn sliding_windows_match_cpu_whole_and_split() {
    use StorageFormat::{F16, F32};
    let mut r = rng();
    #[rustfmt::skip]
    let cases = [
        Case { heads: 4, kv_heads: 2, dim: 64, block: 16, format: F32, lens: &[1, 17, 300], target: 1, split_bindings: false, group: 2, key_scale: 1.5, window: Some(40), softcap: None },
        Case { heads: 4, kv_heads: 2, dim: 64, block: 16, format: F16, lens: &[1, 17, 300], target: 64, split_bindings: true, group: 2, key_scale: 1.5, window: Some(40), softcap: None },
        Case { heads: 9, kv_heads: 3, dim: 64, block: 5, format: F16, lens: &[200, 1000, 6], target: 32, split_bindings: false, group: 3, key_scale: 1.5, window: Some(7), softcap: None },
        Case { heads: 8, kv_heads: 2, dim: 128, block: 16, format: F16, lens: &[129, 45], target: 48, split_bindings: false, group: 4, key_scale: 30.0, window: Some(100), softcap: None },
        Case { heads: 4, kv_heads: 4, dim: 64, block: 16, format: F32, lens: &[33, 300], target: 48, split_bindings: false, group: 1, key_scale: 1.5, window: Some(4096), softcap: None },
    ];
    for case in &cases {
        check(case, &mut r, false, false);
    }
    // as a model's step records it (variants per step, merge storing blocks)
    #[rustfmt::skip]
    let case = Case { heads: 8, kv_heads: 2, dim: 64, block: 16, format: F16, lens: &[300, 45, 129], target: 64, split_bindings: false, group: 1, key_scale: 1.5, window: Some(50), softcap: None };
    check(&case, &mut r, true, true);
}

/// Gemma 2's soft-capped scores (cap * tanh(score / cap) before the softmax): caps below
/// the scores' spread (keys of ±30 make scores of 30 and more, far past a cap of 2), with
/// whole contexts, forced splits and a window, and as a model's step records it.
#[test]
fn soft_capped_scores_match_cpu_whole_and_split() {
    use StorageFormat::{F16, F32};
    let mut r = rng();
    #[rustfmt::skip]
    let cases = [
        Case { heads: 4, kv_heads: 2, dim: 64, block: 16, format: F32, lens: &[1, 17, 300], target: 1, split_bindings: false, group: 2, key_scale: 30.0, window: None, softcap: Some(2.0) },
        Case { heads: 8, kv_heads: 2, dim: 128, block: 16, format: F16, lens: &[600, 300], target: 48, split_bindings: false, group: 4, key_scale: 30.0, window: Some(200), softcap: Some(50.0) },
        Case { heads: 9, kv_heads: 3, dim: 64, block: 5, format: F16, lens: &[200, 6], target: 32, split_bindings: true, group: 3, key_scale: 1.5, window: None, softcap: Some(0.5) },
    ];
    for case in &cases {
        check(case, &mut r, false, false);
    }
    #[rustfmt::skip]
    let case = Case { heads: 8, kv_heads: 2, dim: 64, block: 16, format: F16, lens: &[300, 45, 129], target: 64, split_bindings: false, group: 1, key_scale: 30.0, window: None, softcap: Some(15.0) };
    check(&case, &mut r, true, true);
}

/// A model's step runs one query head per workgroup where the grouped plan would run
/// fewer workgroups than the adapter's target (`AttentionScratch::variant_for`): here 2
/// queries x 2 KV heads x 2 splits against a target of 64; a target of 1 keeps the groups
/// of 4. Either agrees with the CPU.
#[test]
fn a_step_runs_one_head_per_workgroup_where_groups_leave_the_adapter_idle() {
    use StorageFormat::F16;
    let mut r = rng();
    for (target, group) in [(1, 4), (64, 1)] {
        #[rustfmt::skip]
        let case = Case { heads: 8, kv_heads: 2, dim: 64, block: 16, format: F16, lens: &[129, 45], target, split_bindings: false, group, key_scale: 1.5, window: None, softcap: None };
        check(&case, &mut r, true, false);
    }
}

/// Where the integer-dot matmul reads attention's outputs as 8-bit blocks, the merge
/// stores them, on every step of at most 8 queries: after one split (context 45: the
/// first pass leaves partials anyway) and after several; the f32 outputs stay as ever.
#[test]
fn the_merge_stores_the_outputs_as_8bit_blocks() {
    use StorageFormat::F16;
    let mut r = rng();
    for (lens, target) in [(&[45usize, 30][..], 1), (&[300, 45, 129][..], 64)] {
        #[rustfmt::skip]
        let case = Case { heads: 8, kv_heads: 2, dim: 64, block: 16, format: F16, lens, target, split_bindings: false, group: if target == 1 { 4 } else { 1 }, key_scale: 1.5, window: None, softcap: None };
        check(&case, &mut r, true, true);
    }
}

/// One sequence's part of a prefill step: `queries` new tokens at the end of a context of
/// `len` positions (their own keys and values already in the cache, as the step appends
/// them before attention); `queries` 1 is a decode row.
struct Chunk {
    len: usize,
    queries: usize,
}

/// Prefill attention (shaders/prefill_attention.wgsl) against the f64 reference: each
/// query attends over the positions up to its own (causal), tiles of consecutive queries
/// of one sequence sharing each key load. Chunks that are not multiples of a tile, cached
/// prefixes before them, decode rows beside them (tiles of one), odd block sizes, pools
/// over two bindings, every group size, and sliding windows; the step must take the tiles.
#[test]
fn prefill_attention_matches_cpu_causally_over_query_tiles() {
    use StorageFormat::{F16, F32};
    let g = gpu();
    let mut r = rng();
    // (heads, kv heads, dim, block, format, chunks, two bindings, sliding window, softcap)
    type PrefillCase = (
        usize,
        usize,
        usize,
        usize,
        StorageFormat,
        &'static [Chunk],
        bool,
        Option<usize>,
        Option<f32>,
    );
    #[rustfmt::skip]
    let cases: [PrefillCase; 11] = [
        (4, 4, 64, 16, F32, &[Chunk { len: 37, queries: 37 }], false, None, None),
        (9, 3, 64, 16, F16, &[Chunk { len: 100, queries: 61 }, Chunk { len: 33, queries: 1 }], true, None, None),
        (8, 2, 128, 5, F16, &[Chunk { len: 70, queries: 19 }, Chunk { len: 19, queries: 19 }], false, None, None),
        (32, 1, 64, 16, F16, &[Chunk { len: 45, queries: 45 }], true, None, None),
        (8, 1, 96, 8, F32, &[Chunk { len: 130, queries: 3 }, Chunk { len: 17, queries: 17 }], false, None, None),
        (4, 2, 64, 16, F16, &[Chunk { len: 300, queries: 64 }, Chunk { len: 5, queries: 1 }, Chunk { len: 9, queries: 1 }], false, None, None),
        // sliding windows: shorter than a key tile, than a query tile, and between
        (4, 2, 64, 16, F32, &[Chunk { len: 90, queries: 61 }, Chunk { len: 33, queries: 1 }], false, Some(5), None),
        (9, 3, 64, 5, F16, &[Chunk { len: 100, queries: 64 }], true, Some(23), None),
        (8, 2, 128, 16, F16, &[Chunk { len: 300, queries: 40 }, Chunk { len: 19, queries: 19 }], false, Some(64), None),
        // gemma2's soft-capped scores, alone and with a window
        (4, 2, 64, 16, F32, &[Chunk { len: 70, queries: 37 }, Chunk { len: 9, queries: 1 }], false, None, Some(1.0)),
        (8, 2, 64, 16, F16, &[Chunk { len: 90, queries: 50 }], true, Some(8), Some(2.0)),
    ];
    for (nh, nkv, d, block, format, chunks, two, window, softcap) in cases {
        let layout = KvLayout {
            layers: 1,
            kv_heads: nkv,
            key_dim: d,
            value_dim: d,
            block_size: block,
            format,
            latent: false,
        };
        let gen = |r: &mut StdRng, scale: f32| -> Cache {
            chunks
                .iter()
                .map(|c| {
                    (0..c.len)
                        .map(|_| {
                            (0..nkv)
                                .map(|_| rounded(&randn(r, d, scale), format))
                                .collect()
                        })
                        .collect()
                })
                .collect()
        };
        let keys = gen(&mut r, 1.5);
        let values = gen(&mut r, 1.0);
        let cache = build_pool(&g, &mut r, layout, &keys, Some(&values), two);
        // the query rows: each chunk's tokens in order, a context one longer each
        let mut rows = Vec::new();
        let mut of = Vec::new();
        for (s, c) in chunks.iter().enumerate() {
            for p in c.len - c.queries..c.len {
                of.push((s, p + 1));
                rows.push(QueryRow {
                    context_len: p as u32 + 1,
                    table: &cache.tables[s],
                    q_row: rows.len() as u32,
                    out_row: rows.len() as u32,
                });
            }
        }
        let nq = rows.len();
        let q_stride = nh * d + 8;
        let out_stride = nh * d;
        let q = randn(&mut r, nq * q_stride, 1.0);
        let scale = 1.0 / (d as f32).sqrt();
        let max_ctx = rows.iter().map(|x| x.context_len).max().unwrap();
        let meta = StepMeta::new(&rows, nq);
        let meta_buf = g
            .storage_init("meta", bytemuck::cast_slice(&meta.words))
            .unwrap();
        let q_buf = g.storage_init("q", bytemuck::cast_slice(&q)).unwrap();
        let out_buf = g
            .storage_init(
                "out",
                bytemuck::cast_slice(&vec![f32::NAN; nq * out_stride]),
            )
            .unwrap();
        let scratch = Arc::new(
            AttentionScratch::with_tuning(
                &g,
                nh,
                &layout,
                scale,
                nq,
                max_ctx as usize,
                q_stride,
                out_stride,
                tuning(&g, 2),
            )
            .unwrap(),
        );
        let plan = scratch.prefill.expect("prefill attention fits the adapter");
        let op = DecodeAttention::new(
            &g,
            &scratch,
            cache.pool.blocks_per_binding,
            &AttentionIo {
                meta: &meta_buf,
                q: &q_buf,
                out: &out_buf,
                out_blocks: None,
                pool: &cache.pool.layers[0],
                window,
                softcap,
            },
        )
        .unwrap();
        scratch.prepare_step(&g, &meta);
        let query_tiles = scratch.prepare_tiles(&g, &meta);
        let lens: Vec<u32> = rows.iter().map(|x| x.context_len).collect();
        let what = format!(
            "heads {nh} kv {nkv} dim {d} block {block} {format:?} {} queries in tiles of {} \
             window {window:?} softcap {softcap:?}",
            nq, plan.queries
        );
        assert!(query_tiles > 0, "{what}: the step takes query tiles");
        assert_eq!(
            query_tiles,
            scratch.tiles_of_lens(&lens),
            "{what}: tiles of the lengths"
        );
        let shape = StepShape {
            n_tokens: nq as u32,
            pos0: 0,
            n_out_rows: 0,
            max_context: max_ctx,
            query_tiles,
        };
        assert_eq!(Op::dispatches(&op, &shape), 1, "{what}");
        let mut enc = g.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            Op::record(&op, &mut pass, &shape);
        }
        g.queue.submit([enc.finish()]);
        let got = g.read_f32(&out_buf, nq * out_stride).unwrap();
        let mut want = Vec::new();
        for &(s, ctx) in &of {
            let i = want.len() / out_stride;
            for h in 0..nh {
                let kvh = h / (nh / nkv);
                let qh: Vec<f64> = q[i * q_stride + h * d..][..d]
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                let to64 = |c: &Cache| -> Vec<Vec<f64>> {
                    (seen_from(ctx, window)..ctx)
                        .map(|p| c[s][p][kvh].iter().map(|&x| x as f64).collect())
                        .collect()
                };
                want.extend(attend_capped(
                    &qh,
                    &to64(&keys),
                    &to64(&values),
                    scale as f64,
                    softcap,
                ));
            }
        }
        assert_close(&what, &got, &want, 1e-5, 1e-4);
    }
}

/// Steps whose merge stores attention's outputs as 8-bit blocks for the next matmul (up
/// to 8 queries) keep decode attention: prefill attention has no merge.
#[test]
fn prefill_tiles_leave_steps_whose_merge_stores_blocks() {
    let g = gpu();
    let layout = KvLayout {
        layers: 1,
        kv_heads: 3,
        key_dim: 64,
        value_dim: 64,
        block_size: 16,
        format: StorageFormat::F16,
        latent: false,
    };
    let table = [0u32, 1];
    let tiles_for = |queries: u32, blocks: bool| {
        let rows: Vec<QueryRow> = (0..queries)
            .map(|i| QueryRow {
                context_len: i + 1,
                table: &table,
                q_row: i,
                out_row: i,
            })
            .collect();
        let meta = StepMeta::new(&rows, 32);
        let scratch = AttentionScratch::with_tuning(
            &g,
            9,
            &layout,
            0.125,
            32,
            32,
            9 * 64,
            9 * 64,
            tuning(&g, 2),
        )
        .unwrap()
        .with_output_blocks(blocks);
        scratch.prepare_tiles(&g, &meta)
    };
    assert_eq!(tiles_for(5, true), 0);
    assert_eq!(tiles_for(5, false), 1);
    assert_eq!(tiles_for(20, true), 2);
}

#[test]
fn query_tiles_follow_one_sequence_s_consecutive_positions() {
    use headroom::ops::decode_attention::query_tiles;
    // a chunk of 5 (table 0) cut at 2, a decode row (table 7), and a chunk of 3 (table 9)
    // whose first context follows the decode row's without joining it
    let q = [
        (4, 0),
        (5, 0),
        (6, 0),
        (7, 0),
        (8, 0),
        (40, 7),
        (41, 9),
        (42, 9),
        (43, 9),
    ];
    assert_eq!(
        query_tiles(q, 2),
        [(0, 2), (2, 2), (4, 1), (5, 1), (6, 2), (8, 1)]
    );
    // a repeated context (two sequences' decode rows sharing a table never happens, but a
    // context that does not grow by one ends the tile)
    assert_eq!(
        query_tiles([(3, 1), (3, 1), (5, 1)], 8),
        [(0, 1), (1, 1), (2, 1)]
    );
}

/// MLA: the GPU runs the absorbed form (queries through W_UK, attention over the latent
/// cache, outputs through W_UV); the reference expands every head's keys and values from
/// the latent and runs ordinary attention.
#[test]
fn mla_absorbed_matches_the_unabsorbed_reference() {
    use headroom::ops::mla::{MlaProjection, Strided};
    let g = gpu();
    let mut r = rng();
    // (heads, rank, rope dim, nope dim, value dim, block, format, lens, split target)
    type Case = (
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        StorageFormat,
        &'static [usize],
        usize,
    );
    #[rustfmt::skip]
    let cases: [Case; 3] = [
        (8, 64, 16, 32, 32, 16, StorageFormat::F32, &[50, 130], 1),
        (16, 128, 32, 48, 40, 16, StorageFormat::F16, &[257, 9, 64], 24),
        // 40 heads: five head blocks of 8 on the one latent head
        (40, 64, 16, 32, 24, 7, StorageFormat::F16, &[300], 12),
    ];
    for &(nh, rank, dr, dn, dv, bs, fmt, lens, target) in &cases {
        let kd = rank + dr;
        let layout = KvLayout {
            layers: 1,
            kv_heads: 1,
            key_dim: kd,
            value_dim: rank,
            block_size: bs,
            format: fmt,
            latent: true,
        };
        // cache: [latent | rope key] per position
        let cache: Cache = lens
            .iter()
            .map(|&len| {
                (0..len)
                    .map(|_| vec![rounded(&randn(&mut r, kd, 1.0), fmt)])
                    .collect()
            })
            .collect();
        let paged = build_pool(&g, &mut r, layout, &cache, None, false);
        let w_uk = randn(&mut r, nh * dn * rank, 0.3); // per head [dn][rank]
        let w_uv_t = randn(&mut r, nh * rank * dv, 0.3); // per head [rank][dv]
        let nq = lens.len();
        let q_in = randn(&mut r, nq * nh * (dn + dr), 1.0); // per head [q_nope | q_rope]
        let scale = 1.0 / ((dn + dr) as f32).sqrt();

        // reference: un-absorbed attention per head
        let mut want = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            for h in 0..nh {
                let qh: Vec<f64> = q_in[(i * nh + h) * (dn + dr)..][..dn + dr]
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                let mut keys = Vec::new();
                let mut values = Vec::new();
                for position in cache[i].iter().take(len) {
                    let c = &position[0];
                    let mut k: Vec<f64> = (0..dn)
                        .map(|j| {
                            (0..rank)
                                .map(|a| w_uk[(h * dn + j) * rank + a] as f64 * c[a] as f64)
                                .sum()
                        })
                        .collect();
                    k.extend(c[rank..].iter().map(|&x| x as f64));
                    keys.push(k);
                    values.push(
                        (0..dv)
                            .map(|o| {
                                (0..rank)
                                    .map(|a| w_uv_t[(h * rank + a) * dv + o] as f64 * c[a] as f64)
                                    .sum()
                            })
                            .collect(),
                    );
                }
                want.extend(attend(&qh, &keys, &values, scale as f64));
            }
        }

        // GPU: absorb, attend over the latent cache, project out
        let rows: Vec<QueryRow> = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| QueryRow {
                context_len: len as u32,
                table: &paged.tables[i],
                q_row: i as u32,
                out_row: i as u32,
            })
            .collect();
        let meta = StepMeta::new(&rows, nq);
        let meta_buf = g
            .storage_init("meta", bytemuck::cast_slice(&meta.words))
            .unwrap();
        let up = |v: &[f32]| g.storage_init("t", bytemuck::cast_slice(v)).unwrap();
        let (q_buf, uk_buf, uv_buf) = (up(&q_in), up(&w_uk), up(&w_uv_t));
        let q_abs = up(&vec![f32::NAN; nq * nh * kd]);
        let lat = up(&vec![f32::NAN; nq * nh * rank]);
        let out = up(&vec![f32::NAN; nq * nh * dv]);
        let q_at = |off| Strided {
            stride: nh * (dn + dr),
            head_stride: dn + dr,
            offset: off,
        };
        let absorb = MlaProjection::new(
            &g,
            nh,
            &uk_buf,
            rank,
            dn,
            (&q_buf, q_at(0)),
            Some((&q_buf, q_at(dn), dr)),
            (
                &q_abs,
                Strided {
                    stride: nh * kd,
                    head_stride: kd,
                    offset: 0,
                },
            ),
        );
        let project = MlaProjection::new(
            &g,
            nh,
            &uv_buf,
            dv,
            rank,
            (
                &lat,
                Strided {
                    stride: nh * rank,
                    head_stride: rank,
                    offset: 0,
                },
            ),
            None,
            (
                &out,
                Strided {
                    stride: nh * dv,
                    head_stride: dv,
                    offset: 0,
                },
            ),
        );
        let max_ctx = *lens.iter().max().unwrap();
        let scratch = Arc::new(
            AttentionScratch::with_tuning(
                &g,
                nh,
                &layout,
                scale,
                nq,
                max_ctx,
                nh * kd,
                nh * rank,
                tuning(&g, target),
            )
            .unwrap(),
        );
        let attn = DecodeAttention::new(
            &g,
            &scratch,
            paged.pool.blocks_per_binding,
            &AttentionIo {
                meta: &meta_buf,
                q: &q_abs,
                out: &lat,
                out_blocks: None,
                pool: &paged.pool.layers[0],
                window: None,
                softcap: None,
            },
        )
        .unwrap();
        let split = scratch.prepare(&g, &meta);
        let mut enc = g.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            absorb.record(&mut pass, nq as u32);
            attn.record(&mut pass, nq as u32, split);
            project.record(&mut pass, nq as u32);
        }
        g.queue.submit([enc.finish()]);
        let got = g.read_f32(&out, nq * nh * dv).unwrap();
        let what = format!(
            "MLA heads {nh} rank {rank} rope {dr} nope {dn} v {dv} {fmt:?} lens {lens:?} \
             group {} x {} split {split:?}",
            attn.plan.group, attn.plan.blocks_per_kv_head
        );
        assert_close(&what, &got, &want, 1e-5, 1e-4);
        assert_split(&what, split, target, max_ctx);
    }
}
