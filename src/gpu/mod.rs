//! Adapter and device choice, features and limits, buffers, pipelines and readback.
//! Knows nothing of models or tokens.

mod bind;
mod buffers;
pub mod faults;
pub mod fill;
mod pipelines;
pub mod quant_layout;
pub mod timing;

pub use bind::{bind, bind_layout};
pub use buffers::{ReadbackBuffer, StorageFormat, WeightFormat};
pub use pipelines::{BindingKind, KernelSource, PipelineCache, SharedLayout};

use std::sync::Arc;

/// Runs a future to completion on this thread: the native build's way to call the async
/// GPU paths (readbacks, error scopes) that the browser build awaits.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// Lets the browser's event loop run (paint, input) before going on; nothing natively.
pub async fn yield_now() {
    #[cfg(target_arch = "wasm32")]
    sleep_ms(0).await;
}

/// Waits `ms` milliseconds on the page's timer, letting the page run meanwhile.
#[cfg(target_arch = "wasm32")]
pub async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// How to pick and configure the GPU.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Substring of the adapter name or a backend name ("vulkan", "metal", "dx12", "gl").
    pub adapter: Option<String>,
    /// Use the portable kernels even where the adapter has subgroups (tests run both).
    pub no_subgroups: bool,
    /// Threads per weight row in the portable matvec (a power of two up to 256); None: 1
    /// on a CPU adapter (no barriers: they cost a software rasterizer more than the
    /// reads), 32 on a GPU.
    pub matvec_lanes: Option<u32>,
    /// Keep x in f32 for quantized weights at decode instead of 8-bit blocks in integer
    /// dot products (`HEADROOM_NO_Q8_DOT` does the same): exact against a dequantized
    /// reference, and on the H200 half as fast (bench/2026-11-30-h200-q8dot).
    pub no_q8_dot: bool,
    /// In that path, WGSL's `dot4I8Packed` (Some(true)) or unpacked lanes (Some(false)).
    /// None: packed (see `gpu::quant_layout::idot4`). `HEADROOM_Q8_PACKED_DOT=0|1`
    /// overrides both.
    pub q8_packed_dot: Option<bool>,
    /// Whether the integer-dot matmuls compute RMSNorm and SiLU·mul themselves instead of
    /// after those kernels (`ops::matmul_prologue`). None: on GPUs, not on CPU adapters,
    /// where every workgroup making all of x again is compute, not a cache hit (lavapipe
    /// decoded SmolLM2 20% slower fused). `HEADROOM_FUSED_PROLOGUE=0|1` overrides both.
    pub fused_prologue: Option<bool>,
    /// Leave the adapter's cooperative matrices (matrix units) unused: prefill and batched
    /// rows run the workgroup-tiled f32 GEMM instead (`HEADROOM_NO_COOPMAT` does the same;
    /// browsers have no cooperative matrices).
    pub no_coopmat: bool,
    /// Whether matmuls of many token rows may stage their operands in workgroup memory
    /// (`gemm_tiled`) instead of reading them through the caches (`matmul_blocked`). None:
    /// on GPUs, not on CPU adapters (lavapipe prefilled SmolLM2 4.6x slower tiled: its
    /// barriers cost more than the reads they save).
    pub gemm_tiles: Option<bool>,
    /// One kernel for every matmul of many token rows, where the adapter has it, instead
    /// of the choice by shape (`ops::matmul`); `HEADROOM_GEMM=matvec|coop|tiled|blocked` does the
    /// same. For tests and benchmarks.
    pub gemm: Option<GemmKernel>,
    /// Whether the matrix-unit GEMM on f16 weights gives each subgroup 64 token rows
    /// (4 x 4 tiles) instead of 32 (2 x 4). None: by shape (`ops::matmul`);
    /// `HEADROOM_COOP_WIDE=0|1` overrides both. For tests and benchmarks.
    pub coop_wide: Option<bool>,
    /// Whether quantized weights meet many token rows on the matrix units by being
    /// dequantized to f16 rows slice by slice before the f16 GEMM (`ops::matmul`), instead
    /// of being dequantized into workgroup memory by the staging GEMM. None: yes;
    /// `HEADROOM_COOP_DEQUANT=0|1` overrides both. For tests and benchmarks.
    pub coop_dequant: Option<bool>,
    /// Whether the wide form of the matrix-unit GEMM on f16 weights stages its tiles in
    /// workgroup memory instead of loading every fragment from memory. None: where the
    /// adapter's workgroup memory holds them; `HEADROOM_COOP_STAGED=0|1` overrides both.
    /// For tests and benchmarks.
    pub coop_staged: Option<bool>,
    /// Whether the matrix-unit GEMM on f16 weights meets a few token rows with its
    /// few-rows form: 16 weight rows a workgroup, K split between its subgroups. None: by
    /// shape (9 to 16 rows, and up to `ops::matmul::COOP_FEW_MAX_ROWS` where the wider
    /// forms fill few workgroups); Some(true): at every row count, each workgroup taking
    /// as many tiles of rows as it can; `HEADROOM_COOP_FEW=0|1` overrides both. For tests
    /// and benchmarks.
    pub coop_few: Option<bool>,
    /// Most bytes of f16 rows such a matrix is dequantized into at a time (default 64 MiB;
    /// at least 128 rows go at a time). For tests of the slicing.
    pub dequant_slice_bytes: Option<u64>,
    /// Weight rows each subgroup of the decode matvecs takes at a time (x loaded once for
    /// them), for every matrix and token count, instead of the choice by shape
    /// (`ops::matmul::matvec_rows_per_subgroup`); `HEADROOM_MATVEC_ROWS=N` does the same.
    /// For tests and tuning.
    pub matvec_rows: Option<u32>,
    /// Whether naga bounds every loop of the kernels with a counter of its own, WebGPU's
    /// guard against endless loops. It keeps drivers from unrolling loops of constant trip
    /// count, so register arrays indexed in them live in memory: without it the H200 ran
    /// the 7B Q4_0 decode step 7-11% faster, SmolLM2's 8-18%, and the staged matrix-unit
    /// GEMM 3x (bench/2026-12-01-h200-prefill). Every loop of ours ends by construction.
    /// None: bounded in the browser (which always bounds them), not elsewhere;
    /// `HEADROOM_LOOP_BOUNDING=0|1` overrides both.
    pub loop_bounding: Option<bool>,
    /// Whether naga clamps every index into the kernels' own arrays (workgroup and
    /// function-local memory), WebGPU's guard against a shader indexing out of them. The
    /// clamps cost instructions in the hot loops: without them the H200 ran the staged
    /// matrix-unit GEMM 1.2-1.3x faster (bench/2026-12-01-h200-gemm-loads). The kernels
    /// are ours and tested against the CPU on every adapter they run on; storage buffers
    /// keep the driver's robust access either way. None: clamped in the browser (which
    /// always clamps), not elsewhere; `HEADROOM_INDEX_CLAMPING=0|1` overrides both.
    pub index_clamping: Option<bool>,
    /// Whether `engine::generate` submits the next chain of decode steps before it reads
    /// the one before (the GPU does not wait for the host between chains). None: on GPUs,
    /// not on CPU adapters, where the host and the "GPU" share the cores (lavapipe decoded
    /// 15% slower with it). `HEADROOM_PIPELINED_CHAINS=0|1` overrides both.
    pub pipelined_chains: Option<bool>,
    /// Whether a reported step (the serving engine's) goes to the GPU in growing runs of
    /// kernels, each submitted once recorded, so that the GPU starts while the host still
    /// encodes the rest (`model::gpu_model::report`), instead of in one submission. None:
    /// on GPUs, not on CPU adapters (where the host and the "GPU" share the cores);
    /// `HEADROOM_EARLY_SUBMITS=0|1` overrides both. For benchmarks.
    pub early_submits: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found{0} (on Linux without a GPU, install Mesa's software Vulkan driver: apt-get install mesa-vulkan-drivers)")]
    NoAdapter(String),
    #[error("could not open the GPU device on {adapter}: {message}")]
    Device { adapter: String, message: String },
    #[error("{what} needs a buffer of {bytes} bytes, over this GPU's limit of {limit} bytes ({limit_name})")]
    OverLimit {
        what: String,
        bytes: u64,
        limit: u64,
        limit_name: &'static str,
    },
    #[error("the GPU device was lost ({0}); restart to use the GPU again")]
    DeviceLost(String),
    #[error("GPU error: {0}")]
    Other(String),
}

