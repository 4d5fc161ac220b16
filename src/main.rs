//! The command line: generate, chat, inspect.

use clap::{Args, Parser, Subcommand, ValueEnum};
use headroom::engine::{self, FinishReason, GenerateRequest, GenerateResult};
use headroom::gpu::{GemmKernel, GpuContext, GpuOptions, StorageFormat};
use headroom::model::gpu_model::{GpuModel, GpuModelOptions};
use headroom::ops::sample::SamplingParams;
use headroom::tokenizer::ChatMessage;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "headroom",
    version,
    about = "LLM inference on WebGPU: fast decode on any GPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streaming it as it is made.
    Generate(GenerateArgs),
    /// Talk to the model: an interactive loop with history (/reset, /exit).
    Chat(ChatArgs),
    /// Measure generation speed: median over runs, with bytes moved per token.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Serve an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions,
    /// /v1/models, /health, /metrics) with continuous batching and prefix caching.
    Serve(ServeArgs),
    /// The viewer: streaming generation, live telemetry, the attention-variant explorer
    /// and attention maps (a window; --screenshot saves a PNG and exits).
    View(headroom::viewer::ViewArgs),
    /// Print a model's config, tensors, dtypes, bytes and KV bytes per token.
    Inspect {
        /// a GGUF file or a Hugging Face directory (or hf:ORG/REPO[/FILE.gguf][@REVISION])
        path: PathBuf,
    },
    /// List the models `--model hf:...` fetched: repositories, revisions, files and sizes,
    /// and where the cache is ($HEADROOM_CACHE, else ~/.cache/headroom/models).
    List,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Prefill a prompt of N tokens and decode M more, batch 1, greedy; repeat.
    Generate(BenchGenerateArgs),
    /// Decode attention alone on synthetic KV caches (no model needed): MHA, GQA, MQA and
    /// MLA over batches, contexts and head dims, against the probed copy bandwidth.
    Attention(headroom::bench::attention::BenchAttentionArgs),
    /// One whole decode step of a synthetic model (random weights made on the GPU), with
    /// the predicted (weights + KV bytes) / bandwidth beside the measurement.
    DecodeStep(headroom::bench::decode_step::DecodeStepArgs),
    /// One matmul alone over token counts and a model's layer shapes, on every GEMM
    /// kernel this adapter runs (matrix units, tiled f32, cache-blocked): TFLOP/s.
    Matmul(headroom::bench::matmul::BenchMatmulArgs),
    /// The serving engine in-process: aggregate decode tokens/s at several concurrencies,
    /// and time to first token with and without a prefix-cache hit.
    Serve(headroom::bench::serve::BenchServeArgs),
    /// Speculative decoding (prompt lookup) against plain decoding on the serving engine,
    /// one greedy request at a time: decode tokens/s, acceptance, identical output.
    Speculate(headroom::bench::speculate::BenchSpeculateArgs),
    /// Write a random-weight GGUF of a model family's real shape (llama.cpp's layout and
    /// keys, a real file's tokenizer): the file to time headroom and llama.cpp on.
    WriteModel(headroom::bench::write_model::WriteModelArgs),
}

#[derive(Args)]
struct BenchGenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// prompt length in tokens (English text, repeated as needed)
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// tokens to decode per run (stop tokens do not stop it)
    #[arg(long, default_value_t = 256)]
    gen_tokens: usize,
    /// measured runs, after one warm-up run
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// speculative decoding: most tokens drafted by prompt lookup per step (0, the
    /// default, measures plain decoding; the prompt repeats one sentence, so drafts would
    /// come from it)
    #[arg(long, default_value_t = 0)]
    draft_tokens: usize,
    /// speculative decoding with drafts from this model (same tokenizer) instead of prompt
    /// lookup, up to --draft-tokens a step; the prompt is then a passage of varied text
    #[arg(long)]
    draft_model: Option<PathBuf>,
    /// also write the results as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Precision {
    F16,
    F32,
}

impl From<Precision> for StorageFormat {
    fn from(p: Precision) -> Self {
        match p {
            Precision::F16 => StorageFormat::F16,
            Precision::F32 => StorageFormat::F32,
        }
    }
}

/// How weight matrices are stored on the GPU.
#[derive(Clone, Copy, ValueEnum)]
enum WeightsArg {
    /// as the GGUF stores them where a kernel reads that form (Q4_0, Q4_1, Q5_0, Q5_1,
    /// Q8_0, Q4_K, Q5_K, Q6_K blocks, dequantized in registers), else f16
    Native,
    F16,
    F32,
}

