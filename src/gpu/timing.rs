//! GPU time of compute work.
//!
//! [`GpuTimer`] times one compute pass with pass-level timestamp queries where the device
//! has them (`GpuFeatures::timestamps`, i.e. `wgpu::Features::TIMESTAMP_QUERY`), else with
//! the wall clock around `queue.submit` + [`GpuContext::wait`]; every result says which
//! ([`TimingSource`]). Timestamp pairs that come back unusable (zero, end not after start,
//! or longer than the wall-clock interval that encloses them) are not returned as times:
//! that sample falls back to the wall clock and the result says so.
//!
//! The bandwidth probes that kernels are compared with are `metrics::probe`.

use super::{GpuContext, GpuError, ReadbackBuffer};
use web_time::Instant;

/// Where a time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum TimingSource {
    /// GPU timestamps written at the beginning and end of the compute pass: GPU time only.
    Timestamps,
    /// Host clock from just before `queue.submit` to the return of `wait()`: GPU time plus
    /// submission, scheduling and wake-up latency (tens of µs to ms, driver dependent).
    WallClock,
}

impl TimingSource {
    pub fn name(self) -> &'static str {
        match self {
            TimingSource::Timestamps => "timestamps",
            TimingSource::WallClock => "wall clock",
        }
    }
}

/// One timed pass.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Timed {
    /// Seconds per repetition of the recorded work: `gpu_s` where usable, else `wall_s`.
    pub seconds: f64,
    /// Which of the two `seconds` is.
    pub source: TimingSource,
    /// Seconds per repetition from the pass's timestamps, `None` without timestamp queries
    /// or when the driver returned an unusable pair (then `source` is `WallClock`).
    pub gpu_s: Option<f64>,
    /// Seconds per repetition from the wall clock (always measured).
    pub wall_s: f64,
}

/// Repeated timings of the same work.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Measurement {
    /// Median of `samples`, seconds per repetition.
    pub median_s: f64,
    /// Smallest of `samples`.
    pub min_s: f64,
    /// Seconds per repetition, one per timed pass, in run order (warm-up runs left out).
    /// All of one source: if any timed pass lacked a usable timestamp pair, every sample
    /// is the wall clock (see `timestamp_failures`).
    pub samples: Vec<f64>,
    /// Wall-clock seconds per repetition of the same passes (equal to `samples` when
    /// `source` is `WallClock`).
    pub wall_samples: Vec<f64>,
    pub source: TimingSource,
    /// Timed passes whose timestamps came back unusable (0 when none, or when the timer
    /// uses the wall clock by design). Non-zero means `source` fell back to `WallClock`.
    pub timestamp_failures: usize,
    /// Repetitions recorded in each pass; each sample is the pass time divided by this.
    pub reps_per_sample: u32,
}

impl Measurement {
    fn from_timed(timed: &[Timed], reps: u32, timer_source: TimingSource) -> Self {
        let failures = match timer_source {
            TimingSource::Timestamps => timed.iter().filter(|t| t.gpu_s.is_none()).count(),
            TimingSource::WallClock => 0,
        };
        let wall_samples: Vec<f64> = timed.iter().map(|t| t.wall_s).collect();
        let (samples, source) = if timer_source == TimingSource::Timestamps && failures == 0 {
            let s = timed.iter().map(|t| t.gpu_s.unwrap_or(t.wall_s)).collect();
            (s, TimingSource::Timestamps)
        } else {
            (wall_samples.clone(), TimingSource::WallClock)
        };
        Measurement {
            median_s: median(&samples),
            min_s: samples.iter().copied().fold(f64::INFINITY, f64::min),
            samples,
            wall_samples,
            source,
            timestamp_failures: failures,
            reps_per_sample: reps,
        }
    }
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// Query set, resolve target and readback for up to `max_spans` passes.
struct Queries {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: ReadbackBuffer,
    /// nanoseconds per timestamp tick
    period_ns: f64,
}

/// Times compute passes; see the module documentation.
///
/// Each timed pass is submitted alone and waited for, so samples never overlap and the GPU
/// idles between them (as it does between the submissions of one decode step and the next
/// readback; not as in a long stream of back-to-back submissions).
pub struct GpuTimer {
    source: TimingSource,
    max_spans: u32,
    queries: Option<Queries>,
}

impl GpuTimer {
    /// A timer using timestamps when `gpu.features.timestamps` (and the queue reports a
    /// positive timestamp period), else the wall clock. `max_spans` (1..=2048) passes are
    /// timed between two readbacks of the query results; more are timed in batches.
    pub fn new(gpu: &GpuContext, max_spans: u32) -> Self {
        let max_spans = max_spans.clamp(1, wgpu::QUERY_SET_MAX_QUERIES / 2);
        let period_ns = gpu.queue.get_timestamp_period() as f64;
        if !gpu.features.timestamps || !period_ns.is_finite() || period_ns <= 0.0 {
            return Self::wall_clock(max_spans);
        }
        let count = 2 * max_spans;
        let bytes = count as u64 * wgpu::QUERY_SIZE as u64;
        let queries = Queries {
            set: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("GpuTimer"),
                ty: wgpu::QueryType::Timestamp,
                count,
            }),
            resolve: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("GpuTimer resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: ReadbackBuffer::new(gpu, "GpuTimer readback", bytes),
            period_ns,
        };
        GpuTimer {
            source: TimingSource::Timestamps,
            max_spans,
            queries: Some(queries),
        }
    }

