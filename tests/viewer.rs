//! The viewer, driven through egui_kittest (the accessibility tree, no window): the
//! explorer shows the cost model's numbers and the real kernels' measurements after "Run";
//! every tab renders without a model. And `headroom view --screenshot` under Xvfb renders
//! the real window through wgpu (lavapipe in CI) and writes a PNG.

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use headroom::metrics::attention::AttentionKind;
use headroom::metrics::units::{fmt_bytes, fmt_seconds};
use headroom::viewer::explorer::Explorer;
use headroom::viewer::kernel_lab::LabOptions;
use headroom::viewer::session::EngineState;
use headroom::viewer::{Tab, ViewerApp};
use std::time::{Duration, Instant};

fn small_lab() -> LabOptions {
    LabOptions {
        adapter: None,
        probe_bytes: Some(8 << 20),
        runs: Some(3),
    }
}

fn shown<S>(h: &Harness<'_, S>, text: &str) -> bool {
    h.query_all_by_label(text).next().is_some()
}

#[test]
fn explorer_shows_the_cost_model_and_the_measured_kernels() {
    let mut h = Harness::builder()
        .with_size([1400.0, 1000.0])
        .build_ui_state(|ui, e: &mut Explorer| e.ui(ui), Explorer::new(small_lab()));
    h.run_steps(2);
    // move two sliders the way assistive technology does
    h.get_by_role_and_label(Role::Slider, "context")
        .set_value_accesskit(320.0);
    h.get_by_role_and_label(Role::Slider, "batch")
        .set_value_accesskit(2.0);
    h.run_steps(3);
    assert_eq!((h.state().context, h.state().batch), (320, 2));
    let shape = h.state().shape();
    assert_eq!(shape.kind, AttentionKind::Gqa { group: 3 });
    let mha = shape.with_kind(AttentionKind::Mha);
    // the cost model's sizes, for this variant and for MHA
    for bytes in [
        shape.kv_bytes_per_token(),
        shape.kv_bytes_total(),
        mha.kv_bytes_per_token(),
        mha.kv_bytes_total(),
    ] {
        assert!(
            shown(&h, &fmt_bytes(bytes)),
            "{} not shown",
            fmt_bytes(bytes)
        );
    }

    h.get_by_label("Run").click();
    let t0 = Instant::now();
    while h.state().measured_at(&shape).is_none() || h.state().measured_at(&mha).is_none() {
        assert!(h.state().lab_error.is_none(), "{:?}", h.state().lab_error);
        assert!(t0.elapsed() < Duration::from_secs(300), "no measurement");
        std::thread::sleep(Duration::from_millis(50));
        h.step();
    }
    h.run_steps(3);
    let e = h.state();
    let gbps = e.device.as_ref().expect("probed").copy_gbps;
    assert!(gbps > 0.0);
    let m = e.measured_at(&shape).unwrap().clone();
    let base = e.measured_at(&mha).unwrap().clone();
    // the kernel read exactly the cost model's KV cache of one layer
    assert_eq!(
        m.result.kv_bytes * shape.layers as u64,
        shape.kv_bytes_total()
    );
    assert_eq!(
        base.result.kv_bytes * mha.layers as u64,
        mha.kv_bytes_total()
    );
    assert_eq!(
        (m.result.batch, m.result.context, m.result.kv_heads),
        (2, 320, 3)
    );
    // what is shown is what was measured and predicted
    for text in [
        fmt_seconds(shape.predicted_token_s(gbps)),
        fmt_seconds(mha.predicted_token_s(gbps)),
        fmt_seconds(m.token_s()),
        fmt_seconds(base.token_s()),
        format!("{:.1} µs", m.result.median_us),
        format!("{:.1} µs", base.result.median_us),
    ] {
        assert!(shown(&h, &text), "{text} not shown");
    }
    let speedup = format!(
        "speedup over MHA: {:.2}x predicted (KV bytes) · {:.2}x measured",
        mha.kv_bytes_total() as f64 / shape.kv_bytes_total() as f64,
        base.token_s() / m.token_s()
    );
    assert!(shown(&h, &speedup), "{speedup} not shown");
    // per token = one layer's kernel x layers / batch
    assert!((m.token_s() - m.result.median_us * 1e-6 * 30.0 / 2.0).abs() < 1e-12);
}

