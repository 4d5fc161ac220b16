//! Batched decode (one `GpuModel::forward` over a decode row of each sequence, and
//! `decode_chain`) on synthetic models made on the GPU (`GpuModel::synthetic`,
//! `WeightMatrix::random`): a batch of sequences with different contexts gives each row
//! the logits and token of that sequence run alone.

mod common;

use common::{argmax, gpu, greedy_step, last_logits, max_rel_diff};
use headroom::gpu::{StorageFormat, WeightFormat};
use headroom::metrics::presets::tiny_config;
use headroom::model::gpu_model::{GpuModel, GpuModelOptions, ModelError, PartLogits, SequencePart};
use headroom::ops::matmul::WeightMatrix;
use headroom::ops::sample::SamplingParams;

fn options(format: StorageFormat, context: usize, max_chunk: usize) -> GpuModelOptions {
    GpuModelOptions {
        weights: format,
        quantized: false,
        quantize: None,
        kv: format,
        context,
        max_chunk,
        // does not divide the prompts: sequences end mid-block
        kv_block_size: 5,
    }
}

fn prompt(len: usize, salt: u32, vocab: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 31 + salt * 7 + 3) % vocab as u32)
        .collect()
}

/// The parts of one decode step of sequences 0..n: row i is token `tokens[i]` at
/// position `contexts[i]` of sequence i, sampled with `sampling` (seed + i, so rows of
/// one setting differ) as draw `counter`.
fn decode_parts<'a>(
    model: &'a GpuModel,
    tokens: &'a [u32],
    contexts: &[usize],
    sampling: &SamplingParams,
    counter: u32,
) -> Result<Vec<SequencePart<'a>>, ModelError> {
    (0..tokens.len())
        .map(|i| {
            let row = SamplingParams {
                seed: sampling.seed.wrapping_add(i as u32),
                ..*sampling
            };
            Ok(SequencePart {
                tokens: &tokens[i..i + 1],
                pos0: contexts[i],
                table: model.sequence_table(i)?,
                sample: Some((row, counter)),
                logits: PartLogits::None,
            })
        })
        .collect()
}

/// One decode step of sequences 0..tokens.len() (see `decode_parts`); the sampled ids.
fn decode_batch(
    model: &GpuModel,
    tokens: &[u32],
    contexts: &[usize],
    sampling: &SamplingParams,
    counter: u32,
) -> Result<Vec<u32>, ModelError> {
    model.forward(&decode_parts(model, tokens, contexts, sampling, counter)?)
}

