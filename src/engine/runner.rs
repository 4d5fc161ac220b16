//! The serving engine: one thread owns the model and runs the scheduler's steps back to
//! back; requests come in through a channel and their tokens go out through each
//! request's [`EventSink`] as soon as a step samples them.

use super::api::{
    Backend, CompletionRequest, Event, EventSink, MetricsSnapshot, SubmitError, Usage,
};
use super::draft::{accepted, prompt_lookup, DraftPacer};
#[cfg(not(target_arch = "wasm32"))]
use super::draft_model::DraftState;
use super::logprobs::{token_logprob, TokenLogprob};
use super::scheduler::{Scheduler, SeqState, StepLimits, Work};
use super::FinishReason;
use crate::kv::BlockPool;
use crate::metrics::{StepRecord, Traffic};
use crate::model::gpu_model::{GpuModel, ModelError, PartLogits, SequencePart, StepProbe};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use futures_channel::mpsc;
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use web_time::{Duration, Instant};

/// How the engine batches.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// the model's name in responses
    pub model_id: String,
    /// most sequences in the running batch (at most the model's sampled rows per step)
    pub max_running: usize,
    /// most requests waiting; more are refused as overloaded
    pub max_waiting: usize,
    pub prefix_caching: bool,
    /// time every kernel family on every n-th step (0: never; see `GpuModel::forward_report`)
    pub kernel_times_every: u64,
    /// most draft tokens a sequence verifies per step (prompt lookup, see `draft`;
    /// 0: no speculation)
    pub draft_tokens: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            model_id: "headroom".into(),
            max_running: 64,
            max_waiting: 4096,
            prefix_caching: true,
            kernel_times_every: 0,
            draft_tokens: DEFAULT_DRAFT_TOKENS,
        }
    }
}

/// Draft tokens per step by default: see `EngineOptions::draft_tokens`.
pub const DEFAULT_DRAFT_TOKENS: usize = 4;

/// Most sequences a draft model keeps a cache for at once (each slot holds a whole
/// context); the others draft by prompt lookup.
pub const DRAFT_MODEL_SLOTS: usize = 8;

/// A draft model beside the engine's (`LoadOptions::draft_model`, native only): a cache
/// slot for each of up to `DRAFT_MODEL_SLOTS` running sequences, handed back when its
/// sequence leaves the running batch (a preempted one starts its draft cache again).
#[cfg(not(target_arch = "wasm32"))]
pub struct Drafter {
    model: GpuModel,
    /// by sequence (`Live::id`)
    states: std::collections::HashMap<u64, DraftState>,
    free: Vec<usize>,
}

#[cfg(not(target_arch = "wasm32"))]
impl Drafter {
    /// `model` (loaded with `GpuModel::load_sequences`), one slot per sequence it holds.
    pub fn new(model: GpuModel) -> Self {
        let free = (0..model.sequences()).rev().collect();
        Drafter {
            model,
            states: Default::default(),
            free,
        }
    }

    /// Hands back the slots of sequences not in `running`.
    fn keep_only(&mut self, running: &[u64]) {
        let free = &mut self.free;
        self.states.retain(|id, st| {
            let keep = running.contains(id);
            if !keep {
                free.push(st.slot());
            }
            keep
        });
    }

    /// Up to `want` greedy drafts after `tokens` for sequence `id`; None where no slot is
    /// free for it.
    fn draft(
        &mut self,
        id: u64,
        tokens: &[u32],
        want: usize,
    ) -> Result<Option<Vec<u32>>, ModelError> {
        if !self.states.contains_key(&id) {
            let Some(slot) = self.free.pop() else {
                return Ok(None);
            };
            self.states.insert(id, DraftState::new(slot));
        }
        let state = self.states.get_mut(&id).expect("inserted above");
        state.draft(&self.model, tokens, want).map(Some)
    }
}

/// Step records kept for readers: the most recent ones.
const KEPT_STEP_RECORDS: usize = 1 << 16;

