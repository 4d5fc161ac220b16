//! safetensors files: the tensors of one file with their byte ranges, the shard index
//! (`model.safetensors.index.json`), and f32/f16/bf16 data widened to f32.

use super::LoadError;
use half::{bf16, f16};
pub use safetensors::Dtype;
use safetensors::SafeTensors;
use serde_json::Value;

/// One tensor of a safetensors file.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// byte range in the file
    pub start: usize,
    pub end: usize,
}

/// The tensors of the safetensors file `bytes` (`label` names it in messages), in file
/// order.
pub fn read_tensors(label: &str, bytes: &[u8]) -> Result<Vec<(String, TensorEntry)>, LoadError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| LoadError::new(label, format!("invalid safetensors file: {e}")))?;
    let base = bytes.as_ptr() as usize;
    let mut tensors: Vec<(String, TensorEntry)> = st
        .iter()
        .map(|(name, view)| {
            let start = view.data().as_ptr() as usize - base;
            let t = TensorEntry {
                dtype: view.dtype(),
                shape: view.shape().to_vec(),
                start,
                end: start + view.data().len(),
            };
            (name.to_string(), t)
        })
        .collect();
    tensors.sort_by_key(|(_, t)| t.start);
    Ok(tensors)
}

/// Whether [`to_f32`] reads this dtype.
pub fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16)
}

/// Little-endian `raw` of `dtype` widened to f32; None for a dtype that is not F32, F16
/// or BF16.
pub fn to_f32(dtype: Dtype, raw: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        _ => return None,
    })
}

/// The shard files of an index (sorted), and (tensor, file) for every weight_map entry.
#[allow(clippy::type_complexity)]
pub fn read_index(
    label: &str,
    bytes: &[u8],
) -> Result<(Vec<String>, Vec<(String, String)>), LoadError> {
    let err = |m: String| LoadError::new(label, m);
    let v: Value = serde_json::from_slice(bytes).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| err("no 'weight_map' object".into()))?;
    let mut files: Vec<String> = Vec::new();
    let mut promised = Vec::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| err(format!("weight_map['{name}'] should be a file name")))?;
        if file.contains('/') || file.contains('\\') || file == ".." || file.is_empty() {
            return Err(err(format!(
                "weight_map['{name}'] = '{file}' is not a plain file name"
            )));
        }
        if !files.iter().any(|f| f == file) {
            files.push(file.to_string());
        }
        promised.push((name.clone(), file.to_string()));
    }
    files.sort();
    Ok((files, promised))
}
