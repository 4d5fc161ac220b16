//! The Generate tab: a prompt, sampling settings, and one or more sequences streamed from
//! the real model at once (continuous batching in the serving engine).

use super::session::{EngineState, StreamHandle};
use crate::engine::SamplingParams;
use crate::engine::{Backend, CompletionRequest};
use crate::tokenizer::{ChatMessage, Tokenizer};
use egui::RichText;

pub struct GenerateTab {
    pub prompt: String,
    pub chat: bool,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u32,
    /// sequences generated side by side from the same prompt (seeds seed, seed + 1, ...)
    pub sequences: usize,
    pub streams: Vec<StreamHandle>,
    pub error: Option<String>,
    /// repaint as each token arrives (off where drawing is costly: a software adapter,
    /// whose frames take the CPU the kernels run on; the app's frame timer still repaints)
    pub repaint_on_token: bool,
}

impl Default for GenerateTab {
    fn default() -> Self {
        GenerateTab {
            prompt: "Explain in two sentences why grouped-query attention makes decoding faster."
                .into(),
            chat: true,
            max_tokens: 128,
            temperature: 0.0,
            top_p: 1.0,
            seed: 1,
            sequences: 1,
            streams: Vec::new(),
            error: None,
            repaint_on_token: true,
        }
    }
}

/// Text in runs, the drafted-and-confirmed ones (speculative decoding by prompt lookup:
/// tokens the model confirmed several at a time) on a green background.
fn marked_text(ui: &egui::Ui, runs: &[(&str, bool)]) -> egui::text::LayoutJob {
    let mut job = egui::text::LayoutJob::default();
    job.wrap.max_width = ui.available_width();
    let font = egui::TextStyle::Monospace.resolve(ui.style());
    let color = ui.visuals().text_color();
    for &(text, drafted) in runs {
        let background = match drafted {
            true => egui::Color32::from_rgba_unmultiplied(60, 160, 90, 90),
            false => egui::Color32::TRANSPARENT,
        };
        let format = egui::TextFormat {
            font_id: font.clone(),
            color,
            background,
            ..Default::default()
        };
        job.append(text, 0.0, format);
    }
    job
}

impl GenerateTab {
    pub fn running(&self) -> bool {
        self.streams
            .iter()
            .any(|s| s.stream.lock().unwrap().running())
    }

