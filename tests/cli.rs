//! The command line as a user runs it: real process, real model (skipped without it,
//! except in CI), bad input answered with an error and a non-zero exit, never a panic.

mod common;

use common::default_model;
use std::process::{Command, Output, Stdio};

fn headroom(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_headroom"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run headroom");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn generate_json_reports_ids_text_and_speeds() {
    let Some(_) = default_model() else { return };
    let out = headroom(
        &[
            "generate",
            "--prompt",
            "The capital of France is",
            "--max-tokens",
            "3",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert!(!v["prompt_ids"].as_array().unwrap().is_empty());
    let generated = v["generated_ids"].as_array().unwrap();
    assert!(!generated.is_empty() && generated.len() <= 3);
    assert!(v["text"].as_str().unwrap().contains("Paris"), "{v}");
    for key in ["prefill_tokens_per_s", "ttft_ms"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    assert!(!v["adapter"].as_str().unwrap().is_empty());
    // stderr holds what headroom says, not a Vulkan layer's complaint about the display
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}

/// Decode chains submitted before the one before is read (as on GPUs) give the same ids
/// as chains read one at a time (as on CPU adapters), greedy and seeded-sampled alike.
#[test]
fn pipelined_decode_chains_generate_the_same_tokens() {
    let Some(_) = default_model() else { return };
    let ids = |pipelined: &str, temperature: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
            .args([
                "generate",
                "--prompt",
                "Once upon a time",
                "--max-tokens",
                "12",
                "--temperature",
                temperature,
                "--seed",
                "7",
                "--json",
            ])
            .env("HEADROOM_PIPELINED_CHAINS", pipelined)
            .output()
            .expect("run headroom");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["generated_ids"].clone()
    };
    for temperature in ["0", "0.9"] {
        let (read_first, pipelined) = (ids("0", temperature), ids("1", temperature));
        assert_eq!(read_first.as_array().unwrap().len(), 12, "{read_first}");
        assert_eq!(read_first, pipelined, "temperature {temperature}");
    }
}

#[test]
fn chat_answers_then_exits_at_end_of_input() {
    let Some(_) = default_model() else { return };
    let out = headroom(
        &["chat", "--max-tokens", "3"],
        Some("What is the capital of France?\n/exit\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("[prefill") && stdout.contains("decode"),
        "{stdout}"
    );
}

#[test]
fn inspect_prints_config_and_kv_bytes_per_token() {
    let Some(p) = default_model() else { return };
    let out = headroom(&["inspect", p.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // 2 x 30 layers x 3 KV heads x 64 x 2 bytes
    assert!(
        stdout.contains("KV cache per token: 23040 bytes in f16"),
        "{stdout}"
    );
    assert!(
        stdout.contains("GQA") && stdout.contains("Q4_1") && stdout.contains("blk.0.attn_q.weight"),
        "{stdout}"
    );
}

#[test]
fn bad_input_is_an_error_naming_the_problem() {
    let dir = std::env::temp_dir().join(format!("headroom-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.gguf");
    let out = headroom(
        &[
            "generate",
            "--model",
            missing.to_str().unwrap(),
            "--prompt",
            "x",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("missing.gguf") && text(&out.stderr).contains("no such file"),
        "{}",
        text(&out.stderr)
    );

    if let Some(p) = default_model() {
        // the real model cut short: the header parses, the tensor data is missing
        let bytes = std::fs::read(&p).unwrap();
        let cut = dir.join("truncated.gguf");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let out = headroom(
            &[
                "generate",
                "--model",
                cut.to_str().unwrap(),
                "--prompt",
                "x",
            ],
            None,
        );
        let err = text(&out.stderr);
        assert!(
            !out.status.success() && err.contains("truncated.gguf") && !err.contains("panicked"),
            "{err}"
        );

        let out = headroom(&["generate", "--prompt", "x", "--top-p", "0"], None);
        let err = text(&out.stderr);
        assert!(
            !out.status.success() && err.contains("top-p") && !err.contains("panicked"),
            "{err}"
        );

        let long = "word ".repeat(200);
        let out = headroom(&["generate", "--prompt", &long, "--context", "64"], None);
        let err = text(&out.stderr);
        assert!(
            !out.status.success() && err.contains("context") && !err.contains("panicked"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `serve` on an address other than loopback needs an API key (or says it was told not
/// to), and an empty key is refused: both before any model loads.
#[test]
fn serve_refuses_an_open_network_address_without_a_key() {
    let out = headroom(&["serve", "--host", "0.0.0.0", "--port", "1"], None);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("refusing to serve on 0.0.0.0 without an API key")
            && err.contains("--api-key"),
        "{err}"
    );
    let out = headroom(&["serve", "--host", "0.0.0.0", "--api-key", " "], None);
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("API key is empty"),
        "{err}"
    );
}

/// A negative or non-finite time limit for `serve` is an error naming the flag, before
/// any model loads.
#[test]
fn serve_refuses_time_limits_that_are_not_seconds() {
    for (flag, value) in [
        ("--request-timeout", "-1"),
        ("--header-timeout", "inf"),
        ("--shutdown-grace", "NaN"),
    ] {
        let arg = format!("{flag}={value}");
        let out = headroom(&["serve", "--port", "1", &arg], None);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{flag} {value}: {err}");
        assert!(
            err.contains(&format!("{flag} {value}")) && err.contains("seconds"),
            "{flag} {value}: {err}"
        );
    }
}

/// A misspelt `HEADROOM_GEMM` is an error naming the values it takes, not silently the
/// default choice.
#[test]
fn an_unknown_gemm_kernel_in_the_environment_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args([
            "bench",
            "matmul",
            "--synthetic",
            "tiny",
            "--tokens",
            "16",
            "--runs",
            "1",
        ])
        .env("HEADROOM_GEMM", "fast")
        .output()
        .expect("run headroom");
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("HEADROOM_GEMM=\"fast\"") && err.contains("coop, tiled or blocked"),
        "{err}"
    );
}
