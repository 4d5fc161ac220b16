//! The browser build's entry points (wasm32 only), called by `web/loader.js`:
//!
//! - [`start`] runs the viewer (every tab) in a canvas with eframe's web runner;
//! - [`begin_model`], [`push_model_bytes`] and [`load_model`] take the model file (a GGUF)
//!   or files (a Hugging Face model: config.json, tokenizer.json, safetensors) the page
//!   streams in (picked, dropped, downloaded, or from the page's storage) and upload them;
//! - [`generate`] runs a prompt through the Generate tab, as if typed there, and resolves
//!   with the result: the page's API and the browser test's way in.
//!
//! Everything runs on the page's event loop: GPU readbacks are awaited, never spun on.

use crate::engine::upload_paged;
use crate::engine::{open_gguf_bytes, open_hf_files, ModelFiles};
use crate::engine::{Engine, EngineOptions};
use crate::gpu::{GpuContext, GpuOptions};
use crate::model::gpu_model::GpuModelOptions;
use crate::viewer::explorer::Explorer;
use crate::viewer::kernel_lab::LabOptions;
use crate::viewer::session::{EngineState, StreamHandle};
use crate::viewer::{Tab, ViewerApp};
use std::cell::RefCell;
use std::sync::{mpsc, Arc, Mutex};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// The most model bytes the page takes: wasm32 addresses 4 GiB, and the files are held in
/// that memory while they upload.
const MAX_MODEL_BYTES: u64 = 3 << 30;

/// Tokens per sequence, sequences at once: as the desktop viewer.
const CONTEXT: usize = 2048;
const MAX_RUNNING: usize = 8;

/// A prompt the page asked for, run by the viewer on its next frame.
struct GenerateCommand {
    prompt: String,
    chat: bool,
    max_tokens: usize,
    reply: futures_channel::oneshot::Sender<Result<StreamHandle, String>>,
}

/// A model file streamed in by the page.
struct ReceivedFile {
    name: String,
    bytes: Vec<u8>,
    /// bytes announced
    size: u64,
}

/// What the exported functions and the running viewer share.
#[derive(Default)]
struct Page {
    /// the model's files, the last one still arriving
    files: Vec<ReceivedFile>,
    /// the engine state the viewer shows from its next frame
    next_engine: Option<EngineState>,
    /// the loaded engine, for `generate`
    engine: Option<Arc<Engine>>,
    commands: Vec<GenerateCommand>,
    ctx: Option<egui::Context>,
    /// the kernels run on a software adapter (the CPU): the UI then paints once a second
    /// while generating instead of every frame, leaving the CPU to the kernels
    software_adapter: bool,
}

thread_local! {
    static PAGE: RefCell<Page> = RefCell::new(Page::default());
}

fn repaint() {
    PAGE.with(|p| {
        if let Some(c) = &p.borrow().ctx {
            c.request_repaint();
        }
    });
}

/// The viewer plus the page's hand-offs.
struct WebViewer {
    app: ViewerApp,
    lab_started: bool,
}

impl eframe::App for WebViewer {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let (next, commands) = PAGE.with(|p| {
            let mut p = p.borrow_mut();
            (p.next_engine.take(), std::mem::take(&mut p.commands))
        });
        if let Some(state) = next {
            self.app.engine = state;
        }
        let slow = PAGE.with(|p| p.borrow().software_adapter);
        self.app.generate.repaint_on_token = !slow;
        self.app.frame_interval = std::time::Duration::from_millis(if slow { 1000 } else { 16 });
        for c in commands {
            let reply = match self.app.engine.engine().cloned() {
                None => Err("no model is loaded".to_string()),
                Some(engine) => {
                    let g = &mut self.app.generate;
                    g.prompt = c.prompt;
                    g.chat = c.chat;
                    g.max_tokens = c.max_tokens;
                    g.temperature = 0.0;
                    g.sequences = 1;
                    g.start(&engine, Some(ui.ctx().clone()));
                    self.app.tab = Tab::Generate;
                    match (&g.error, g.streams.first()) {
                        (Some(e), _) => Err(e.clone()),
                        (None, Some(s)) => Ok(s.clone()),
                        (None, None) => Err("nothing was submitted".into()),
                    }
                }
            };
            let _ = c.reply.send(reply);
        }
        // The kernel lab probes the GPU's bandwidth; only when someone looks at it, so it
        // does not compete with the model on a page opened to generate.
        if self.app.tab == Tab::Explorer && !self.lab_started {
            self.lab_started = true;
            self.app.explorer.start_lab();
        }
        self.app.show(ui);
    }
}

/// The UI draws with WebGL2 (through wgpu's GL backend) and the kernels run on WebGPU: a
/// WebGPU canvas is not composited everywhere WebGPU compute works (headless Chromium on
/// SwiftShader draws nothing), and WebGL2 is in every browser that has WebGPU.
fn web_options() -> eframe::WebOptions {
    let mut setup = eframe::egui_wgpu::WgpuSetupCreateNew::without_display_handle();
    setup.instance_descriptor.backends = wgpu::Backends::GL;
    let mut options = eframe::WebOptions::default();
    options.wgpu_options.wgpu_setup = setup.into();
    options
}

