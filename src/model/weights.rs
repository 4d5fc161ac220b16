//! Where a model graph takes its weights from: a model file (uploaded from the host) or
//! pseudo-random values made on the GPU, as the matrices the GPU holds (q/k/v and
//! gate/up stacked by rows, so each is one matmul).

use super::error::ModelError;
use crate::gpu::quant_layout::QuantType;
use crate::gpu::{GpuContext, StorageFormat};
use crate::model::source::{LayerTensor, LoadError, TensorName, WeightSource};
use crate::ops::matmul::WeightMatrix;

/// A weight matrix of the model graph as the GPU holds it (q/k/v and gate/up fused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphMatrix {
    /// `[vocab, hidden]`
    Embedding,
    /// `[(heads + 2 kv_heads) head_dim, hidden]`: Wq, Wk, Wv stacked
    Qkv(usize),
    /// `[hidden, heads head_dim]`
    Wo(usize),
    /// `[2 intermediate, hidden]`: Wgate, Wup stacked
    GateUp(usize),
    /// `[hidden, intermediate]`
    Down(usize),
    /// `[vocab, hidden]` (untied heads only)
    LmHead,
}

impl GraphMatrix {
    fn label(self) -> String {
        match self {
            GraphMatrix::Embedding => "token_embedding".into(),
            GraphMatrix::Qkv(l) => format!("layers.{l}.wqkv"),
            GraphMatrix::Wo(l) => format!("layers.{l}.wo"),
            GraphMatrix::GateUp(l) => format!("layers.{l}.w_gate_up"),
            GraphMatrix::Down(l) => format!("layers.{l}.w_down"),
            GraphMatrix::LmHead => "lm_head".into(),
        }
    }

    /// The canonical tensors stacked (by rows) into this matrix.
    fn tensors(self) -> Vec<TensorName> {
        use LayerTensor::*;
        let lt = |l, ts: &[LayerTensor]| ts.iter().map(|&t| TensorName::Layer(l, t)).collect();
        match self {
            GraphMatrix::Embedding => vec![TensorName::TokenEmbedding],
            GraphMatrix::Qkv(l) => lt(l, &[Wq, Wk, Wv]),
            GraphMatrix::Wo(l) => lt(l, &[Wo]),
            GraphMatrix::GateUp(l) => lt(l, &[WGate, WUp]),
            GraphMatrix::Down(l) => lt(l, &[WDown]),
            GraphMatrix::LmHead => vec![TensorName::LmHead],
        }
    }

    /// A small number per matrix, for seeds.
    fn index(self) -> u32 {
        match self {
            GraphMatrix::Embedding => 0,
            GraphMatrix::LmHead => 1,
            GraphMatrix::Qkv(l) => 2 + 4 * l as u32,
            GraphMatrix::Wo(l) => 3 + 4 * l as u32,
            GraphMatrix::GateUp(l) => 4 + 4 * l as u32,
            GraphMatrix::Down(l) => 5 + 4 * l as u32,
        }
    }
}

/// A weight matrix's values: read from a file, or made on the GPU.
pub enum MatrixValues {
    /// row-major `[rows, cols]`
    Host(Vec<f32>),
    /// GGML blocks as the file stores them, rows in canonical order
    Blocks(QuantType, Vec<u8>),
    /// uniform in ±scale from this seed (`WeightMatrix::random`)
    Random { seed: u32, scale: f32 },
}

/// Where the graph builder takes its weights from.
pub trait WeightProvider {
    /// Where the weights come from, for messages.
    fn name(&self) -> String;
    /// The values of matrix `m`, `cols` wide, stacked from tensors of `parts` rows each
    /// (one entry for a plain matrix).
    fn matrix(
        &mut self,
        m: GraphMatrix,
        parts: &[usize],
        cols: usize,
    ) -> Result<MatrixValues, ModelError>;
    /// A vector of `n` values: norm weights and q/k/v biases.
    fn vector(&mut self, name: TensorName, n: usize) -> Result<Vec<f32>, ModelError>;
}

impl GraphMatrix {
    /// Matrix `m` on the GPU, `[sum(parts), cols]`, stored as `format`.
    pub fn upload(
        self,
        w: &mut dyn WeightProvider,
        gpu: &GpuContext,
        parts: &[usize],
        cols: usize,
        format: StorageFormat,
    ) -> Result<WeightMatrix, ModelError> {
        let rows = parts.iter().sum();
        let label = self.label();
        Ok(match w.matrix(self, parts, cols)? {
            MatrixValues::Host(v) => WeightMatrix::upload(gpu, &label, &v, rows, cols, format)?,
            MatrixValues::Blocks(ty, bytes) => {
                WeightMatrix::upload_blocks(gpu, &label, ty, &bytes, rows, cols, usize::MAX)?
            }
            MatrixValues::Random { seed, scale } => {
                WeightMatrix::random(gpu, &label, rows, cols, format, seed, scale)?
            }
        })
    }
}

/// Reads a canonical tensor and checks its element count.
fn load(src: &dyn WeightSource, name: TensorName, numel: usize) -> Result<Vec<f32>, ModelError> {
    let t = src.load(name)?;
    if t.data.len() != numel {
        return Err(LoadError::new(
            src.path(),
            format!(
                "{name}: expected {numel} elements, found {} (shape {:?})",
                t.data.len(),
                t.shape
            ),
        )
        .into());
    }
    Ok(t.data)
}

/// The weights of a model file; with `quantized`, matrices whose tensors are all stored in
/// one GGML block type the GPU reads (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) stay
/// in those blocks.
pub struct FileWeights<'a> {
    pub src: &'a dyn WeightSource,
    pub quantized: bool,
    /// matrices not kept as the file's blocks are quantized to this type at load, where
    /// their rows are whole blocks (`GpuModelOptions::quantize`)
    pub quantize: Option<QuantType>,
}

