//! Rough per-kernel wall times on the current adapter (development aid).
use headroom::gpu::{GpuContext, GpuOptions, StorageFormat};
use headroom::ops::attention::Attention;
use headroom::ops::matmul::{Matmul, MatmulMode, WeightMatrix};
use headroom::ops::{Op, StepParams, StepShape};
use std::time::Instant;

fn main() {
    let g = GpuContext::new_blocking(&GpuOptions::default()).unwrap();
    let step = g.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let time = |name: &str, op: &dyn Op, t: u32, pos0: u32| {
        let p = StepParams {
            n_tokens: t,
            pos0,
            out_row0: t - 1,
            n_out_rows: 1,
            top_p: 1.0,
            ..Default::default()
        };
        g.queue.write_buffer(&step, 0, bytemuck::bytes_of(&p));
        let shape = StepShape::single(t, pos0);
        for rep in 0..2 {
            let start = Instant::now();
            let n = 10;
            let mut enc = g.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for _ in 0..n {
                    op.record(&mut pass, &shape);
                }
            }
            g.queue.submit([enc.finish()]);
            g.wait().unwrap();
            if rep == 1 {
                println!(
                    "{name:<40} {:8.3} ms",
                    start.elapsed().as_secs_f64() * 1000.0 / n as f64
                );
            }
        }
    };
    let dummy = g.storage("d", 16).unwrap();
    for &(k, n) in &[(576usize, 1536usize), (1536, 576), (576, 49152)] {
        for &t in &[1u32, 64] {
            let w = vec![0.01f32; k * n];
            let fmt = if std::env::var_os("F32").is_some() {
                StorageFormat::F32
            } else {
                StorageFormat::F16
            };
            let wm = WeightMatrix::upload(&g, "w", &w, n, k, fmt).unwrap();
            let x = g.storage("x", (64 * k * 4) as u64).unwrap();
            let y = g.storage("y", (64 * n * 4) as u64).unwrap();
            let op = Matmul::new(&g, &step, &wm, None, &x, &y, MatmulMode::default(), &dummy);
            time(&format!("matmul k={k} n={n} t={t}"), &op, t, 0);
        }
    }
    let (nh, nkv, d) = (9, 3, 64);
    let qkv = g
        .storage("qkv", (64 * (nh + 2 * nkv) * d * 4) as u64)
        .unwrap();
    let kc = g.storage("k", (4096 * nkv * d * 2) as u64).unwrap();
    let vc = g.storage("v", (4096 * nkv * d * 2) as u64).unwrap();
    let out = g.storage("o", (64 * nh * d * 4) as u64).unwrap();
    let op = Attention::new(
        &g,
        &step,
        nh,
        nkv,
        d,
        &qkv,
        &kc,
        &vc,
        &out,
        StorageFormat::F16,
    );
    time("attention t=1 pos0=40", &op, 1, 40);
    time("attention t=64 pos0=0", &op, 64, 0);
}