/// Runs the viewer in the canvas with id `canvas_id`.
#[wasm_bindgen]
pub async fn start(canvas_id: String) -> Result<(), JsValue> {
    let canvas = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id(&canvas_id))
        .ok_or_else(|| JsValue::from_str(&format!("no element with id {canvas_id:?}")))?
        .dyn_into::<web_sys::HtmlCanvasElement>()
        .map_err(|_| JsValue::from_str(&format!("#{canvas_id} is not a canvas")))?;
    // eframe's and wgpu's messages (warnings and up) go to the browser console
    let _ = eframe::WebLogger::init(log::LevelFilter::Warn);
    let runner = eframe::WebRunner::new();
    runner
        .start(
            canvas,
            web_options(),
            Box::new(|cc| {
                PAGE.with(|p| p.borrow_mut().ctx = Some(cc.egui_ctx.clone()));
                let explorer = Explorer::new(LabOptions {
                    adapter: None,
                    probe_bytes: None,
                    runs: None,
                });
                let app = ViewerApp::new(EngineState::NoModel, explorer, Tab::Generate, false);
                Ok(Box::new(WebViewer {
                    app,
                    lab_started: false,
                }))
            }),
        )
        .await?;
    // the runner lives as long as the page
    std::mem::forget(runner);
    Ok(())
}

/// Forgets the files received so far: the next `begin_model` starts a new model.
#[wasm_bindgen]
pub fn clear_model_files() {
    PAGE.with(|p| p.borrow_mut().files.clear());
}

/// Starts receiving a model file of `size` bytes named `name` (one GGUF, or one of a
/// Hugging Face model's files).
#[wasm_bindgen]
pub fn begin_model(name: String, size: f64) -> Result<(), JsValue> {
    if !(size.is_finite() && size > 0.0) {
        return Err(JsValue::from_str(&format!("{name}: the file is empty")));
    }
    let size = size as u64;
    PAGE.with(|p| {
        let mut p = p.borrow_mut();
        let total = size + p.files.iter().map(|f| f.size).sum::<u64>();
        if total > MAX_MODEL_BYTES {
            return Err(JsValue::from_str(&format!(
                "{name}: {total} bytes of model files is more than the {MAX_MODEL_BYTES} a \
                 page can hold (wasm32 memory is 4 GiB); use the desktop build for this model"
            )));
        }
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(size as usize)
            .map_err(|e| JsValue::from_str(&format!("{name}: reserving {size} bytes: {e}")))?;
        p.files.push(ReceivedFile { name, bytes, size });
        Ok(())
    })
}

/// Appends the next piece of the file begun last (wasm-bindgen copies it into wasm memory
/// once).
#[wasm_bindgen]
pub fn push_model_bytes(chunk: &[u8]) -> Result<(), JsValue> {
    PAGE.with(|p| {
        let mut p = p.borrow_mut();
        let f = p
            .files
            .last_mut()
            .ok_or_else(|| JsValue::from_str("push_model_bytes before begin_model"))?;
        let total = f.bytes.len() as u64 + chunk.len() as u64;
        if total > f.size {
            return Err(JsValue::from_str(&format!(
                "{}: got {total} bytes, more than the {} announced",
                f.name, f.size
            )));
        }
        f.bytes.extend_from_slice(chunk);
        Ok(())
    })
}

/// Parses and uploads the received files and starts the engine on them. Resolves with a
/// line that says what runs where; rejects with what is wrong (the viewer shows it too).
#[wasm_bindgen]
pub async fn load_model() -> Result<String, JsValue> {
    let files = PAGE.with(|p| {
        let mut p = p.borrow_mut();
        p.engine = None;
        std::mem::take(&mut p.files)
    });
    let (tx, rx) = mpsc::channel();
    let status = Arc::new(Mutex::new(String::new()));
    PAGE.with(|p| p.borrow_mut().next_engine = Some(EngineState::loading(rx, status.clone())));
    repaint();
    let result = match open_files(files, &status) {
        Ok((name, model)) => open_engine(name, model, status).await,
        Err(e) => Err(e),
    };
    repaint();
    match result {
        Ok((engine, summary)) => {
            PAGE.with(|p| p.borrow_mut().engine = Some(engine.clone()));
            let _ = tx.send(Ok(engine));
            Ok(summary)
        }
        Err(e) => {
            let _ = tx.send(Err(e.clone()));
            Err(JsValue::from_str(&e))
        }
    }
}