/// Three sequences of different lengths (crossing block boundaries), each prefilled into
/// its own blocks of one cache, then decoded together for two steps (ids given, then the
/// ids the batch sampled): every row matches the same sequence run alone in a
/// one-sequence model with the same weights.
#[test]
fn batch_rows_match_each_sequence_run_alone() {
    let cfg = tiny_config(2);
    let seed = 11;
    let (context, chunk) = (48, 32);
    let opts = options(StorageFormat::F32, context, chunk);
    let alone = GpuModel::synthetic(gpu(), cfg.clone(), opts.clone(), 1, seed).unwrap();
    let batch = GpuModel::synthetic(gpu(), cfg.clone(), opts, 3, seed).unwrap();
    assert_eq!(batch.sequences(), 3);
    assert_eq!(batch.weight_bytes, alone.weight_bytes);
    assert_eq!(batch.kv_cache_bytes, 3 * alone.kv_cache_bytes);
    let greedy = SamplingParams::default();
    let lens = [5usize, 17, 30];
    let prompts: Vec<Vec<u32>> = lens
        .iter()
        .enumerate()
        .map(|(s, &n)| prompt(n, s as u32, cfg.vocab_size))
        .collect();

    // alone: prefill, then two decode steps, keeping each step's logits
    let mut want_next = vec![];
    let mut want = vec![]; // [sequence][step] -> (logits, token)
    for (s, p) in prompts.iter().enumerate() {
        let mut t = greedy_step(&alone, 0, p, 0);
        want_next.push(t);
        let mut steps = vec![];
        for k in 0..2 {
            t = greedy_step(&alone, 0, &[t], lens[s] + k);
            steps.push((last_logits(&alone), t));
        }
        want.push(steps);
    }

    // batched: each sequence prefilled alone into its own blocks, in order, so a sequence
    // that wrote into another's blocks would change that one's rows below
    for (s, p) in prompts.iter().enumerate() {
        let next = greedy_step(&batch, s, p, 0);
        assert_eq!(next, want_next[s], "sequence {s}: prefill token");
    }
    let tol = 1e-4;
    let mut input = want_next.clone();
    for k in 0..2 {
        let contexts: Vec<usize> = lens.iter().map(|&n| n + k).collect();
        let got = decode_batch(&batch, &input, &contexts, &greedy, 0).unwrap();
        let rows = batch.logits_rows(3).unwrap();
        for (s, (row, steps)) in rows.iter().zip(&want).enumerate() {
            let (logits, token) = &steps[k];
            assert!(logits.iter().all(|v| v.is_finite()));
            let d = max_rel_diff(row, logits);
            eprintln!("step {k} sequence {s}: max relative logit difference {d:.2e}");
            assert!(d <= tol, "step {k} sequence {s}: logits differ by {d}");
            assert_eq!(got[s], argmax(row), "step {k} row {s}: not greedy");
            let margin = logits[*token as usize] - logits[got[s] as usize];
            assert_eq!(
                got[s], *token,
                "step {k} sequence {s}: batch and alone chose differently (margin {margin})"
            );
        }
        input = got;
    }
    // the same two steps chained on the GPU (the second takes the first's sampled ids in
    // place, one position further), again over the same positions: the same tokens, and
    // the second step's logits
    let parts = decode_parts(&batch, &want_next, &lens, &greedy, 0).unwrap();
    let chained = batch.decode_chain(&parts, 2).unwrap();
    for (s, steps) in want.iter().enumerate() {
        assert_eq!(
            [chained[0][s], chained[1][s]],
            [steps[0].1, steps[1].1],
            "{s}"
        );
    }
    for (s, row) in batch.logits_rows(3).unwrap().iter().enumerate() {
        assert!(
            max_rel_diff(row, &want[s][1].0) <= tol,
            "chained step 1, row {s}"
        );
    }
    // the same again as two one-step chains, the second submitted before the first is
    // read and taking the first's id in place (the id given for it, 0, is not read)
    let first = batch.submit_chain(&parts, 1, false).unwrap();
    let later: Vec<SequencePart> = parts
        .iter()
        .map(|p| SequencePart {
            tokens: &[0],
            pos0: p.pos0 + 1,
            sample: p.sample.map(|(s, c)| (s, c + 1)),
            ..*p
        })
        .collect();
    let second = batch.submit_chain(&later, 1, true).unwrap();
    // a third pending chain would have no readback buffer
    assert!(batch.submit_chain(&later, 1, true).is_err());
    let (first, second) = (
        batch.finish_chain(first).unwrap(),
        batch.finish_chain(second).unwrap(),
    );
    for (s, steps) in want.iter().enumerate() {
        assert_eq!([first[0][s], second[0][s]], [steps[0].1, steps[1].1], "{s}");
    }
    // a chain of several steps samples every part, and one that continues in place takes
    // one token a part
    let unsampled = [SequencePart {
        sample: None,
        ..parts[0]
    }];
    assert!(batch.decode_chain(&unsampled, 2).is_err());
    let prefill = [SequencePart {
        tokens: &prompts[0],
        ..parts[0]
    }];
    assert!(batch.submit_chain(&prefill, 1, true).is_err());
}

/// A batch that is a prefix of the sequences, in any context order, and a batch of one.
#[test]
fn smaller_batches_and_one_row_batches_match_too() {
    let cfg = tiny_config(1);
    let opts = options(StorageFormat::F32, 24, 8);
    let model = GpuModel::synthetic(gpu(), cfg.clone(), opts.clone(), 4, 5).unwrap();
    let alone = GpuModel::synthetic(gpu(), cfg.clone(), opts, 1, 5).unwrap();
    let greedy = SamplingParams::default();
    // 11 positions: prefilled in two chunks of at most 8 (max_chunk)
    let lens = [11usize, 2];
    let mut firsts = vec![];
    let mut want = vec![];
    for (s, &n) in lens.iter().enumerate() {
        let p = prompt(n, 10 + s as u32, cfg.vocab_size);
        let (mut first, mut mine) = (0, 0);
        for (i, part) in p.chunks(8).enumerate() {
            mine = greedy_step(&model, s, part, 8 * i);
            first = greedy_step(&alone, 0, part, 8 * i);
        }
        assert_eq!(first, mine);
        firsts.push(mine);
        let t = greedy_step(&alone, 0, &[first], n);
        want.push((last_logits(&alone), t));
    }
    let got = decode_batch(&model, &firsts, &lens, &greedy, 0).unwrap();
    let rows = model.logits_rows(2).unwrap();
    for s in 0..2 {
        assert!(max_rel_diff(&rows[s], &want[s].0) <= 1e-4, "row {s}");
        assert_eq!(got[s], want[s].1, "row {s}");
    }
    // a batch of one is sequence 0 alone (same position again: same key and value)
    let one = decode_batch(&model, &firsts[..1], &lens[..1], &greedy, 0).unwrap();
    assert_eq!(one, vec![want[0].1]);
    assert!(max_rel_diff(&last_logits(&model), &want[0].0) <= 1e-4);
}