/// What the adapter offers that the kernels can use.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuFeatures {
    pub shader_f16: bool,
    /// the subgroup kernels run (offered, and not switched off)
    pub subgroups: bool,
    /// the adapter offers subgroups (`HEADROOM_NO_SUBGROUPS` or `no_subgroups` may still
    /// switch them off)
    pub subgroups_offered: bool,
    pub timestamps: bool,
    /// smallest and largest subgroup (SIMD width) the adapter may use
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// quantized weights meet x as 8-bit blocks in integer dot products at decode
    /// (subgroups, unless `GpuOptions::no_q8_dot`; see `ops::matmul`)
    pub q8_dot: bool,
    /// ... with `dot4I8Packed` (`GpuOptions::q8_packed_dot`)
    pub q8_packed_dot: bool,
    /// those matmuls make x's blocks from the rows RMSNorm or SiLU·mul would have read,
    /// one dispatch instead of two (`GpuOptions::fused_prologue`)
    pub fused_prologue: bool,
    /// matmuls of more than `VEC_MAX_ROWS` token rows run on the matrix units
    /// (`ops::matmul`'s cooperative-matrix GEMM): the adapter has cooperative matrices
    /// with 16x16x16 f16 inputs and f32 accumulators, shader-f16, one subgroup size, and
    /// `GpuOptions::no_coopmat` is not set
    pub coopmat: bool,
    /// without them, such matmuls stage tiles in workgroup memory (`GpuOptions::gemm_tiles`)
    pub gemm_tiles: bool,
    /// `GpuOptions::gemm`, where this adapter has that kernel
    pub gemm_forced: Option<GemmKernel>,
    /// `GpuOptions::coop_wide`
    pub coop_wide: Option<bool>,
    /// `GpuOptions::coop_dequant`
    pub coop_dequant: bool,
    /// `GpuOptions::coop_staged`
    pub coop_staged: Option<bool>,
    /// `GpuOptions::coop_few`
    pub coop_few: Option<bool>,
    /// `GpuOptions::dequant_slice_bytes`
    pub dequant_slice_bytes: u64,
    /// `GpuOptions::matvec_rows` (1 to 8)
    pub matvec_rows: Option<u32>,
    /// `GpuOptions::pipelined_chains`
    pub pipelined_chains: bool,
    /// `GpuOptions::early_submits`
    pub early_submits: bool,
    /// `GpuOptions::loop_bounding`
    pub loop_bounding: bool,
    /// `GpuOptions::index_clamping`
    pub index_clamping: bool,
}

