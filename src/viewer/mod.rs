//! `headroom view`: the egui app (eframe on winit, wgpu renderer). Four tabs: Generate
//! (streaming output of the real model), Telemetry (live tokens/s, memory traffic, bytes
//! per token, per-kernel GPU time, KV pool), Explorer (attention variants: predicted and
//! measured kernel time) and Attention (the real model's attention weights). The engine
//! and the kernel lab run on their own threads; the UI only polls them.

pub mod attention_map;
pub mod axis;
pub mod explorer;
pub mod generate;
pub mod kernel_lab;
pub mod session;
pub mod telemetry;

use crate::metrics::roofline::Roofs;
use attention_map::AttentionTab;
use explorer::Explorer;
use generate::GenerateTab;
use session::EngineState;
use std::path::PathBuf;
use std::sync::Arc;
use telemetry::Telemetry;
use web_time::Duration;
#[cfg(not(target_arch = "wasm32"))]
use {
    crate::engine::EngineOptions, crate::engine::LoadOptions,
    crate::model::gpu_model::GpuModelOptions, kernel_lab::LabOptions, web_time::Instant,
};

/// The tabs, in the order shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Generate,
    Telemetry,
    Explorer,
    Attention,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Generate, Tab::Telemetry, Tab::Explorer, Tab::Attention];

    pub fn name(self) -> &'static str {
        match self {
            Tab::Generate => "generate",
            Tab::Telemetry => "telemetry",
            Tab::Explorer => "explorer",
            Tab::Attention => "attention",
        }
    }

    pub fn parse(s: &str) -> Result<Tab, String> {
        Tab::ALL
            .into_iter()
            .find(|t| t.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                format!("unknown tab {s:?} (tabs: generate, telemetry, explorer, attention)")
            })
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct ViewArgs {
    /// a GGUF file or a Hugging Face directory (default: the fetched SmolLM2)
    #[arg(long, env = "HEADROOM_MODEL")]
    pub model: Option<PathBuf>,
    /// adapter name substring (default: the high-performance adapter)
    #[arg(long, env = "HEADROOM_ADAPTER")]
    pub adapter: Option<String>,
    /// tokens per sequence
    #[arg(long, default_value_t = 2048)]
    pub context: usize,
    /// the tab to open: generate, telemetry, explorer, attention
    #[arg(long, default_value = "generate")]
    pub tab: String,
    /// start a generation when the model is ready and run the explorer's kernels (for
    /// demos and screenshots)
    #[arg(long)]
    pub demo: bool,
    /// render, save a PNG here and exit (implies --demo)
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// seconds to run before the screenshot
    #[arg(long, default_value_t = 5.0)]
    pub after: f64,
    /// window size in points, WIDTHxHEIGHT
    #[arg(long, default_value = "1400x900")]
    pub size: String,
}

/// The whole app's state.
pub struct ViewerApp {
    pub tab: Tab,
    pub engine: EngineState,
    pub generate: GenerateTab,
    pub telemetry: Telemetry,
    pub explorer: Explorer,
    pub attention: AttentionTab,
    demo: bool,
    demo_started: bool,
    #[cfg(not(target_arch = "wasm32"))]
    screenshot: Option<Screenshot>,
    /// the generation whose attention map is shown (its first stream)
    mapped_stream: Option<usize>,
    /// how often to repaint while work runs (longer where frames are costly)
    pub frame_interval: Duration,
}

/// A screenshot to take at `at`, then exit.
#[cfg(not(target_arch = "wasm32"))]
struct Screenshot {
    path: PathBuf,
    at: Instant,
    requested: bool,
    saved: Arc<std::sync::Mutex<Option<Result<(), String>>>>,
}

impl ViewerApp {
    pub fn new(engine: EngineState, explorer: Explorer, tab: Tab, demo: bool) -> ViewerApp {
        ViewerApp {
            tab,
            engine,
            generate: GenerateTab::default(),
            telemetry: Telemetry::default(),
            explorer,
            attention: AttentionTab::default(),
            demo,
            demo_started: false,
            #[cfg(not(target_arch = "wasm32"))]
            screenshot: None,
            mapped_stream: None,
            frame_interval: Duration::from_millis(16),
        }
    }

    /// Engine and lab bookkeeping for one frame.
    fn tick(&mut self, ctx: &egui::Context) {
        self.engine.poll();
        if let Some(e) = self.engine.engine().cloned() {
            self.telemetry.update(&e);
            if self.demo && !self.demo_started {
                self.demo_started = true;
                self.generate.sequences = 4;
                self.generate.start(&e, Some(ctx.clone()));
            }
        }
        if self.demo && self.explorer.measured.is_empty() && self.explorer.pending() == 0 {
            self.explorer.run();
        }
        self.explorer.poll();
        // the first stream's prompt map, once it arrives
        if let Some(h) = self.generate.streams.first() {
            let key = Arc::as_ptr(&h.stream) as usize;
            if self.mapped_stream != Some(key) {
                let (probe, ids) = {
                    let st = h.stream.lock().unwrap();
                    (st.attention.clone(), st.prompt_ids.clone())
                };
                if let Some(p) = probe {
                    self.mapped_stream = Some(key);
                    self.attention.show_probe(p, &ids, &self.engine);
                }
            }
        }
        let busy = self.generate.running()
            || matches!(self.engine, EngineState::Loading { .. })
            || self.explorer.pending() > 0;
        if busy {
            ctx.request_repaint_after(self.frame_interval);
        }
    }