#[test]
fn synthetic_model_steps_give_finite_logits() {
    let cfg = tiny_config(2);
    for format in [StorageFormat::F16, StorageFormat::F32] {
        let model = GpuModel::synthetic(gpu(), cfg.clone(), options(format, 32, 8), 2, 3).unwrap();
        let want_weights: usize = cfg.vocab_size * cfg.hidden_size * 2
            + cfg.num_layers
                * ((cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim * cfg.hidden_size
                    + cfg.hidden_size * cfg.num_heads * cfg.head_dim
                    + 3 * cfg.intermediate_size * cfg.hidden_size);
        let norms = (2 * cfg.num_layers * cfg.hidden_size * 4) as u64;
        assert_eq!(
            model.weight_bytes,
            (want_weights * format.bytes_per_element()) as u64 + norms
        );
        let greedy = SamplingParams::default();
        let p = prompt(7, 1, cfg.vocab_size);
        let t = greedy_step(&model, 0, &p, 0);
        assert!((t as usize) < cfg.vocab_size);
        let logits = last_logits(&model);
        assert!(logits.iter().all(|v| v.is_finite()), "{logits:?}");
        let spread = logits.iter().fold(f32::MIN, |m, &v| m.max(v))
            - logits.iter().fold(f32::MAX, |m, &v| m.min(v));
        assert!(spread > 1e-3, "logits are flat: {logits:?}");
        assert_eq!(t, argmax(&logits));
        // a batched step over both sequences (the second's cache is empty: context 0)
        let toks = decode_batch(&model, &[t, 5], &[7, 0], &greedy, 1).unwrap();
        assert_eq!(toks.len(), 2);
        for row in model.logits_rows(2).unwrap() {
            assert!(row.iter().all(|v| v.is_finite()));
        }
        // same seed, same weights: the same model again gives the same first token
        let again = GpuModel::synthetic(gpu(), cfg.clone(), options(format, 32, 8), 1, 3).unwrap();
        assert_eq!(greedy_step(&again, 0, &p, 0), t);
        assert_eq!(last_logits(&again), logits);
        // sampling with a temperature gives ids in range for every row
        let hot = SamplingParams {
            temperature: 0.8,
            top_k: 20,
            top_p: 0.9,
            seed: 9,
        };
        let toks = decode_batch(&model, &toks, &[8, 1], &hot, 2).unwrap();
        assert!(
            toks.iter().all(|&t| (t as usize) < cfg.vocab_size),
            "{toks:?}"
        );
    }
}

#[test]
fn batch_limits_are_clear_errors() {
    let cfg = tiny_config(2);
    let model =
        GpuModel::synthetic(gpu(), cfg.clone(), options(StorageFormat::F32, 16, 2), 3, 1).unwrap();
    let greedy = SamplingParams::default();
    let err = |r: Result<Vec<u32>, ModelError>| format!("{}", r.unwrap_err());
    // a sequence the cache does not hold
    let e = err(decode_batch(
        &model,
        &[1, 1, 1, 1],
        &[1, 1, 1, 1],
        &greedy,
        0,
    ));
    assert!(
        e.contains("sequence 3 is not in the KV cache (it holds 3)"),
        "{e}"
    );
    // more rows than one forward pass holds (max_chunk 2)
    let e = err(decode_batch(&model, &[1, 1, 1], &[1, 1, 1], &greedy, 0));
    assert!(e.contains("1..=2 token rows, got 3"), "{e}");
    let e = err(model.forward(&[]));
    assert!(e.contains("got 0"), "{e}");
    // a context at the capacity: no room for the next position
    let e = err(decode_batch(&model, &[1, 1], &[3, 16], &greedy, 0));
    assert!(e.contains("part 1") && e.contains("context of 16"), "{e}");
    // ids outside the vocabulary
    let e = err(decode_batch(&model, &[1, 97], &[1, 2], &greedy, 0));
    assert!(e.contains("outside the vocabulary"), "{e}");
    // a table that does not cover the positions, or blocks outside the pool
    let table = model.sequence_table(0).unwrap();
    let short = SequencePart {
        tokens: &[1, 2],
        pos0: 0,
        table: &table[..0],
        sample: None,
        logits: PartLogits::None,
    };
    let e = err(model.forward(&[short]));
    assert!(e.contains("do not cover position 1"), "{e}");
    let e = err(model.forward(&[SequencePart {
        table: &[99],
        ..short
    }]));
    assert!(e.contains("block 99 is outside the pool"), "{e}");
    // a chain longer than one readback holds
    let parts = decode_parts(&model, &[1], &[1], &greedy, 0).unwrap();
    assert!(model.decode_chain(&parts, 33).is_err());
    // a chain whose later steps pass the context (16) is refused before any runs, and
    // leaves its readback buffer free: two chains may still be pending after it
    let e = model.decode_chain(&parts, 16).unwrap_err().to_string();
    assert!(e.contains("position 16 is past the context of 16"), "{e}");
    let a = model.submit_chain(&parts, 2, false).unwrap();
    let b = model.submit_chain(&parts, 2, false).unwrap();
    model.finish_chain(a).unwrap();
    model.finish_chain(b).unwrap();
    assert!(model.logits_rows(3).is_err());
    // a model needs at least one sequence
    assert!(GpuModel::synthetic(gpu(), cfg, options(StorageFormat::F32, 16, 2), 0, 1).is_err());
}

#[test]
fn random_weight_matrices_are_seeded_bounded_and_split_like_uploads() {
    let g = gpu();
    let (rows, cols, scale) = (37usize, 24usize, 0.25f32);
    let read = |w: &WeightMatrix| -> Vec<f32> {
        let WeightFormat::Float(format) = w.format else {
            panic!("random matrices are floats")
        };
        w.parts
            .iter()
            .flat_map(|p| {
                let bytes = g
                    .read_bytes(&p.buffer, w.format.bytes_for(p.rows * cols))
                    .unwrap();
                format.decode(&bytes)
            })
            .collect()
    };
    for format in [StorageFormat::F32, StorageFormat::F16] {
        let a = WeightMatrix::random(&g, "a", rows, cols, format, 42, scale).unwrap();
        let b = WeightMatrix::random(&g, "b", rows, cols, format, 42, scale).unwrap();
        let c = WeightMatrix::random(&g, "c", rows, cols, format, 43, scale).unwrap();
        g.wait().unwrap();
        assert_eq!(a.bytes(), (rows * cols * format.bytes_per_element()) as u64);
        let (va, vb, vc) = (read(&a), read(&b), read(&c));
        assert_eq!(va.len(), rows * cols);
        assert_eq!(va, vb, "same seed, same values");
        assert_ne!(va, vc, "another seed, other values");
        assert!(
            va.iter().all(|v| v.is_finite() && v.abs() <= scale),
            "{va:?}"
        );
        let mean = va.iter().sum::<f32>() / va.len() as f32;
        let var = va.iter().map(|v| v * v).sum::<f32>() / va.len() as f32;
        // uniform in ±scale: mean 0, variance scale^2 / 3
        assert!(mean.abs() < 0.1 * scale, "mean {mean}");
        assert!(
            (var / (scale * scale / 3.0) - 1.0).abs() < 0.2,
            "variance {var}"
        );
        // split by rows exactly like an upload, each part with its own values
        let split = WeightMatrix::random_split(&g, "s", rows, cols, format, 42, scale, 10).unwrap();
        let up =
            WeightMatrix::upload_split(&g, "u", &vec![0.0; rows * cols], rows, cols, format, 10)
                .unwrap();
        let shape = |w: &WeightMatrix| w.parts.iter().map(|p| (p.row0, p.rows)).collect::<Vec<_>>();
        assert_eq!(shape(&split), shape(&up));
        assert_eq!(shape(&split), vec![(0, 10), (10, 10), (20, 10), (30, 7)]);
        g.wait().unwrap();
        let vs = read(&split);
        assert_ne!(vs[..10 * cols], vs[10 * cols..20 * cols]);
    }
    assert!(WeightMatrix::random(&g, "odd", 4, 12, StorageFormat::F32, 1, 1.0).is_err());
}