/// What the engine thread and the handles share.
struct Shared {
    model_id: String,
    /// the GPU it runs on, as `GpuContext::adapter_name` says
    adapter: String,
    tokenizer: Arc<Tokenizer>,
    context: usize,
    vocab: usize,
    block_size: usize,
    pool_blocks: usize,
    max_waiting: usize,
    metrics: Mutex<MetricsSnapshot>,
    steps: Mutex<VecDeque<StepRecord>>,
    /// why the engine stopped, once it has
    stopped: Mutex<Option<String>>,
}

impl Shared {
    fn new(model: &GpuModel, tokenizer: Tokenizer, opts: &EngineOptions) -> Arc<Shared> {
        Arc::new(Shared {
            model_id: opts.model_id.clone(),
            adapter: model.gpu.adapter_name(),
            tokenizer: Arc::new(tokenizer),
            context: model.options.context,
            vocab: model.config.vocab_size,
            block_size: model.kv_layout.block_size,
            pool_blocks: model.pool_blocks(),
            max_waiting: opts.max_waiting,
            metrics: Mutex::new(MetricsSnapshot {
                kv_blocks_total: model.pool_blocks(),
                kv_block_size: model.kv_layout.block_size,
                kv_bytes_per_token: model.kv_layout.bytes_per_token(),
                ..Default::default()
            }),
            steps: Mutex::new(VecDeque::new()),
            stopped: Mutex::new(None),
        })
    }
}

enum Command {
    Submit(Box<Pending>),
    Shutdown,
}

/// A request on its way to the engine thread.
struct Pending {
    req: CompletionRequest,
    sink: EventSink,
}

/// A request inside the engine, beside its KV state.
struct Live {
    /// unique among the engine's requests
    id: u64,
    req: CompletionRequest,
    sink: EventSink,
    decoder: StreamDecoder,
    /// text held back because it may start a stop string
    held: String,
    finish: Option<FinishReason>,
    /// the sink said nobody listens any more
    gone: bool,
    /// a GPU error in one of its steps ended it (it gets `Event::Failed`)
    failed: Option<String>,
    /// how long its speculative drafts are
    pacer: DraftPacer,
    /// with `prompt_logprobs`: the log-probability of prompt token p + 1 at p, filled in
    /// as the prompt's rows are computed and sent before the first sample
    prompt_logprobs: Vec<Option<TokenLogprob>>,
}

/// A running engine. Dropping it stops the loop after the current step.
pub struct Engine {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Command>,
    #[cfg(not(target_arch = "wasm32"))]
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Engine {
    /// Starts the engine thread, which builds the model (a paged one: see
    /// `GpuModel::load_paged`) and its tokenizer with `build` (GPU objects stay on that
    /// thread) and then serves. Returns once the model is ready, or its error.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn start(
        options: EngineOptions,
        build: impl FnOnce() -> Result<(GpuModel, Tokenizer), ModelError> + Send + 'static,
    ) -> Result<Engine, ModelError> {
        Self::start_drafted(options, move || {
            build().map(|(model, tokenizer)| (model, tokenizer, None))
        })
    }