/// The kernels a matmul of more than `ops::matmul::VEC_MAX_ROWS` token rows runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GemmKernel {
    /// the decode matvec over all the rows, 8 at a time, each weight row from memory once
    /// and from the cache for the other rows (shaders/subgroup/matmul_vec.wgsl with LOOP):
    /// where the adapter has subgroups
    Matvec,
    /// cooperative matrices: x and W rounded to f16, f32 accumulators (shaders/coop/gemm.wgsl)
    Coop,
    /// f32 arithmetic on workgroup-memory tiles (shaders/gemm_tiled.wgsl)
    Tiled,
    /// f32 arithmetic without workgroup memory (shaders/matmul_blocked.wgsl)
    Blocked,
}

impl GemmKernel {
    pub fn name(self) -> &'static str {
        match self {
            GemmKernel::Matvec => "matvec_rows",
            GemmKernel::Coop => "gemm_coop",
            GemmKernel::Tiled => "gemm_tiled",
            GemmKernel::Blocked => "matmul_blocked",
        }
    }

    /// "matvec", "coop", "tiled" or "blocked"
    pub fn parse(s: &str) -> Option<GemmKernel> {
        match s {
            "matvec" => Some(GemmKernel::Matvec),
            "coop" => Some(GemmKernel::Coop),
            "tiled" => Some(GemmKernel::Tiled),
            "blocked" => Some(GemmKernel::Blocked),
            _ => None,
        }
    }
}

