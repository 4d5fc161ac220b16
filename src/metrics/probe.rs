//! Memory-bandwidth probes that kernels are compared with: [`probe_copy_bandwidth`] and
//! [`probe_read_bandwidth`] run the kernels of `shaders/copy.wgsl` over large buffers and
//! report bytes per second.
//!
//! # Counting bytes
//! Bandwidth here is always bytes moved to or from memory per second, in decimal GB/s
//! (1e9 bytes/s). A copy of N bytes reads N and writes N bytes, so its rate is counted as
//! 2N / t ([`BandwidthProbe::gbps_read_write`]), as CUDA's `bandwidthTest` and STREAM's
//! Copy do; this read+write rate is "copy bandwidth". A kernel that mostly reads (decode
//! attention reads the KV cache and writes almost nothing) achieves
//! (bytes_read + bytes_written) / t, and that figure is what to compare with the copy's
//! read+write rate. [`probe_read_bandwidth`] measures a pure read stream, which on many
//! GPUs runs somewhat faster than a copy: it is the stricter ceiling for read-only kernels.
//!
//! # Caches
//! Every timed sample re-runs the same work on the same buffers, so whatever fits in the
//! last-level cache is served from it: probe with buffers far larger than that cache
//! (H100: 50 MB L2; MI300X: 256 MB Infinity Cache; Apple: the SLC), e.g. 1 GiB on a large
//! GPU, a few MiB on lavapipe.

use crate::gpu::timing::{GpuTimer, Measurement, TimingSource};
use crate::gpu::{BindingKind, GpuContext, GpuError, KernelSource, SharedLayout};
use std::sync::Arc;

const COPY_WGSL: &str = include_str!("../../shaders/copy.wgsl");
/// Threads per workgroup in shaders/copy.wgsl.
const WG: u32 = 256;
/// vec4 loads per thread in the read kernel.
const READ_PER_THREAD: u32 = 16;
/// Largest buffer a probe uses: keeps vec4 indices well inside u32.
const PROBE_MAX_BYTES: u64 = 16 << 30;

/// Options of the bandwidth probes.
#[derive(Clone, Copy, Debug)]
pub struct ProbeOptions {
    pub warmup: usize,
    pub runs: usize,
    /// Kernel repetitions per timed pass (see [`GpuTimer::measure`]); 1 suits buffers
    /// large enough for a probe to mean anything.
    pub reps_per_sample: u32,
    /// Time with the wall clock even where timestamps exist.
    pub wall_clock: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            warmup: 3,
            runs: 10,
            reps_per_sample: 1,
            wall_clock: false,
        }
    }
}

/// Which probe kernel ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ProbeKernel {
    /// dst[i] = src[i]: reads and writes `bytes_copied` each.
    Copy,
    /// per-workgroup sums of src: reads `bytes_read`, writes 16 bytes per 64 KiB read.
    Read,
}

/// A bandwidth measurement; see "Counting bytes" in the module documentation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BandwidthProbe {
    pub kernel: ProbeKernel,
    /// Size of the copy (Copy), 0 for the read probe. Also the size of each buffer copied.
    pub bytes_copied: u64,
    /// Bytes the kernel reads per run.
    pub bytes_read: u64,
    /// Bytes the kernel writes per run.
    pub bytes_written: u64,
    /// Median seconds per run.
    pub seconds: f64,
    /// (bytes_read + bytes_written) / seconds / 1e9: for Copy, the "copy bandwidth" (2 ×
    /// bytes_copied per run, as bandwidthTest and STREAM count it). Compare a kernel's
    /// (bytes_read + bytes_written) / t with this.
    pub gbps_read_write: f64,
    /// bytes_read / seconds / 1e9 (for Copy, half of `gbps_read_write`).
    pub gbps_read: f64,
    pub source: TimingSource,
    /// The timings behind `seconds` (samples, minimum, fallbacks).
    pub measurement: Measurement,
}

impl BandwidthProbe {
    fn new(
        kernel: ProbeKernel,
        bytes_copied: u64,
        read: u64,
        written: u64,
        m: Measurement,
    ) -> Self {
        let s = m.median_s;
        BandwidthProbe {
            kernel,
            bytes_copied,
            bytes_read: read,
            bytes_written: written,
            seconds: s,
            gbps_read_write: (read + written) as f64 / s / 1e9,
            gbps_read: read as f64 / s / 1e9,
            source: m.source,
            measurement: m,
        }
    }
}

