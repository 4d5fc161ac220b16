//! The browser build, end to end: `web/build.sh` builds the site, a static server on
//! 127.0.0.1 serves it with the default model, headless Chromium (WebGPU on; SwiftShader
//! without a GPU) opens it, loads the model from the server and generates 16 greedy tokens
//! through the Generate tab; they must equal the native engine's tokens for the same
//! prompt. Both keep the GGUF's Q4_1 blocks as they are (native weights). Then the page is opened again without the model's URL and must load it from
//! the browser's storage (the Cache API), and a Chromium without WebGPU must get the page's
//! plain message instead of a blank canvas. Saves `target/browser-test.png` and prints both
//! decode rates. Last, the same model as Hugging Face files (f16 safetensors in two shards,
//! config.json, tokenizer.json, written from the GGUF) is picked in the page's file input
//! and must give the same tokens.
//!
//! Needs the wasm toolchain and wasm-bindgen (`web/build.sh --deps`), Debian's `chromium`
//! and Node (`.ci/run` installs them). `HEADROOM_SKIP_BROWSER=1` skips it, saying so.

mod common;

use headroom::engine::Backend;
use headroom::engine::EngineOptions;
use headroom::engine::{open_engine, LoadOptions};
use headroom::model::gpu_model::GpuModelOptions;
use headroom::model::synthetic::{write_hf_dir, HfDtype};
use headroom::viewer::generate::GenerateTab;
use headroom::viewer::session::StreamHandle;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROMPT: &str = "The three primary colors are";
const TOKENS: usize = 16;
/// A prompt whose reply copies part of it: prompt lookup drafts from it, and the model
/// confirms drafts (speculative decoding in the page's engine).
const COPY_PROMPT: &str = "Copy the list exactly.\nList: apples, pears, plums, cherries, \
    grapes, lemons, limes, melons, mangoes, peaches.\nCopy: apples, pears, plums,";

/// The tab's request settings, as the page's `generate(prompt, 16, false)` sets them.
fn tab(prompt: &str) -> GenerateTab {
    GenerateTab {
        prompt: prompt.into(),
        chat: false,
        max_tokens: TOKENS,
        temperature: 0.0,
        sequences: 1,
        ..Default::default()
    }
}

/// The server, stopped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn serve(dir: &Path) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server starts");
    let server = Server(child);
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the server never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, port)
}

/// What the viewer's engine made of one request: prompt ids, ids, text, decode tokens/s,
/// and the tokens drafted and confirmed.
struct Native {
    prompt_ids: Vec<u32>,
    ids: Vec<u32>,
    text: String,
    rate: f64,
    drafted: usize,
}

/// Native tokens for the same requests (`prompts`, in order): the viewer's engine on the
/// default adapter, with native weights as the page loads them.
fn native(model: &Path, prompts: &[&str]) -> Vec<Native> {
    // the page's WebGPU has no subgroups through wgpu, so its decode matmuls keep x in f32;
    // so do these (this test binary holds this one test)
    std::env::set_var("HEADROOM_NO_Q8_DOT", "1");
    let engine = open_engine(&LoadOptions {
        model: model.to_path_buf(),
        adapter: None,
        gpu: GpuModelOptions {
            context: 2048,
            max_chunk: 256,
            quantized: true,
            ..Default::default()
        },
        kv_memory: None,
        draft_model: None,
        engine: EngineOptions {
            model_id: "native".into(),
            max_running: 8,
            kernel_times_every: 8,
            ..Default::default()
        },
    })
    .expect("the native engine starts");
    prompts.iter().map(|p| native_one(&engine, p)).collect()
}

