//! Opening a model by path (a GGUF file or an HF directory), and the tensor list and
//! shapes every source is checked against.

use super::config::ModelConfig;
use super::source::{LayerTensor, LoadError, TensorName};
#[cfg(not(target_arch = "wasm32"))]
use {
    super::gguf::GGUF_MAGIC, super::gguf_model::GgufModel, super::hf::HfModel,
    super::source::WeightSource, std::io::Read, std::path::Path,
};

/// Opens `path`: a directory is a Hugging Face model (config.json + safetensors), a file
/// starting with the GGUF magic is a GGUF model.
#[cfg(not(target_arch = "wasm32"))]
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

/// Every tensor a model of this config has: biases only with `attention_bias`, lm_head
/// only when embeddings are not tied.
pub fn tensor_names(cfg: &ModelConfig) -> Vec<TensorName> {
    let mut names = vec![TensorName::TokenEmbedding];
    for l in 0..cfg.num_layers {
        use LayerTensor::*;
        let mut layer = vec![AttnNorm, Wq, Wk, Wv];
        if cfg.attention_bias {
            layer.extend([Bq, Bk, Bv]);
        }
        layer.extend([Wo, FfnNorm, WGate, WUp, WDown]);
        names.extend(layer.into_iter().map(|t| TensorName::Layer(l, t)));
    }
    names.push(TensorName::FinalNorm);
    if !cfg.tie_word_embeddings {
        names.push(TensorName::LmHead);
    }
    names
}

/// Row-major shape of a tensor, outermost first (see [`TensorName`]'s docs).
pub fn expected_shape(cfg: &ModelConfig, name: TensorName) -> Vec<usize> {
    let q = cfg.num_heads * cfg.head_dim;
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
    match name {
        TensorName::TokenEmbedding | TensorName::LmHead => vec![cfg.vocab_size, h],
        TensorName::FinalNorm => vec![h],
        TensorName::Layer(_, t) => match t {
            LayerTensor::AttnNorm | LayerTensor::FfnNorm => vec![h],
            LayerTensor::Wq => vec![q, h],
            LayerTensor::Wk | LayerTensor::Wv => vec![kv, h],
            LayerTensor::Bq => vec![q],
            LayerTensor::Bk | LayerTensor::Bv => vec![kv],
            LayerTensor::Wo => vec![h, q],
            LayerTensor::WGate | LayerTensor::WUp => vec![f, h],
            LayerTensor::WDown => vec![h, f],
        },
    }
}

/// Errors unless `shape` is what the config says `name` (stored as `file_name`) must be.
pub(crate) fn check_shape(
    path: &str,
    file_name: &str,
    cfg: &ModelConfig,
    name: TensorName,
    shape: &[usize],
) -> Result<(), LoadError> {
    let want = expected_shape(cfg, name);
    if shape != want.as_slice() {
        return Err(LoadError::new(
            path,
            format!(
                "tensor '{file_name}' ({name}) has shape {shape:?}, the config needs {want:?} \
                 (row-major)"
            ),
        ));
    }
    Ok(())
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

    #[test]
    fn names_and_shapes() {
        let mut cfg = tiny_config(Arch::Qwen2, 4, 1, false);
        cfg.attention_bias = true;
        let names = tensor_names(&cfg);
        assert_eq!(names.len(), 3 + cfg.num_layers * 12);
        assert!(names.contains(&TensorName::LmHead));
        assert_eq!(
            expected_shape(&cfg, TensorName::Layer(0, LayerTensor::Wk)),
            vec![cfg.head_dim, cfg.hidden_size]
        );
        let e = check_shape("f", "w", &cfg, TensorName::FinalNorm, &[3]).unwrap_err();
        assert!(
            e.to_string().contains("'w' (final_norm) has shape [3]"),
            "{e}"
        );
    }
}