    /// A timer that uses the wall clock even where timestamps exist (to compare the two, or
    /// to include submission latency on purpose).
    pub fn wall_clock(max_spans: u32) -> Self {
        GpuTimer {
            source: TimingSource::WallClock,
            max_spans: max_spans.clamp(1, wgpu::QUERY_SET_MAX_QUERIES / 2),
            queries: None,
        }
    }

    /// What this timer measures with (a sample may still fall back to the wall clock; see
    /// [`Timed::source`] and [`Measurement::source`]).
    pub fn source(&self) -> TimingSource {
        self.source
    }

    /// Nanoseconds per timestamp tick, where timestamps are used.
    pub fn timestamp_period_ns(&self) -> Option<f64> {
        self.queries.as_ref().map(|q| q.period_ns)
    }

    /// Records `record` once into one compute pass whose beginning and end timestamps are
    /// written (pass-level `timestamp_writes`), submits it alone, waits, and returns its
    /// time. `record` sets its own pipelines and bind groups.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_pass(
        &self,
        gpu: &GpuContext,
        label: &str,
        record: &mut dyn FnMut(&mut wgpu::ComputePass<'_>),
    ) -> Result<Timed, GpuError> {
        self.time_pass_reps(gpu, label, 1, record)
    }

    /// [`time_pass`](Self::time_pass), awaited.
    pub async fn time_pass_async(
        &self,
        gpu: &GpuContext,
        label: &str,
        record: &mut dyn FnMut(&mut wgpu::ComputePass<'_>),
    ) -> Result<Timed, GpuError> {
        let mut t = self.run_batch(gpu, label, 1, 1, record).await?;
        Ok(t.remove(0))
    }

    /// [`time_pass`](Self::time_pass) with `record` called `reps` times, back to back, in
    /// the one pass; the times returned are per repetition (pass time / `reps`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_pass_reps(
        &self,
        gpu: &GpuContext,
        label: &str,
        reps: u32,
        record: &mut dyn FnMut(&mut wgpu::ComputePass<'_>),
    ) -> Result<Timed, GpuError> {
        let mut t = super::block_on(self.run_batch(gpu, label, 1, reps, record))?;
        Ok(t.remove(0))
    }

    /// `warmup` untimed passes, then `runs` timed ones, each pass holding `reps_per_sample`
    /// back-to-back repetitions of `record`; every sample is its pass time divided by
    /// `reps_per_sample`.
    ///
    /// Why repetitions: a pass of one short dispatch (tens of µs) is dominated by fixed
    /// costs: the timestamp writes, the pipeline barrier, the ramp-up and drain of a grid on
    /// an idle GPU (and with the wall clock, the submission and wake-up). K repetitions in
    /// one pass pay those once per K, the same way in every sample, so samples of different
    /// kernels or sizes are comparable when they use the same K. wgpu places a barrier
    /// between dispatches that write a buffer another one uses, so repetitions run one after
    /// another, as the kernels of a decode step do. Choose K so a pass lasts ~1 ms or more,
    /// and mind the caches (module documentation): the repetitions re-read the same data.
    ///
    /// Warm-up passes run exactly like timed ones (timestamps included), their results
    /// dropped: they compile, page in and clock up.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn measure(
        &self,
        gpu: &GpuContext,
        label: &str,
        warmup: usize,
        runs: usize,
        reps_per_sample: u32,
        record: &mut dyn FnMut(&mut wgpu::ComputePass<'_>),
    ) -> Result<Measurement, GpuError> {
        super::block_on(self.measure_async(gpu, label, warmup, runs, reps_per_sample, record))
    }

    /// [`measure`](Self::measure), awaited (the browser's kernel lab).
    pub async fn measure_async(
        &self,
        gpu: &GpuContext,
        label: &str,
        warmup: usize,
        runs: usize,
        reps_per_sample: u32,
        record: &mut dyn FnMut(&mut wgpu::ComputePass<'_>),
    ) -> Result<Measurement, GpuError> {
        if runs == 0 {
            return Err(GpuError::Other(format!("{label}: measure needs runs >= 1")));
        }
        let reps = reps_per_sample.max(1);
        let mut left = warmup;
        while left > 0 {
            let n = left.min(self.max_spans as usize);
            self.run_batch(gpu, label, n, reps, record).await?;
            left -= n;
        }
        let mut timed = Vec::with_capacity(runs);
        while timed.len() < runs {
            let n = (runs - timed.len()).min(self.max_spans as usize);
            timed.extend(self.run_batch(gpu, label, n, reps, record).await?);
        }
        Ok(Measurement::from_timed(&timed, reps, self.source))
    }

    /// Untimed passes until `min_seconds` of wall clock have gone by (one pass at least).
    /// On the H200 every kernel ran about 3x slow for the first ~200 ms after a synthetic
    /// model's upload (bench/2026-12-01-h200-packed-dot): a count of warm-up passes that is
    /// enough for a small step is not for a large one.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn warm_up_for(
        &self,
        gpu: &GpuContext,
        label: &str,
        min_seconds: f64,
        record: &mut dyn FnMut(&mut wgpu::ComputePass<'_>),
    ) -> Result<(), GpuError> {
        let t0 = Instant::now();
        loop {
            super::block_on(self.run_batch(gpu, label, 1, 1, record))?;
            if t0.elapsed().as_secs_f64() >= min_seconds {
                return Ok(());
            }
        }
    }

    /// `n` (<= max_spans) passes, each submitted alone and waited for, then one readback of
    /// their timestamps.
    async fn run_batch(
        &self,
        gpu: &GpuContext,
        label: &str,
        n: usize,
        reps: u32,
        record: &mut dyn FnMut(&mut wgpu::ComputePass<'_>),
    ) -> Result<Vec<Timed>, GpuError> {
        debug_assert!(n >= 1 && n <= self.max_spans as usize);
        let reps = reps.max(1);
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut walls = Vec::with_capacity(n);
        for i in 0..n {
            let mut enc = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
            {
                let timestamp_writes =
                    self.queries
                        .as_ref()
                        .map(|q| wgpu::ComputePassTimestampWrites {
                            query_set: &q.set,
                            beginning_of_pass_write_index: Some(2 * i as u32),
                            end_of_pass_write_index: Some(2 * i as u32 + 1),
                        });
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(label),
                    timestamp_writes,
                });
                for _ in 0..reps {
                    record(&mut pass);
                }
            }
            let cmd = enc.finish();
            let t0 = Instant::now();
            gpu.queue.submit([cmd]);
            gpu.wait_async().await?;
            walls.push(t0.elapsed().as_secs_f64());
        }
        let raw: Option<Vec<u64>> = match &self.queries {
            Some(q) => {
                let bytes = 2 * n as u64 * wgpu::QUERY_SIZE as u64;
                let mut enc = gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("GpuTimer resolve"),
                    });
                enc.resolve_query_set(&q.set, 0..2 * n as u32, &q.resolve, 0);
                q.readback.copy_from(&mut enc, &q.resolve, bytes);
                gpu.queue.submit([enc.finish()]);
                let b = q.readback.read_async(gpu, bytes).await?;
                Some(bytemuck::pod_collect_to_vec(&b))
            }
            None => None,
        };
        if let Some(e) = scope.pop().await {
            return Err(GpuError::Other(format!("{label}: {e}")));
        }
        let r = reps as f64;
        Ok(walls
            .iter()
            .enumerate()
            .map(|(i, &wall)| {
                let gpu_s = match (&raw, &self.queries) {
                    (Some(raw), Some(q)) => {
                        span_seconds(raw[2 * i], raw[2 * i + 1], q.period_ns, wall)
                    }
                    _ => None,
                };
                Timed {
                    seconds: gpu_s.unwrap_or(wall) / r,
                    source: if gpu_s.is_some() {
                        TimingSource::Timestamps
                    } else {
                        TimingSource::WallClock
                    },
                    gpu_s: gpu_s.map(|s| s / r),
                    wall_s: wall / r,
                }
            })
            .collect())
    }
}