    /// The ids of the last generation's first sequence (prompt and output).
    fn last_text(&self) -> Option<Vec<u32>> {
        let h = self.generate.streams.first()?;
        let st = h.stream.lock().unwrap();
        if st.running() || st.ids.is_empty() {
            return None;
        }
        let mut ids = st.prompt_ids.clone();
        ids.extend(&st.ids);
        Some(ids)
    }

    fn timestamps(&self) -> Option<bool> {
        if self.telemetry.steps.is_empty() {
            None
        } else {
            Some(self.telemetry.steps.iter().any(|s| s.gpu_s.is_some()))
        }
    }

    /// Draws the whole UI (eframe calls it every frame; tests call it directly).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.tick(&ctx);
        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(egui::RichText::new("headroom").strong().size(18.0));
                for t in Tab::ALL {
                    ui.selectable_value(&mut self.tab, t, t.name());
                }
                ui.separator();
                let m = &self.telemetry.metrics;
                ui.label(format!(
                    "{:.1} tokens/s · {} running",
                    m.decode_tokens_per_s, m.running
                ));
                if let Some(d) = &self.explorer.device {
                    ui.label(format!("· {} · copy {:.1} GB/s", d.adapter, d.copy_gbps));
                }
            });
        });
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Generate => self.generate.ui(ui, &self.engine),
            Tab::Telemetry => {
                let device = self.explorer.device.as_ref();
                let peak = device.map(|d| d.copy_gbps);
                let roofs = device.and_then(|d| {
                    d.fma_gflops.map(|gflops| Roofs {
                        gbps: d.copy_gbps,
                        gflops,
                    })
                });
                let ts = self.timestamps();
                egui::ScrollArea::vertical().show(ui, |ui| self.telemetry.ui(ui, peak, roofs, ts));
            }
            Tab::Explorer => self.explorer.ui(ui),
            Tab::Attention => {
                let last = self.last_text();
                self.attention.ui(ui, &self.engine, last);
            }
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.screenshot_step(&ctx);
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn screenshot_step(&mut self, ctx: &egui::Context) {
        let Some(s) = &mut self.screenshot else {
            return;
        };
        if let Some(result) = s.saved.lock().unwrap().take() {
            match result {
                Ok(()) => eprintln!("saved {}", s.path.display()),
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        if !s.requested && Instant::now() >= s.at {
            s.requested = true;
            let (path, saved) = (s.path.clone(), s.saved.clone());
            let repaint = ctx.clone();
            ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(
                egui::ScreenshotCallback::new(move |image| {
                    *saved.lock().unwrap() = Some(save_png(&path, &image));
                    repaint.request_repaint();
                }),
            ));
        }
        ctx.request_repaint_after(Duration::from_millis(50));
    }
}

impl eframe::App for ViewerApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }
}

/// Writes an RGBA PNG.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_png(path: &std::path::Path, image: &egui::ColorImage) -> Result<(), String> {
    let [w, h] = image.size;
    let file =
        std::fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let rgba: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(|c| c.to_srgba_unmultiplied())
        .collect();
    enc.write_header()
        .and_then(|mut w| w.write_image_data(&rgba))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(not(target_arch = "wasm32"))]
fn parse_size(s: &str) -> Result<[f32; 2], String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("--size {s:?}: expected WIDTHxHEIGHT"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<f32>()
            .ok()
            .filter(|x| (200.0..=8192.0).contains(x))
            .ok_or_else(|| format!("--size {s:?}: sizes are 200 to 8192 points"))
    };
    Ok([p(w)?, p(h)?])
}

/// Opens the window and runs until it is closed (or the screenshot is saved).
#[cfg(not(target_arch = "wasm32"))]
pub fn run(a: &ViewArgs) -> Result<(), String> {
    let tab = Tab::parse(&a.tab)?;
    let size = parse_size(&a.size)?;
    if !(a.after.is_finite() && a.after >= 0.0) {
        return Err(format!("--after {}: expected seconds >= 0", a.after));
    }
    let model = a
        .model
        .clone()
        .unwrap_or_else(crate::engine::default_model_path);
    let serve = LoadOptions {
        model,
        adapter: a.adapter.clone(),
        gpu: GpuModelOptions {
            context: a.context.max(16),
            max_chunk: 256,
            // the weights as the file stores them, as `generate` and `serve` load them
            quantized: true,
            ..Default::default()
        },
        kv_memory: None,
        draft_model: None,
        engine: EngineOptions {
            model_id: "viewer".into(),
            max_running: 8,
            kernel_times_every: 8,
            ..Default::default()
        },
    };
    let screenshot = a.screenshot.clone().map(|path| Screenshot {
        path,
        at: Instant::now() + Duration::from_secs_f64(a.after),
        requested: false,
        saved: Arc::default(),
    });
    if screenshot.is_some() {
        // a screenshot that never comes must not hang CI
        let limit = a.after + 120.0;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(limit));
            eprintln!("error: no screenshot after {limit:.0} s (does the window render?)");
            std::process::exit(2);
        });
    }
    let demo = a.demo || screenshot.is_some();
    let lab = LabOptions {
        adapter: a.adapter.clone(),
        probe_bytes: None,
        runs: None,
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("headroom")
            .with_inner_size(size),
        ..Default::default()
    };
    eframe::run_native(
        "headroom",
        options,
        Box::new(move |cc| {
            let engine = EngineState::load(serve, Some(cc.egui_ctx.clone()));
            let mut explorer = Explorer::new(lab);
            explorer.start_lab();
            let mut app = ViewerApp::new(engine, explorer, tab, demo);
            app.screenshot = screenshot;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| format!("the window: {e}"))
}
