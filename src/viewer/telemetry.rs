//! Live telemetry of the running engine, from its step records: tokens/s, memory traffic
//! (the kernels' declared bytes over their GPU time from timestamps) against the probed
//! copy bandwidth, bytes per token split into weights / KV cache / activations, GPU time
//! per kernel family, the kernel families on the roofline, and the KV pool.

use super::axis::decade_label;
use crate::engine::Engine;
use crate::engine::MetricsSnapshot;
use crate::metrics::roofline::{roofline_points, Roofs};
use crate::metrics::units::fmt_bytes;
use crate::metrics::{bin_steps, contiguous_runs, Bin, StepRecord};
use egui::{Color32, RichText};
use egui_plot::{
    uniform_grid_spacer, Bar, BarChart, GridMark, HLine, Legend, Line, MarkerShape, Plot, Points,
};
use std::collections::VecDeque;

/// Seconds of history kept and plotted.
pub const HISTORY_S: f64 = 180.0;
pub struct Telemetry {
    next_step: u64,
    pub steps: VecDeque<StepRecord>,
    pub metrics: MetricsSnapshot,
    /// (seconds since the viewer started, blocks used, blocks cached)
    pool_history: VecDeque<(f64, usize, usize)>,
    started: web_time::Instant,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            next_step: 0,
            steps: VecDeque::new(),
            metrics: MetricsSnapshot::default(),
            pool_history: VecDeque::new(),
            started: web_time::Instant::now(),
        }
    }
}

impl Telemetry {
    /// Takes the engine's new steps and metrics (cheap: call every frame).
    pub fn update(&mut self, engine: &Engine) {
        use crate::engine::Backend;
        for s in engine.step_records_since(self.next_step) {
            self.next_step = s.index + 1;
            self.steps.push_back(s);
        }
        let newest = self.steps.back().map_or(0.0, |s| s.at_s);
        while self
            .steps
            .front()
            .is_some_and(|s| s.at_s < newest - HISTORY_S)
        {
            self.steps.pop_front();
        }
        self.metrics = engine.metrics();
        let t = self.started.elapsed().as_secs_f64();
        if self.pool_history.back().is_none_or(|p| t - p.0 >= 0.25) {
            self.pool_history.push_back((
                t,
                self.metrics.kv_blocks_used,
                self.metrics.kv_blocks_cached,
            ));
        }
        while self
            .pool_history
            .front()
            .is_some_and(|p| p.0 < t - HISTORY_S)
        {
            self.pool_history.pop_front();
        }
    }

    /// The latest step that timed its kernels one by one.
    pub fn latest_kernel_profile(&self) -> Option<&StepRecord> {
        self.steps.iter().rev().find(|s| !s.kernels.is_empty())
    }

