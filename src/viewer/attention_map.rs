//! The attention map: how the last token of a text attends over it in the real model, for
//! a chosen layer, the query heads of one KV group side by side. The weights come from the
//! engine (`Event::Attention`): the step's own queries against the keys in the KV cache.

use super::session::{EngineState, StreamHandle};
use crate::engine::SamplingParams;
use crate::engine::{Backend, CompletionRequest};
use crate::model::gpu_model::AttentionProbe;
use egui::{Color32, RichText};
use std::sync::Arc;

#[derive(Default)]
pub struct AttentionTab {
    pub layer: usize,
    pub kv_group: usize,
    /// a probe requested from this tab (of the last generation's full text)
    pub pending: Option<StreamHandle>,
    /// the map shown, and the text of each position
    pub shown: Option<(Arc<AttentionProbe>, Vec<String>)>,
}

impl AttentionTab {
    /// Shows `probe` of the text `ids`.
    pub fn show_probe(&mut self, probe: Arc<AttentionProbe>, ids: &[u32], engine: &EngineState) {
        let pieces = match engine.engine() {
            Some(e) => ids
                .iter()
                .take(probe.positions)
                .map(|&i| e.tokenizer().decode(&[i]))
                .collect(),
            None => Vec::new(),
        };
        self.layer = self.layer.min(probe.layers - 1);
        self.kv_group = self.kv_group.min(probe.kv_heads - 1);
        self.shown = Some((probe, pieces));
    }

    /// Asks the engine for the map of `ids`' last token (mostly prefix-cache hits).
    pub fn probe_text(&mut self, ids: Vec<u32>, engine: &EngineState, ctx: Option<egui::Context>) {
        let Some(e) = engine.engine() else { return };
        let req = CompletionRequest {
            prompt_ids: ids,
            max_tokens: 1,
            sampling: SamplingParams::default(),
            stop_ids: vec![],
            stop_strings: vec![],
            skip_special: true,
            probe_attention: true,
            logprobs: None,
            prompt_logprobs: false,
            speculate: true,
        };
        self.pending = Some(StreamHandle::submit(e, req, ctx));
    }

    /// Picks up a finished probe request.
    pub fn poll(&mut self, engine: &EngineState) {
        let Some(h) = &self.pending else { return };
        let (probe, ids) = {
            let st = h.stream.lock().unwrap();
            (st.attention.clone(), st.prompt_ids.clone())
        };
        if let Some(p) = probe {
            self.pending = None;
            self.show_probe(p, &ids, engine);
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &EngineState, last_text: Option<Vec<u32>>) {
        self.poll(engine);
        ui.horizontal(|ui| {
            let can = engine.engine().is_some() && self.pending.is_none();
            if let Some(ids) = last_text {
                if ui
                    .add_enabled(
                        can,
                        egui::Button::new("Map the last generation's final token"),
                    )
                    .clicked()
                {
                    self.probe_text(ids, engine, Some(ui.ctx().clone()));
                }
            }
            if self.pending.is_some() {
                ui.spinner();
                ui.ctx()
                    .request_repaint_after(std::time::Duration::from_millis(50));
            }
        });
        let Some((probe, pieces)) = &self.shown else {
            ui.label("Generate something first: the first sequence's prompt is mapped as it starts (its last token over the prompt).");
            return;
        };
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut self.layer, 0..=probe.layers - 1).text("layer"));
            ui.add(egui::Slider::new(&mut self.kv_group, 0..=probe.kv_heads - 1).text("KV head"));
        });
        let g = probe.group();
        ui.label(format!(
            "{} positions · query heads {}..{} share KV head {} (group of {g}) · brighter = more weight (each row scaled to its own maximum)",
            probe.positions,
            self.kv_group * g,
            (self.kv_group + 1) * g - 1,
            self.kv_group
        ));
        let heads: Vec<usize> = (self.kv_group * g..(self.kv_group + 1) * g).collect();
        let n = probe.positions;
        let width = ui.available_width();
        let row_h = 28.0;
        let (rect, response) = ui.allocate_exact_size(
            egui::vec2(width, row_h * heads.len() as f32),
            egui::Sense::hover(),
        );
        let painter = ui.painter_at(rect);
        let cell_w = rect.width() / n as f32;
        for (r, &h) in heads.iter().enumerate() {
            let w = probe.head(self.layer, h);
            let max = w.iter().copied().fold(1e-12f32, f32::max);
            for (p, &v) in w.iter().enumerate() {
                let t = (v / max).clamp(0.0, 1.0);
                let c = Color32::from_rgb(
                    (255.0 * t) as u8,
                    (180.0 * t.powf(0.5)) as u8,
                    (60.0 + 120.0 * (1.0 - t)) as u8,
                );
                let x = rect.left() + p as f32 * cell_w;
                let y = rect.top() + r as f32 * row_h;
                painter.rect_filled(
                    egui::Rect::from_min_size(
                        egui::pos2(x, y + 2.0),
                        egui::vec2(cell_w.max(1.0), row_h - 4.0),
                    ),
                    0.0,
                    c,
                );
            }
        }
        if let Some(pos) = response.hover_pos() {
            let p = (((pos.x - rect.left()) / cell_w) as usize).min(n - 1);
            let r = (((pos.y - rect.top()) / row_h) as usize).min(heads.len() - 1);
            let w = probe.head(self.layer, heads[r])[p];
            let piece = pieces.get(p).map_or("", String::as_str);
            response.on_hover_text(format!(
                "head {} · position {p} {piece:?} · weight {w:.4}",
                heads[r]
            ));
        }
        ui.separator();
        ui.columns(heads.len(), |cols| {
            for (col, &h) in cols.iter_mut().zip(&heads) {
                col.label(RichText::new(format!("head {h}: most attended")).strong());
                let w = probe.head(self.layer, h);
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| w[b].total_cmp(&w[a]));
                for &p in order.iter().take(8) {
                    let piece = pieces.get(p).map_or(String::new(), |s| format!("{s:?}"));
                    col.label(format!("{:>5.1}%  pos {p} {piece}", 100.0 * w[p]));
                }
            }
        });
    }
}
