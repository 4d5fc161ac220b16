//! Opening a model by path: a GGUF file or an HF directory.

#![cfg(not(target_arch = "wasm32"))]

use super::gguf_model::GgufModel;
use super::hf::HfModel;
use super::source::{LoadError, WeightSource};
use crate::formats::gguf::GGUF_MAGIC;
use std::io::Read;
use std::path::Path;

/// Opens `path`: a directory is a Hugging Face model (config.json + safetensors), a file
/// starting with the GGUF magic is a GGUF model.
pub fn open_model(path: &Path) -> Result<Box<dyn WeightSource>, LoadError> {
    let label = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LoadError::new(&label, "no such file or directory")
        } else {
            LoadError::new(&label, e.to_string())
        }
    })?;
    if meta.is_dir() {
        return Ok(Box::new(HfModel::open(path)?));
    }
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|e| LoadError::new(&label, e.to_string()))?;
    if n == 4 && magic == GGUF_MAGIC {
        return Ok(Box::new(GgufModel::open(path)?));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_string());
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
    let message = if ext.as_deref() == Some("safetensors") || name.as_deref() == Some("config.json")
    {
        let dir = path.parent().map(|p| p.display().to_string());
        format!(
            "a Hugging Face model is opened by its directory (with config.json and the \
             .safetensors files): pass {} instead",
            dir.filter(|d| !d.is_empty()).unwrap_or_else(|| ".".into())
        )
    } else {
        "not a GGUF file (no \"GGUF\" magic) and not a Hugging Face model directory".into()
    };
    Err(LoadError::new(label, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Arch;
    use crate::model::synthetic::{tiny_config, write_gguf, write_hf_dir, GgufWriteOptions};
    use crate::model::synthetic::{HfDtype, SyntheticModel};

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("headroom-load-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn opens_by_kind() {
        let dir = tmp("kinds");
        let src = SyntheticModel::new(tiny_config(Arch::Llama, 4, 2, true), 1).unwrap();
        let gguf = dir.join("m.gguf");
        write_gguf(&gguf, &src, &GgufWriteOptions::default()).unwrap();
        let hf = dir.join("hf");
        write_hf_dir(&hf, &src, HfDtype::F32, 1).unwrap();

        let m = open_model(&gguf).unwrap();
        assert_eq!(m.config(), src.config());
        let m = open_model(&hf).unwrap();
        assert_eq!(m.config(), src.config());

        let e = open_model(&hf.join("model.safetensors"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("model.safetensors") && e.contains("pass"), "{e}");
        assert!(e.contains(&hf.display().to_string()), "{e}");
        let e = open_model(&dir.join("nope.gguf"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("nope.gguf: no such file"), "{e}");
        std::fs::write(dir.join("x.bin"), b"hello").unwrap();
        let e = open_model(&dir.join("x.bin")).err().unwrap().to_string();
        assert!(e.contains("x.bin: not a GGUF file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