    pub fn ui(
        &self,
        ui: &mut egui::Ui,
        peak_gbps: Option<f64>,
        roofs: Option<Roofs>,
        timestamps: Option<bool>,
    ) {
        let steps: Vec<StepRecord> = self.steps.iter().cloned().collect();
        let bins = bin_steps(&steps);
        // the newest bin is still filling: leave it out of rates
        let done = &bins[..bins.len().saturating_sub(1)];
        let m = &self.metrics;
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(format!("{:.1} tokens/s", m.decode_tokens_per_s)).size(22.0).strong());
            ui.label(format!(
                "· running {} · waiting {} · steps {} · generated {} · prompt tokens {} ({} from the prefix cache, {:.0}% hit rate)",
                m.running,
                m.waiting,
                m.steps_total,
                m.generated_tokens_total,
                m.prompt_tokens_total,
                m.prompt_tokens_cached,
                100.0 * m.prefix_hit_rate()
            ));
            if m.draft_tokens_total > 0 {
                ui.label(format!(
                    "· speculative drafts: {} of {} tokens confirmed ({:.0}%)",
                    m.draft_accepted_total,
                    m.draft_tokens_total,
                    100.0 * m.draft_accepted_total as f64 / m.draft_tokens_total as f64
                ));
            }
        });
        match timestamps {
            Some(false) => {
                ui.colored_label(
                    Color32::YELLOW,
                    "This adapter has no timestamp queries: GPU time, memory traffic and per-kernel times cannot be measured, so none are shown.",
                );
            }
            None => {
                ui.label("waiting for the engine…");
            }
            Some(true) => {}
        }
        let half = (ui.available_width() - 12.0) / 2.0;
        let height = 200.0;
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.set_width(half);
                ui.label(RichText::new("tokens/s (per 0.5 s)").strong());
                Plot::new("tokens_per_s")
                    .height(height)
                    .legend(Legend::default())
                    .x_axis_label("time, s")
                    .y_axis_label("tokens/s")
                    .show(ui, |p| {
                        binned_lines(p, done, "decode", Color32::from_rgb(86, 156, 214), |b| {
                            Some(b.decode_tokens_per_s())
                        });
                        binned_lines(p, done, "prefill", Color32::from_rgb(220, 140, 60), |b| {
                            Some(b.prefill_tokens_per_s())
                        });
                    });
            });
            ui.vertical(|ui| {
                ui.set_width(half);
                let title = match peak_gbps {
                    Some(g) => format!("memory traffic, GB/s (probed copy peak {g:.1})"),
                    None => "memory traffic, GB/s (probing the peak…)".into(),
                };
                ui.label(RichText::new(title).strong());
                Plot::new("traffic")
                    .height(height)
                    .legend(Legend::default())
                    .x_axis_label("time, s")
                    .y_axis_label("GB/s")
                    .show(ui, |p| {
                        binned_lines(
                            p,
                            done,
                            "declared bytes / GPU time",
                            Color32::from_rgb(120, 190, 100),
                            Bin::gbps,
                        );
                        if let Some(g) = peak_gbps {
                            p.hline(HLine::new("probed copy bandwidth", g).color(Color32::GRAY));
                        }
                    });
            });
        });
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.set_width(half);
                ui.label(RichText::new("bytes per token row, by what they are").strong());
                // MiB per token row of each bin's bytes of one kind
                fn per(b: &Bin, bytes: u64) -> Option<f64> {
                    (b.rows > 0).then(|| bytes as f64 / b.rows as f64 / (1 << 20) as f64)
                }
                Plot::new("bytes_per_token")
                    .height(height)
                    .legend(Legend::default())
                    .x_axis_label("time, s")
                    .y_axis_label("MiB per token row")
                    .show(ui, |p| {
                        binned_lines(p, done, "weights", Color32::from_rgb(86, 156, 214), |b| {
                            per(b, b.traffic.weight_bytes)
                        });
                        binned_lines(p, done, "KV cache", Color32::from_rgb(230, 80, 80), |b| {
                            per(b, b.traffic.kv_bytes)
                        });
                        binned_lines(
                            p,
                            done,
                            "activations",
                            Color32::from_rgb(200, 200, 90),
                            |b| per(b, b.traffic.activation_bytes),
                        );
                    });
            });
            ui.vertical(|ui| {
                ui.set_width(half);
                self.kernel_chart(ui, height, timestamps);
            });
        });
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.set_width(half);
                self.roofline(ui, height + 60.0, roofs, timestamps);
            });
            ui.vertical(|ui| {
                ui.set_width(half);
                self.roofline_table(ui, roofs);
            });
        });
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.set_width(half);
                ui.label(RichText::new(format!(
                    "KV cache blocks: {} used · {} cached (reusable prefixes) · {} free of {} ({} tokens each, {} per token)",
                    m.kv_blocks_used,
                    m.kv_blocks_cached,
                    m.kv_blocks_total.saturating_sub(m.kv_blocks_used + m.kv_blocks_cached),
                    m.kv_blocks_total,
                    m.kv_block_size,
                    fmt_bytes(m.kv_bytes_per_token)
                )).strong());
                let used: Vec<[f64; 2]> = self.pool_history.iter().map(|p| [p.0, p.1 as f64]).collect();
                let cached: Vec<[f64; 2]> = self.pool_history.iter().map(|p| [p.0, p.2 as f64]).collect();
                Plot::new("kv_blocks")
                    .height(140.0)
                    .legend(Legend::default())
                    .x_axis_label("time, s")
                    .y_axis_label("blocks")
                    .show(ui, |p| {
                        p.line(Line::new("used", used));
                        p.line(Line::new("cached", cached));
                        p.hline(HLine::new("capacity", m.kv_blocks_total as f64).color(Color32::GRAY));
                    });
            });
            ui.vertical(|ui| {
                ui.set_width(half);
                if let Some(b) = done.last() {
                    let total = b.traffic.bytes();
                    ui.label(RichText::new("last 0.5 s").strong());
                    ui.label(format!("{} steps, {} token rows, {} tokens sampled", b.steps, b.rows, b.sampled));
                    ui.label(format!(
                        "declared traffic {} = weights {} + KV {} + activations {}",
                        fmt_bytes(total),
                        fmt_bytes(b.traffic.weight_bytes),
                        fmt_bytes(b.traffic.kv_bytes),
                        fmt_bytes(b.traffic.activation_bytes)
                    ));
                    if let (Some(g), Some(peak)) = (b.gbps(), peak_gbps) {
                        ui.label(format!(
                            "GPU busy {:.0} ms: {g:.1} GB/s = {:.0}% of the probed copy bandwidth",
                            b.gpu_s * 1e3,
                            100.0 * g / peak
                        ));
                    }
                }
            });
        });
    }

    fn kernel_chart(&self, ui: &mut egui::Ui, height: f32, timestamps: Option<bool>) {
        ui.label(RichText::new("GPU time per kernel family (one profiled step)").strong());
        let Some(step) = self.latest_kernel_profile() else {
            ui.label(match timestamps {
                Some(false) => {
                    "no timestamp queries on this adapter: per-kernel times are not available"
                }
                _ => "waiting for a profiled step (every 8th step times each kernel)",
            });
            return;
        };
        let bars: Vec<Bar> = step
            .kernels
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Bar::new(i as f64, k.seconds * 1e6)
                    .name(k.family)
                    .width(0.7)
            })
            .collect();
        let total: f64 = step.kernels.iter().map(|k| k.seconds).sum();
        let names: Vec<&'static str> = step.kernels.iter().map(|k| k.family).collect();
        Plot::new("kernels")
            .height(height - 40.0)
            .y_axis_label("GPU time, µs")
            .x_axis_label("kernel family")
            .x_grid_spacer(uniform_grid_spacer(|_| [1.0, 1.0, 1.0]))
            .x_axis_formatter(move |mark: GridMark, _| family_at(&names, mark.value))
            .show_x(false)
            .show(ui, |p| {
                p.bar_chart(BarChart::new("µs", bars).color(Color32::from_rgb(150, 120, 220)))
            });
        let parts: Vec<String> = step
            .kernels
            .iter()
            .map(|k| {
                format!(
                    "{} {:.0}% ({:.1} GB/s)",
                    k.family,
                    100.0 * k.seconds / total.max(1e-12),
                    k.bytes as f64 / k.seconds.max(1e-12) / 1e9
                )
            })
            .collect();
        ui.label(format!(
            "step {} ({} rows): {}",
            step.index,
            step.rows,
            parts.join(" · ")
        ));
    }
}

