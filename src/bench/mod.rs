//! Benchmarks that need no model file: decode attention alone, and a whole decode step of
//! a synthetic model. Numbers are measured on the GPU (timestamp queries where the adapter
//! has them) and set beside the probed copy bandwidth of the same run.

pub mod attention;
#[cfg(not(target_arch = "wasm32"))]
pub mod decode_step;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;

/// An error of a benchmark run, with what it was doing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(pub String);

impl From<crate::gpu::GpuError> for BenchError {
    fn from(e: crate::gpu::GpuError) -> Self {
        BenchError(e.to_string())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError(e.to_string())
    }
}
