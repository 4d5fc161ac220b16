//! The roofline of a profiled step: each kernel family as a point at (its declared FLOPs
//! per byte, its achieved GFLOP/s), under the adapter's two roofs probed at start: the
//! copy bandwidth times the intensity (sloped), and the FMA rate (flat). A point near the
//! sloped roof is bound by memory, one near the flat roof by arithmetic; how far below its
//! roof it sits is what is left on the table.

use crate::model::gpu_model::KernelTime;

/// The two roofs of an adapter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Roofs {
    /// the probed copy bandwidth, GB/s
    pub gbps: f64,
    /// the probed FMA rate, GFLOP/s
    pub gflops: f64,
}

impl Roofs {
    /// What a kernel of `intensity` FLOPs per byte can reach: min(bandwidth x intensity,
    /// FMA rate), GFLOP/s.
    pub fn attainable(&self, intensity: f64) -> f64 {
        (self.gbps * intensity).min(self.gflops)
    }

    /// The intensity where the roofs meet (FLOPs per byte): kernels left of it are bound
    /// by memory.
    pub fn ridge(&self) -> f64 {
        self.gflops / self.gbps
    }
}

/// One kernel family of a step on the roofline.
#[derive(Clone, Debug, PartialEq)]
pub struct RooflinePoint {
    pub family: &'static str,
    /// declared FLOPs per declared byte
    pub intensity: f64,
    /// declared FLOPs per second of its GPU time, in GFLOP/s
    pub gflops: f64,
    /// its declared bytes per second, in GB/s
    pub gbps: f64,
    /// its share of the step's GPU time
    pub share: f64,
}

impl RooflinePoint {
    /// How much of its roof it reaches (0..1 where the probes are right).
    pub fn of_roof(&self, roofs: &Roofs) -> f64 {
        self.gflops / roofs.attainable(self.intensity)
    }
}

/// The points of a profiled step's kernel families; families without time, bytes or
/// FLOPs have no place on the chart and are left out.
pub fn roofline_points(kernels: &[KernelTime]) -> Vec<RooflinePoint> {
    let total: f64 = kernels.iter().map(|k| k.seconds).sum();
    kernels
        .iter()
        .filter(|k| k.seconds > 0.0 && k.bytes > 0 && k.flops > 0)
        .map(|k| RooflinePoint {
            family: k.family,
            intensity: k.flops as f64 / k.bytes as f64,
            gflops: k.flops as f64 / k.seconds / 1e9,
            gbps: k.bytes as f64 / k.seconds / 1e9,
            share: k.seconds / total,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(family: &'static str, seconds: f64, bytes: u64, flops: u64) -> KernelTime {
        KernelTime {
            family,
            seconds,
            bytes,
            flops,
        }
    }

    /// A step of known cost lands where its numbers say: a matvec of 2 GB and 2 GFLOP in
    /// 1 ms at (1 FLOP/byte, 2 000 GFLOP/s), half its memory roof of 4 000 GB/s; a GEMM at
    /// 100 FLOP/byte under the flat roof; a family without FLOPs is left out.
    #[test]
    fn a_step_of_known_cost_lands_at_its_coordinates() {
        let roofs = Roofs {
            gbps: 4000.0,
            gflops: 60_000.0,
        };
        assert_eq!(roofs.ridge(), 15.0);
        let points = roofline_points(&[
            kernel("matmul", 1e-3, 2_000_000_000, 2_000_000_000),
            kernel("gemm", 2e-3, 1_000_000_000, 100_000_000_000),
            kernel("embed", 1e-3, 1_000, 0),
        ]);
        assert_eq!(points.len(), 2);
        let m = &points[0];
        assert_eq!((m.family, m.intensity), ("matmul", 1.0));
        assert!((m.gflops - 2000.0).abs() < 1e-9 && (m.gbps - 2000.0).abs() < 1e-9);
        assert!(
            (m.of_roof(&roofs) - 0.5).abs() < 1e-12,
            "{}",
            m.of_roof(&roofs)
        );
        assert!((m.share - 0.25).abs() < 1e-12);
        let g = &points[1];
        assert_eq!(g.intensity, 100.0);
        assert!((g.gflops - 50_000.0).abs() < 1e-6);
        // right of the ridge: the flat roof
        assert_eq!(roofs.attainable(g.intensity), 60_000.0);
        assert!((g.of_roof(&roofs) - 50.0 / 60.0).abs() < 1e-12);
    }
}