/// Seconds between two raw timestamps, or `None` when the pair is unusable: a zero
/// (never written, or a driver that does not implement them), end not after start
/// (wrapped or unordered counters), or a span longer than the wall-clock interval around
/// the submission that contains it (a wrong period or garbage).
fn span_seconds(start: u64, end: u64, period_ns: f64, wall_s: f64) -> Option<f64> {
    if start == 0 || end == 0 || end <= start {
        return None;
    }
    let s = (end - start) as f64 * period_ns * 1e-9;
    // 5 % and 100 µs of slack for clock-rate differences and the wait's granularity
    if !s.is_finite() || s <= 0.0 || s > wall_s * 1.05 + 1e-4 {
        return None;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::test_gpu as gpu;

    #[test]
    fn timer_reports_validation_errors() {
        let (g, _l) = gpu();
        let timer = GpuTimer::new(&g, 1);
        // a dispatch with no pipeline set
        let r = timer.time_pass(&g, "broken", &mut |p| p.dispatch_workgroups(1, 1, 1));
        assert!(r.is_err(), "{r:?}");
        let r = timer.measure(&g, "none", 0, 0, 1, &mut |_| {});
        assert!(r.is_err());
    }

    #[test]
    fn unusable_timestamps_fall_back() {
        assert_eq!(span_seconds(0, 100, 1.0, 1.0), None);
        assert_eq!(span_seconds(100, 0, 1.0, 1.0), None);
        assert_eq!(span_seconds(200, 100, 1.0, 1.0), None);
        assert_eq!(span_seconds(100, 100, 1.0, 1.0), None);
        // 2 s of GPU time inside 1 ms of wall clock is garbage
        assert_eq!(span_seconds(1, 2_000_000_001, 1.0, 1e-3), None);
        assert_eq!(span_seconds(1_000, 501_000, 2.0, 1e-3), Some(1e-3));
        let t = |gpu_s: Option<f64>, wall_s: f64| Timed {
            seconds: gpu_s.unwrap_or(wall_s),
            source: if gpu_s.is_some() {
                TimingSource::Timestamps
            } else {
                TimingSource::WallClock
            },
            gpu_s,
            wall_s,
        };
        let m = Measurement::from_timed(
            &[t(Some(1.0), 2.0), t(None, 4.0), t(Some(1.0), 3.0)],
            1,
            TimingSource::Timestamps,
        );
        assert_eq!(m.source, TimingSource::WallClock);
        assert_eq!(m.timestamp_failures, 1);
        assert_eq!(m.samples, vec![2.0, 4.0, 3.0]);
        assert_eq!((m.median_s, m.min_s), (3.0, 2.0));
        let m = Measurement::from_timed(
            &[t(Some(1.0), 2.0), t(Some(3.0), 4.0)],
            1,
            TimingSource::Timestamps,
        );
        assert_eq!(m.source, TimingSource::Timestamps);
        assert_eq!(m.median_s, 2.0);
    }
}