/// The viewer whose model failed to load, two frames in, on the generate tab.
fn app_without_model() -> Harness<'static, ViewerApp> {
    let mut explorer = Explorer::new(small_lab());
    explorer.context = 256;
    let app = ViewerApp::new(
        EngineState::Failed("no such file: /nowhere.gguf".into()),
        explorer,
        Tab::Generate,
        false,
    );
    let mut h = Harness::builder()
        .with_size([1400.0, 900.0])
        .build_ui_state(|ui, app: &mut ViewerApp| app.show(ui), app);
    h.run_steps(2);
    h
}

#[test]
fn every_tab_renders_without_a_model_and_says_why() {
    let mut h = app_without_model();
    assert!(shown(&h, "no model: no such file: /nowhere.gguf"));
    for tab in Tab::ALL {
        h.get_by_label(tab.name()).click();
        h.run_steps(2);
        assert_eq!(h.state().tab, tab);
    }
    assert!(h
        .query_all_by_label_contains("Generate something first")
        .next()
        .is_some());
}

#[test]
fn screenshot_under_xvfb_writes_the_rendered_window() {
    let have_xvfb = std::process::Command::new("xvfb-run")
        .arg("--help")
        .output()
        .is_ok();
    assert!(
        have_xvfb,
        "xvfb-run is missing: install it (apt-get install xvfb xauth); CI does"
    );
    let out = std::env::temp_dir().join(format!("headroom-view-{}.png", std::process::id()));
    let status = std::process::Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x800x24"])
        .arg(env!("CARGO_BIN_EXE_headroom"))
        .args([
            "view", "--tab", "explorer", "--size", "1000x700", "--after", "3",
        ])
        .arg("--screenshot")
        .arg(&out)
        // a missing model must not stop the window
        .env("HEADROOM_MODEL", "/nonexistent/model.gguf")
        .status()
        .expect("runs xvfb-run");
    assert!(status.success(), "headroom view exited with {status}");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1000, 700));
    // not one flat colour: text, panels and the diagram were drawn
    let px = &buf[..info.buffer_size()];
    let distinct: std::collections::HashSet<&[u8]> = px.chunks(4).collect();
    assert!(distinct.len() > 50, "only {} colours", distinct.len());
    let _ = std::fs::remove_file(&out);
}

/// On a real GPU (ignored by default): the explorer's Run at Llama-3-8B shapes, printed as
/// `bench attention` prints them, to set beside `headroom bench attention` in one run
/// (bench/2026-11-23-h100-viewer/).
#[test]
#[ignore = "needs a real GPU; run with --ignored --nocapture"]
fn explorer_measurements_on_this_gpu() {
    use headroom::metrics::presets::PRESETS;
    let mut h = Harness::builder()
        .with_size([1400.0, 1000.0])
        .build_ui_state(
            |ui, e: &mut Explorer| e.ui(ui),
            Explorer::new(LabOptions {
                adapter: None,
                probe_bytes: None,
                runs: None,
            }),
        );
    for (batch, context) in [(1, 4096), (16, 4096), (1, 16384), (16, 16384)] {
        let e = h.state_mut();
        e.apply_preset(2);
        e.batch = batch;
        e.context = context;
        h.run_steps(2);
        h.get_by_label("Run").click();
        let shape = h.state().shape();
        let mha = shape.with_kind(AttentionKind::Mha);
        let t0 = Instant::now();
        while h.state().measured_at(&shape).is_none() || h.state().measured_at(&mha).is_none() {
            assert!(h.state().lab_error.is_none(), "{:?}", h.state().lab_error);
            assert!(t0.elapsed() < Duration::from_secs(300));
            std::thread::sleep(Duration::from_millis(20));
            h.step();
        }
        for s in [mha, shape] {
            let m = h.state().measured_at(&s).unwrap();
            println!(
                "explorer {} {} kv_heads {} batch {batch} context {context}: {:.1} us (min {:.1}), {:.0}% of copy bandwidth",
                PRESETS[2].name,
                s.kind.label(),
                s.kv_heads(),
                m.result.median_us,
                m.result.min_us,
                m.result.pct_of_copy_bandwidth
            );
        }
    }
    let d = h.state().device.clone().unwrap();
    println!(
        "explorer device {} copy {:.1} GB/s, {}",
        d.adapter, d.copy_gbps, d.timing
    );
}