/// Copies `bytes` from one buffer to another with shaders/copy.wgsl (vec4<u32> loads and
/// stores, one per thread, 256-thread workgroups on a 2-D grid) and reports the median of
/// [`ProbeOptions::default`] timed runs after warm-up. `bytes` is rounded down to a
/// multiple of 16 and clamped to `gpu.max_binding()` (and 16 GiB); the source is filled
/// with pseudo-random words on the GPU first. Two buffers of that size are allocated for
/// the duration of the call: the caller picks a size the GPU's memory holds (1 GiB on a
/// large GPU, a few MiB on lavapipe); an allocation failure is an error, not a panic.
#[cfg(not(target_arch = "wasm32"))]
pub fn probe_copy_bandwidth(gpu: &GpuContext, bytes: u64) -> Result<BandwidthProbe, GpuError> {
    probe_copy_bandwidth_with(gpu, bytes, &ProbeOptions::default())
}

/// [`probe_copy_bandwidth`] with explicit options.
#[cfg(not(target_arch = "wasm32"))]
pub fn probe_copy_bandwidth_with(
    gpu: &GpuContext,
    bytes: u64,
    opts: &ProbeOptions,
) -> Result<BandwidthProbe, GpuError> {
    crate::gpu::block_on(probe_copy_bandwidth_async(gpu, bytes, opts))
}

/// [`probe_copy_bandwidth_with`], awaited (the browser's kernel lab).
pub async fn probe_copy_bandwidth_async(
    gpu: &GpuContext,
    bytes: u64,
    opts: &ProbeOptions,
) -> Result<BandwidthProbe, GpuError> {
    let k = ProbeKernels::new(gpu);
    let bytes = probe_bytes(gpu, bytes)?;
    let (src, dst) = allocate(gpu, "copy probe", &[bytes, bytes]).await?;
    let n4 = (bytes / 16) as u32;
    k.fill(gpu, &src, n4, 0x9e37_79b9).await?;
    let (bg, groups) = k.bind(gpu, ProbeKind::Copy, n4, &src, &dst);
    let grid = grid(gpu, groups, max_grid_x(gpu))?;
    let m = timer_for(gpu, opts)
        .measure_async(
            gpu,
            "copy probe",
            opts.warmup,
            opts.runs,
            opts.reps_per_sample,
            &mut |pass| k.record(pass, ProbeKind::Copy, &bg, grid),
        )
        .await?;
    src.destroy();
    dst.destroy();
    Ok(BandwidthProbe::new(
        ProbeKernel::Copy,
        bytes,
        bytes,
        bytes,
        m,
    ))
}

/// Reads `bytes` (rounded and clamped as in [`probe_copy_bandwidth`]) with the read kernel
/// of shaders/copy.wgsl: each thread sums 16 coalesced vec4<u32> loads, each workgroup
/// writes one vec4 (16 bytes per 64 KiB read). Its `gbps_read` is the pure read rate.
#[cfg(not(target_arch = "wasm32"))]
pub fn probe_read_bandwidth(gpu: &GpuContext, bytes: u64) -> Result<BandwidthProbe, GpuError> {
    probe_read_bandwidth_with(gpu, bytes, &ProbeOptions::default())
}

/// [`probe_read_bandwidth`] with explicit options.
#[cfg(not(target_arch = "wasm32"))]
pub fn probe_read_bandwidth_with(
    gpu: &GpuContext,
    bytes: u64,
    opts: &ProbeOptions,
) -> Result<BandwidthProbe, GpuError> {
    let k = ProbeKernels::new(gpu);
    let bytes = probe_bytes(gpu, bytes)?;
    let n4 = (bytes / 16) as u32;
    let groups = n4.div_ceil(WG * READ_PER_THREAD);
    let written = groups as u64 * 16;
    let (src, dst) = crate::gpu::block_on(allocate(gpu, "read probe", &[bytes, written]))?;
    crate::gpu::block_on(k.fill(gpu, &src, n4, 0x85eb_ca6b))?;
    let (bg, groups) = k.bind(gpu, ProbeKind::Read, n4, &src, &dst);
    let grid = grid(gpu, groups, max_grid_x(gpu))?;
    let m = timer_for(gpu, opts).measure(
        gpu,
        "read probe",
        opts.warmup,
        opts.runs,
        opts.reps_per_sample,
        &mut |pass| k.record(pass, ProbeKind::Read, &bg, grid),
    )?;
    src.destroy();
    dst.destroy();
    Ok(BandwidthProbe::new(ProbeKernel::Read, 0, bytes, written, m))
}