    /// Submits the prompt `sequences` times; the first also asks for its attention map.
    pub fn start(&mut self, engine: &crate::engine::Engine, ctx: Option<egui::Context>) {
        self.error = None;
        let ctx = ctx.filter(|_| self.repaint_on_token);
        match self.requests(engine.tokenizer()) {
            Ok(reqs) => {
                self.streams = reqs
                    .into_iter()
                    .map(|req| StreamHandle::submit(engine, req, ctx.clone()))
                    .collect()
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// The requests [`start`](Self::start) submits: the prompt (through the chat template
    /// when asked and the model has one), once per sequence.
    pub fn requests(&self, tok: &Tokenizer) -> Result<Vec<CompletionRequest>, String> {
        let text = if self.chat && tok.chat_template().is_some() {
            tok.apply_chat(&[ChatMessage::new("user", &self.prompt)], true)
                .map_err(|e| format!("chat template: {e}"))?
        } else {
            self.prompt.clone()
        };
        let ids = tok
            .encode(&text, true)
            .map_err(|e| format!("tokenizing the prompt: {e}"))?;
        Ok((0..self.sequences)
            .map(|i| CompletionRequest {
                prompt_ids: ids.clone(),
                max_tokens: self.max_tokens,
                sampling: SamplingParams {
                    temperature: self.temperature,
                    top_p: self.top_p,
                    seed: self.seed.wrapping_add(i as u32),
                    ..SamplingParams::default()
                },
                stop_ids: tok.eos_ids().to_vec(),
                stop_strings: vec![],
                skip_special: true,
                probe_attention: i == 0,
                logprobs: None,
                prompt_logprobs: false,
                speculate: true,
            })
            .collect())
    }

    pub fn stop(&self) {
        for s in &self.streams {
            s.stop();
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, engine: &EngineState) {
        let running = self.running();
        egui::Panel::left("generate_controls")
            .resizable(false)
            .default_size(300.0)
            .show(ui, |ui| {
                let heading = ui.heading("Prompt");
                ui.add(
                    egui::TextEdit::multiline(&mut self.prompt)
                        .desired_rows(6)
                        .desired_width(f32::INFINITY),
                )
                .labelled_by(heading.id);
                ui.checkbox(&mut self.chat, "use the model's chat template");
                ui.add(
                    egui::Slider::new(&mut self.max_tokens, 1..=1024)
                        .logarithmic(true)
                        .text("max tokens"),
                );
                ui.add(egui::Slider::new(&mut self.temperature, 0.0..=2.0).text("temperature"));
                ui.add(egui::Slider::new(&mut self.top_p, 0.05..=1.0).text("top-p"));
                ui.add(egui::DragValue::new(&mut self.seed).prefix("seed "));
                ui.add(egui::Slider::new(&mut self.sequences, 1..=8).text("sequences at once"));
                ui.horizontal(|ui| {
                    let ready = engine.engine().is_some();
                    if ui
                        .add_enabled(ready && !running, egui::Button::new("Start"))
                        .clicked()
                    {
                        if let Some(e) = engine.engine() {
                            self.start(e, Some(ui.ctx().clone()));
                        }
                    }
                    if ui.add_enabled(running, egui::Button::new("Stop")).clicked() {
                        self.stop();
                    }
                });
                match engine {
                    EngineState::NoModel => {
                        ui.label(
                            "No model yet: choose a GGUF file or give a URL above the canvas.",
                        );
                    }
                    EngineState::Loading { since, status, .. } => {
                        ui.horizontal(|ui| {
                            ui.spinner();
                            ui.label(format!(
                                "loading the model… {:.0} s",
                                since.elapsed().as_secs_f64()
                            ));
                        });
                        let status = status.lock().unwrap().clone();
                        if !status.is_empty() {
                            ui.label(status);
                        }
                    }
                    EngineState::Failed(e) => {
                        ui.colored_label(egui::Color32::LIGHT_RED, format!("no model: {e}"));
                    }
                    EngineState::Ready(e) => {
                        ui.label(format!("model: {}", e.model_id()));
                    }
                }
                if let Some(e) = &self.error {
                    ui.colored_label(egui::Color32::LIGHT_RED, e);
                }
            });
        egui::CentralPanel::default().show(ui, |ui| {
            if self.streams.is_empty() {
                ui.label("Press Start to stream the model's answer. With several sequences they run batched: every weight is read once per step for all of them.");
                return;
            }
            egui::ScrollArea::vertical().show(ui, |ui| {
                for (i, s) in self.streams.iter().enumerate() {
                    let st = s.stream.lock().unwrap();
                    let status = match (&st.error, st.finish) {
                        (Some(e), _) => format!("failed: {e}"),
                        (None, Some(f)) => format!("{f:?}"),
                        (None, None) => "generating…".into(),
                    };
                    let rate = match (st.first_token_s, st.done_s) {
                        (Some(a), Some(b)) if b > a && st.ids.len() > 1 => {
                            format!(" · {:.1} tokens/s", (st.ids.len() - 1) as f64 / (b - a))
                        }
                        _ => String::new(),
                    };
                    let ttft = st
                        .first_token_s
                        .map_or(String::new(), |t| format!(" · first token {:.0} ms", t * 1e3));
                    let drafted = match st.drafted_tokens {
                        0 => String::new(),
                        n => format!(" · {n} drafted and confirmed (highlighted)"),
                    };
                    ui.label(
                        RichText::new(format!(
                            "sequence {} · {} tokens{ttft}{rate}{drafted} · {status}",
                            i + 1,
                            st.ids.len()
                        ))
                        .strong(),
                    );
                    ui.label(marked_text(ui, &st.runs()));
                    ui.separator();
                }
            });
        });
    }
}
