//! Which sequences run in the next forward pass, and on which KV blocks.
//!
//! Every step the running sequences that are decoding get one row each, then sequences
//! still prefilling get chunks of their prompts from what is left of the step's token
//! budget, so a long prompt is spread over several steps instead of stalling the others.
//! Waiting requests join when a batch slot is free and the pool has blocks for their
//! whole prompt (reserved at once, so a prefill in progress never runs out); their
//! prompt's full blocks that are in the prefix cache are reused and not computed again. When a decoding sequence needs a block and none is left, the most
//! recently admitted sequence is preempted: its blocks go back (full ones stay cached)
//! and it waits to be recomputed from its tokens, which then mostly hit the cache.
//!
//! A sequence is its tokens (prompt and generated so far) and how many of them already
//! have KV in its blocks (`computed`). A step computes the next `len` tokens; when that
//! reaches the last token, the step also samples the one after it.
//!
//! In a model whose every layer attends over a sliding window (Mistral), the blocks a
//! sequence's window has wholly passed go back to the pool as it decodes: no later query
//! of the sequence reads them (their table entries stay, unread).

use crate::kv::{block_hash, BlockPool};
use std::collections::VecDeque;

/// One sequence's KV bookkeeping.
#[derive(Debug)]
pub struct SeqState {
    /// prompt and generated tokens
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// tokens whose keys and values are in `table`'s blocks
    pub computed: usize,
    pub table: Vec<u32>,
    /// leading blocks of `table` registered in the prefix cache, and the hash of the last
    hashed_blocks: usize,
    last_hash: u64,
    /// prompt tokens served from the prefix cache at admission
    pub cached_tokens: usize,
    /// times this sequence was preempted
    pub preemptions: usize,
    /// every prompt row gets logits (a request for the prompt's log-probabilities): the
    /// prompt is computed whole (no prefix-cache reuse), in chunks no longer than the
    /// step's free logits rows
    pub prompt_logits: bool,
    /// the last `draft` tokens are a speculative draft, not yet verified: a decoding
    /// sequence runs its last verified token and the draft in one part, each row with
    /// logits (a draft that does not fit the step is cut short, or dropped)
    pub draft: usize,
    /// leading blocks of `table` already back in the pool: the window passed them
    pub windowed_out: usize,
}

impl SeqState {
    pub fn new(prompt: Vec<u32>) -> Self {
        SeqState {
            prompt_len: prompt.len(),
            tokens: prompt,
            computed: 0,
            table: Vec::new(),
            hashed_blocks: 0,
            last_hash: 0,
            cached_tokens: 0,
            preemptions: 0,
            prompt_logits: false,
            draft: 0,
            windowed_out: 0,
        }
    }

    /// Whether it is decoding: only its last verified token (and a draft after it) lacks KV.
    pub fn decoding(&self) -> bool {
        self.pending() == 1 + self.draft
    }

    /// Drops the draft (or its last `n` tokens).
    pub fn drop_draft(&mut self, n: usize) {
        let n = n.min(self.draft);
        self.tokens.truncate(self.tokens.len() - n);
        self.draft -= n;
    }

    /// Whether its next part must bring back the logits of every row.
    pub fn needs_all_logits(&self) -> bool {
        self.prompt_logits && self.computed < self.prompt_len
    }

    /// Tokens still to compute before the next sample.
    pub fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }

    pub fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }
}

/// One sequence's part of a step: tokens `start..start + len` of `running[index]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    pub index: usize,
    pub start: usize,
    pub len: usize,
    /// the part reaches the sequence's last token: sample the next one
    pub sample: bool,
}

/// Limits of one step.
#[derive(Clone, Copy, Debug)]
pub struct StepLimits {
    /// token rows in one forward pass
    pub max_tokens: usize,
    /// sequences in the running batch
    pub max_running: usize,
    /// rows that get logits in one step (a sampled row each, and every prompt row of a
    /// sequence with `prompt_logits`); at least `max_running`
    pub max_out_rows: usize,
    pub prefix_caching: bool,
    /// the positions before each query a step may read where every layer has a sliding
    /// window (its window and the kernels' rounding: `GpuModel::kv_window`; None where
    /// any layer sees the whole context): blocks wholly before them go back to the pool
    pub window: Option<usize>,
}