fn timer_for(gpu: &GpuContext, opts: &ProbeOptions) -> GpuTimer {
    let spans = opts.runs.max(opts.warmup).clamp(1, 64) as u32;
    if opts.wall_clock {
        GpuTimer::wall_clock(spans)
    } else {
        GpuTimer::new(gpu, spans)
    }
}

fn probe_bytes(gpu: &GpuContext, bytes: u64) -> Result<u64, GpuError> {
    let b = bytes.min(gpu.max_binding()).min(PROBE_MAX_BYTES) / 16 * 16;
    if b == 0 {
        return Err(GpuError::Other(format!(
            "a bandwidth probe needs at least 16 bytes (asked for {bytes})"
        )));
    }
    Ok(b)
}

/// Storage buffers of the given sizes; out-of-memory comes back as an error.
async fn allocate(
    gpu: &GpuContext,
    what: &str,
    sizes: &[u64; 2],
) -> Result<(wgpu::Buffer, wgpu::Buffer), GpuError> {
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let a = gpu.storage(&format!("{what} src"), sizes[0]);
    let b = gpu.storage(&format!("{what} dst"), sizes[1]);
    if let Some(e) = scope.pop().await {
        return Err(GpuError::Other(format!(
            "{what}: allocating {} + {} bytes: {e}",
            sizes[0], sizes[1]
        )));
    }
    Ok((a?, b?))
}

fn max_grid_x(gpu: &GpuContext) -> u32 {
    gpu.limits.max_compute_workgroups_per_dimension.max(1)
}

/// `groups` workgroups as an x × y grid with x <= `max_x` (the kernels skip the overhang).
fn grid(gpu: &GpuContext, groups: u32, max_x: u32) -> Result<(u32, u32), GpuError> {
    let x = groups.clamp(1, max_x.max(1));
    let y = groups.div_ceil(x).max(1);
    if y > gpu.limits.max_compute_workgroups_per_dimension {
        return Err(GpuError::Other(format!(
            "{groups} workgroups do not fit a {x} x {} grid",
            gpu.limits.max_compute_workgroups_per_dimension
        )));
    }
    Ok((x, y))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProbeKind {
    Copy,
    Read,
    Fill,
}

/// Mirrors `Params` in shaders/copy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct ProbeParams {
    n4: u32,
    groups: u32,
    seed: u32,
    _p0: u32,
}

/// The three kernels of shaders/copy.wgsl on one explicit layout
/// (params uniform, src read, dst read_write).
struct ProbeKernels {
    layout: Arc<SharedLayout>,
    copy: Arc<wgpu::ComputePipeline>,
    read: Arc<wgpu::ComputePipeline>,
    fill: Arc<wgpu::ComputePipeline>,
}

impl ProbeKernels {
    fn new(gpu: &GpuContext) -> Self {
        let layout = gpu.pipelines.layout(
            "bandwidth probe",
            &[
                BindingKind::Uniform,
                BindingKind::Read,
                BindingKind::ReadWrite,
            ],
        );
        let get = |kernel: &str| {
            let src = KernelSource::new("bandwidth probe", COPY_WGSL)
                .constant("KERNEL", kernel)
                .constant("READ_PER_THREAD", READ_PER_THREAD);
            gpu.pipelines.get_with_layout(&src, Some(&layout))
        };
        ProbeKernels {
            copy: get("copy_kernel"),
            read: get("read_kernel"),
            fill: get("fill_kernel"),
            layout,
        }
    }

    fn pipeline(&self, kind: ProbeKind) -> &wgpu::ComputePipeline {
        match kind {
            ProbeKind::Copy => &self.copy,
            ProbeKind::Read => &self.read,
            ProbeKind::Fill => &self.fill,
        }
    }