/// One GGUF, or the files of a Hugging Face model (with config.json); parsed and checked.
fn open_files(
    files: Vec<ReceivedFile>,
    status: &Mutex<String>,
) -> Result<(String, ModelFiles), String> {
    if let Some(f) = files.iter().find(|f| (f.bytes.len() as u64) < f.size) {
        return Err(format!(
            "{}: the file is truncated: {} of {} bytes arrived",
            f.name,
            f.bytes.len(),
            f.size
        ));
    }
    *status.lock().unwrap() = "parsing the model".into();
    match files.as_slice() {
        [] => Err("no model file was given".into()),
        [one] if !one.name.ends_with(".json") && !one.name.ends_with(".safetensors") => {
            let f = files.into_iter().next().expect("one file");
            let model = open_gguf_bytes(&f.name, f.bytes).map_err(|e| e.to_string())?;
            Ok((f.name, model))
        }
        _ if files.iter().any(|f| f.name == "config.json") => {
            let label = match files.iter().find(|f| f.name.ends_with(".safetensors")) {
                Some(f) if files.len() > 1 => format!("{} (+{} files)", f.name, files.len() - 1),
                _ => "the model's files".into(),
            };
            let by_name = files.into_iter().map(|f| (f.name, f.bytes)).collect();
            let model = open_hf_files(&label, by_name).map_err(|e| e.to_string())?;
            Ok((label, model))
        }
        _ => Err(format!(
            "{}: a Hugging Face model needs its config.json, tokenizer.json and safetensors \
             files picked or dropped together; a single file must be a GGUF",
            files
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

async fn open_engine(
    name: String,
    files: ModelFiles,
    status: Arc<Mutex<String>>,
) -> Result<(Arc<Engine>, String), String> {
    let gpu = GpuContext::new(&GpuOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let software = gpu.adapter_info.device_type == wgpu::DeviceType::Cpu;
    PAGE.with(|p| p.borrow_mut().software_adapter = software);
    let f = &gpu.features;
    // wgpu's WebGPU backend does not pass the browser's `subgroups` feature on (yet), so
    // the page runs the portable matvec even where the adapter has subgroups
    let summary = format!(
        "runs: {}{} · shader-f16: {} (f16 storage is read with unpack2x16float either way) \
         · timestamps: {} · max storage binding {} MiB",
        if f.subgroups {
            "subgroup matvec kernels"
        } else {
            "portable matvec kernels (no subgroups through wgpu)"
        },
        if software {
            " on a software adapter (the UI repaints once a second while generating; no per-kernel timing)"
        } else {
            ""
        },
        if f.shader_f16 { "yes" } else { "no" },
        if f.timestamps { "yes" } else { "no" },
        gpu.max_binding() >> 20
    );
    // native weights: a Q4 GGUF stays in its blocks (SmolLM2 92 MiB instead of 257), read
    // without shader-f16, which SwiftShader lacks
    let options = GpuModelOptions {
        context: CONTEXT,
        max_chunk: 256,
        quantized: true,
        ..Default::default()
    };
    let st = status.clone();
    let model = upload_paged(
        gpu,
        files.weights.as_ref(),
        &options,
        None,
        MAX_RUNNING,
        crate::engine::DEFAULT_DRAFT_TOKENS,
        &mut |done, total, what| {
            *st.lock().unwrap() = format!("uploading weights: {done} of {total} ({what})");
        },
    )
    .await
    .map_err(|e| format!("{name}: {e}"))?;
    // the file's bytes are freed here: the weights live on the GPU now
    drop(files.weights);
    let engine = Engine::start_local(
        EngineOptions {
            model_id: name,
            max_running: MAX_RUNNING,
            // per-kernel timing splits a step into a pass per kernel: costly on a CPU
            kernel_times_every: if software { 0 } else { 8 },
            ..Default::default()
        },
        model,
        files.tokenizer,
    );
    Ok((Arc::new(engine), summary))
}

/// Runs `prompt` (through the chat template when `chat`) greedily for at most
/// `max_tokens` tokens in the Generate tab and resolves, when it finishes, with JSON:
/// `{prompt_ids, ids, text, finish, first_token_s, done_s, decode_tokens_per_s,
/// drafted_tokens}` (drafted_tokens: those drafted by prompt lookup and confirmed).
#[wasm_bindgen]
pub async fn generate(prompt: String, max_tokens: u32, chat: bool) -> Result<String, JsValue> {
    let (reply, rx) = futures_channel::oneshot::channel();
    PAGE.with(|p| {
        p.borrow_mut().commands.push(GenerateCommand {
            prompt,
            chat,
            max_tokens: max_tokens.max(1) as usize,
            reply,
        })
    });
    repaint();
    let handle = rx
        .await
        .map_err(|_| JsValue::from_str("the viewer is not running"))?
        .map_err(|e| JsValue::from_str(&e))?;
    loop {
        {
            let st = handle.stream.lock().unwrap();
            if let Some(e) = &st.error {
                return Err(JsValue::from_str(e));
            }
            if let Some(finish) = st.finish {
                let decode = match (st.first_token_s, st.done_s) {
                    (Some(a), Some(b)) if b > a && st.ids.len() > 1 => {
                        (st.ids.len() - 1) as f64 / (b - a)
                    }
                    _ => 0.0,
                };
                let doc = serde_json::json!({
                    "prompt_ids": st.prompt_ids,
                    "ids": st.ids,
                    "text": st.text,
                    "finish": finish,
                    "first_token_s": st.first_token_s,
                    "done_s": st.done_s,
                    "decode_tokens_per_s": decode,
                    "drafted_tokens": st.drafted_tokens,
                });
                return Ok(doc.to_string());
            }
        }
        crate::gpu::sleep_ms(20).await;
    }
}