    /// As `start`, `build` also making the draft model that drafts for the model where
    /// there is one (see [`Drafter`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn start_drafted(
        options: EngineOptions,
        build: impl FnOnce() -> Result<(GpuModel, Tokenizer, Option<Drafter>), ModelError>
            + Send
            + 'static,
    ) -> Result<Engine, ModelError> {
        let (tx, rx) = mpsc::unbounded();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("headroom-engine".into())
            .spawn(move || {
                let (model, tokenizer, drafter) = match build() {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let shared = Shared::new(&model, tokenizer, &options);
                if ready_tx.send(Ok(shared.clone())).is_err() {
                    return;
                }
                let mut engine = EngineLoop::new(model, shared.clone(), &options);
                engine.drafter = drafter;
                // a bug that panics stops the engine with a reason instead of leaving a
                // server that accepts requests nobody runs
                let run = std::panic::AssertUnwindSafe(|| crate::gpu::block_on(engine.run(rx)));
                let why = std::panic::catch_unwind(run).unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("the engine failed: {message}")
                });
                *shared.stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            })
            .map_err(|e| ModelError::Invalid(format!("starting the engine thread: {e}")))?;
        let shared = ready_rx
            .recv()
            .map_err(|_| ModelError::Invalid("the engine thread ended while loading".into()))??;
        Ok(Engine {
            shared,
            tx,
            thread: Some(thread),
        })
    }

    /// The browser's `start`: serves `model` from a task on the page's event loop, which
    /// awaits every GPU readback (the page never blocks on the engine).
    #[cfg(target_arch = "wasm32")]
    pub fn start_local(options: EngineOptions, model: GpuModel, tokenizer: Tokenizer) -> Engine {
        let (tx, rx) = mpsc::unbounded();
        let shared = Shared::new(&model, tokenizer, &options);
        let engine = EngineLoop::new(model, shared.clone(), &options);
        let stopped = shared.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let why = engine.run(rx).await;
            *stopped.stopped.lock().unwrap() = Some(why);
        });
        Engine { shared, tx }
    }

    /// The steps run so far (the most recent 65536).
    pub fn step_records(&self) -> Vec<StepRecord> {
        self.shared.steps.lock().unwrap().iter().cloned().collect()
    }

    /// The kept steps whose index is `first` or later.
    pub fn step_records_since(&self, first: u64) -> Vec<StepRecord> {
        let steps = self.shared.steps.lock().unwrap();
        let skip = steps
            .front()
            .map_or(0, |s| first.saturating_sub(s.index) as usize);
        steps.iter().skip(skip).cloned().collect()
    }

    /// Steps run so far.
    pub fn steps_run(&self) -> u64 {
        self.shared
            .steps
            .lock()
            .unwrap()
            .back()
            .map_or(0, |s| s.index + 1)
    }

    /// The GPU the engine runs on.
    pub fn adapter(&self) -> &str {
        &self.shared.adapter
    }

    /// Why the engine stopped, if it has.
    pub fn stopped(&self) -> Option<String> {
        self.shared.stopped.lock().unwrap().clone()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.tx.unbounded_send(Command::Shutdown);
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Backend for Engine {
    fn model_id(&self) -> &str {
        &self.shared.model_id
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }

    fn context(&self) -> usize {
        self.shared.context
    }

    fn submit(&self, req: CompletionRequest, sink: EventSink) -> Result<(), SubmitError> {
        check_request(&self.shared, &req)?;
        if let Some(why) = self.stopped() {
            return Err(SubmitError::Stopped(why));
        }
        let waiting = self.shared.metrics.lock().unwrap().waiting;
        if waiting >= self.shared.max_waiting {
            return Err(SubmitError::Overloaded(format!(
                "{waiting} requests are waiting (the most is {}); retry later",
                self.shared.max_waiting
            )));
        }
        let pending = Box::new(Pending { req, sink });
        self.tx
            .unbounded_send(Command::Submit(pending))
            .map_err(|_| SubmitError::Stopped(self.stopped().unwrap_or_default()))
    }

    fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.lock().unwrap().clone()
    }

    fn stopped(&self) -> Option<String> {
        Engine::stopped(self)
    }
}

/// Refuses requests that can never run: empty or too long prompts, ids outside the
/// vocabulary, bad sampling settings, prompts larger than the whole KV pool.
fn check_request(s: &Shared, req: &CompletionRequest) -> Result<(), SubmitError> {
    let n = req.prompt_ids.len();
    if n == 0 {
        return Err(SubmitError::Invalid("the prompt is empty".into()));
    }
    if n >= s.context {
        return Err(SubmitError::Invalid(format!(
            "the prompt has {n} tokens, but the context holds {} (and one more is needed to generate)",
            s.context
        )));
    }
    let blocks = (n + 1).div_ceil(s.block_size);
    if blocks > s.pool_blocks {
        return Err(SubmitError::Invalid(format!(
            "the prompt needs {blocks} KV blocks of {} tokens, but the pool has {}; start the server with more --kv-memory",
            s.block_size, s.pool_blocks
        )));
    }
    if let Some(bad) = req.prompt_ids.iter().find(|&&t| t as usize >= s.vocab) {
        return Err(SubmitError::Invalid(format!(
            "token id {bad} is outside the vocabulary of {}",
            s.vocab
        )));
    }
    if req.max_tokens == 0 {
        return Err(SubmitError::Invalid("max_tokens must be at least 1".into()));
    }
    req.sampling.validate().map_err(SubmitError::Invalid)
}