    /// The bind group for `kind` over `n4` vec4 elements, and the workgroups it needs.
    fn bind(
        &self,
        gpu: &GpuContext,
        kind: ProbeKind,
        n4: u32,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> (wgpu::BindGroup, u32) {
        self.bind_seeded(gpu, kind, n4, 0, src, dst)
    }

    fn bind_seeded(
        &self,
        gpu: &GpuContext,
        kind: ProbeKind,
        n4: u32,
        seed: u32,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> (wgpu::BindGroup, u32) {
        let per_group = match kind {
            ProbeKind::Read => WG * READ_PER_THREAD,
            ProbeKind::Copy | ProbeKind::Fill => WG,
        };
        let groups = n4.div_ceil(per_group).max(1);
        let params = gpu.uniform(
            "bandwidth probe params",
            &ProbeParams {
                n4,
                groups,
                seed,
                _p0: 0,
            },
        );
        let entries = [&params, src, dst].map(|b| b.as_entire_binding());
        let entries: Vec<wgpu::BindGroupEntry> = entries
            .into_iter()
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource,
            })
            .collect();
        let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("bandwidth probe"),
            layout: &self.layout.bind_group,
            entries: &entries,
        });
        (bg, groups)
    }

    fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        kind: ProbeKind,
        bg: &wgpu::BindGroup,
        (x, y): (u32, u32),
    ) {
        pass.set_pipeline(self.pipeline(kind));
        pass.set_bind_group(0, bg, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }

    /// Fills the first `n4` vec4 of `dst` with the hash of shaders/copy.wgsl and waits.
    async fn fill(
        &self,
        gpu: &GpuContext,
        dst: &wgpu::Buffer,
        n4: u32,
        seed: u32,
    ) -> Result<(), GpuError> {
        let dummy = gpu.storage("bandwidth probe dummy", 16)?;
        let (bg, groups) = self.bind_seeded(gpu, ProbeKind::Fill, n4, seed, &dummy, dst);
        let grid = grid(gpu, groups, max_grid_x(gpu))?;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.record(&mut pass, ProbeKind::Fill, &bg, grid);
        }
        gpu.queue.submit([enc.finish()]);
        gpu.wait_async().await
    }
}

/// The arithmetic roof, as [`probe_fma_rate_async`] measures it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FmaProbe {
    /// floating-point operations per run (a fused multiply-add counts 2)
    pub flops: u64,
    /// median seconds per run
    pub seconds: f64,
    /// flops / seconds / 1e9
    pub gflops: f64,
    pub source: TimingSource,
}

/// FMA iterations of each thread of shaders/fma_probe.wgsl.
const FMA_ITERS: u32 = 1024;

/// The f32 fused multiply-add rate (shaders/fma_probe.wgsl: independent chains of vec4
/// FMAs in every thread, no memory traffic to speak of): the flat roof of the roofline.
/// The grid grows fourfold from 64 workgroups until a run takes 2 ms (a large GPU), or
/// until 16 384 workgroups; a CPU adapter stops at the first size that takes that long.
pub async fn probe_fma_rate_async(
    gpu: &GpuContext,
    opts: &ProbeOptions,
) -> Result<FmaProbe, GpuError> {
    let src = KernelSource::new("fma_probe", include_str!("../../shaders/fma_probe.wgsl"))
        .constant("ITERS", FMA_ITERS);
    let pipeline = gpu.pipelines.get(&src);
    let timer = timer_for(gpu, opts);
    let mut groups = 64u32;
    loop {
        let threads = groups as u64 * WG as u64;
        let out = gpu.storage("fma probe", threads * 16)?;
        let layout = pipeline.get_bind_group_layout(0);
        let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("fma probe"),
            layout: &layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: out.as_entire_binding(),
            }],
        });
        let (x, y) = grid(gpu, groups, max_grid_x(gpu))?;
        let m = timer
            .measure_async(
                gpu,
                "fma probe",
                opts.warmup,
                opts.runs,
                opts.reps_per_sample,
                &mut |pass| {
                    pass.set_pipeline(&pipeline);
                    pass.set_bind_group(0, &bg, &[]);
                    pass.dispatch_workgroups(x, y, 1);
                },
            )
            .await?;
        out.destroy();
        let flops = threads * FMA_ITERS as u64 * 32;
        if m.median_s >= 2e-3 || groups >= 16384 {
            return Ok(FmaProbe {
                flops,
                seconds: m.median_s,
                gflops: flops as f64 / m.median_s / 1e9,
                source: m.source,
            });
        }
        groups *= 4;
    }
}