/// The running batch and the queue, over one block pool. `T` is what the engine keeps
/// per request beside the KV state.
pub struct Scheduler<T> {
    pub pool: BlockPool,
    pub running: Vec<(SeqState, T)>,
    pub waiting: VecDeque<(SeqState, T)>,
    limits: StepLimits,
    /// sequences preempted so far
    pub preempted_total: u64,
}

impl<T> Scheduler<T> {
    pub fn new(pool: BlockPool, limits: StepLimits) -> Self {
        Scheduler {
            pool,
            running: Vec::new(),
            waiting: VecDeque::new(),
            limits,
            preempted_total: 0,
        }
    }

    /// Blocks a sequence of `tokens` tokens needs.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.pool.block_size())
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// Plans the next step; changes block tables, admissions and preemptions as needed.
    /// Returns no work only when nothing can run (idle, or the queue's head cannot fit).
    pub fn schedule(&mut self) -> Vec<Work> {
        let mut budget = self.limits.max_tokens;
        let mut out_rows = self.limits.max_out_rows.max(self.limits.max_running);
        let mut work = Vec::new();
        // 1. decoding sequences, oldest first: one token each, and the drafts that fit the
        // token budget, the logits rows the others leave and the free blocks
        let decoding = self.running.iter().filter(|(s, _)| s.decoding()).count();
        let mut spare_rows = out_rows.saturating_sub(decoding);
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            if self.running[i].0.decoding() {
                if !self.grow(i, 1) {
                    // preempted itself: the entries after it moved down
                    continue;
                }
                let s = &self.running[i].0;
                let fits = s.draft.min(budget - 1).min(spare_rows);
                let fits = self.reserve(i, 1 + fits) - 1;
                let s = &mut self.running[i].0;
                s.drop_draft(s.draft - fits);
                work.push(self.next_part(i, 1 + fits));
                budget -= 1 + fits;
                out_rows -= 1 + fits;
                spare_rows -= fits;
            }
            i += 1;
        }
        // 2. prefilling sequences, oldest first: chunks from what is left; those that
        // need every row's logits last, from the logits rows the others leave (each
        // running sequence samples at most one row, so those never run short)
        for all_logits in [false, true] {
            for i in 0..self.running.len() {
                let s = &self.running[i].0;
                if s.decoding()
                    || budget == 0
                    || s.needs_all_logits() != all_logits
                    || work.iter().any(|w| w.index == i)
                {
                    continue;
                }
                let cap = match all_logits {
                    true => budget.min(out_rows),
                    false => budget,
                };
                let len = self.reserve(i, s.pending().min(cap));
                if len > 0 {
                    let part = self.next_part(i, len);
                    out_rows -= self.out_rows_of(&part);
                    work.push(part);
                    budget -= len;
                }
            }
        }
        // 3. admissions, first come first served, while a logits row is left
        while budget > 0 && out_rows > 0 && self.running.len() < self.limits.max_running {
            let Some(len) = self.admit_next(budget, out_rows) else {
                break;
            };
            let part = self.next_part(self.running.len() - 1, len);
            out_rows -= self.out_rows_of(&part);
            work.push(part);
            budget -= len;
        }
        work
    }

    /// Logits rows a part takes: all its rows for a prompt whose logits are wanted, else
    /// one if it samples.
    fn out_rows_of(&self, w: &Work) -> usize {
        match self.running[w.index].0.needs_all_logits() {
            true => w.len,
            false => w.sample as usize,
        }
    }

    /// The next `len` uncomputed tokens of `running[i]`, sampling if they reach its end.
    fn next_part(&self, i: usize, len: usize) -> Work {
        let s = &self.running[i].0;
        Work {
            index: i,
            start: s.computed,
            len,
            sample: s.computed + len == s.tokens.len(),
        }
    }

    /// Makes room in `running[i]`'s table for `n` more tokens, preempting newer
    /// sequences if the pool is out of blocks. Returns false if `i` itself had to be
    /// preempted (it was the newest).
    fn grow(&mut self, i: usize, n: usize) -> bool {
        loop {
            let s = &self.running[i].0;
            let need = self
                .blocks_for(s.computed + n)
                .saturating_sub(s.table.len());
            if need == 0 {
                return true;
            }
            if let Some(b) = self.pool.allocate() {
                self.running[i].0.table.push(b);
                continue;
            }
            let newest = self.running.len() - 1;
            self.preempt(newest);
            if newest == i {
                return false;
            }
        }
    }

    /// Allocates blocks for up to `want` more tokens of `running[i]` without
    /// preempting; returns how many tokens fit.
    fn reserve(&mut self, i: usize, want: usize) -> usize {
        let bs = self.pool.block_size();
        let s = &mut self.running[i].0;
        while s.table.len() * bs < s.computed + want {
            match self.pool.allocate() {
                Some(b) => s.table.push(b),
                None => break,
            }
        }
        (s.table.len() * bs).saturating_sub(s.computed).min(want)
    }

    /// Moves `running[i]` back to the front of the queue, releasing its blocks.
    fn preempt(&mut self, i: usize) {
        let (mut s, t) = self.running.remove(i);
        s.drop_draft(s.draft);
        self.release_blocks(&mut s);
        s.computed = 0;
        s.preemptions += 1;
        self.preempted_total += 1;
        self.waiting.push_front((s, t));
    }

    /// Lets go of all of a sequence's blocks (full hashed ones stay in the cache).
    pub fn release_blocks(&mut self, s: &mut SeqState) {
        for b in s.table.drain(..).skip(s.windowed_out) {
            self.pool.release(b);
        }
        s.windowed_out = 0;
        s.hashed_blocks = 0;
        s.last_hash = 0;
    }

    /// Admits the head of the queue if its whole remaining prompt fits the pool: reuses
    /// its cached prefix blocks, reserves the rest, and returns its first chunk's length
    /// (at most `budget`, and at most `out_rows` where every row gets logits).
    fn admit_next(&mut self, budget: usize, out_rows: usize) -> Option<usize> {
        let bs = self.pool.block_size();
        let (mut s, t) = self.waiting.pop_front()?;
        // the cached prefix: full blocks, leaving at least the last token to compute
        let mut parent = 0;
        if self.limits.prefix_caching && !s.needs_all_logits() {
            let reusable = (s.tokens.len() - 1) / bs;
            for k in 0..reusable {
                let chunk = &s.tokens[k * bs..(k + 1) * bs];
                let h = block_hash(parent, chunk);
                match self.pool.lookup(h, chunk) {
                    Some(b) => {
                        s.table.push(b);
                        parent = h;
                    }
                    None => break,
                }
            }
        }
        let hits = s.table.len();
        // blocks for everything up to the first sampled token
        let need = self.blocks_for(s.tokens.len() + 1).saturating_sub(hits);
        if need > self.pool.available() {
            self.release_blocks(&mut s);
            self.waiting.push_front((s, t));
            return None;
        }
        // reserved now, so a prefill in progress never runs out of blocks
        for _ in 0..need {
            let b = self
                .pool
                .allocate()
                .expect("checked: enough blocks available");
            s.table.push(b);
        }
        s.computed = hits * bs;
        s.hashed_blocks = hits;
        s.last_hash = parent;
        if s.preemptions == 0 {
            s.cached_tokens = s.computed;
        }
        let len = match s.needs_all_logits() {
            true => s.pending().min(budget).min(out_rows),
            false => s.pending().min(budget),
        };
        self.running.push((s, t));
        Some(len)
    }

    /// After a step: marks the work's tokens computed and registers newly full blocks in
    /// the prefix cache.
    pub fn complete(&mut self, work: &[Work]) {
        let bs = self.pool.block_size();
        for w in work {
            let s = &mut self.running[w.index].0;
            debug_assert_eq!(s.computed, w.start);
            s.computed += w.len;
            if self.limits.prefix_caching {
                while (s.hashed_blocks + 1) * bs <= s.computed {
                    let k = s.hashed_blocks;
                    s.last_hash = self.pool.register(
                        s.table[k],
                        s.last_hash,
                        &s.tokens[k * bs..(k + 1) * bs],
                    );
                    s.hashed_blocks += 1;
                }
            }
            if let Some(window) = self.limits.window {
                // the next query (position `computed`) sees from computed + 1 - window on,
                // and later ones from further on (computed only grows: rejected drafts
                // never counted)
                let first_seen = (s.computed + 1).saturating_sub(window);
                let passed = (first_seen / bs).min(s.table.len());
                for k in s.windowed_out..passed {
                    self.pool.release(s.table[k]);
                }
                s.windowed_out = s.windowed_out.max(passed);
            }
        }
    }

    /// Removes finished or cancelled sequences (`done(index)` true), releasing their
    /// blocks; returns them.
    pub fn retire(&mut self, mut done: impl FnMut(usize) -> bool) -> Vec<(SeqState, T)> {
        let mut out = Vec::new();
        let mut keep = Vec::with_capacity(self.running.len());
        for (i, (mut s, t)) in std::mem::take(&mut self.running).into_iter().enumerate() {
            if done(i) {
                self.release_blocks(&mut s);
                out.push((s, t));
            } else {
                keep.push((s, t));
            }
        }
        self.running = keep;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(blocks: usize, bs: usize, max_tokens: usize, max_running: usize) -> Scheduler<u32> {
        Scheduler::new(
            BlockPool::new(blocks, bs),
            StepLimits {
                max_tokens,
                max_running,
                max_out_rows: max_running,
                prefix_caching: true,
                window: None,
            },
        )
    }

    /// Runs one step: completes the work and appends `next` to every sampled sequence.
    fn step(s: &mut Scheduler<u32>, next: u32) -> Vec<Work> {
        let w = s.schedule();
        s.complete(&w);
        for x in &w {
            if x.sample {
                s.running[x.index].0.tokens.push(next);
            }
        }
        w
    }

    /// With a window of 8 positions and blocks of 4, a sequence decoding 200 tokens holds
    /// at most the blocks of its window, the rounding and the block being written, whatever
    /// its length; the passed blocks (full, hashed) stay in the prefix cache; retiring it
    /// returns every block once.
    #[test]
    fn blocks_a_sliding_window_has_passed_go_back_to_the_pool() {
        let mut s = sched(64, 4, 8, 4);
        // a window of 8 read from 16 positions earlier (prefill tiles' rounding)
        let reach = 8 + 16;
        s.limits.window = Some(reach);
        s.waiting.push_back((SeqState::new((0..30).collect()), 0));
        let mut most = 0;
        for t in 0..200 {
            step(&mut s, 1000 + t);
            let seq = &s.running[0].0;
            let live = seq.table.len() - seq.windowed_out;
            most = most.max(live);
            // every block the next query may read is still held
            let first_seen = (seq.computed + 1).saturating_sub(reach);
            assert!(seq.windowed_out * 4 <= first_seen, "step {t}");
        }
        assert!(most <= reach / 4 + 2, "held {most} blocks");
        assert!(s.running[0].0.windowed_out > 40);
        // only the window's blocks are held
        let seq = &s.running[0].0;
        assert_eq!(s.pool.used(), seq.table.len() - seq.windowed_out);
        s.retire(|_| true);
        assert_eq!(s.pool.used(), 0);
        assert_eq!(s.pool.available(), 64);
    }

    #[test]
    fn long_prompts_are_chunked_beside_decoding_sequences() {
        let mut s = sched(64, 4, 8, 4);
        s.waiting.push_back((SeqState::new(vec![1, 2, 3]), 0));
        let w = step(&mut s, 10);
        assert_eq!(
            w,
            [Work {
                index: 0,
                start: 0,
                len: 3,
                sample: true
            }]
        );
        s.waiting.push_back((SeqState::new((0..20).collect()), 1));
        // sequence 0 decodes (1 row), sequence 1 prefills 7 of 20
        let w = step(&mut s, 11);
        assert_eq!(
            w[0],
            Work {
                index: 0,
                start: 3,
                len: 1,
                sample: true
            }
        );
        assert_eq!(
            w[1],
            Work {
                index: 1,
                start: 0,
                len: 7,
                sample: false
            }
        );
        let w = step(&mut s, 12);
        assert_eq!(
            w[1],
            Work {
                index: 1,
                start: 7,
                len: 7,
                sample: false
            }
        );
        let w = step(&mut s, 13);
        assert_eq!(
            w[1],
            Work {
                index: 1,
                start: 14,
                len: 6,
                sample: true
            }
        );
        assert_eq!(s.running[1].0.tokens.len(), 21);
        // every table covers its computed tokens
        for (q, _) in &s.running {
            assert!(q.table.len() * 4 >= q.computed);
        }
    }

    #[test]
    fn a_prompt_whose_logits_are_wanted_is_computed_whole_within_the_logits_rows() {
        // 4 logits rows a step, 64 token rows
        let mut s = sched(64, 4, 64, 4);
        let prompt: Vec<u32> = (100..110).collect();
        s.waiting.push_back((SeqState::new(prompt.clone()), 0));
        step(&mut s, 1);
        s.retire(|_| true);
        // the same prompt again, cached, but its logits are wanted: no reuse, and chunks
        // of at most the 4 logits rows, beside a decoding sequence that takes one
        s.waiting.push_back((SeqState::new(vec![7, 8]), 1));
        step(&mut s, 1);
        let mut want = SeqState::new(prompt);
        want.prompt_logits = true;
        s.waiting.push_back((want, 2));
        let w = step(&mut s, 1);
        assert_eq!(w.len(), 2);
        assert_eq!(
            w[1],
            Work {
                index: 1,
                start: 0,
                len: 3,
                sample: false
            }
        );
        assert_eq!(s.running[1].0.cached_tokens, 0);
        let starts: Vec<(usize, usize)> = (0..3)
            .map(|_| {
                let w = step(&mut s, 1);
                (w[1].start, w[1].len)
            })
            .collect();
        assert_eq!(starts, [(3, 3), (6, 3), (9, 1)]);
        assert!(!s.running[1].0.needs_all_logits());
        // once the prompt is in, it decodes like any other
        let w = step(&mut s, 1);
        assert_eq!((w[1].len, w[1].sample), (1, true));
    }

    #[test]
    fn a_repeated_prefix_is_served_from_the_cache() {
        let mut s = sched(64, 4, 64, 4);
        let prompt: Vec<u32> = (100..118).collect(); // 18 tokens: 4 full blocks
        s.waiting.push_back((SeqState::new(prompt.clone()), 0));
        step(&mut s, 1);
        let done = s.retire(|_| true);
        assert_eq!(done[0].0.cached_tokens, 0);
        // same prompt: 4 blocks (16 tokens) reused, 2 computed
        s.waiting.push_back((SeqState::new(prompt.clone()), 1));
        let w = step(&mut s, 1);
        assert_eq!(
            w,
            [Work {
                index: 0,
                start: 16,
                len: 2,
                sample: true
            }]
        );
        assert_eq!(s.running[0].0.cached_tokens, 16);
        // a prompt of exactly 4 blocks keeps its last token to compute
        s.retire(|_| true);
        s.waiting
            .push_back((SeqState::new(prompt[..16].to_vec()), 2));
        let w = step(&mut s, 1);
        assert_eq!(
            w,
            [Work {
                index: 0,
                start: 12,
                len: 4,
                sample: true
            }]
        );
        // a different second block: only the first block is reused
        s.retire(|_| true);
        let mut other = prompt.clone();
        other[5] = 999;
        s.waiting.push_back((SeqState::new(other), 3));
        let w = step(&mut s, 1);
        assert_eq!(w[0].start, 4);
    }

    #[test]
    fn a_full_pool_preempts_the_newest_and_recomputes_it_later() {
        // 6 blocks of 2: two sequences of 4-token prompts fill 3 blocks each as they grow
        let mut s = sched(6, 2, 16, 4);
        s.waiting.push_back((SeqState::new(vec![1, 2, 3, 4]), 0));
        s.waiting.push_back((SeqState::new(vec![5, 6, 7, 8]), 1));
        step(&mut s, 9);
        assert_eq!(s.running.len(), 2);
        let mut preempted_seen = false;
        for _ in 0..6 {
            step(&mut s, 9);
            assert!(s.pool.used() <= 6);
            if s.preempted_total > 0 {
                preempted_seen = true;
            }
        }
        assert!(preempted_seen, "the pool ran out: someone was preempted");
        // the preempted one is the newer request, back in the queue with its tokens
        let (q, id) = s.waiting.front().expect("preempted sequence waits");
        assert_eq!(*id, 1);
        assert!(q.tokens.len() > 4 && q.computed == 0 && q.table.is_empty());
        // when the other finishes, it comes back and recomputes all but its last token
        s.retire(|_| true);
        let w = step(&mut s, 9);
        let total = w[0].start + w[0].len;
        assert!(w[0].sample && total == s.running[0].0.tokens.len() - 1);
    }

    #[test]
    fn a_prompt_larger_than_the_free_pool_waits() {
        let mut s = sched(4, 4, 64, 4);
        s.waiting.push_back((SeqState::new(vec![1; 10]), 0)); // 3 blocks with the sample
        s.waiting.push_back((SeqState::new(vec![2; 10]), 1));
        let w = step(&mut s, 0);
        assert_eq!(w.len(), 1, "the second does not fit yet");
        assert_eq!(s.waiting.len(), 1);
        s.retire(|_| true);
        assert_eq!(step(&mut s, 0).len(), 1);
    }
}