impl WeightsArg {
    /// (float format, keep quantization blocks)
    fn storage(self) -> (StorageFormat, bool) {
        match self {
            WeightsArg::Native => (StorageFormat::F16, true),
            WeightsArg::F16 => (StorageFormat::F16, false),
            WeightsArg::F32 => (StorageFormat::F32, false),
        }
    }
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// a GGUF file or a Hugging Face directory, or a Hub model fetched into the cache:
    /// hf:ORG/REPO (safetensors) or hf:ORG/REPO/FILE.gguf, optionally @REVISION [default:
    /// $HEADROOM_MODEL, else SmolLM2-135M-Instruct in ~/.cache/headroom/models]
    #[arg(long)]
    model: Option<PathBuf>,
    /// GPU to use: part of its name or a backend (vulkan, metal, dx12, gl)
    #[arg(long, env = "HEADROOM_ADAPTER")]
    adapter: Option<String>,
    /// positions the KV cache holds [default: the model's, at most 4096]
    #[arg(long)]
    context: Option<usize>,
    /// how weights are stored on the GPU
    #[arg(long, value_enum, default_value = "native")]
    weights: WeightsArg,
    /// how the KV cache is stored on the GPU
    #[arg(long, value_enum, default_value = "f16")]
    kv: Precision,
    /// quantize the matrices the file stores as floats (Hugging Face safetensors, F16/F32
    /// GGUF tensors) to these blocks at load; with --weights f16|f32, every matrix
    #[arg(long, value_enum)]
    quantize: Option<headroom::bench::decode_step::Quant>,
    /// token rows per forward pass: prompts are prefilled in chunks of at most this
    #[arg(long, default_value_t = 512)]
    max_chunk: usize,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// a key clients must send as `Authorization: Bearer KEY` on /v1/* and /metrics
    /// (repeatable; /health stays open)
    #[arg(long = "api-key", value_name = "KEY")]
    api_keys: Vec<String>,
    /// more keys, one a line (blank lines and # comments skipped)
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// /metrics without a key even where keys are set
    #[arg(long)]
    metrics_open: bool,
    /// serve a non-loopback --host without any key (anyone who reaches the port may use
    /// the GPU)
    #[arg(long)]
    insecure_no_auth: bool,
    /// largest request body in bytes (suffixes K, M, G); larger ones get a 413
    #[arg(long, default_value = "2M", value_parser = headroom::engine::parse_bytes)]
    max_body_bytes: u64,
    /// seconds a completion may run before it is cancelled (a 504, or an error event
    /// ending its stream); 0: no limit
    #[arg(long, default_value_t = 600.0, value_name = "SECS")]
    request_timeout: f64,
    /// seconds a connection may take to send a request's headers, or stay idle between
    /// requests, before it is closed; 0: no limit
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    header_timeout: f64,
    /// most connections open at once (more wait in the listen backlog)
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// most requests waiting for a place in the batch; beyond it a 503 with Retry-After
    #[arg(long, default_value_t = 1024)]
    max_waiting: usize,
    /// seconds running completions may go on after SIGTERM or SIGINT (new ones get a
    /// 503 and /health says "draining" meanwhile); then the server exits
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    shutdown_grace: f64,
    /// bytes of GPU memory for the KV pool (suffixes K, M, G, e.g. 2G) [default: room for
    /// --max-running sequences at full context, at most a quarter of what the adapter's
    /// bindings allow and at most 4G]
    #[arg(long, value_parser = headroom::engine::parse_bytes)]
    kv_memory: Option<u64>,
    /// most sequences decoding at once
    #[arg(long, default_value_t = 64)]
    max_running: usize,
    /// do not reuse the KV of repeated prompt prefixes
    #[arg(long)]
    no_prefix_cache: bool,
    /// most tokens a greedy request drafts by prompt lookup and verifies in one step
    /// (speculative decoding; 0: off)
    #[arg(long, default_value_t = headroom::engine::DEFAULT_DRAFT_TOKENS)]
    draft_tokens: usize,
    /// a small model with the same tokenizer whose greedy continuations are the drafts,
    /// for up to 8 sequences at once (the others draft by prompt lookup)
    #[arg(long)]
    draft_model: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct SamplingArgs {
    /// most tokens to generate
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 is greedy
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// keep the k most likely tokens (0: off)
    #[arg(long, default_value_t = 0)]
    top_k: u32,
    /// keep the smallest set of tokens whose probability reaches p (1: off)
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// most tokens a greedy run drafts by prompt lookup and verifies in one step
    /// (speculative decoding; 0: off)
    #[arg(long, default_value_t = headroom::engine::DEFAULT_DRAFT_TOKENS)]
    draft_tokens: usize,
    /// a small model with the same tokenizer (a GGUF file or a Hugging Face directory)
    /// whose greedy continuation is drafted instead of prompt lookup's (up to
    /// --draft-tokens a step)
    #[arg(long)]
    draft_model: Option<PathBuf>,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    prompt: String,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// wrap the prompt in the model's chat template as a user message
    #[arg(long)]
    chat: bool,
    /// print one JSON object instead of streaming text
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// a system message to start the conversation with
    #[arg(long)]
    system: Option<String>,
}

/// Mesa's device-select layer, which the Vulkan loader loads on its own, asks the Wayland
/// and X displays which GPU drives them; with no display it only prints "error:
/// XDG_RUNTIME_DIR is invalid or not set" (twice) and picks nothing. Without a display
/// there is nothing to ask, so it is told to stand aside (`NODEVICE_SELECT`, Mesa's switch;
/// other drivers ignore it). Called first in `main`, before any thread exists.
fn quiet_headless_vulkan_layers() {
    let display = ["WAYLAND_DISPLAY", "DISPLAY", "NODEVICE_SELECT"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !display {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

fn main() -> ExitCode {
    quiet_headless_vulkan_layers();
    let mut cli = Cli::parse();
    let hub_name = match resolve_hub_models(&mut cli.command) {
        Ok(name) => name,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Generate(a) => run_generate(a),
        Command::Chat(a) => run_chat(a),
        Command::View(a) => headroom::viewer::run(&a).map_err(Into::into),
        Command::Bench {
            what: BenchCommand::Generate(a),
        } => run_bench_generate(a),
        Command::Bench {
            what: BenchCommand::Attention(a),
        } => headroom::bench::attention::run(&a).map_err(Into::into),
        Command::Bench {
            what: BenchCommand::DecodeStep(a),
        } => headroom::bench::decode_step::run(&a).map_err(Into::into),
        Command::Bench {
            what: BenchCommand::Matmul(a),
        } => headroom::bench::matmul::run(&a).map_err(Into::into),
        Command::Bench {
            what: BenchCommand::Serve(a),
        } => headroom::bench::serve::run(&a).map_err(Into::into),
        Command::Bench {
            what: BenchCommand::WriteModel(a),
        } => headroom::bench::write_model::run(&a).map_err(Into::into),
        Command::Bench {
            what: BenchCommand::Speculate(a),
        } => headroom::bench::speculate::run(&a).map_err(Into::into),
        Command::Serve(a) => run_serve(a, hub_name),
        Command::Inspect { path } => run_inspect(path),
        Command::List => run_list(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error>;

/// Every `--model hf:...` (or `HEADROOM_MODEL=hf:...` where `--model` is left out) of the
/// command, replaced by its local path in the cache, fetched first where needed. Returns
/// the repository's name ("ORG/REPO") of a fetched safetensors model, for `serve` to call
/// it by (its snapshot directory is named by a commit).
fn resolve_hub_models(command: &mut Command) -> Result<Option<String>, AnyError> {
    let model = match command {
        Command::Generate(a) => &mut a.model.model,
        Command::Chat(a) => &mut a.model.model,
        Command::Serve(a) => &mut a.model.model,
        Command::Bench {
            what: BenchCommand::Generate(a),
        } => &mut a.model.model,
        Command::Bench {
            what: BenchCommand::Serve(a),
        } => &mut a.model,
        Command::Bench {
            what: BenchCommand::Speculate(a),
        } => &mut a.model,
        Command::View(a) => &mut a.model,
        Command::Inspect { path } => {
            let mut model = Some(path.clone());
            let name = resolve_hub_model(&mut model)?;
            *path = model.unwrap_or_default();
            return Ok(name);
        }
        _ => return Ok(None),
    };
    resolve_hub_model(model)
}

/// One `--model` value, as [`resolve_hub_models`] does.
fn resolve_hub_model(model: &mut Option<PathBuf>) -> Result<Option<String>, AnyError> {
    use headroom::hub::{self, HubConfig, ModelSpec};
    let text = match model {
        Some(path) => path.to_string_lossy().into_owned(),
        None => std::env::var("HEADROOM_MODEL").unwrap_or_default(),
    };
    if !ModelSpec::is_spec(&text) {
        return Ok(None);
    }
    let spec = ModelSpec::parse(&text)?;
    *model = Some(hub::resolve(&spec, &HubConfig::from_env())?);
    Ok(spec.file.is_none().then_some(spec.repo))
}

/// `headroom list`.
fn run_list() -> Result<(), AnyError> {
    let dir = headroom::hub::default_cache_dir();
    print!("{}", headroom::hub::describe_cache(&dir)?);
    Ok(())
}

/// The kernels this adapter picks from for many token rows, e.g. "matvec, matrix units,
/// tiled f32, blocked f32 (by shape)".
fn gemm_tiers(gpu: &GpuContext) -> String {
    let name = |k: GemmKernel| match k {
        GemmKernel::Matvec => "matvec",
        GemmKernel::Coop => "matrix units",
        GemmKernel::Tiled => "tiled f32",
        GemmKernel::Blocked => "blocked f32",
    };
    if let Some(k) = gpu.features.gemm_forced {
        return format!("{} (forced)", name(k));
    }
    let f16 = StorageFormat::F16.into();
    let kernels = headroom::ops::matmul::gemm_kernels(gpu, f16);
    let names: Vec<&str> = kernels.into_iter().map(name).collect();
    format!("{} (by shape)", names.join(", "))
}

struct Session {
    model: GpuModel,
    tokenizer: headroom::tokenizer::Tokenizer,
}

/// How `--weights`, `--kv`, `--quantize` and `--max-chunk` store a model on the GPU, with a
/// KV cache of `context` positions.
fn gpu_options(args: &ModelArgs, context: usize) -> GpuModelOptions {
    let (weights, quantized) = args.weights.storage();
    GpuModelOptions {
        weights,
        quantized,
        quantize: args.quantize.map(Into::into),
        kv: args.kv.into(),
        context,
        max_chunk: args.max_chunk.max(1),
        ..Default::default()
    }
}

/// A draft model beside a session's model (`--draft-model`), on the same GPU.
struct DraftSession {
    model: GpuModel,
    tokenizer: headroom::tokenizer::Tokenizer,
}

impl DraftSession {
    /// Its drafter for `target`, checked against the target's vocabulary.
    fn drafter(&self, target: &Session) -> Result<engine::draft_model::DraftModel<'_>, AnyError> {
        engine::draft_model::check_same_tokenizer(&self.tokenizer, &target.tokenizer)?;
        Ok(engine::draft_model::DraftModel::new(
            &self.model,
            &target.model,
        )?)
    }
}

/// Loads `path` as a draft model for `target` (the target's context, storage and chunk
/// options), where one is given.
fn open_draft(
    target: &Session,
    path: Option<&std::path::Path>,
    args: &ModelArgs,
    quiet: bool,
) -> Result<Option<DraftSession>, AnyError> {
    let Some(path) = path else {
        return Ok(None);
    };
    // an hf: spec is fetched as --model's is
    let mut resolved = Some(path.to_path_buf());
    resolve_hub_model(&mut resolved)?;
    let path = resolved.unwrap_or_default();
    let files = engine::open(&path)?;
    let options = gpu_options(args, target.model.options.context);
    let model = GpuModel::load(
        target.model.gpu.clone(),
        files.weights.as_ref(),
        options,
        &mut |_, _, _| {},
    )?;
    if !quiet {
        let c = &model.config;
        eprintln!(
            "draft model: {} | {} {} layers, hidden {}, weights {:.1} MiB",
            path.display(),
            c.arch.name(),
            c.num_layers,
            c.hidden_size,
            model.weight_bytes as f64 / 1048576.0
        );
    }
    Ok(Some(DraftSession {
        model,
        tokenizer: files.tokenizer,
    }))
}

/// Opens the model files, the GPU, and uploads the weights, reporting what it chose.
fn open_session(args: &ModelArgs, quiet: bool) -> Result<Session, AnyError> {
    let path = args
        .model
        .clone()
        .unwrap_or_else(engine::default_model_path);
    if args.model.is_none() && !path.exists() {
        return Err(format!(
            "the default model is not at {} — fetch it with scripts/fetch-model.sh, or pass --model PATH (a GGUF file or a Hugging Face directory)",
            path.display()
        )
        .into());
    }
    let files = engine::open(&path)?;
    let gpu = GpuContext::new_blocking(&GpuOptions {
        adapter: args.adapter.clone(),
        ..Default::default()
    })?;
    let cfg = files.weights.config().clone();
    let context = args
        .context
        .unwrap_or(cfg.max_position_embeddings.clamp(1, 4096));
    let options = gpu_options(args, context);
    if !quiet {
        eprintln!(
            "adapter: {} | weights {} · KV cache {} · f32 math (shader-f16: {}, subgroups: {}, timestamps: {}) · prefill matmuls: {}",
            gpu.adapter_name(),
            options.weights_name(),
            options.kv.name(),
            gpu.features.shader_f16,
            gpu.features.subgroups,
            gpu.features.timestamps,
            gemm_tiers(&gpu)
        );
        eprintln!(
            "model: {} | {} {} layers, {} heads / {} KV heads ({}), context {}",
            path.display(),
            cfg.arch.name(),
            cfg.num_layers,
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.attention_kind(),
            context
        );
    }
    let mut progress = |done: usize, total: usize, what: &str| {
        if !quiet {
            eprint!("\rloading {done}/{total} {what:<24}");
            if done == total {
                eprintln!();
            }
        }
    };
    let model = GpuModel::load(gpu, files.weights.as_ref(), options, &mut progress)?;
    if !quiet {
        let by_format: Vec<String> = model
            .weight_bytes_by_format
            .iter()
            .map(|(f, b)| format!("{f} {:.1}", *b as f64 / 1048576.0))
            .collect();
        eprintln!(
            "on the GPU: weights {:.1} MiB ({} MiB), KV cache {:.1} MiB",
            model.weight_bytes as f64 / 1048576.0,
            by_format.join(", "),
            model.kv_cache_bytes as f64 / 1048576.0
        );
    }
    Ok(Session {
        model,
        tokenizer: files.tokenizer,
    })
}

/// The keys `serve` accepts, refusing a host other than loopback without any unless
/// `--insecure-no-auth` says so: checked before the model loads.
fn serve_access(a: &ServeArgs) -> Result<headroom::serve::Access, AnyError> {
    let mut keys = a.api_keys.clone();
    if let Some(file) = &a.api_key_file {
        keys.extend(headroom::serve::Access::keys_from_file(file)?);
    }
    let loopback = a.host == "localhost"
        || a.host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if keys.is_empty() && !loopback && !a.insecure_no_auth {
        return Err(format!(
            "refusing to serve on {} without an API key: anyone who reaches the port could use \
             the GPU. Pass --api-key KEY (or --api-key-file FILE), or --insecure-no-auth if \
             that is what you want",
            a.host
        )
        .into());
    }
    Ok(headroom::serve::Access::with_keys(keys, a.metrics_open)?)
}

/// The server's bounds from its flags.
fn serve_limits(a: &ServeArgs) -> Result<headroom::serve::Limits, AnyError> {
    let seconds = |flag: &str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(format!("--{flag} {v}: expected seconds, 0 or more"))
        }
    };
    let request_timeout = seconds("request-timeout", a.request_timeout)?;
    Ok(headroom::serve::Limits {
        max_body_bytes: usize::try_from(a.max_body_bytes).unwrap_or(usize::MAX),
        request_timeout: (!request_timeout.is_zero()).then_some(request_timeout),
        header_timeout: seconds("header-timeout", a.header_timeout)?,
        max_connections: a.max_connections.max(1),
        shutdown_grace: seconds("shutdown-grace", a.shutdown_grace)?,
    })
}

/// SIGINT (Ctrl-C) or SIGTERM (what service managers and Kubernetes send).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

fn run_serve(a: ServeArgs, hub_name: Option<String>) -> Result<(), AnyError> {
    use headroom::engine::EngineOptions;
    use headroom::engine::{open_engine, LoadOptions};
    let access = serve_access(&a)?;
    let limits = serve_limits(&a)?;
    let path = a
        .model
        .model
        .clone()
        .unwrap_or_else(engine::default_model_path);
    if !path.exists() {
        return Err(format!(
            "no model at {} — fetch the default one with scripts/fetch-model.sh, or pass --model PATH",
            path.display()
        )
        .into());
    }
    let cfg = engine::open(&path)?.weights.config().clone();
    let context = a
        .model
        .context
        .unwrap_or(cfg.max_position_embeddings.clamp(1, 8192));
    let model_id = hub_name.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "headroom".into())
    });
    let options = LoadOptions {
        model: path.clone(),
        adapter: a.model.adapter.clone(),
        gpu: GpuModelOptions {
            weights: a.model.weights.storage().0,
            quantized: a.model.weights.storage().1,
            quantize: a.model.quantize.map(Into::into),
            kv: a.model.kv.into(),
            context,
            max_chunk: a.model.max_chunk.max(1),
            ..Default::default()
        },
        kv_memory: a.kv_memory,
        draft_model: {
            let mut draft = a.draft_model.clone();
            if draft.is_some() {
                resolve_hub_model(&mut draft)?;
            }
            draft
        },
        engine: EngineOptions {
            model_id: model_id.clone(),
            max_running: a.max_running.max(1),
            max_waiting: a.max_waiting.max(1),
            prefix_caching: !a.no_prefix_cache,
            draft_tokens: a.draft_tokens,
            ..Default::default()
        },
    };
    eprintln!("loading {} ...", path.display());
    let engine = open_engine(&options)?;
    let m = headroom::engine::Backend::metrics(&engine);
    eprintln!(
        "model {model_id}: context {context}, KV pool {} blocks x {} tokens = {} tokens ({:.0} MiB, {} bytes per token), up to {} sequences at once",
        m.kv_blocks_total,
        m.kv_block_size,
        m.kv_blocks_total * m.kv_block_size,
        (m.kv_blocks_total * m.kv_block_size) as f64 * m.kv_bytes_per_token as f64 / 1048576.0,
        m.kv_bytes_per_token,
        a.max_running
    );
    let backend: std::sync::Arc<dyn headroom::engine::Backend> = std::sync::Arc::new(engine);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", a.host, a.port))?;
        let keys = match access.requires_keys() {
            true => "API keys required",
            false => "no API key needed",
        };
        eprintln!(
            "listening on http://{} (OpenAI API at /v1, metrics at /metrics; {keys})",
            listener.local_addr()?
        );
        headroom::serve::serve_until(backend, listener, access, limits, shutdown_signal()).await?;
        eprintln!("stopped");
        Ok::<(), AnyError>(())
    })
}

