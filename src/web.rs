//! The browser build's entry points (wasm32 only), called by `web/loader.js`:
//!
//! - [`start`] runs the viewer (every tab) in a canvas with eframe's web runner;
//! - [`begin_model`], [`push_model_bytes`] and [`load_model`] take a model file the page
//!   streams in (picked, dropped, downloaded, or from the page's cache) and upload it;
//! - [`generate`] runs a prompt through the Generate tab, as if typed there, and resolves
//!   with the result: the page's API and the browser test's way in.
//!
//! Everything runs on the page's event loop: GPU readbacks are awaited, never spun on.

use crate::engine::open_gguf_bytes;
use crate::gpu::{GpuContext, GpuOptions};
use crate::model::gpu_model::GpuModelOptions;
use crate::serve::engine::{Engine, EngineOptions};
use crate::serve::load::upload_paged;
use crate::viewer::explorer::Explorer;
use crate::viewer::kernel_lab::LabOptions;
use crate::viewer::session::{EngineState, StreamHandle};
use crate::viewer::{Tab, ViewerApp};
use std::cell::RefCell;
use std::sync::{mpsc, Arc, Mutex};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// The largest model file the page takes: wasm32 addresses 4 GiB, and the file is held in
/// that memory while it uploads.
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

/// What the exported functions and the running viewer share.
#[derive(Default)]
struct Page {
    /// the model file being streamed in by the page
    file: Vec<u8>,
    file_name: String,
    file_size: u64,
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

/// Starts receiving a model file of `size` bytes named `name`.
#[wasm_bindgen]
pub fn begin_model(name: String, size: f64) -> Result<(), JsValue> {
    if !(size.is_finite() && size > 0.0) {
        return Err(JsValue::from_str(&format!("{name}: the file is empty")));
    }
    let size = size as u64;
    if size > MAX_MODEL_BYTES {
        return Err(JsValue::from_str(&format!(
            "{name}: {size} bytes is more than the {MAX_MODEL_BYTES} bytes a page can hold \
             (wasm32 memory is 4 GiB); use the desktop build for this model"
        )));
    }
    PAGE.with(|p| {
        let mut p = p.borrow_mut();
        p.file = Vec::new();
        p.file
            .try_reserve_exact(size as usize)
            .map_err(|e| JsValue::from_str(&format!("{name}: reserving {size} bytes: {e}")))?;
        p.file_name = name;
        p.file_size = size;
        Ok(())
    })
}

/// Appends the next piece of the file (wasm-bindgen copies it into wasm memory once).
#[wasm_bindgen]
pub fn push_model_bytes(chunk: &[u8]) -> Result<(), JsValue> {
    PAGE.with(|p| {
        let mut p = p.borrow_mut();
        let total = p.file.len() as u64 + chunk.len() as u64;
        if total > p.file_size {
            return Err(JsValue::from_str(&format!(
                "{}: got {total} bytes, more than the {} announced",
                p.file_name, p.file_size
            )));
        }
        p.file.extend_from_slice(chunk);
        Ok(())
    })
}

/// Parses and uploads the received file and starts the engine on it. Resolves with a line
/// that says what runs where; rejects with what is wrong (and the viewer shows it too).
#[wasm_bindgen]
pub async fn load_model() -> Result<String, JsValue> {
    let (name, bytes, size) = PAGE.with(|p| {
        let mut p = p.borrow_mut();
        p.engine = None;
        (
            p.file_name.clone(),
            std::mem::take(&mut p.file),
            p.file_size,
        )
    });
    let (tx, rx) = mpsc::channel();
    let status = Arc::new(Mutex::new(String::new()));
    PAGE.with(|p| p.borrow_mut().next_engine = Some(EngineState::loading(rx, status.clone())));
    repaint();
    let result = if (bytes.len() as u64) < size {
        Err(format!(
            "{name}: the file is truncated: {} of {size} bytes arrived",
            bytes.len()
        ))
    } else {
        open_engine(name, bytes, status).await
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

async fn open_engine(
    name: String,
    bytes: Vec<u8>,
    status: Arc<Mutex<String>>,
) -> Result<(Arc<Engine>, String), String> {
    let lower = name.to_lowercase();
    if lower.ends_with(".safetensors") || lower.ends_with(".json") {
        return Err(format!(
            "{name}: the page opens GGUF files; a safetensors model also needs its config.json \
             and tokenizer.json, which the desktop build reads from the model's directory"
        ));
    }
    *status.lock().unwrap() = "parsing the file".into();
    let files = open_gguf_bytes(&name, bytes).map_err(|e| e.to_string())?;
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
    let options = GpuModelOptions {
        context: CONTEXT,
        max_chunk: 256,
        ..Default::default()
    };
    let st = status.clone();
    let model = upload_paged(
        gpu,
        files.weights.as_ref(),
        &options,
        None,
        MAX_RUNNING,
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
/// `{prompt_ids, ids, text, finish, first_token_s, done_s, decode_tokens_per_s}`.
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
                });
                return Ok(doc.to_string());
            }
        }
        sleep_ms(20).await;
    }
}

async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
