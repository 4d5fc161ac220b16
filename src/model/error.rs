//! The error of building or running a model.

use super::source::LoadError;
use crate::gpu::GpuError;

/// A model file that cannot be read, a GPU failure, or a request the model cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("{0}")]
    Invalid(String),
}