/// The engine thread's state.
struct EngineLoop {
    model: GpuModel,
    shared: Arc<Shared>,
    sched: Scheduler<Live>,
    started: Instant,
    /// (time, generated tokens) of recent steps, for the tokens/s gauge
    recent: VecDeque<(Instant, usize)>,
    totals: MetricsSnapshot,
    kernel_times_every: u64,
    draft_tokens: usize,
    /// the draft model, where one drafts (else prompt lookup does)
    #[cfg(not(target_arch = "wasm32"))]
    drafter: Option<Drafter>,
    /// the next request's `Live::id`
    next_id: u64,
}

impl EngineLoop {
    fn new(model: GpuModel, shared: Arc<Shared>, opts: &EngineOptions) -> Self {
        let limits = StepLimits {
            max_tokens: model.options.max_chunk,
            max_running: opts.max_running.min(model.max_sampled_rows()).max(1),
            max_out_rows: model.max_sampled_rows(),
            prefix_caching: opts.prefix_caching,
            window: model.kv_window(),
        };
        let pool = BlockPool::new(model.pool_blocks(), model.kv_layout.block_size);
        let totals = shared.metrics.lock().unwrap().clone();
        EngineLoop {
            model,
            shared,
            sched: Scheduler::new(pool, limits),
            started: Instant::now(),
            recent: VecDeque::new(),
            totals,
            kernel_times_every: opts.kernel_times_every,
            draft_tokens: opts.draft_tokens,
            #[cfg(not(target_arch = "wasm32"))]
            drafter: None,
            next_id: 0,
        }
    }