/// One request of the page's settings on `engine`, to the end.
fn native_one(engine: &headroom::engine::Engine, prompt: &str) -> Native {
    let req = tab(prompt)
        .requests(engine.tokenizer())
        .expect("the request builds")
        .remove(0);
    let h = StreamHandle::submit(engine, req, None);
    let t = Instant::now();
    loop {
        {
            let st = h.stream.lock().unwrap();
            assert!(st.error.is_none(), "native: {:?}", st.error);
            if st.finish.is_some() {
                let rate = match (st.first_token_s, st.done_s) {
                    (Some(a), Some(b)) if b > a => (st.ids.len() - 1) as f64 / (b - a),
                    _ => 0.0,
                };
                return Native {
                    prompt_ids: st.prompt_ids.clone(),
                    ids: st.ids.clone(),
                    text: st.text.clone(),
                    rate,
                    drafted: st.drafted_tokens,
                };
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "native run timed out"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ids(v: &serde_json::Value, key: &str) -> Vec<u32> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

#[test]
fn browser_generates_the_native_tokens() {
    if std::env::var_os("HEADROOM_SKIP_BROWSER").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED: HEADROOM_SKIP_BROWSER=1");
        return;
    }
    let Some(model) = common::default_model() else {
        return;
    };
    let root = root();
    let site = root.join("target/site-test");
    run(
        Command::new("bash")
            .arg(root.join("web/build.sh"))
            .arg(&site),
        "web/build.sh",
    );
    let models = site.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let file = model.file_name().unwrap().to_string_lossy().to_string();
    // a link where the platform has them (the model is 94 MiB), else a copy
    #[cfg(unix)]
    std::os::unix::fs::symlink(&model, models.join(&file)).expect("model link");
    #[cfg(not(unix))]
    std::fs::copy(&model, models.join(&file)).expect("model copy");
    let hf_dir = models.join("hf");
    let hf_files = write_hf_model(&model, &hf_dir);
    let tests = root.join("web/tests");
    if !tests.join("node_modules/playwright-core").exists() {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&tests),
            "npm ci (playwright-core)",
        );
    }

    let (_server, port) = serve(&site);
    let url = format!("http://127.0.0.1:{port}/?model=models/{file}");
    let shot = root.join("target/browser-test.png");
    let out = run(
        Command::new("node")
            .env("HEADROOM_COPY_PROMPT", COPY_PROMPT)
            .arg(tests.join("browser-test.mjs"))
            .arg(&url)
            .arg(&shot)
            .arg(PROMPT)
            .arg(TOKENS.to_string())
            .args(&hf_files),
        "node web/tests/browser-test.mjs",
    );
    let line = out.lines().last().unwrap_or_default();
    let page: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        page["state"], "ready",
        "the page did not load the model: {page:#}"
    );
    let result = &page["result"];
    assert!(result.is_object(), "no result: {page:#}");
    assert!(shot.exists(), "no screenshot");
    let reload = &page["reload"];
    assert_eq!(
        reload["state"], "ready",
        "the second visit did not load: {page:#}"
    );
    let again = reload["status"].as_str().unwrap_or_default();
    assert!(
        again.contains("(browser cache)"),
        "the second visit did not load from the browser's storage: {again}"
    );

    let plain = &page["without_webgpu"];
    assert_eq!(plain["state"], "no-webgpu", "without WebGPU: {page:#}");
    let message = plain["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("has no WebGPU") && message.contains("--enable-unsafe-webgpu"),
        "the no-WebGPU message: {message:?}"
    );

    let mut runs = native(&model, &[PROMPT, COPY_PROMPT]).into_iter();
    let (first, copy) = (runs.next().unwrap(), runs.next().unwrap());
    let Native {
        prompt_ids: native_prompt,
        ids: native_ids,
        text: native_text,
        rate: native_rate,
        ..
    } = first;
    let browser_rate = result["decode_tokens_per_s"].as_f64().unwrap_or(0.0);
    eprintln!("page: {}", page["status"]);
    eprintln!("gpu: {}", page["gpu"]);
    eprintln!("native  ({} ids): {native_text:?}", native_ids.len());
    eprintln!(
        "browser ({} ids): {:?}",
        ids(result, "ids").len(),
        result["text"]
    );
    eprintln!(
        "decode tokens/s: native {native_rate:.2}, browser {browser_rate:.2} ({:.0}% of native)",
        100.0 * browser_rate / native_rate
    );
    assert_eq!(
        ids(result, "prompt_ids"),
        native_prompt,
        "prompt tokens differ"
    );
    assert_eq!(
        native_ids.len(),
        TOKENS,
        "native stopped early: {native_text:?}"
    );
    assert_eq!(ids(result, "ids"), native_ids, "generated tokens differ");
    assert_eq!(result["text"], native_text.as_str());

    // speculative decoding in the page's engine: the copy reply drafts from the prompt,
    // confirms the same drafts as natively, and keeps the ids of plain decoding
    let copied = &page["copy_result"];
    assert!(copied.is_object(), "no copy result: {page:#}");
    assert_eq!(
        ids(copied, "ids"),
        copy.ids,
        "copy reply: generated tokens differ"
    );
    assert!(
        copy.drafted > 0,
        "natively, the copy reply confirmed no draft: {:?}",
        copy.text
    );
    assert_eq!(
        copied["drafted_tokens"].as_u64(),
        Some(copy.drafted as u64),
        "drafted and confirmed tokens, browser against native"
    );

    let hf = &page["hf_result"];
    assert!(
        hf.is_object(),
        "the HF files did not load: {}",
        page["hf_status"]
    );
    assert_eq!(
        ids(hf, "prompt_ids"),
        native_prompt,
        "HF files: prompt tokens differ"
    );
    assert_eq!(
        ids(hf, "ids"),
        native_ids,
        "HF files: generated tokens differ"
    );
}

/// The default model as a Hugging Face model (f16 safetensors in two shards with their
/// index, config.json, tokenizer.json and tokenizer_config.json); returns the files.
fn write_hf_model(gguf: &Path, dir: &Path) -> Vec<PathBuf> {
    let files = headroom::engine::open(gguf).expect("the default model opens");
    let _ = std::fs::remove_dir_all(dir);
    write_hf_dir(dir, files.weights.as_ref(), HfDtype::F16, 2).expect("HF files written");
    std::fs::write(dir.join("tokenizer.json"), files.tokenizer.to_json()).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        files.tokenizer.to_tokenizer_config_json(),
    )
    .unwrap();
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    all
}