/// The telemetry's headline says how many speculative draft tokens were confirmed, once
/// there were any.
#[test]
fn telemetry_counts_confirmed_draft_tokens() {
    use headroom::viewer::telemetry::Telemetry;
    let mut t = Telemetry::default();
    t.metrics.draft_tokens_total = 40;
    t.metrics.draft_accepted_total = 30;
    let h = Harness::builder()
        .with_size([1400.0, 900.0])
        .build_ui_state(|ui, t: &mut Telemetry| t.ui(ui, None, None, Some(true)), t);
    assert!(h
        .query_all_by_label_contains("speculative drafts: 30 of 40 tokens confirmed (75%)")
        .next()
        .is_some());
    let h = Harness::builder()
        .with_size([1400.0, 900.0])
        .build_ui_state(
            |ui, t: &mut Telemetry| t.ui(ui, None, None, Some(true)),
            Telemetry::default(),
        );
    assert!(h
        .query_all_by_label_contains("speculative drafts")
        .next()
        .is_none());
}

/// A one-token decode step of 4 ms (3 ms on the GPU) ending at `at_s`, with `traffic`
/// and, for a profiled step, its `kernels`.
fn decode_step(
    index: u64,
    at_s: f64,
    traffic: headroom::metrics::Traffic,
    kernels: Vec<headroom::model::gpu_model::KernelTime>,
) -> headroom::metrics::StepRecord {
    headroom::metrics::StepRecord {
        index,
        at_s,
        seconds: 0.004,
        running: 1,
        sampled: 1,
        prefill_tokens: 0,
        rows: 1,
        traffic,
        gpu_s: Some(0.003),
        kernels,
    }
}

/// The telemetry tab of `t` under roofs of 4 000 GB/s and 60 000 GFLOP/s (the copy probe
/// saying 4 000 GB/s too), on an adapter with timestamps.
fn telemetry_harness(
    t: headroom::viewer::telemetry::Telemetry,
) -> Harness<'static, headroom::viewer::telemetry::Telemetry> {
    use headroom::viewer::telemetry::Telemetry;
    let roofs = headroom::metrics::roofline::Roofs {
        gbps: 4000.0,
        gflops: 60_000.0,
    };
    Harness::builder()
        .with_size([1400.0, 1400.0])
        .build_ui_state(
            move |ui, t: &mut Telemetry| t.ui(ui, Some(4000.0), Some(roofs), Some(true)),
            t,
        )
}

/// The telemetry tab places the latest profiled step's kernel families on the roofline:
/// under the probed roofs, each family's intensity, rate, what bounds it and how much of
/// that roof it reaches, in words beside the chart.
#[test]
fn telemetry_puts_a_profiled_step_on_the_roofline() {
    use headroom::metrics::Traffic;
    use headroom::model::gpu_model::KernelTime;
    use headroom::viewer::telemetry::Telemetry;
    let mut t = Telemetry::default();
    t.steps.push_back(decode_step(
        7,
        1.0,
        Traffic::default(),
        vec![
            // 2 GB and 2 GFLOP in 1 ms: 1 FLOP/byte at 2 000 GB/s, half the 4 000 GB/s roof
            KernelTime {
                family: "matmul",
                seconds: 1e-3,
                bytes: 2_000_000_000,
                flops: 2_000_000_000,
            },
            // 100 FLOPs a byte at 50 000 GFLOP/s, under the 60 000 GFLOP/s flat roof
            KernelTime {
                family: "gemm",
                seconds: 2e-3,
                bytes: 1_000_000_000,
                flops: 100_000_000_000,
            },
        ],
    ));
    let h = telemetry_harness(t);
    for text in [
        "roofline of one profiled step (log-log)",
        "step 7 (1 rows) on the roofline",
        "they meet at 15.0 FLOPs per byte",
    ] {
        assert!(
            h.query_all_by_label_contains(text).next().is_some(),
            "{text}"
        );
    }
    // the table: matmul at 1 FLOP/byte, 2 000 GFLOP/s, memory-bound at 50% of its roof;
    // gemm at 100, arithmetic-bound at 83%
    for cell in [
        "1.00",
        "2000.0",
        "memory",
        "50%",
        "100.00",
        "50000.0",
        "arithmetic",
        "83%",
    ] {
        assert!(
            h.query_all_by_label(cell).next().is_some(),
            "table cell {cell}"
        );
    }
}

