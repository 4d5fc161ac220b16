//! The attention-variant explorer: pick MHA, GQA, MQA or MLA and a model shape, see the KV
//! cache it keeps and the decode-attention time the bandwidth predicts, and with "Run" the
//! time of the real kernels on this GPU at that shape, beside MHA's.

use super::axis::{decade_label, tokens_label};
use super::kernel_lab::{KernelLab, LabDevice, LabOptions, LabReply};
use crate::metrics::attention::{AttentionKind, AttentionShape};
use crate::metrics::attention_lab::AttentionResult;
use crate::metrics::presets::PRESETS;
use crate::metrics::units::{fmt_bytes, fmt_seconds};
use egui::{Color32, RichText};
use egui_plot::{uniform_grid_spacer, GridMark, Legend, Line, MarkerShape, Plot, Points};

/// Contexts of the sweep and of the prediction chart.
pub const SWEEP_CONTEXTS: [usize; 6] = [512, 1024, 2048, 4096, 8192, 16384];

/// The variant choice in the UI (GQA's group and MLA's rank are separate controls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindChoice {
    Mha,
    Gqa,
    Mqa,
    Mla,
}

/// One measured shape and what the kernel benchmark said about it.
#[derive(Clone, Debug)]
pub struct Measured {
    pub shape: AttentionShape,
    pub result: AttentionResult,
}

impl Measured {
    /// Attention time of one decode step over all layers: one layer's kernel time times
    /// the layers (every layer runs the same kernel on its own cache).
    pub fn step_s(&self) -> f64 {
        self.result.median_us * 1e-6 * self.shape.layers as f64
    }

    /// Attention time per generated token.
    pub fn token_s(&self) -> f64 {
        self.step_s() / self.shape.batch as f64
    }
}

pub struct Explorer {
    pub preset: usize,
    pub choice: KindChoice,
    pub group: usize,
    pub mla_rank: usize,
    pub mla_rope: usize,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub batch: usize,
    pub context: usize,
    lab: Option<KernelLab>,
    lab_options: LabOptions,
    pub device: Option<LabDevice>,
    pub lab_error: Option<String>,
    /// every shape measured so far (latest result per shape)
    pub measured: Vec<Measured>,
}

impl Explorer {
    /// An explorer on the SmolLM2 preset; the kernel lab starts on first use.
    pub fn new(lab_options: LabOptions) -> Explorer {
        let mut e = Explorer {
            preset: 0,
            choice: KindChoice::Gqa,
            group: 3,
            mla_rank: 512,
            mla_rope: 64,
            layers: 0,
            heads: 0,
            head_dim: 0,
            batch: 1,
            context: 4096,
            lab: None,
            lab_options,
            device: None,
            lab_error: None,
            measured: Vec::new(),
        };
        e.apply_preset(0);
        e
    }

    /// Starts the lab (device, bandwidth probe) if it is not running.
    pub fn start_lab(&mut self) {
        if self.lab.is_none() {
            self.lab = Some(KernelLab::start(self.lab_options.clone()));
        }
    }

    pub fn apply_preset(&mut self, i: usize) {
        let p = PRESETS[i];
        self.preset = i;
        self.layers = p.layers;
        self.heads = p.heads;
        self.head_dim = p.head_dim;
        match p.kind {
            AttentionKind::Mha => self.choice = KindChoice::Mha,
            AttentionKind::Gqa { group } => {
                self.choice = KindChoice::Gqa;
                self.group = group;
            }
            AttentionKind::Mqa => self.choice = KindChoice::Mqa,
            AttentionKind::Mla { rank, rope } => {
                self.choice = KindChoice::Mla;
                self.mla_rank = rank;
                self.mla_rope = rope;
            }
        }
    }

