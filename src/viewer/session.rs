//! The viewer's engine: the serving engine (`serve::engine`), loaded on a background thread
//! (natively) or a task on the page's event loop (the browser) so the window opens at once,
//! and the requests the Generate tab streams from it.

use crate::engine::Engine;
use crate::engine::FinishReason;
#[cfg(not(target_arch = "wasm32"))]
use crate::engine::{open_engine, LoadOptions};
use crate::engine::{Backend, CompletionRequest, Event};
use crate::model::gpu_model::AttentionProbe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use web_time::Instant;

/// The engine, once loaded.
pub enum EngineState {
    /// No model chosen yet (the browser page, before a file or URL is given).
    NoModel,
    Loading {
        since: Instant,
        rx: mpsc::Receiver<Result<Arc<Engine>, String>>,
        /// what the loader is doing ("uploading 12/272 tensors"), empty when unknown
        status: Arc<Mutex<String>>,
    },
    Ready(Arc<Engine>),
    Failed(String),
}

impl EngineState {
    /// Starts loading `options` on its own thread; `ctx` is repainted when done.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(options: LoadOptions, ctx: Option<egui::Context>) -> EngineState {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("headroom-viewer-load".into())
            .spawn(move || {
                let r = open_engine(&options)
                    .map(Arc::new)
                    .map_err(|e| format!("{}: {e}", options.model.display()));
                let _ = tx.send(r);
                if let Some(c) = ctx {
                    c.request_repaint();
                }
            });
        match spawned {
            Ok(_) => EngineState::loading(rx, Arc::default()),
            Err(e) => EngineState::Failed(format!("starting the loader thread: {e}")),
        }
    }

    /// Waits on a loader that sends its engine (or why not) on `rx` and writes what it is
    /// doing into `status`.
    pub fn loading(
        rx: mpsc::Receiver<Result<Arc<Engine>, String>>,
        status: Arc<Mutex<String>>,
    ) -> EngineState {
        EngineState::Loading {
            since: Instant::now(),
            rx,
            status,
        }
    }

    /// Moves a finished load into Ready or Failed.
    pub fn poll(&mut self) {
        if let EngineState::Loading { rx, .. } = self {
            match rx.try_recv() {
                Ok(Ok(e)) => *self = EngineState::Ready(e),
                Ok(Err(e)) => *self = EngineState::Failed(e),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    *self = EngineState::Failed("the loader thread ended without a model".into())
                }
            }
        }
    }

    pub fn engine(&self) -> Option<&Arc<Engine>> {
        match self {
            EngineState::Ready(e) => Some(e),
            _ => None,
        }
    }
}

/// One streamed request, filled in by the engine thread.
#[derive(Default)]
pub struct Stream {
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub text: String,
    /// byte ranges of `text` that came with tokens drafted by prompt lookup and confirmed
    /// in one step (adjacent ones merged), and how many such tokens
    pub drafted: Vec<std::ops::Range<usize>>,
    pub drafted_tokens: usize,
    pub finish: Option<FinishReason>,
    pub error: Option<String>,
    pub cached_tokens: usize,
    pub started: Option<Instant>,
    pub first_token_s: Option<f64>,
    pub done_s: Option<f64>,
    pub attention: Option<Arc<AttentionProbe>>,
}

impl Stream {
    pub fn running(&self) -> bool {
        self.finish.is_none() && self.error.is_none()
    }

    /// Marks the next `bytes` of text, about to be appended, as drafted (`tokens` of them).
    pub fn note_drafted(&mut self, bytes: usize, tokens: usize) {
        self.drafted_tokens += tokens;
        let at = self.text.len();
        if bytes == 0 {
            return;
        }
        match self.drafted.last_mut() {
            Some(r) if r.end == at => r.end += bytes,
            _ => self.drafted.push(at..at + bytes),
        }
    }

    /// The text in runs: (run, drafted), in order.
    pub fn runs(&self) -> Vec<(&str, bool)> {
        let mut out = Vec::new();
        let mut at = 0;
        for r in &self.drafted {
            if r.start > at {
                out.push((&self.text[at..r.start], false));
            }
            out.push((&self.text[r.clone()], true));
            at = r.end;
        }
        if at < self.text.len() {
            out.push((&self.text[at..], false));
        }
        out
    }
}

/// A request in flight: its stream and the switch that stops it.
#[derive(Clone)]
pub struct StreamHandle {
    pub stream: Arc<Mutex<Stream>>,
    cancel: Arc<AtomicBool>,
}

impl StreamHandle {
    /// Submits `req`; events fill the stream and repaint `ctx`.
    pub fn submit(
        engine: &Engine,
        req: CompletionRequest,
        ctx: Option<egui::Context>,
    ) -> StreamHandle {
        let stream = Arc::new(Mutex::new(Stream {
            prompt_ids: req.prompt_ids.clone(),
            started: Some(Instant::now()),
            ..Default::default()
        }));
        let cancel = Arc::new(AtomicBool::new(false));
        let (s, c) = (stream.clone(), cancel.clone());
        let sink = Box::new(move |ev: Event| {
            if c.load(Ordering::Relaxed) {
                let mut st = s.lock().unwrap();
                st.finish.get_or_insert(FinishReason::Cancelled);
                return false;
            }
            let mut st = s.lock().unwrap();
            let elapsed = st.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
            match ev {
                Event::Delta {
                    text, ids, drafted, ..
                } => {
                    if st.first_token_s.is_none() && !ids.is_empty() {
                        st.first_token_s = Some(elapsed);
                    }
                    if drafted {
                        st.note_drafted(text.len(), ids.len());
                    }
                    st.text.push_str(&text);
                    st.ids.extend(ids);
                }
                Event::Done { finish, usage } => {
                    st.finish = Some(finish);
                    st.cached_tokens = usage.cached_tokens;
                    st.done_s = Some(elapsed);
                }
                Event::Failed(m) => st.error = Some(m),
                Event::Attention(a) => st.attention = Some(a),
                Event::PromptLogprobs(_) => {}
            }
            drop(st);
            if let Some(ctx) = &ctx {
                ctx.request_repaint();
            }
            true
        });
        if let Err(e) = engine.submit(req, sink) {
            stream.lock().unwrap().error = Some(e.to_string());
        }
        StreamHandle { stream, cancel }
    }

    /// Stops the request at the engine's next event for it.
    pub fn stop(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        let mut st = self.stream.lock().unwrap();
        st.finish.get_or_insert(FinishReason::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::Stream;

    #[test]
    fn drafted_text_comes_back_in_runs() {
        let mut st = Stream::default();
        let push = |st: &mut Stream, text: &str, drafted: bool| {
            if drafted {
                st.note_drafted(text.len(), 1);
            }
            st.text.push_str(text);
        };
        push(&mut st, "Copy:", false);
        push(&mut st, " apples", true);
        push(&mut st, ",", true);
        push(&mut st, "", true);
        push(&mut st, " pears", false);
        push(&mut st, " plums", true);
        assert_eq!(
            st.runs(),
            [
                ("Copy:", false),
                (" apples,", true),
                (" pears", false),
                (" plums", true)
            ]
        );
        assert_eq!(st.drafted_tokens, 4);
    }
}