impl FileWeights<'_> {
    /// The stacked tensors' blocks, if every one is stored in the same GPU-readable type.
    fn blocks(&self, m: GraphMatrix) -> Result<Option<(QuantType, Vec<u8>)>, ModelError> {
        let mut out: Option<(QuantType, Vec<u8>)> = None;
        for name in m.tensors() {
            let Some((ty, bytes)) = self.src.blocks(name)? else {
                return Ok(None);
            };
            match (QuantType::from_ggml(ty), &mut out) {
                (Some(q), None) => out = Some((q, bytes)),
                (Some(q), Some((first, all))) if q == *first => all.extend(bytes),
                _ => return Ok(None),
            }
        }
        Ok(out)
    }
}

impl WeightProvider for FileWeights<'_> {
    fn name(&self) -> String {
        self.src.path().to_string()
    }

    fn matrix(
        &mut self,
        m: GraphMatrix,
        parts: &[usize],
        cols: usize,
    ) -> Result<MatrixValues, ModelError> {
        if self.quantized {
            if let Some((ty, bytes)) = self.blocks(m)? {
                return Ok(MatrixValues::Blocks(ty, bytes));
            }
        }
        let mut data = Vec::with_capacity(parts.iter().sum::<usize>() * cols);
        for (name, &n) in m.tensors().into_iter().zip(parts) {
            data.extend(load(self.src, name, n * cols)?);
        }
        match self.quantize {
            Some(ty) if cols.is_multiple_of(ty.block_values()) => {
                let blocks = crate::formats::quant::quantize(ty.ggml(), &data)
                    .map_err(|e| LoadError::new(self.src.path(), format!("{}: {e}", m.label())))?;
                Ok(MatrixValues::Blocks(ty, blocks))
            }
            _ => Ok(MatrixValues::Host(data)),
        }
    }

    fn vector(&mut self, name: TensorName, n: usize) -> Result<Vec<f32>, ModelError> {
        load(self.src, name, n)
    }
}

/// Pseudo-random weights: matrices uniform in ±1/sqrt(cols) (so every projection shrinks
/// the activations' scale a little and nothing overflows), made on the GPU; or, with
/// `quant`, random GGML blocks of that type made on the host whose values stay within the
/// same bound. Norm weights 1, biases 0.
pub struct RandomWeights {
    pub seed: u32,
    pub quant: Option<QuantType>,
}

/// `blocks` random blocks of `ty` (xorshift bytes), scales set so values lie within ±bound.
pub(crate) fn random_blocks(ty: QuantType, blocks: usize, bound: f32, seed: u32) -> Vec<u8> {
    let bb = ty.ggml().type_size();
    let mut state = (seed as u64) << 1 | 1;
    let mut bytes = vec![0u8; blocks * bb];
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    // Q4: values (q - 8) d, or q d + m; Q5 the same with 16; Q8: q d with |q| <= 128; Q4_K/Q5_K: d sc q - dmin m
    // with 6-bit sc and m, q < 16 or 32; Q6_K: d sc (q - 32) with sc a signed byte
    let d = match ty {
        QuantType::Q8_0 => bound / 128.0,
        QuantType::Q4_0 | QuantType::Q4_1 => bound / 8.0,
        QuantType::Q5_0 | QuantType::Q5_1 => bound / 16.0,
        QuantType::Q4_K => bound / (63.0 * 15.0),
        QuantType::Q5_K => bound / (63.0 * 31.0),
        QuantType::Q6_K => bound / (128.0 * 32.0),
    };
    let f16 = |v: f32| half::f16::from_f32(v).to_le_bytes();
    for block in bytes.chunks_mut(bb) {
        match ty {
            QuantType::Q4_1 => {
                block[..2].copy_from_slice(&f16(d));
                block[2..4].copy_from_slice(&f16(-8.0 * d));
            }
            QuantType::Q5_1 => {
                block[..2].copy_from_slice(&f16(d));
                block[2..4].copy_from_slice(&f16(-16.0 * d));
            }
            // dmin: the mins (up to 63) take at most half the bound
            QuantType::Q4_K | QuantType::Q5_K => {
                block[..2].copy_from_slice(&f16(d / 2.0));
                block[2..4].copy_from_slice(&f16(bound / 126.0));
            }
            QuantType::Q6_K => block[208..210].copy_from_slice(&f16(d)),
            _ => block[..2].copy_from_slice(&f16(d)),
        }
    }
    bytes
}

impl WeightProvider for RandomWeights {
    fn name(&self) -> String {
        format!("synthetic(seed {})", self.seed)
    }

    fn matrix(
        &mut self,
        m: GraphMatrix,
        parts: &[usize],
        cols: usize,
    ) -> Result<MatrixValues, ModelError> {
        let seed = (self.seed ^ 0x5eed_5eed).wrapping_mul(0x2545_f491) ^ m.index();
        let scale = 1.0 / (cols as f32).sqrt();
        Ok(match self.quant {
            Some(ty) => {
                let blocks = parts.iter().sum::<usize>() * cols / ty.block_values();
                MatrixValues::Blocks(ty, random_blocks(ty, blocks, scale, seed))
            }
            None => MatrixValues::Random { seed, scale },
        })
    }

    fn vector(&mut self, name: TensorName, n: usize) -> Result<Vec<f32>, ModelError> {
        let norm = matches!(
            name,
            TensorName::FinalNorm
                | TensorName::Layer(_, LayerTensor::AttnNorm | LayerTensor::FfnNorm)
        );
        Ok(vec![if norm { 1.0 } else { 0.0 }; n])
    }
}