fn sampling(a: &SamplingArgs) -> SamplingParams {
    SamplingParams {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
    }
}

fn run_generate(a: GenerateArgs) -> Result<(), AnyError> {
    let s = open_session(&a.model, a.json)?;
    let text = if a.chat {
        s.tokenizer
            .apply_chat(&[ChatMessage::new("user", &a.prompt)], true)?
    } else {
        a.prompt.clone()
    };
    let prompt_ids = s.tokenizer.encode(&text, true)?;
    let req = GenerateRequest {
        prompt_ids: prompt_ids.clone(),
        max_tokens: a.sampling.max_tokens,
        sampling: sampling(&a.sampling),
        stop_ids: s.tokenizer.eos_ids().to_vec(),
        draft_tokens: a.sampling.draft_tokens,
    };
    let draft = open_draft(&s, a.sampling.draft_model.as_deref(), &a.model, a.json)?;
    let mut drafter = draft.as_ref().map(|d| d.drafter(&s)).transpose()?;
    let mut decoder = s.tokenizer.stream_decoder(true);
    let stdout = std::io::stdout();
    let result = engine::generate_drafted(&s.model, drafter.as_mut(), &req, &mut |id| {
        if !a.json {
            let piece = decoder.push(&s.tokenizer, id);
            let mut out = stdout.lock();
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
        true
    })?;
    if a.json {
        let out = serde_json::json!({
            "prompt_ids": prompt_ids,
            "generated_ids": result.ids,
            "text": s.tokenizer.decode(&result.ids),
            "finish_reason": result.finish,
            "prefill_tokens_per_s": result.stats.prefill_tokens_per_s,
            "decode_tokens_per_s": result.stats.decode_tokens_per_s,
            "ttft_ms": result.stats.ttft_s * 1000.0,
            "drafted_tokens": result.stats.drafted_tokens,
            "accepted_tokens": result.stats.accepted_tokens,
            "adapter": s.model.gpu.adapter_name(),
            "weights": s.model.options.weights_name(),
            "kv_cache": s.model.options.kv.name(),
        });
        println!("{out}");
    } else {
        print!("{}", decoder.flush(&s.tokenizer));
        println!();
        print_stats(&result);
    }
    Ok(())
}

fn print_stats(r: &GenerateResult) {
    let st = &r.stats;
    let why = match r.finish {
        FinishReason::Stop => "stop token",
        FinishReason::Length => "max tokens",
        FinishReason::Context => "context full",
        FinishReason::Cancelled => "cancelled",
    };
    let drafts = match st.drafted_tokens {
        0 => String::new(),
        n => format!(" | drafts: {} of {n} tokens confirmed", st.accepted_tokens),
    };
    println!(
        "\n[prefill {} tokens at {:.1} tok/s | decode {} tokens at {:.1} tok/s | time to first token {:.0} ms{drafts} | ended: {why}]",
        st.prompt_tokens,
        st.prefill_tokens_per_s,
        st.generated_tokens,
        st.decode_tokens_per_s,
        st.ttft_s * 1000.0
    );
}

fn run_chat(a: ChatArgs) -> Result<(), AnyError> {
    let s = open_session(&a.model, false)?;
    let draft = open_draft(&s, a.sampling.draft_model.as_deref(), &a.model, false)?;
    // kept across turns: its cache still holds the history the next prompt repeats
    let mut drafter = draft.as_ref().map(|d| d.drafter(&s)).transpose()?;
    if s.tokenizer.chat_template().is_none() {
        return Err("this model has no chat template; use `headroom generate` instead".into());
    }
    let mut history: Vec<ChatMessage> = a
        .system
        .iter()
        .map(|m| ChatMessage::new("system", m))
        .collect();
    eprintln!("chat: type a message; /reset clears the history, /exit (or end of input) quits");
    let stdin = std::io::stdin();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history.retain(|m| m.role == "system");
                println!("(history cleared)");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::new("user", line));
        let text = s.tokenizer.apply_chat(&history, true)?;
        let prompt_ids = s.tokenizer.encode(&text, true)?;
        let req = GenerateRequest {
            prompt_ids,
            max_tokens: a.sampling.max_tokens,
            sampling: SamplingParams {
                seed: a.sampling.seed.wrapping_add(history.len() as u32),
                ..sampling(&a.sampling)
            },
            stop_ids: s.tokenizer.eos_ids().to_vec(),
            draft_tokens: a.sampling.draft_tokens,
        };
        let mut decoder = s.tokenizer.stream_decoder(true);
        let result = match engine::generate_drafted(&s.model, drafter.as_mut(), &req, &mut |id| {
            print!("{}", decoder.push(&s.tokenizer, id));
            let _ = std::io::stdout().flush();
            true
        }) {
            Ok(r) => r,
            Err(e) => {
                // e.g. the history outgrew the context: say so and keep the session
                println!("\n(error: {e}; /reset starts over)");
                history.pop();
                continue;
            }
        };
        println!("{}", decoder.flush(&s.tokenizer));
        print_stats(&result);
        history.push(ChatMessage::new(
            "assistant",
            s.tokenizer.decode(&result.ids),
        ));
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A passage of varied English for `bench generate --draft-model`, repeated only where the
/// prompt is longer than it.
const BENCH_PASSAGE: &str = "The history of computing is a story of people who needed \
    to count, to measure and to predict. Merchants kept tallies on clay, astronomers built \
    tables of the planets by hand, and navigators trusted logarithms to cross oceans. In the \
    nineteenth century Babbage designed engines of brass and gears, and Lovelace wrote what \
    many call the first program. A century later, wartime codebreakers and ballistics \
    engineers turned relays and vacuum tubes into machines that could follow instructions \
    stored in their own memory. Transistors replaced tubes, integrated circuits replaced \
    boards of transistors, and each decade brought machines that were smaller, cheaper and \
    faster than the last. ";

fn run_bench_generate(a: BenchGenerateArgs) -> Result<(), AnyError> {
    if a.runs == 0 || a.gen_tokens < 2 || a.prompt_tokens == 0 {
        return Err("need --runs >= 1, --gen-tokens >= 2 and --prompt-tokens >= 1".into());
    }
    let s = open_session(&a.model, false)?;
    let draft = open_draft(&s, a.draft_model.as_deref(), &a.model, false)?;
    // a draft model is measured on text that does not repeat (prompt lookup would find
    // the repeated sentence instead)
    let text = match draft {
        Some(_) => BENCH_PASSAGE,
        None => "The history of computing is a story of people who needed to count, to measure and to predict. ",
    };
    let unit = s.tokenizer.encode(text, false)?;
    let prompt_ids: Vec<u32> = unit.iter().cycle().take(a.prompt_tokens).cloned().collect();
    let req = GenerateRequest {
        prompt_ids,
        max_tokens: a.gen_tokens,
        sampling: SamplingParams::default(),
        stop_ids: vec![],
        draft_tokens: a.draft_tokens,
    };
    let mut results = vec![];
    let mut warm_up_host = (0.0, 0);
    for run in 0..=a.runs {
        if run == 1 {
            // the warm-up run's steps are not counted
            warm_up_host = s.model.host_time();
        }
        // a fresh draft cache each run, as the target's
        let mut drafter = draft.as_ref().map(|d| d.drafter(&s)).transpose()?;
        let r = engine::generate_drafted(&s.model, drafter.as_mut(), &req, &mut |_| true)?;
        if run > 0 {
            eprintln!(
                "run {run}: prefill {:.1} tok/s, decode {:.1} tok/s, ttft {:.1} ms",
                r.stats.prefill_tokens_per_s,
                r.stats.decode_tokens_per_s,
                r.stats.ttft_s * 1e3
            );
            results.push(r.stats);
        }
    }
    let decode = median(results.iter().map(|r| r.decode_tokens_per_s).collect());
    // host time per decode step over the measured runs (the chain's encode and submit)
    let (host_s, host_steps) = s.model.host_time();
    let host_us = (host_s - warm_up_host.0) / (host_steps - warm_up_host.1).max(1) as f64 * 1e6;
    let prefill = median(results.iter().map(|r| r.prefill_tokens_per_s).collect());
    let ttft_ms = median(results.iter().map(|r| r.ttft_s * 1e3).collect());
    // bytes one decode step moves, at the middle of the generated span (the ops' cost model)
    let mid = (a.prompt_tokens + a.gen_tokens / 2) as u32;
    let cost = s.model.step_cost(&[mid + 1], 1);
    let dispatches = s.model.step_dispatches(&[mid + 1], 1);
    let bytes = (cost.bytes_read + cost.bytes_written) as f64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let out = serde_json::json!({
        "date_utc": headroom::formats::date::UtcTime::from_unix(now).iso8601(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "adapter": s.model.gpu.adapter_name(),
        "weights": s.model.options.weights_name(),
        "kv_cache": s.model.options.kv.name(),
        "subgroups": s.model.gpu.features.subgroups,
        "gpu_features": s.model.gpu.features,
        "prompt_tokens": a.prompt_tokens,
        "gen_tokens": a.gen_tokens,
        "runs": a.runs,
        "median_decode_tokens_per_s": decode,
        "median_prefill_tokens_per_s": prefill,
        "median_ttft_ms": ttft_ms,
        "bytes_per_decode_step": bytes,
        "dispatches_per_decode_step": dispatches,
        "host_us_per_decode_step": host_us,
        "decode_gb_per_s": bytes * decode / 1e9,
        "draft_model": a.draft_model.as_ref().map(|p| p.display().to_string()),
        "draft_tokens": a.draft_tokens,
        "drafted_tokens": results.iter().map(|r| r.drafted_tokens).sum::<usize>(),
        "accepted_tokens": results.iter().map(|r| r.accepted_tokens).sum::<usize>(),
    });
    println!(
        "decode {decode:.1} tok/s (median of {}) | prefill {prefill:.1} tok/s | ttft {ttft_ms:.1} ms | {:.1} MB and {dispatches} dispatches per decode step -> {:.1} GB/s | host {host_us:.0} us of {:.0} us per step",
        a.runs,
        bytes / 1e6,
        bytes * decode / 1e9,
        1e6 / decode
    );
    println!("{out}");
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_string_pretty(&out)?)?;
    }
    Ok(())
}