impl Telemetry {
    /// The latest profiled step's kernel families on the roofline: log-log axes of FLOPs
    /// per byte against GFLOP/s, under the copy-bandwidth roof and the FMA roof.
    fn roofline(&self, ui: &mut egui::Ui, height: f32, roofs: Option<Roofs>, ts: Option<bool>) {
        ui.label(RichText::new("roofline of one profiled step (log-log)").strong());
        let (Some(step), Some(roofs)) = (self.latest_kernel_profile(), roofs) else {
            ui.label(match (ts, roofs) {
                (Some(false), _) => {
                    "no timestamp queries on this adapter: kernels cannot be placed"
                }
                (_, None) => "probing the roofs (copy bandwidth, FMA rate)…",
                _ => "waiting for a profiled step (every 8th step times each kernel)",
            });
            return;
        };
        let points = roofline_points(&step.kernels);
        // the axes span the points and the ridge, a decade beyond on each side
        let xs = points.iter().map(|p| p.intensity).chain([roofs.ridge()]);
        let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(x), h.max(x)));
        let (x0, x1) = ((lo / 10.0).log10().floor(), (hi * 10.0).log10().ceil());
        let memory_roof: Vec<[f64; 2]> = [x0, roofs.ridge().log10()]
            .iter()
            .map(|&x| [x, roofs.attainable(10f64.powf(x)).log10()])
            .collect();
        let flat_roof = vec![
            [roofs.ridge().log10(), roofs.gflops.log10()],
            [x1, roofs.gflops.log10()],
        ];
        let decades = uniform_grid_spacer(|_| [1.0, 1.0, 1.0]);
        let decades_y = uniform_grid_spacer(|_| [1.0, 1.0, 1.0]);
        Plot::new("roofline")
            .height(height)
            .legend(Legend::default())
            .x_axis_label("arithmetic intensity, FLOPs per byte (log)")
            .y_axis_label("GFLOP/s (log)")
            .x_grid_spacer(decades)
            .y_grid_spacer(decades_y)
            .x_axis_formatter(|m: GridMark, _| decade_label(m.value))
            .y_axis_formatter(|m: GridMark, _| decade_label(m.value))
            .show(ui, |p| {
                p.line(
                    Line::new(
                        format!("copy bandwidth {:.0} GB/s", roofs.gbps),
                        memory_roof,
                    )
                    .color(Color32::GRAY),
                );
                p.line(
                    Line::new(format!("FMA rate {:.0} GFLOP/s", roofs.gflops), flat_roof)
                        .color(Color32::LIGHT_GRAY),
                );
                for (i, k) in points.iter().enumerate() {
                    p.points(
                        Points::new(k.family, vec![[k.intensity.log10(), k.gflops.log10()]])
                            .radius(5.0)
                            .shape(MarkerShape::Circle)
                            .color(family_color(i)),
                    );
                }
            });
    }

    /// Each family's place on the roofline in words: what bounds it and how much of that
    /// roof it reaches.
    fn roofline_table(&self, ui: &mut egui::Ui, roofs: Option<Roofs>) {
        let (Some(step), Some(roofs)) = (self.latest_kernel_profile(), roofs) else {
            return;
        };
        ui.label(
            RichText::new(format!(
                "step {} ({} rows) on the roofline",
                step.index, step.rows
            ))
            .strong(),
        );
        ui.label(format!(
            "roofs: copy {:.0} GB/s, FMA {:.0} GFLOP/s; they meet at {:.1} FLOPs per byte",
            roofs.gbps,
            roofs.gflops,
            roofs.ridge()
        ));
        egui::Grid::new("roofline_table")
            .striped(true)
            .show(ui, |ui| {
                for h in [
                    "family",
                    "time",
                    "FLOPs/byte",
                    "GFLOP/s",
                    "GB/s",
                    "bound by",
                    "of roof",
                ] {
                    ui.label(RichText::new(h).strong());
                }
                ui.end_row();
                for k in roofline_points(&step.kernels) {
                    ui.label(k.family);
                    ui.label(format!("{:.0}%", 100.0 * k.share));
                    ui.label(format!("{:.2}", k.intensity));
                    ui.label(format!("{:.1}", k.gflops));
                    ui.label(format!("{:.1}", k.gbps));
                    ui.label(match k.intensity < roofs.ridge() {
                        true => "memory",
                        false => "arithmetic",
                    });
                    ui.label(format!("{:.0}%", 100.0 * k.of_roof(&roofs)));
                    ui.end_row();
                }
            });
    }
}