/// The device, its queue and what we learnt about it.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    pub features: GpuFeatures,
    pub limits: wgpu::Limits,
    pub pipelines: PipelineCache,
    /// threads per weight row in the portable matvec (see [`GpuOptions::matvec_lanes`])
    pub matvec_lanes: u32,
    /// scratch buffers shared by every op that asks by the same name (see `scratch`)
    scratch: std::sync::Mutex<std::collections::HashMap<&'static str, wgpu::Buffer>>,
    /// errors no error scope caught, and the device's loss (`check_faults`)
    pub faults: Arc<faults::Faults>,
}

/// Whether to use the adapter's cooperative matrices: it offers them with the 16x16x16
/// f16 x f16 + f32 shape the GEMM is written for (the shapes come from the adapter, never
/// assumed), shader-f16 is on, its subgroups have one size (the kernel gives each subgroup
/// its own tiles by invocation index), and neither the options nor `HEADROOM_NO_COOPMAT`
/// switch them off.
fn wants_coopmat(adapter: &wgpu::Adapter, options: &GpuOptions, required: wgpu::Features) -> bool {
    use wgpu::CooperativeScalarType as S;
    let info = adapter.get_info();
    let offered = adapter
        .features()
        .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
        && required.contains(wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP)
        && info.subgroup_min_size == info.subgroup_max_size
        && info.subgroup_min_size >= 16
        && adapter.cooperative_matrix_properties().iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                && p.ab_type == S::F16
                && p.cr_type == S::F32
        });
    offered && !options.no_coopmat && std::env::var_os("HEADROOM_NO_COOPMAT").is_none()
}

/// A small count from the environment variable `name`: None where unset or empty, an error
/// where it is not a number in `range`.
fn env_count(name: &str, range: std::ops::RangeInclusive<u32>) -> Result<Option<u32>, GpuError> {
    match std::env::var(name).as_deref() {
        Ok("") | Err(_) => Ok(None),
        Ok(v) => match v.parse::<u32>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(GpuError::Other(format!(
                "{name}={v:?}: expected a number from {} to {}",
                range.start(),
                range.end()
            ))),
        },
    }
}

/// An override switch from the environment: `0` or `1`, None where unset or empty; any
/// other value is an error naming the variable (a misspelt override is not ignored).
fn env_switch(name: &str) -> Result<Option<bool>, GpuError> {
    match std::env::var(name).as_deref() {
        Ok("0") => Ok(Some(false)),
        Ok("1") => Ok(Some(true)),
        Ok("") | Err(_) => Ok(None),
        Ok(other) => Err(GpuError::Other(format!(
            "{name}={other:?}: expected 0 or 1"
        ))),
    }
}