    /// Serves until shut down or a device error; returns why it stopped.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) -> String {
        loop {
            // wait for work when idle; otherwise take what has arrived and go on
            if self.sched.is_idle() {
                match rx.next().await {
                    Some(c) => {
                        if !self.accept(c) {
                            return "shut down".into();
                        }
                    }
                    None => return "shut down".into(),
                }
            }
            while let Ok(c) = rx.try_recv() {
                if !self.accept(c) {
                    self.fail_all("the engine is shutting down");
                    return "shut down".into();
                }
            }
            if let Err(e) = self.step().await {
                let why = format!("device error: {e}");
                self.fail_all(&why);
                self.publish();
                return why;
            }
            self.publish();
        }
    }

    /// Queues a submitted request; false on shutdown.
    fn accept(&mut self, c: Command) -> bool {
        match c {
            Command::Submit(p) => {
                self.totals.requests_total += 1;
                let prompt_logprobs = match p.req.prompt_logprobs {
                    true => vec![None; p.req.prompt_ids.len() - 1],
                    false => Vec::new(),
                };
                self.next_id += 1;
                let live = Live {
                    id: self.next_id,
                    decoder: StreamDecoder::new(p.req.skip_special),
                    req: p.req,
                    sink: p.sink,
                    held: String::new(),
                    finish: None,
                    gone: false,
                    failed: None,
                    pacer: DraftPacer::new(self.draft_tokens),
                    prompt_logprobs,
                };
                let mut seq = SeqState::new(live.req.prompt_ids.clone());
                seq.prompt_logits = live.req.prompt_logprobs;
                self.sched.waiting.push_back((seq, live));
                true
            }
            Command::Shutdown => false,
        }
    }

    /// One scheduled forward pass and what follows from its samples.
    async fn step(&mut self) -> Result<(), ModelError> {
        self.add_drafts()?;
        let mut work = self.sched.schedule();
        if work.is_empty() {
            self.drop_drafts();
            self.refuse_unfittable();
            return Ok(());
        }
        let t0 = Instant::now();
        let index = self.totals.steps_total;
        let asks: Vec<PartLogits> = work
            .iter()
            .map(|w| {
                let (s, live) = &self.sched.running[w.index];
                if s.needs_all_logits() {
                    PartLogits::All
                } else if s.draft > 0 {
                    PartLogits::Verify
                } else if w.sample && live.req.logprobs.is_some() {
                    PartLogits::Last
                } else {
                    PartLogits::None
                }
            })
            .collect();
        let report = {
            let parts: Vec<SequencePart> = work
                .iter()
                .zip(&asks)
                .map(|(w, &logits)| {
                    let (s, live) = &self.sched.running[w.index];
                    SequencePart {
                        tokens: &s.tokens[w.start..w.start + w.len],
                        pos0: w.start,
                        table: &s.table,
                        // a draft's tokens are not drawn yet
                        sample: w
                            .sample
                            .then(|| (live.req.sampling, (s.generated() - s.draft) as u32)),
                        logits,
                    }
                })
                .collect();
            // the first sample of a request that asks for it: its prompt's last token
            let attention_of = work.iter().position(|w| {
                let (s, live) = &self.sched.running[w.index];
                w.sample && s.generated() == 0 && live.req.probe_attention
            });
            let probe = StepProbe {
                kernel_times: self.kernel_times_every > 0
                    && index.is_multiple_of(self.kernel_times_every),
                attention_of,
            };
            let report = match self.model.forward_report_async(&parts, probe).await {
                Ok(report) => report,
                // the device is gone: the engine stops (and fails everyone)
                Err(e) if self.model.gpu.faults.lost().is_some() => return Err(e),
                Err(e) => {
                    drop(parts);
                    self.fail_step(&work, &e.to_string());
                    self.drop_drafts();
                    return Ok(());
                }
            };
            if let (Some(p), Some(a)) = (attention_of, &report.attention) {
                let live = &mut self.sched.running[work[p].index].1;
                if !(live.sink)(Event::Attention(Arc::new(a.clone()))) {
                    live.gone = true;
                }
            }
            report
        };
        let prefill_tokens: usize = work
            .iter()
            .zip(&asks)
            .filter(|(w, &ask)| !w.sample || (w.len > 1 && ask != PartLogits::Verify))
            .map(|(w, _)| w.len)
            .sum();
        let mut generated = 0;
        let mut ids = report.sampled.iter();
        for (k, w) in work.iter_mut().enumerate() {
            let rows = &report.logits[k];
            let v = self.shared.vocab;
            if asks[k] == PartLogits::All {
                self.note_prompt_logprobs(w, rows);
            }
            if !w.sample {
                continue;
            }
            let id = *ids.next().expect("one sampled id per sampled part");
            if asks[k] == PartLogits::Verify {
                // only the confirmed part of the draft keeps the KV this step computed
                let (kept, emitted) = self.on_verified(w.index, &report.row_draws[k]);
                w.len = 1 + kept;
                generated += emitted;
            } else {
                // the sampled row's logits are the part's last row, where it has any
                let row = (!rows.is_empty()).then(|| &rows[rows.len() - v..]);
                self.on_sample(w.index, id, row, false);
                generated += 1;
            }
        }
        self.sched.complete(&work);
        self.totals.steps_total += 1;
        self.totals.generated_tokens_total += generated as u64;
        let now = Instant::now();
        self.recent.push_back((now, generated));
        let record = StepRecord {
            index,
            at_s: (now - self.started).as_secs_f64(),
            seconds: (now - t0).as_secs_f64(),
            running: self.sched.running.len(),
            sampled: generated,
            prefill_tokens,
            rows: work.iter().map(|w| w.len).sum(),
            traffic: Traffic::of(&report.cost),
            gpu_s: report.gpu_s,
            kernels: report.kernels,
        };
        let mut steps = self.shared.steps.lock().unwrap();
        if steps.len() == KEPT_STEP_RECORDS {
            steps.pop_front();
        }
        steps.push_back(record);
        drop(steps);
        self.drop_drafts();
        self.retire();
        Ok(())
    }

    /// Drafts tokens for the sequences about to decode (by the draft model where there is
    /// one and it has a slot for the sequence, else by prompt lookup: see `draft`), within
    /// what their `max_tokens` and the context leave after the next token.
    fn add_drafts(&mut self) -> Result<(), ModelError> {
        if self.draft_tokens == 0 {
            return Ok(());
        }
        let context = self.shared.context;
        #[cfg(not(target_arch = "wasm32"))]
        let mut drafter = self.drafter.as_mut();
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(d) = drafter.as_deref_mut() {
            let ids: Vec<u64> = self.sched.running.iter().map(|(_, l)| l.id).collect();
            d.keep_only(&ids);
        }
        for (s, live) in &mut self.sched.running {
            let req = &live.req;
            if !(s.decoding() && s.draft == 0 && req.speculate)
                || req.logprobs.is_some()
                || live.finish.is_some()
                || live.gone
            {
                continue;
            }
            let room = (req.max_tokens.saturating_sub(s.generated() + 1))
                .min(context.saturating_sub(s.tokens.len() + 1));
            let want = live.pacer.next_len().min(room);
            #[cfg(not(target_arch = "wasm32"))]
            let from_model = match drafter.as_deref_mut() {
                Some(d) => d.draft(live.id, &s.tokens, want)?,
                None => None,
            };
            #[cfg(target_arch = "wasm32")]
            let from_model: Option<Vec<u32>> = None;
            let draft = from_model.unwrap_or_else(|| prompt_lookup(&s.tokens, want));
            live.pacer.looked_up(want, draft.len());
            s.draft = draft.len();
            s.tokens.extend(draft);
        }
        Ok(())
    }

    /// Drops the drafts of sequences the step did not verify.
    fn drop_drafts(&mut self) {
        for (s, _) in &mut self.sched.running {
            s.drop_draft(s.draft);
        }
    }

    /// A verified draft of `running[i]`: `draws[r]` is the model's draw after its last
    /// verified token and r draft tokens (greedy: its choice; sampled: the draft's token
    /// kept with its probability, else a draw from the rest). The draft's tokens up to the
    /// first the draws do not repeat are output, then the draw there, each as if sampled
    /// alone (stop checks, text, events). Returns how many draft tokens were kept
    /// (their KV from this step stays valid) and how many tokens were output.
    fn on_verified(&mut self, i: usize, draws: &[u32]) -> (usize, usize) {
        let s = &mut self.sched.running[i].0;
        let draft = s.tokens.split_off(s.tokens.len() - s.draft);
        s.draft = 0;
        let confirmed = accepted(&draft, draws);
        self.sched.running[i].1.pacer.record(draft.len(), confirmed);
        self.totals.draft_tokens_total += draft.len() as u64;
        self.totals.draft_accepted_total += confirmed as u64;
        let (mut kept, mut emitted) = (0, 0);
        for (r, &id) in draft[..confirmed]
            .iter()
            .chain(&draws[confirmed..=confirmed])
            .enumerate()
        {
            let before = self.sched.running[i].0.tokens.len();
            self.on_sample(i, id, None, r < confirmed);
            emitted += 1;
            let (s, live) = &self.sched.running[i];
            if r < confirmed && s.tokens.len() > before {
                kept += 1;
            }
            if live.finish.is_some() || live.gone {
                break;
            }
        }
        (kept, emitted)
    }

    /// The log-probabilities of the prompt tokens that `w`'s rows predict (row p's logits
    /// give token p + 1's).
    fn note_prompt_logprobs(&mut self, w: &Work, rows: &[f32]) {
        let v = self.shared.vocab;
        let (s, live) = &mut self.sched.running[w.index];
        let top = live.req.logprobs.unwrap_or(0);
        for (r, row) in rows.chunks_exact(v).enumerate() {
            let next = w.start + r + 1;
            if next < s.prompt_len {
                live.prompt_logprobs[next - 1] = Some(token_logprob(row, s.tokens[next], top));
            }
        }
    }

    /// A sampled id for `running[i]` (and the logits it was drawn from, where the request
    /// asked for log-probabilities; `drafted`: a confirmed draft token): stop checks,
    /// text, events.
    fn on_sample(&mut self, i: usize, id: u32, logits: Option<&[f32]>, drafted: bool) {
        let context = self.shared.context;
        let tok = self.shared.tokenizer.clone();
        let (s, live) = &mut self.sched.running[i];
        if s.prompt_logits && s.generated() == 0 && !live.gone {
            // the whole prompt has been computed: its log-probabilities go first
            s.prompt_logits = false;
            let all: Vec<TokenLogprob> = std::mem::take(&mut live.prompt_logprobs)
                .into_iter()
                .flatten()
                .collect();
            debug_assert_eq!(
                all.len() + 1,
                s.prompt_len,
                "every prompt row's logits came"
            );
            if !(live.sink)(Event::PromptLogprobs(all)) {
                live.gone = true;
            }
        }
        let stop_id = live.req.stop_ids.contains(&id);
        let logprobs: Vec<TokenLogprob> = match (live.req.logprobs, logits) {
            (Some(top), Some(row)) if !stop_id => vec![token_logprob(row, id, top)],
            _ => Vec::new(),
        };
        let (mut text, ids, mut finish) = if stop_id {
            // the stop id is not output; text held back until now is
            (live.decoder.flush(&tok), vec![], Some(FinishReason::Stop))
        } else {
            s.tokens.push(id);
            let text = live.decoder.push(&tok, id);
            let finish = if s.generated() >= live.req.max_tokens {
                Some(FinishReason::Length)
            } else if s.tokens.len() >= context {
                Some(FinishReason::Context)
            } else {
                None
            };
            (text, vec![id], finish)
        };
        if finish.is_some() {
            text.push_str(&live.decoder.flush(&tok));
        }
        let (mut emit, stopped) = cut_at_stop(&mut live.held, &text, &live.req.stop_strings);
        if stopped {
            finish = Some(FinishReason::Stop);
        } else if finish.is_some() {
            // the end: no stop string can complete any more
            emit.push_str(&std::mem::take(&mut live.held));
        }
        if (!emit.is_empty() || !ids.is_empty())
            && !(live.sink)(Event::Delta {
                text: emit,
                ids,
                logprobs,
                drafted,
            })
        {
            live.gone = true;
        }
        live.finish = finish;
    }

    /// A step that failed on the GPU (out of memory, say) ends the requests in it with the
    /// error; their KV of that step was never registered in the prefix cache, and the
    /// engine serves on.
    fn fail_step(&mut self, work: &[Work], error: &str) {
        for w in work {
            let live = &mut self.sched.running[w.index].1;
            live.failed = Some(format!(
                "the GPU failed during this request's step: {error}"
            ));
        }
        self.retire();
    }

    /// Sends the final events of finished sequences and frees their blocks.
    fn retire(&mut self) {
        let done: Vec<bool> = self
            .sched
            .running
            .iter()
            .map(|(_, l)| l.finish.is_some() || l.gone || l.failed.is_some())
            .collect();
        for (s, mut live) in self.sched.retire(|i| done[i]) {
            if live.gone {
                continue;
            }
            if let Some(error) = live.failed.take() {
                (live.sink)(Event::Failed(error));
                continue;
            }
            let finish = live.finish.unwrap_or(FinishReason::Cancelled);
            let usage = usage_of(&s);
            self.totals.requests_finished += 1;
            self.totals.prompt_tokens_total += s.prompt_len as u64;
            self.totals.prompt_tokens_cached += s.cached_tokens as u64;
            (live.sink)(Event::Done { finish, usage });
        }
    }

    /// With nothing running, a waiting request that cannot fit even the empty pool
    /// (it grew past it) ends here instead of blocking the queue.
    fn refuse_unfittable(&mut self) {
        if !self.sched.running.is_empty() {
            return;
        }
        if let Some((s, mut live)) = self.sched.waiting.pop_front() {
            let msg = format!(
                "the sequence needs {} KV blocks, the pool has {}",
                self.sched.blocks_for(s.tokens.len() + 1),
                self.sched.pool.total()
            );
            if s.generated() > 0 {
                let usage = usage_of(&s);
                (live.sink)(Event::Done {
                    finish: FinishReason::Context,
                    usage,
                });
            } else {
                (live.sink)(Event::Failed(msg));
            }
        }
    }

    /// Fails every running and waiting request (device error or shutdown).
    fn fail_all(&mut self, why: &str) {
        let running = self.sched.retire(|_| true);
        let waiting: Vec<_> = self.sched.waiting.drain(..).collect();
        for (_, mut live) in running.into_iter().chain(waiting) {
            (live.sink)(Event::Failed(why.to_string()));
        }
    }

    /// Publishes the counters for `/metrics`.
    fn publish(&mut self) {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(5))
        {
            self.recent.pop_front();
        }
        let rate = match (self.recent.front(), self.recent.back()) {
            (Some((a, _)), Some((b, _))) if b > a => {
                let n: usize = self.recent.iter().skip(1).map(|(_, n)| n).sum();
                n as f64 / (*b - *a).as_secs_f64()
            }
            _ => 0.0,
        };
        let pool = &self.sched.pool;
        let m = MetricsSnapshot {
            running: self.sched.running.len(),
            waiting: self.sched.waiting.len(),
            kv_blocks_used: pool.used(),
            kv_blocks_cached: pool.cached_idle(),
            requests_preempted: self.sched.preempted_total,
            decode_tokens_per_s: rate,
            ..self.totals.clone()
        };
        *self.shared.metrics.lock().unwrap() = m;
    }
}