    fn kind_of(&self, choice: KindChoice) -> AttentionKind {
        match choice {
            KindChoice::Mha => AttentionKind::Mha,
            KindChoice::Gqa => AttentionKind::Gqa { group: self.group },
            KindChoice::Mqa => AttentionKind::Mqa,
            KindChoice::Mla => AttentionKind::Mla {
                rank: self.mla_rank,
                rope: self.mla_rope,
            },
        }
    }

    /// The shape the controls describe.
    pub fn shape(&self) -> AttentionShape {
        AttentionShape {
            kind: self.kind_of(self.choice),
            layers: self.layers,
            heads: self.heads,
            head_dim: self.head_dim,
            batch: self.batch,
            context: self.context,
        }
    }

    /// Every variant at this model and batch, at `context`.
    fn variants_at(&self, context: usize) -> Vec<AttentionShape> {
        let base = AttentionShape {
            context,
            ..self.shape()
        };
        let mut kinds = vec![AttentionKind::Mha];
        if !base.group_sizes().is_empty() {
            let g = if self.heads.is_multiple_of(self.group) && self.group > 1 {
                self.group
            } else {
                base.group_sizes()[0]
            };
            kinds.push(AttentionKind::Gqa { group: g });
        }
        kinds.push(AttentionKind::Mqa);
        kinds.push(self.kind_of(KindChoice::Mla));
        kinds.into_iter().map(|k| base.with_kind(k)).collect()
    }

    /// Measures the chosen shape and MHA at the same shape.
    pub fn run(&mut self) {
        self.start_lab();
        let shape = self.shape();
        let mut shapes = vec![shape];
        if shape.kind != AttentionKind::Mha {
            shapes.push(shape.with_kind(AttentionKind::Mha));
        }
        if let Some(lab) = &mut self.lab {
            lab.measure(shapes);
        }
    }

    /// Measures every variant at the sweep's contexts, skipping caches over the limit.
    pub fn sweep(&mut self) {
        self.start_lab();
        let limit: u64 = match &self.device {
            Some(d) if d.cpu_adapter => 256 << 20,
            _ => 4 << 30,
        };
        let shapes: Vec<AttentionShape> = SWEEP_CONTEXTS
            .iter()
            .flat_map(|&c| self.variants_at(c))
            // one layer is what the kernel runs over
            .filter(|s| s.kv_bytes_total() / s.layers as u64 <= limit)
            .collect();
        if let Some(lab) = &mut self.lab {
            lab.measure(shapes);
        }
    }

    /// Takes the lab's replies; true if anything changed.
    pub fn poll(&mut self) -> bool {
        let Some(lab) = &mut self.lab else {
            return false;
        };
        let replies = lab.poll();
        let changed = !replies.is_empty();
        for r in replies {
            match r {
                LabReply::Ready(d) => self.device = Some(d),
                LabReply::Measured { shape, result } => {
                    self.measured.retain(|m| m.shape != shape);
                    self.measured.push(Measured {
                        shape,
                        result: *result,
                    });
                }
                LabReply::Failed { shape, message } => {
                    self.lab_error = Some(match shape {
                        Some(s) => {
                            format!("{} at context {}: {message}", s.kind.label(), s.context)
                        }
                        None => message,
                    })
                }
            }
        }
        changed
    }

    /// Measurements still running.
    pub fn pending(&self) -> usize {
        self.lab.as_ref().map_or(0, |l| l.pending)
    }