impl GpuContext {
    /// Picks an adapter (by `options.adapter` or `HEADROOM_ADAPTER`, else the first
    /// high-performance one) and opens a device with the adapter's real limits.
    pub async fn new(options: &GpuOptions) -> Result<Arc<GpuContext>, GpuError> {
        let wanted = options
            .adapter
            .clone()
            .or_else(|| std::env::var("HEADROOM_ADAPTER").ok())
            .filter(|s| !s.is_empty());
        // Vulkan, Metal, DX12 and the browser's WebGPU; GL only when asked for by name
        // (probing it costs start-up time and prints display-server noise on headless Linux).
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        if !wanted
            .as_deref()
            .is_some_and(|w| w.eq_ignore_ascii_case("gl"))
        {
            desc.backends = wgpu::Backends::PRIMARY;
        }
        let instance = wgpu::Instance::new(desc.with_env());
        let adapter = match &wanted {
            Some(name) => {
                let all = instance.enumerate_adapters(wgpu::Backends::all()).await;
                let needle = name.to_lowercase();
                let names: Vec<String> = all
                    .iter()
                    .map(|a| {
                        let i = a.get_info();
                        format!("{} ({:?})", i.name, i.backend)
                    })
                    .collect();
                all.into_iter()
                    .find(|a| {
                        let i = a.get_info();
                        i.name.to_lowercase().contains(&needle)
                            || format!("{:?}", i.backend).to_lowercase() == needle
                    })
                    .ok_or_else(|| {
                        GpuError::NoAdapter(format!(
                            " matching {name:?}; available: [{}]",
                            names.join(", ")
                        ))
                    })?
            }
            None => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    ..Default::default()
                })
                .await
                .map_err(|e| GpuError::NoAdapter(format!(": {e}")))?,
        };
        let info = adapter.get_info();
        let available = adapter.features();
        let mut required = wgpu::Features::empty();
        for f in [
            wgpu::Features::SHADER_F16,
            wgpu::Features::SUBGROUP,
            wgpu::Features::TIMESTAMP_QUERY,
        ] {
            let skip = f == wgpu::Features::SUBGROUP
                && (options.no_subgroups || std::env::var_os("HEADROOM_NO_SUBGROUPS").is_some());
            if available.contains(f) && !skip {
                required |= f;
            }
        }
        let coopmat = wants_coopmat(&adapter, options, required);
        if coopmat {
            required |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        // Ask for everything the adapter allows: big weights need big bindings.
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("headroom"),
                required_features: required,
                required_limits: limits.clone(),
                // SAFETY: cooperative matrices are an experimental wgpu feature; the one
                // kernel that uses them (shaders/gemm_coop.wgsl) keeps its coop calls in
                // uniform control flow and every load inside its workgroup arrays, and
                // the kernel tests check it against the CPU on the H200
                experimental_features: match coopmat {
                    true => unsafe { wgpu::ExperimentalFeatures::enabled() },
                    false => wgpu::ExperimentalFeatures::disabled(),
                },
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| GpuError::Device {
                adapter: info.name.clone(),
                message: e.to_string(),
            })?;
        let mut features = GpuFeatures {
            shader_f16: required.contains(wgpu::Features::SHADER_F16),
            subgroups: required.contains(wgpu::Features::SUBGROUP),
            subgroups_offered: available.contains(wgpu::Features::SUBGROUP),
            timestamps: required.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroup_min_size: info.subgroup_min_size.max(1),
            subgroup_max_size: info.subgroup_max_size.max(1),
            q8_dot: required.contains(wgpu::Features::SUBGROUP)
                && !options.no_q8_dot
                && std::env::var_os("HEADROOM_NO_Q8_DOT").is_none(),
            q8_packed_dot: env_switch("HEADROOM_Q8_PACKED_DOT")?
                .or(options.q8_packed_dot)
                .unwrap_or(true),
            fused_prologue: env_switch("HEADROOM_FUSED_PROLOGUE")?
                .or(options.fused_prologue)
                .unwrap_or(info.device_type != wgpu::DeviceType::Cpu),
            coopmat,
            gemm_tiles: options
                .gemm_tiles
                .unwrap_or(info.device_type != wgpu::DeviceType::Cpu),
            gemm_forced: None,
            coop_wide: env_switch("HEADROOM_COOP_WIDE")?.or(options.coop_wide),
            coop_dequant: env_switch("HEADROOM_COOP_DEQUANT")?
                .or(options.coop_dequant)
                .unwrap_or(true),
            dequant_slice_bytes: options.dequant_slice_bytes.unwrap_or(64 << 20),
            coop_staged: env_switch("HEADROOM_COOP_STAGED")?.or(options.coop_staged),
            coop_few: env_switch("HEADROOM_COOP_FEW")?.or(options.coop_few),
            early_submits: env_switch("HEADROOM_EARLY_SUBMITS")?
                .or(options.early_submits)
                .unwrap_or(info.device_type != wgpu::DeviceType::Cpu),
            pipelined_chains: env_switch("HEADROOM_PIPELINED_CHAINS")?
                .or(options.pipelined_chains)
                .unwrap_or(info.device_type != wgpu::DeviceType::Cpu),
            loop_bounding: env_switch("HEADROOM_LOOP_BOUNDING")?
                .or(options.loop_bounding)
                .unwrap_or(cfg!(target_arch = "wasm32")),
            index_clamping: env_switch("HEADROOM_INDEX_CLAMPING")?
                .or(options.index_clamping)
                .unwrap_or(cfg!(target_arch = "wasm32")),
            matvec_rows: env_count("HEADROOM_MATVEC_ROWS", 1..=8)?
                .or(options.matvec_rows.map(|n| n.clamp(1, 8))),
        };
        let forced = match (options.gemm, std::env::var("HEADROOM_GEMM")) {
            (Some(k), _) => Some(k),
            (None, Ok(env)) if !env.is_empty() => {
                Some(GemmKernel::parse(&env).ok_or_else(|| {
                    GpuError::Other(format!(
                        "HEADROOM_GEMM={env:?}: expected matvec, coop, tiled or blocked"
                    ))
                })?)
            }
            _ => None,
        };
        features.gemm_forced = forced.filter(|k| match k {
            GemmKernel::Matvec => features.subgroups,
            GemmKernel::Coop => features.coopmat,
            GemmKernel::Tiled | GemmKernel::Blocked => true,
        });
        let limits = device.limits();
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        let matvec_lanes = options
            .matvec_lanes
            .unwrap_or(if cpu { 1 } else { 32 })
            .clamp(1, 256)
            .next_power_of_two();
        let faults = faults::Faults::install(&device);
        Ok(Arc::new(GpuContext {
            faults,
            matvec_lanes,
            pipelines: PipelineCache::new(device.clone(), &features),
            device,
            queue,
            adapter_info: info,
            features,
            limits,
            scratch: Default::default(),
        }))
    }

    /// A storage buffer of at least `bytes` shared by every caller that names it `name`:
    /// for values that live only between two dispatches of one pass (the passes of a step
    /// run one after the other, and wgpu orders every write before the next read). A
    /// request larger than the buffer so far makes a larger one, which later callers share.
    pub fn scratch(&self, name: &'static str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        let mut all = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = all.get(name).filter(|b| b.size() >= bytes) {
            return Ok(b.clone());
        }
        let b = self.storage(name, bytes)?;
        all.insert(name, b.clone());
        Ok(b)
    }

    /// Blocking `new`, for the command line and tests.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(options: &GpuOptions) -> Result<Arc<GpuContext>, GpuError> {
        block_on(Self::new(options))
    }

    /// "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)"
    pub fn adapter_name(&self) -> String {
        // browsers may keep the adapter's description to themselves
        let name = match self.adapter_info.name.as_str() {
            "" => "unnamed adapter",
            n => n,
        };
        format!("{name} ({:?})", self.adapter_info.backend)
    }

    /// Largest single storage binding, in bytes.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Waits for all submitted work without blocking where blocking is not allowed: on the
    /// web the browser's event loop runs while this is pending.
    pub async fn wait_async(&self) -> Result<(), GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.wait()
        }
        #[cfg(target_arch = "wasm32")]
        {
            let (tx, rx) = futures_channel::oneshot::channel();
            self.queue.on_submitted_work_done(move || {
                let _ = tx.send(());
            });
            rx.await
                .map_err(|_| GpuError::Other("the GPU device went away while waiting".into()))?;
            self.check_faults()
        }
    }

    /// The device's loss, or the errors recorded since the last check, as an error.
    pub fn check_faults(&self) -> Result<(), GpuError> {
        if let Some(why) = self.faults.lost() {
            return Err(GpuError::DeviceLost(why));
        }
        match self.faults.take_errors() {
            errors if errors.is_empty() => Ok(()),
            errors => Err(GpuError::Other(errors.join("; "))),
        }
    }

    /// Waits for all submitted work (blocking; the browser build uses `wait_async`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<(), GpuError> {
        let polled = self.poll_until_idle();
        // a lost device says so, whatever the poll says
        self.check_faults()?;
        polled
    }

    /// `wait` without looking at the faults recorded meanwhile.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn poll_until_idle(&self) -> Result<(), GpuError> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map(drop)
            .map_err(|e| GpuError::Other(e.to_string()))
    }
}

/// The unit tests' shared context, and a lock so that tests which time things do not run
/// at the same time.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) fn test_gpu() -> (Arc<GpuContext>, std::sync::MutexGuard<'static, ()>) {
    use std::sync::{Mutex, OnceLock};
    static GPU: OnceLock<Arc<GpuContext>> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let g = GPU
        .get_or_init(|| {
            let g = GpuContext::new_blocking(&GpuOptions::default())
                .expect("a GPU adapter (lavapipe in CI)");
            eprintln!(
                "adapter: {} timestamps: {}",
                g.adapter_name(),
                g.features.timestamps
            );
            g
        })
        .clone();
    (g, LOCK.lock().unwrap_or_else(|e| e.into_inner()))
}