fn usage_of(s: &SeqState) -> Usage {
    Usage {
        prompt_tokens: s.prompt_len,
        completion_tokens: s.generated(),
        cached_tokens: s.cached_tokens,
    }
}

/// Adds `text` to the held-back text and returns what can be emitted: everything before
/// a stop string (then true: stop), or everything but the longest tail that could still
/// grow into a stop string.
fn cut_at_stop(held: &mut String, text: &str, stops: &[String]) -> (String, bool) {
    held.push_str(text);
    if stops.is_empty() {
        return (std::mem::take(held), false);
    }
    let first = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| held.find(s.as_str()))
        .min();
    if let Some(at) = first {
        let out = held[..at].to_string();
        held.clear();
        return (out, true);
    }
    // the longest suffix of `held` that is a proper prefix of some stop string
    let keep = stops
        .iter()
        .flat_map(|s| {
            (1..s.len())
                .filter(|&k| s.is_char_boundary(k) && held.ends_with(&s[..k]))
                .max()
        })
        .max()
        .unwrap_or(0);
    let cut = held.len() - keep;
    let out = held[..cut].to_string();
    held.drain(..cut);
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::cut_at_stop;

    #[test]
    fn stop_strings_cut_the_text_and_hold_back_partial_matches() {
        let stops = vec!["\n\n".to_string(), "END".to_string()];
        let mut held = String::new();
        assert_eq!(
            cut_at_stop(&mut held, "Hello", &stops),
            ("Hello".into(), false)
        );
        // "E" might start "END": held back
        assert_eq!(
            cut_at_stop(&mut held, " wor E", &stops),
            (" wor ".into(), false)
        );
        assert_eq!(held, "E");
        // it did not: released
        assert_eq!(cut_at_stop(&mut held, "x", &stops), ("Ex".into(), false));
        // a stop string split over two pieces
        assert_eq!(
            cut_at_stop(&mut held, "done.\n", &stops),
            ("done.".into(), false)
        );
        assert_eq!(cut_at_stop(&mut held, "\nmore", &stops), ("".into(), true));
        // no stop strings: everything goes out
        let mut h = String::new();
        assert_eq!(cut_at_stop(&mut h, "abc", &[]), ("abc".into(), false));
        // the earliest of several stop strings wins
        let mut h = String::new();
        assert_eq!(
            cut_at_stop(&mut h, "a END b\n\n", &stops),
            ("a ".into(), true)
        );
    }
}
