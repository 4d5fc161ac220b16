//! Benchmarks that need no model file: decode attention alone, and a whole decode step of
//! a synthetic model. Numbers are measured on the GPU (timestamp queries where the adapter
//! has them) and set beside the probed copy bandwidth of the same run.

pub mod attention;
pub mod decode_step;
pub mod matmul;
pub mod plot;
pub mod serve;
pub mod speculate;
pub mod write_model;

/// Where a benchmark writes its results besides the table it prints.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OutputArgs {
    /// write the results as CSV
    #[arg(long)]
    pub csv: Option<std::path::PathBuf>,
    /// write the results as JSON
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// draw the results (PNG)
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
}

/// An error of a benchmark run, with what it was doing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(pub String);

impl From<crate::gpu::GpuError> for BenchError {
    fn from(e: crate::gpu::GpuError) -> Self {
        BenchError(e.to_string())
    }
}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError(e.to_string())
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