/// Every text the harness's last frame painted (widgets, plot axes, legends), with its font.
fn painted<S>(h: &Harness<'_, S>) -> Vec<(String, egui::FontId)> {
    fn walk(shape: &egui::Shape, out: &mut Vec<(String, egui::FontId)>) {
        match shape {
            egui::Shape::Vec(shapes) => shapes.iter().for_each(|s| walk(s, out)),
            egui::Shape::Text(t) => {
                let job = &t.galley.job;
                for section in &job.sections {
                    let r = &section.byte_range;
                    let text = job.text[r.start.0..r.end.0].to_string();
                    out.push((text, section.format.font_id.clone()));
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for clipped in &h.output().shapes {
        walk(&clipped.shape, &mut out);
    }
    out
}

/// The characters of `texts` the fonts have no glyph for (egui draws those as a box).
fn missing_glyphs<S>(h: &Harness<'_, S>, texts: &[(String, egui::FontId)]) -> Vec<String> {
    let mut missing = Vec::new();
    for (text, font) in texts {
        for c in text.chars().filter(|c| !c.is_whitespace()) {
            if !h.ctx.fonts_mut(|f| f.has_glyph(font, c)) {
                missing.push(format!("{c:?} (U+{:04X}) in {text:?}", c as u32));
            }
        }
    }
    missing
}

/// Nothing the viewer paints falls back to the replacement glyph, on every tab and on the
/// telemetry charts with data on them (two bursts of steps with an idle stretch between,
/// a profiled step); every chart's axes say what they measure, the context axis in tokens
/// on a log scale.
#[test]
fn every_painted_character_has_a_glyph_and_every_axis_its_unit() {
    use headroom::metrics::Traffic;
    use headroom::model::gpu_model::KernelTime;
    use headroom::viewer::telemetry::Telemetry;

    let mut h = app_without_model();
    let mut seen = Vec::new();
    for tab in Tab::ALL {
        h.get_by_label(tab.name()).click();
        h.run_steps(2);
        let texts = painted(&h);
        assert!(!texts.is_empty(), "{} painted no text", tab.name());
        let missing = missing_glyphs(&h, &texts);
        assert!(missing.is_empty(), "{}: {missing:?}", tab.name());
        seen.extend(texts);
    }
    let has = |seen: &[(String, egui::FontId)], s: &str| seen.iter().any(|(t, _)| t == s);
    for axis in ["context, tokens (log scale)", "µs per token (log scale)"] {
        assert!(has(&seen, axis), "explorer axis {axis:?}");
    }
    // the context axis's ticks are token counts: 2^8 .. 2^17 as 256 .. 128K
    assert!(
        has(&seen, "1K") || has(&seen, "16K"),
        "context ticks in tokens"
    );

    // telemetry with two bursts of decode steps 3 s apart, the last one profiled
    let mut t = Telemetry::default();
    let traffic = Traffic {
        weight_bytes: 2 << 20,
        kv_bytes: 1 << 20,
        activation_bytes: 1 << 10,
    };
    let step = |index, at_s, kernels| decode_step(index, at_s, traffic, kernels);
    let mut index = 0;
    for burst in [0.0, 4.0] {
        for k in 0..12 {
            t.steps
                .push_back(step(index, burst + 0.1 + 0.1 * k as f64, Vec::new()));
            index += 1;
        }
    }
    let profile = vec![KernelTime {
        family: "matmul",
        seconds: 1e-3,
        bytes: 2_000_000_000,
        flops: 2_000_000_000,
    }];
    t.steps.push_back(step(index, 5.4, profile));
    let h = telemetry_harness(t);
    let texts = painted(&h);
    let missing = missing_glyphs(&h, &texts);
    assert!(missing.is_empty(), "telemetry: {missing:?}");
    for axis in [
        "time, s",
        "tokens/s",
        "GB/s",
        "MiB per token row",
        "GPU time, µs",
        "kernel family",
        "arithmetic intensity, FLOPs per byte (log)",
        "GFLOP/s (log)",
        "blocks",
    ] {
        assert!(has(&texts, axis), "telemetry axis {axis:?}");
    }
}
