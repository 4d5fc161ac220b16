//! The explorer's measurements: a task that owns its own GPU device, probes the copy
//! bandwidth once (the same probe as `headroom bench attention`) and then times the real
//! decode-attention kernels at the shapes it is sent, with the benchmark's own
//! `metrics::attention_lab::measure`. It runs on its own thread natively and as a task on the
//! page's event loop in the browser. The UI never waits on it: it polls for replies.

use crate::gpu::timing::GpuTimer;
use crate::gpu::{GpuContext, GpuOptions};
use crate::metrics::attention::AttentionShape;
use crate::metrics::attention_lab::{measure_async, AttentionResult, Shape};
use crate::metrics::probe::{probe_copy_bandwidth_async, probe_fma_rate_async, ProbeOptions};
use futures_channel::mpsc as jobs_channel;
use futures_util::StreamExt;
use std::sync::mpsc;

/// Positions per KV block, as the engine and the benchmark use.
const BLOCK_SIZE: usize = 16;

/// How the lab measures.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub adapter: Option<String>,
    /// bytes of the bandwidth probe; None: 1 GiB on a GPU (256 MiB in a browser), 64 MiB
    /// on a CPU adapter
    pub probe_bytes: Option<u64>,
    /// timed samples per shape (median shown); None: 20 on a GPU (as the benchmark), 3 on
    /// a CPU adapter
    pub runs: Option<usize>,
}

/// What the lab's device is and how fast it copies.
#[derive(Clone, Debug, PartialEq)]
pub struct LabDevice {
    pub adapter: String,
    pub copy_gbps: f64,
    /// the probed f32 FMA rate (the roofline's flat roof); None where the probe failed
    pub fma_gflops: Option<f64>,
    /// whether times come from GPU timestamps or the wall clock
    pub timing: &'static str,
    /// true for a software (CPU) adapter such as lavapipe
    pub cpu_adapter: bool,
}

/// A reply from the lab.
#[derive(Debug)]
pub enum LabReply {
    Ready(LabDevice),
    Measured {
        shape: AttentionShape,
        result: Box<AttentionResult>,
    },
    Failed {
        shape: Option<AttentionShape>,
        message: String,
    },
}

/// The handle the UI holds.
pub struct KernelLab {
    jobs: jobs_channel::UnboundedSender<Vec<AttentionShape>>,
    replies: mpsc::Receiver<LabReply>,
    /// shapes sent and not answered yet
    pub pending: usize,
}

impl KernelLab {
    /// Starts the lab; it answers `Ready` (or `Failed`) once probed.
    pub fn start(options: LabOptions) -> KernelLab {
        let (jobs, job_rx) = jobs_channel::unbounded::<Vec<AttentionShape>>();
        let (reply_tx, replies) = mpsc::channel();
        // the future holds GPU handles that stay on the thread (or page) that runs it
        #[cfg(not(target_arch = "wasm32"))]
        let spawned = std::thread::Builder::new()
            .name("headroom-kernel-lab".into())
            .spawn(move || crate::gpu::block_on(lab_loop(options, job_rx, reply_tx)));
        #[cfg(target_arch = "wasm32")]
        let spawned: Result<(), String> = {
            wasm_bindgen_futures::spawn_local(lab_loop(options, job_rx, reply_tx));
            Ok(())
        };
        let lab = KernelLab {
            jobs,
            replies,
            pending: 0,
        };
        if let Err(e) = spawned {
            // the UI sees the failure through the channel it polls
            let (tx, rx) = mpsc::channel();
            let _ = tx.send(LabReply::Failed {
                shape: None,
                message: format!("starting the kernel lab: {e}"),
            });
            return KernelLab { replies: rx, ..lab };
        }
        lab
    }

    /// Queues shapes to measure, one reply each.
    pub fn measure(&mut self, shapes: Vec<AttentionShape>) {
        self.pending += shapes.len();
        if self.jobs.unbounded_send(shapes).is_err() {
            self.pending = 0;
        }
    }

    /// The replies that have arrived.
    pub fn poll(&mut self) -> Vec<LabReply> {
        let replies: Vec<LabReply> = self.replies.try_iter().collect();
        for r in &replies {
            if matches!(
                r,
                LabReply::Measured { .. } | LabReply::Failed { shape: Some(_), .. }
            ) {
                self.pending = self.pending.saturating_sub(1);
            }
        }
        replies
    }
}

async fn lab_loop(
    options: LabOptions,
    mut jobs: jobs_channel::UnboundedReceiver<Vec<AttentionShape>>,
    replies: mpsc::Sender<LabReply>,
) {
    let gpu = match GpuContext::new(&GpuOptions {
        adapter: options.adapter.clone(),
        ..Default::default()
    })
    .await
    {
        Ok(g) => g,
        Err(e) => {
            let _ = replies.send(LabReply::Failed {
                shape: None,
                message: format!("no GPU for the kernel lab: {e}"),
            });
            return;
        }
    };
    let cpu_adapter = gpu.adapter_info.device_type == wgpu::DeviceType::Cpu;
    let gpu_probe = if cfg!(target_arch = "wasm32") {
        256 << 20
    } else {
        1 << 30
    };
    let probe_bytes = options
        .probe_bytes
        .unwrap_or(if cpu_adapter { 64 << 20 } else { gpu_probe });
    let runs = options.runs.unwrap_or(if cpu_adapter { 3 } else { 20 });
    let probe = match probe_copy_bandwidth_async(&gpu, probe_bytes, &ProbeOptions::default()).await
    {
        Ok(p) => p,
        Err(e) => {
            let _ = replies.send(LabReply::Failed {
                shape: None,
                message: format!("bandwidth probe: {e}"),
            });
            return;
        }
    };
    let fma = probe_fma_rate_async(&gpu, &ProbeOptions::default()).await;
    let timer = GpuTimer::new(&gpu, 64);
    let device = LabDevice {
        adapter: gpu.adapter_name(),
        copy_gbps: probe.gbps_read_write,
        fma_gflops: fma.ok().map(|f| f.gflops),
        timing: timer.source().name(),
        cpu_adapter,
    };
    let copy_gbps = device.copy_gbps;
    if replies.send(LabReply::Ready(device)).is_err() {
        return;
    }
    while let Some(shapes) = jobs.next().await {
        for shape in shapes {
            let variant = shape.variant();
            let s = Shape {
                variant: &variant,
                batch: shape.batch,
                context: shape.context,
                block_size: BLOCK_SIZE,
            };
            let reply = match measure_async(&gpu, &timer, &s, runs, copy_gbps).await {
                Ok(result) => LabReply::Measured {
                    shape,
                    result: Box::new(result),
                },
                Err(e) => LabReply::Failed {
                    shape: Some(shape),
                    message: e.to_string(),
                },
            };
            if replies.send(reply).is_err() {
                return;
            }
        }
    }
}