/// [`probe_fma_rate_async`], blocking.
#[cfg(not(target_arch = "wasm32"))]
pub fn probe_fma_rate(gpu: &GpuContext, opts: &ProbeOptions) -> Result<FmaProbe, GpuError> {
    crate::gpu::block_on(probe_fma_rate_async(gpu, opts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::test_gpu as gpu;
    use crate::gpu::timing::median;
    use rand::{Rng, SeedableRng};

    const POISON: u32 = 0xdead_beef;

    /// A fresh seed, or `HEADROOM_TEST_SEED` to replay one (as the integration tests do).
    fn rng() -> rand::rngs::StdRng {
        let seed = std::env::var("HEADROOM_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random::<u64>);
        eprintln!("seed: {seed} (replay with HEADROOM_TEST_SEED={seed})");
        rand::rngs::StdRng::seed_from_u64(seed)
    }

    fn run_once(
        g: &GpuContext,
        k: &ProbeKernels,
        kind: ProbeKind,
        bg: &wgpu::BindGroup,
        grid: (u32, u32),
    ) {
        let mut enc = g.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            k.record(&mut pass, kind, bg, grid);
        }
        g.queue.submit([enc.finish()]);
        g.wait().unwrap();
    }

    fn pcg(v: u32) -> u32 {
        let s = v.wrapping_mul(747796405).wrapping_add(2891336453);
        let w = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277803737);
        (w >> 22) ^ w
    }

    #[test]
    fn copy_kernel_copies_every_word() {
        let (g, _l) = gpu();
        let k = ProbeKernels::new(&g);
        let mut rng = rng();
        // 1-D grid, and a narrow 2-D grid whose last row overhangs (max_x 3)
        for (n4, max_x) in [(5000u32, max_grid_x(&g)), (5000, 3), (1, 3), (257, 1)] {
            let cap = n4 as usize + 3; // words past n4 must stay poisoned
            let data: Vec<u32> = (0..cap * 4).map(|_| rng.random()).collect();
            let src = g.storage_init("src", bytemuck::cast_slice(&data)).unwrap();
            let dst = g
                .storage_init("dst", bytemuck::cast_slice(&vec![POISON; cap * 4]))
                .unwrap();
            let (bg, groups) = k.bind(&g, ProbeKind::Copy, n4, &src, &dst);
            run_once(
                &g,
                &k,
                ProbeKind::Copy,
                &bg,
                grid(&g, groups, max_x).unwrap(),
            );
            let out = g.read_u32(&dst, cap * 4).unwrap();
            let n = n4 as usize * 4;
            for (i, (&o, &d)) in out.iter().zip(&data).enumerate() {
                let want = if i < n { d } else { POISON };
                assert_eq!(o, want, "word {i} of {n} (n4 {n4}, max_x {max_x})");
            }
        }
    }

    #[test]
    fn read_kernel_sums_every_word() {
        let (g, _l) = gpu();
        let k = ProbeKernels::new(&g);
        let mut rng = rng();
        for (n4, max_x) in [(10_001u32, max_grid_x(&g)), (10_001, 2), (5, 2)] {
            // a few words past n4 that must not be read
            let data: Vec<u32> = (0..(n4 as usize + 2) * 4).map(|_| rng.random()).collect();
            let src = g.storage_init("src", bytemuck::cast_slice(&data)).unwrap();
            let groups = n4.div_ceil(WG * READ_PER_THREAD);
            let dst = g
                .storage_init(
                    "dst",
                    bytemuck::cast_slice(&vec![0u32; (groups as usize + 2) * 4]),
                )
                .unwrap();
            let (bg, groups) = k.bind(&g, ProbeKind::Read, n4, &src, &dst);
            run_once(
                &g,
                &k,
                ProbeKind::Read,
                &bg,
                grid(&g, groups, max_x).unwrap(),
            );
            let out = g.read_u32(&dst, (groups as usize + 2) * 4).unwrap();
            let mut want = [0u32; 4];
            for (i, &d) in data[..n4 as usize * 4].iter().enumerate() {
                want[i % 4] = want[i % 4].wrapping_add(d);
            }
            let mut got = [0u32; 4];
            for (i, &o) in out[..groups as usize * 4].iter().enumerate() {
                got[i % 4] = got[i % 4].wrapping_add(o);
            }
            assert_eq!(got, want, "n4 {n4}, max_x {max_x}");
            assert!(
                out[groups as usize * 4..].iter().all(|&o| o == 0),
                "wrote past the groups"
            );
        }
    }

    #[test]
    fn fill_kernel_matches_host_hash() {
        let (g, _l) = gpu();
        let k = ProbeKernels::new(&g);
        let n4 = 777u32;
        let dst = g.storage("dst", n4 as u64 * 16).unwrap();
        crate::gpu::block_on(k.fill(&g, &dst, n4, 12345)).unwrap();
        let out = g.read_u32(&dst, n4 as usize * 4).unwrap();
        for i in 0..n4 {
            let h = pcg(i ^ 12345);
            let want = [h, pcg(h), pcg(h.wrapping_add(1)), pcg(h.wrapping_add(2))];
            assert_eq!(out[i as usize * 4..i as usize * 4 + 4], want, "element {i}");
        }
    }

    #[test]
    fn bigger_copies_take_longer_and_probes_report() {
        let (g, _l) = gpu();
        let opts = ProbeOptions {
            warmup: 2,
            runs: 5,
            ..Default::default()
        };
        let small = probe_copy_bandwidth_with(&g, 1 << 20, &opts).unwrap();
        let big = probe_copy_bandwidth_with(&g, 16 << 20, &opts).unwrap();
        let read = probe_read_bandwidth_with(&g, 16 << 20, &opts).unwrap();
        let wall = probe_copy_bandwidth_with(
            &g,
            16 << 20,
            &ProbeOptions {
                wall_clock: true,
                ..opts
            },
        )
        .unwrap();
        for p in [&small, &big, &read, &wall] {
            eprintln!(
                "{:?} {} MiB: {:.3} ms, {:.2} GB/s read+write, {:.2} GB/s read ({}; min {:.3} ms)",
                p.kernel,
                p.bytes_read >> 20,
                p.seconds * 1e3,
                p.gbps_read_write,
                p.gbps_read,
                p.source.name(),
                p.measurement.min_s * 1e3,
            );
            assert!(p.seconds.is_finite() && p.seconds > 0.0);
            assert!(p.gbps_read_write.is_finite() && p.gbps_read_write > 0.0);
        }
        assert_eq!(big.bytes_copied, 16 << 20);
        assert_eq!((big.bytes_read, big.bytes_written), (16 << 20, 16 << 20));
        assert!((big.gbps_read_write - 2.0 * big.gbps_read).abs() < 1e-9 * big.gbps_read_write);
        assert_eq!(read.bytes_copied, 0);
        assert_eq!(read.bytes_written, (16u64 << 20) / (16 * 4096) * 16);
        assert_eq!(wall.source, TimingSource::WallClock);
        if g.features.timestamps {
            assert!(
                big.source == TimingSource::Timestamps || big.measurement.timestamp_failures > 0
            );
        }
        assert!(
            big.seconds >= small.seconds,
            "copying 16 MiB ({} s) took less than 1 MiB ({} s)",
            big.seconds,
            small.seconds
        );
        // clamped to what a binding holds, rounded to 16 bytes
        let odd = probe_copy_bandwidth_with(
            &g,
            1000,
            &ProbeOptions {
                warmup: 0,
                runs: 1,
                ..opts
            },
        )
        .unwrap();
        assert_eq!(odd.bytes_copied, 992);
        assert!(probe_copy_bandwidth(&g, 8).is_err());
    }

    #[test]
    fn timer_returns_positive_finite_times_and_says_how() {
        let (g, _l) = gpu();
        let k = ProbeKernels::new(&g);
        let n4 = 16 * 1024;
        let src = g.storage("src", n4 as u64 * 16).unwrap();
        let dst = g.storage("dst", n4 as u64 * 16).unwrap();
        let (bg, groups) = k.bind(&g, ProbeKind::Copy, n4, &src, &dst);
        let grid = grid(&g, groups, max_grid_x(&g)).unwrap();
        let timers = [GpuTimer::new(&g, 3), GpuTimer::wall_clock(3)];
        assert_eq!(
            timers[0].source(),
            if g.features.timestamps {
                TimingSource::Timestamps
            } else {
                TimingSource::WallClock
            }
        );
        assert_eq!(timers[1].source(), TimingSource::WallClock);
        for timer in &timers {
            let mut rec = |p: &mut wgpu::ComputePass<'_>| k.record(p, ProbeKind::Copy, &bg, grid);
            let t = timer.time_pass(&g, "one", &mut rec).unwrap();
            eprintln!("{:?}: {t:?}", timer.source());
            assert!(t.seconds.is_finite() && t.seconds > 0.0);
            assert!(t.wall_s.is_finite() && t.wall_s > 0.0);
            match t.source {
                TimingSource::Timestamps => assert_eq!(Some(t.seconds), t.gpu_s),
                TimingSource::WallClock => assert_eq!(t.seconds, t.wall_s),
            }
            // 7 runs in batches of 3 (the timer's max_spans), 4 repetitions per pass
            let m = timer.measure(&g, "seven", 1, 7, 4, &mut rec).unwrap();
            eprintln!(
                "{:?}: median {:.1} µs, min {:.1} µs, wall median {:.1} µs, failures {}",
                m.source,
                m.median_s * 1e6,
                m.min_s * 1e6,
                median(&m.wall_samples) * 1e6,
                m.timestamp_failures
            );
            assert_eq!(m.samples.len(), 7);
            assert_eq!(m.wall_samples.len(), 7);
            assert_eq!(m.reps_per_sample, 4);
            assert!(m.samples.iter().all(|s| s.is_finite() && *s > 0.0));
            assert!(m.min_s <= m.median_s && m.median_s.is_finite());
            match (timer.source(), m.source) {
                (TimingSource::WallClock, s) => {
                    assert_eq!(s, TimingSource::WallClock);
                    assert_eq!(m.timestamp_failures, 0);
                    assert_eq!(m.samples, m.wall_samples);
                }
                (TimingSource::Timestamps, TimingSource::Timestamps) => {
                    assert_eq!(m.timestamp_failures, 0);
                    // GPU time lies inside the wall-clock interval around it
                    for (s, w) in m.samples.iter().zip(&m.wall_samples) {
                        assert!(*s <= w * 1.05 + 1e-4, "{s} > {w}");
                    }
                }
                (TimingSource::Timestamps, TimingSource::WallClock) => {
                    assert!(m.timestamp_failures > 0)
                }
            }
        }
    }

    /// The FMA probe's kernel computes the chains it is credited with (each thread's vec4
    /// is the CPU's recurrence, so no FMA was cut away), and the probe reports a positive
    /// rate over the FLOPs it ran.
    #[test]
    fn the_fma_probe_runs_the_work_it_counts() {
        let (g, _serial) = gpu();
        let src = KernelSource::new("fma_probe", include_str!("../../shaders/fma_probe.wgsl"))
            .constant("ITERS", 37);
        let pipeline = g.pipelines.get(&src);
        let threads = 2 * WG as usize;
        let out = g.storage("fma out", threads as u64 * 16).unwrap();
        let bg = g.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: out.as_entire_binding(),
            }],
        });
        let mut enc = g.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(2, 1, 1);
        }
        g.queue.submit([enc.finish()]);
        let got = g.read_f32(&out, threads * 4).unwrap();
        for id in [0usize, 1, 300, threads - 1] {
            let seed = (id % 1024) as f32 * 1e-4;
            let start = [seed, 0.25, 0.5, 0.75];
            let mut sum = [0f32; 4];
            for off in [0.0, 0.125, 0.0625, 0.03125] {
                for (lane, s) in sum.iter_mut().enumerate() {
                    let mut v = start[lane] + off;
                    for _ in 0..37 {
                        v = v.mul_add(0.9999, 0.0001);
                    }
                    *s += v;
                }
            }
            for lane in 0..4 {
                let (a, b) = (got[id * 4 + lane], sum[lane]);
                assert!((a - b).abs() <= 1e-5, "thread {id} lane {lane}: {a} vs {b}");
            }
        }
        let opts = ProbeOptions {
            warmup: 1,
            runs: 2,
            ..Default::default()
        };
        let p = probe_fma_rate(&g, &opts).unwrap();
        assert_eq!(p.flops % (FMA_ITERS as u64 * 32 * WG as u64), 0);
        assert!(p.gflops.is_finite() && p.gflops > 0.0, "{p:?}");
        assert!((p.gflops - p.flops as f64 / p.seconds / 1e9).abs() < 1e-6 * p.gflops);
    }
}