    pub fn measured_at(&self, shape: &AttentionShape) -> Option<&Measured> {
        self.measured.iter().find(|m| m.shape == *shape)
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        if self.poll() || self.pending() > 0 || (self.lab.is_some() && self.device.is_none()) {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(50));
        }
        egui::Panel::left("explorer_controls")
            .resizable(false)
            .default_size(280.0)
            .show(ui, |ui| self.controls(ui));
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                self.numbers(ui);
                ui.separator();
                ui.horizontal_top(|ui| {
                    self.diagram(ui);
                });
                ui.separator();
                self.chart(ui);
            });
        });
    }

    fn controls(&mut self, ui: &mut egui::Ui) {
        ui.heading("Model");
        egui::ComboBox::from_label("preset")
            .selected_text(PRESETS[self.preset].name)
            .show_ui(ui, |ui| {
                for (i, p) in PRESETS.iter().enumerate() {
                    if ui.selectable_label(self.preset == i, p.name).clicked() {
                        self.apply_preset(i);
                    }
                }
            });
        ui.add(egui::Slider::new(&mut self.layers, 1..=128).text("layers"));
        ui.add(egui::Slider::new(&mut self.heads, 1..=128).text("query heads"));
        ui.add(
            egui::Slider::new(&mut self.head_dim, 32..=256)
                .step_by(8.0)
                .text("head dim"),
        );
        ui.separator();
        ui.heading("Attention");
        ui.horizontal(|ui| {
            for (c, name) in [
                (KindChoice::Mha, "MHA"),
                (KindChoice::Gqa, "GQA"),
                (KindChoice::Mqa, "MQA"),
                (KindChoice::Mla, "MLA"),
            ] {
                ui.selectable_value(&mut self.choice, c, name);
            }
        });
        match self.choice {
            KindChoice::Gqa => {
                let sizes = self.shape().group_sizes();
                if sizes.is_empty() {
                    ui.label(format!(
                        "{} heads have no group size between 1 and {}",
                        self.heads, self.heads
                    ));
                } else {
                    if !sizes.contains(&self.group) {
                        self.group = sizes[0];
                    }
                    egui::ComboBox::from_label("group size")
                        .selected_text(format!(
                            "{} ({} KV heads)",
                            self.group,
                            self.heads / self.group
                        ))
                        .show_ui(ui, |ui| {
                            for g in sizes {
                                ui.selectable_value(
                                    &mut self.group,
                                    g,
                                    format!("{g} ({} KV heads)", self.heads / g),
                                );
                            }
                        });
                }
            }
            KindChoice::Mla => {
                ui.add(
                    egui::Slider::new(&mut self.mla_rank, 64..=1024)
                        .step_by(64.0)
                        .text("latent rank"),
                );
                ui.add(
                    egui::Slider::new(&mut self.mla_rope, 0..=128)
                        .step_by(16.0)
                        .text("RoPE key dim"),
                );
            }
            _ => {}
        }
        ui.separator();
        ui.heading("Workload");
        ui.add(
            egui::Slider::new(&mut self.batch, 1..=256)
                .logarithmic(true)
                .text("batch"),
        );
        ui.add(
            egui::Slider::new(&mut self.context, 128..=131_072)
                .logarithmic(true)
                .text("context"),
        );
        ui.separator();
        ui.horizontal(|ui| {
            let busy = self.pending() > 0;
            if ui.add_enabled(!busy, egui::Button::new("Run")).clicked() {
                self.run();
            }
            if ui
                .add_enabled(!busy, egui::Button::new("Sweep contexts"))
                .clicked()
            {
                self.sweep();
            }
            if busy {
                ui.spinner();
                ui.label(format!("{} to measure", self.pending()));
            }
        });
        match (&self.device, &self.lab) {
            (Some(d), _) => {
                ui.label(format!("GPU: {}", d.adapter));
                ui.label(format!("probed copy bandwidth: {:.1} GB/s", d.copy_gbps));
                ui.label(format!("kernel times: {}", d.timing));
            }
            (None, Some(_)) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("probing the memory bandwidth…");
                });
            }
            (None, None) => {
                ui.label("Run starts the kernel lab: it probes the copy bandwidth, then times the real kernels.");
            }
        }
        if let Some(e) = &self.lab_error {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
    }

    fn numbers(&self, ui: &mut egui::Ui) {
        let shape = self.shape();
        let mha = shape.with_kind(AttentionKind::Mha);
        ui.heading(format!(
            "{} · {} heads / {} KV heads · batch {} · context {}",
            shape.kind.label(),
            shape.heads,
            shape.kv_heads(),
            shape.batch,
            shape.context
        ));
        let gbps = self.device.as_ref().map(|d| d.copy_gbps);
        let measured = self.measured_at(&shape);
        let measured_mha = self.measured_at(&mha);
        egui::Grid::new("explorer_numbers")
            .num_columns(3)
            .striped(true)
            .show(ui, |ui| {
                ui.label("");
                ui.label(RichText::new("this variant").strong());
                ui.label(RichText::new("MHA").strong());
                ui.end_row();
                ui.label("KV cache per token");
                ui.label(fmt_bytes(shape.kv_bytes_per_token()));
                ui.label(fmt_bytes(mha.kv_bytes_per_token()));
                ui.end_row();
                ui.label("KV cache in total");
                ui.label(fmt_bytes(shape.kv_bytes_total()));
                ui.label(fmt_bytes(mha.kv_bytes_total()));
                ui.end_row();
                ui.label("predicted attention per token");
                match gbps {
                    Some(g) => {
                        ui.label(fmt_seconds(shape.predicted_token_s(g)));
                        ui.label(fmt_seconds(mha.predicted_token_s(g)));
                    }
                    None => {
                        ui.label("(needs the bandwidth probe)");
                        ui.label("");
                    }
                }
                ui.end_row();
                ui.label("measured attention per token");
                ui.label(measured.map_or("(press Run)".into(), |m| fmt_seconds(m.token_s())));
                ui.label(measured_mha.map_or("-".into(), |m| fmt_seconds(m.token_s())));
                ui.end_row();
                ui.label("measured kernel, one layer");
                ui.label(measured.map_or("-".into(), |m| format!("{:.1} µs", m.result.median_us)));
                ui.label(
                    measured_mha.map_or("-".into(), |m| format!("{:.1} µs", m.result.median_us)),
                );
                ui.end_row();
                ui.label("achieved / probed bandwidth");
                ui.label(measured.map_or("-".into(), |m| {
                    format!("{:.0}%", m.result.pct_of_copy_bandwidth)
                }));
                ui.label(measured_mha.map_or("-".into(), |m| {
                    format!("{:.0}%", m.result.pct_of_copy_bandwidth)
                }));
                ui.end_row();
            });
        let bytes_ratio = mha.kv_bytes_total() as f64 / shape.kv_bytes_total() as f64;
        let speedup = match (measured, measured_mha) {
            (Some(m), Some(b)) => format!("{:.2}x measured", b.token_s() / m.token_s()),
            _ => "measured: press Run".into(),
        };
        ui.label(
            RichText::new(format!(
                "speedup over MHA: {bytes_ratio:.2}x predicted (KV bytes) · {speedup}"
            ))
            .size(18.0)
            .strong(),
        );
        ui.label(
            "predicted = KV cache bytes / probed copy bandwidth (the roofline); measured = the \
             real decode-attention kernel at this shape (one layer, median) x layers / batch.",
        );
    }

    /// Query heads wired to the KV heads they read.
    fn diagram(&self, ui: &mut egui::Ui) {
        let shape = self.shape();
        let heads = shape.heads.min(64);
        let kv = shape.kv_heads().min(heads);
        let width = ui.available_width().min(900.0);
        let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 120.0), egui::Sense::hover());
        let p = ui.painter_at(rect);
        let x_of = |i: usize, n: usize| rect.left() + (i as f32 + 0.5) * rect.width() / n as f32;
        let (yq, ykv) = (rect.top() + 20.0, rect.bottom() - 20.0);
        let palette = [
            Color32::from_rgb(86, 156, 214),
            Color32::from_rgb(220, 140, 60),
            Color32::from_rgb(120, 190, 100),
            Color32::from_rgb(200, 100, 160),
        ];
        for h in 0..heads {
            let k = h * kv / heads;
            let c = palette[k % palette.len()];
            p.line_segment(
                [egui::pos2(x_of(h, heads), yq), egui::pos2(x_of(k, kv), ykv)],
                egui::Stroke::new(1.0, c.gamma_multiply(0.6)),
            );
            p.circle_filled(egui::pos2(x_of(h, heads), yq), 5.0, c);
        }
        for k in 0..kv {
            let c = palette[k % palette.len()];
            let r =
                egui::Rect::from_center_size(egui::pos2(x_of(k, kv), ykv), egui::vec2(18.0, 14.0));
            p.rect_filled(r, 2.0, c);
        }
        let text = ui.visuals().text_color();
        p.text(
            rect.left_top(),
            egui::Align2::LEFT_TOP,
            format!("{} query heads", shape.heads),
            egui::FontId::proportional(12.0),
            text,
        );
        let kv_name = if matches!(shape.kind, AttentionKind::Mla { .. }) {
            "1 latent (K and V)".to_string()
        } else {
            format!(
                "{} KV heads, each read once for {} query heads",
                shape.kv_heads(),
                shape.group()
            )
        };
        p.text(
            rect.left_bottom(),
            egui::Align2::LEFT_BOTTOM,
            kv_name,
            egui::FontId::proportional(12.0),
            text,
        );
    }

    /// Time per token against context: predictions as lines, measurements as points.
    fn chart(&self, ui: &mut egui::Ui) {
        ui.label(RichText::new("attention time per token against context").strong());
        let gbps = self.device.as_ref().map(|d| d.copy_gbps);
        let variants = self.variants_at(self.context);
        let contexts: Vec<usize> = (7..=17).map(|e| 1usize << e).collect();
        let colours = [
            Color32::from_rgb(230, 80, 80),
            Color32::from_rgb(86, 156, 214),
            Color32::from_rgb(120, 190, 100),
            Color32::from_rgb(200, 100, 200),
        ];
        Plot::new("explorer_chart")
            .height(260.0)
            .legend(Legend::default())
            .x_axis_label("context, tokens (log scale)")
            .y_axis_label("µs per token (log scale)")
            .x_grid_spacer(uniform_grid_spacer(|_| [1.0, 2.0, 4.0]))
            .y_grid_spacer(uniform_grid_spacer(|_| [1.0, 1.0, 1.0]))
            .x_axis_formatter(|mark: GridMark, _| tokens_label(mark.value))
            // the contexts the lines span, before any are drawn
            .include_x(7.0)
            .include_x(17.0)
            .y_axis_formatter(|mark: GridMark, _| decade_label(mark.value))
            .show(ui, |plot| {
                for (v, colour) in variants.iter().zip(colours) {
                    let name = v.kind.label();
                    if let Some(g) = gbps {
                        let pts: Vec<[f64; 2]> = contexts
                            .iter()
                            .map(|&c| {
                                let s = AttentionShape { context: c, ..*v };
                                [(c as f64).log2(), (s.predicted_token_s(g) * 1e6).log10()]
                            })
                            .collect();
                        plot.line(Line::new(format!("{name} predicted"), pts).color(colour));
                    }
                    let measured: Vec<[f64; 2]> = self
                        .measured
                        .iter()
                        .filter(|m| {
                            AttentionShape {
                                context: m.shape.context,
                                ..*v
                            } == m.shape
                        })
                        .map(|m| [(m.shape.context as f64).log2(), (m.token_s() * 1e6).log10()])
                        .collect();
                    if !measured.is_empty() {
                        plot.points(
                            Points::new(format!("{name} measured"), measured)
                                .color(colour)
                                .shape(MarkerShape::Circle)
                                .radius(4.0),
                        );
                    }
                }
            });
        if gbps.is_none() {
            ui.label("Predictions appear once the bandwidth probe has run (press Run).");
        }
    }
}