/// The family at bar position `x` of the kernel chart (blank between bars).
fn family_at(names: &[&str], x: f64) -> String {
    let i = x.round();
    match (x - i).abs() < 1e-6 && i >= 0.0 {
        true => names
            .get(i as usize)
            .map_or(String::new(), |n| n.to_string()),
        false => String::new(),
    }
}

/// `value` of each bin, drawn as one line per run of consecutive bins that have one
/// (`contiguous_runs`), all named `name` (the legend shows them as one): an idle stretch
/// is a gap, not a line through it.
fn binned_lines(
    p: &mut egui_plot::PlotUi<'_>,
    bins: &[Bin],
    name: &str,
    color: Color32,
    value: impl Fn(&Bin) -> Option<f64>,
) {
    for run in contiguous_runs(bins) {
        // a bin without a value (no timed steps) breaks the line as a missing bin does
        for segment in bins[run].split(|b| value(b).is_none()) {
            let points: Vec<[f64; 2]> = segment
                .iter()
                .filter_map(|b| value(b).map(|v| [b.at_s, v]))
                .collect();
            if !points.is_empty() {
                p.line(Line::new(name, points).color(color));
            }
        }
    }
}

/// A color per family, told apart on a dark background.
fn family_color(i: usize) -> Color32 {
    const COLORS: [Color32; 8] = [
        Color32::from_rgb(86, 156, 214),
        Color32::from_rgb(220, 140, 60),
        Color32::from_rgb(120, 190, 100),
        Color32::from_rgb(230, 80, 80),
        Color32::from_rgb(150, 120, 220),
        Color32::from_rgb(200, 200, 90),
        Color32::from_rgb(90, 200, 200),
        Color32::from_rgb(220, 120, 180),
    ];
    COLORS[i % COLORS.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Traffic;

    #[test]
    fn axis_labels_name_families_and_decades() {
        let names = ["embed", "matmul", "attention"];
        assert_eq!(family_at(&names, 1.0), "matmul");
        assert_eq!(family_at(&names, 0.5), "");
        assert_eq!(family_at(&names, 3.0), "");
        assert_eq!(family_at(&names, -1.0), "");
        let labels: Vec<String> = [-2.0, -1.0, 0.0, 1.0, 3.0, 4.0, 6.0]
            .iter()
            .map(|&x| decade_label(x))
            .collect();
        assert_eq!(labels, ["0.01", "0.1", "1", "10", "1k", "10k", "1M"]);
    }

    fn step(at_s: f64, sampled: usize, gpu_s: Option<f64>) -> StepRecord {
        StepRecord {
            index: 0,
            at_s,
            seconds: 0.01,
            running: sampled,
            sampled,
            prefill_tokens: 0,
            rows: sampled,
            traffic: Traffic {
                weight_bytes: 1000,
                kv_bytes: 200,
                activation_bytes: 50,
            },
            gpu_s,
            kernels: vec![],
        }
    }

    #[test]
    fn bins_sum_steps_and_rate_only_timed_bytes() {
        let steps = [
            step(0.1, 2, Some(1e-6)),
            step(0.4, 2, None),
            step(0.6, 4, Some(2e-6)),
        ];
        let bins = bin_steps(&steps);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[0].sampled, 4);
        assert_eq!(bins[0].decode_tokens_per_s(), 8.0);
        assert_eq!(bins[0].traffic.weight_bytes, 2000);
        // only the timed step's 1250 bytes over its 1 µs
        assert!((bins[0].gbps().unwrap() - 1.25).abs() < 1e-9);
        assert_eq!(bins[1].at_s, 0.5);
        assert_eq!(bin_steps(&[step(0.0, 1, None)])[0].gbps(), None);
    }
}
