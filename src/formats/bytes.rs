//! A model file's bytes: memory-mapped from disk, or owned (tests, the browser).

use std::ops::Deref;
#[cfg(not(target_arch = "wasm32"))]
use {super::LoadError, std::path::Path};

/// The bytes of a model file: memory-mapped, or owned (tests, the browser).
pub enum FileBytes {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

/// Memory-maps `path` read-only.
#[cfg(not(target_arch = "wasm32"))]
pub fn map_file(path: &Path) -> Result<FileBytes, LoadError> {
    let label = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| LoadError::new(&label, e.to_string()))?;
    let len = file
        .metadata()
        .map_err(|e| LoadError::new(&label, e.to_string()))?
        .len();
    if len == 0 {
        return Ok(FileBytes::Owned(Vec::new()));
    }
    // SAFETY: the map is read-only; like every mmap-based loader we assume the file is not
    // truncated or rewritten by another process while the model is open.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| LoadError::new(&label, format!("cannot memory-map: {e}")))?;
    Ok(FileBytes::Mapped(map))
}