fn run_inspect(path: PathBuf) -> Result<(), AnyError> {
    let files = engine::open(&path)?;
    let src = files.weights.as_ref();
    let cfg = src.config();
    println!("model: {}", path.display());
    println!("{}", serde_json::to_string_pretty(cfg)?);
    println!(
        "attention: {} ({} query heads, {} KV heads, group size {})",
        cfg.attention_kind(),
        cfg.num_heads,
        cfg.num_kv_heads,
        cfg.group_size()
    );
    println!(
        "KV cache per token: {} bytes in f16, {} bytes in f32 ({} layers x 2 x {} KV heads x {} head dim)",
        cfg.kv_bytes_per_token(2),
        cfg.kv_bytes_per_token(4),
        cfg.num_layers,
        cfg.num_kv_heads,
        cfg.head_dim
    );
    println!(
        "tokenizer: {} tokens, BOS added: {}, chat template: {}",
        files.tokenizer.vocab_size(),
        files.tokenizer.add_bos(),
        files.tokenizer.chat_template().is_some()
    );
    let tensors = src.summaries();
    println!(
        "\n{:<40} {:>6} {:>20} {:>14}",
        "tensor", "dtype", "shape", "bytes"
    );
    let mut total = 0u64;
    let mut by_type: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
    for t in &tensors {
        println!(
            "{:<40} {:>6} {:>20} {:>14}",
            t.file_name,
            t.dtype,
            format!("{:?}", t.shape),
            t.bytes
        );
        total += t.bytes;
        let e = by_type.entry(t.dtype.clone()).or_default();
        e.0 += 1;
        e.1 += t.bytes;
    }
    println!(
        "\n{} tensors, {:.1} MiB",
        tensors.len(),
        total as f64 / 1048576.0
    );
    for (ty, (n, b)) in by_type {
        println!(
            "  {ty:<6} {n:>4} tensors {:>10.1} MiB",
            b as f64 / 1048576.0
        );
    }
    Ok(())
}
