//! Matrix times activations: `y[t, n] (+)= x[t, :] . W[n, :] (+ b[n])`.
//! Few token rows use a decode kernel (every weight read once for all rows): for quantized
//! weights where subgroups exist (unless `GpuOptions::no_q8_dot`), x is quantized to
//! 8-bit blocks first and the blocks meet in integer dot products (shaders/quantize_q8.wgsl,
//! shaders/subgroup/matvec_q8.wgsl); otherwise shaders/subgroup/matmul_vec.wgsl or the
//! portable shaders/matmul_vec.wgsl.
//! Many token rows (prefill chunks, batched decode) use a GEMM (`GemmKernel`), chosen per
//! step by rows and the workgroups it fills (`pick_gemm`): on the matrix units where the
//! adapter has cooperative matrices (shaders/coop/gemm_f16_staged.wgsl and gemm_f16.wgsl
//! for f16 weights, and for quantized ones dequantized to f16 rows slice by slice first;
//! shaders/coop/gemm.wgsl staging any format), the decode matvec looping over the rows,
//! f32 with workgroup-memory tiles (shaders/gemm_tiled.wgsl), or the cache-blocked
//! shaders/matmul_blocked.wgsl (the only one on CPU adapters).

use super::{bind, bind_layout, grid_1d, Cost, Op, StepShape};
use crate::gpu::quant_layout::{idot4, QuantType};
use crate::gpu::{
    BindingKind, GemmKernel, GpuContext, GpuError, KernelSource, StorageFormat, WeightFormat,
};
use std::sync::Arc;

/// Token rows up to which the decode kernel runs (its TMAX).
pub const VEC_MAX_ROWS: u32 = 8;

/// A slice of rows of a weight matrix that fits one storage binding.
pub struct WeightPart {
    pub buffer: wgpu::Buffer,
    pub row0: usize,
    pub rows: usize,
}

/// A row-major `[rows, cols]` matrix on the GPU, split by rows where one binding is too small.
pub struct WeightMatrix {
    pub rows: usize,
    pub cols: usize,
    pub format: WeightFormat,
    pub parts: Vec<WeightPart>,
}

impl WeightMatrix {
    /// Uploads `data` (`rows * cols` f32, row-major) as `format`, in as few parts as the
    /// adapter's binding limit allows.
    pub fn upload(
        gpu: &GpuContext,
        label: &str,
        data: &[f32],
        rows: usize,
        cols: usize,
        format: StorageFormat,
    ) -> Result<Self, GpuError> {
        Self::upload_split(gpu, label, data, rows, cols, format, usize::MAX)
    }

    /// As `upload`, with at most `max_part_rows` rows in each part (tests use it to
    /// exercise the split path on small matrices).
    pub fn upload_split(
        gpu: &GpuContext,
        label: &str,
        data: &[f32],
        rows: usize,
        cols: usize,
        format: StorageFormat,
        max_part_rows: usize,
    ) -> Result<Self, GpuError> {
        assert_eq!(
            data.len(),
            rows * cols,
            "{label}: data does not match its shape"
        );
        Self::in_parts(
            gpu,
            label,
            rows,
            cols,
            format.into(),
            max_part_rows,
            |row0, n| {
                let bytes = format.encode(&data[row0 * cols..(row0 + n) * cols]);
                gpu.storage_init(&format!("{label}[{row0}..]"), &bytes)
            },
        )
    }

    /// Uploads GGML blocks of type `ty` as the file stores them (`blocks`: `rows` rows of
    /// `cols / ty.block_values()` blocks each, row-major), laid out for aligned loads
    /// (`gpu::quant_layout`), in as few parts as
    /// the binding limit allows (at most `max_part_rows` rows each).
    pub fn upload_blocks(
        gpu: &GpuContext,
        label: &str,
        ty: QuantType,
        blocks: &[u8],
        rows: usize,
        cols: usize,
        max_part_rows: usize,
    ) -> Result<Self, GpuError> {
        let bv = ty.block_values();
        let row_bytes = cols / bv * ty.ggml().type_size();
        if !cols.is_multiple_of(bv) || blocks.len() != rows * row_bytes {
            return Err(GpuError::Other(format!(
                "{label}: {} bytes are not {rows} rows of {cols} {} values",
                blocks.len(),
                ty.name()
            )));
        }
        let format = WeightFormat::Quant(ty);
        Self::in_parts(gpu, label, rows, cols, format, max_part_rows, |row0, n| {
            let part = ty.repack(&blocks[row0 * row_bytes..(row0 + n) * row_bytes]);
            gpu.storage_init(&format!("{label}[{row0}..]"), &part)
        })
    }

    /// Splits `rows` into parts that each fit one binding (and `max_part_rows`), making
    /// each part's buffer with `make(row0, rows)`.
    fn in_parts(
        gpu: &GpuContext,
        label: &str,
        rows: usize,
        cols: usize,
        format: WeightFormat,
        max_part_rows: usize,
        mut make: impl FnMut(usize, usize) -> Result<wgpu::Buffer, GpuError>,
    ) -> Result<Self, GpuError> {
        if !cols.is_multiple_of(8) || !cols.is_multiple_of(format.block()) {
            return Err(GpuError::Other(format!(
                "{label}: inner dimension {cols} is not a multiple of 8 and of the {} block",
                format.name()
            )));
        }
        let row_bytes = format.bytes_for(cols).max(1);
        // the most rows whose bytes (a padded last super-block included) fit one binding
        let mut max_rows = ((gpu.max_binding() / row_bytes) as usize).min(max_part_rows);
        while max_rows > 0 && format.bytes_for(max_rows * cols) > gpu.max_binding() {
            max_rows -= 1;
        }
        if max_rows == 0 {
            return Err(GpuError::OverLimit {
                what: format!("one row of {label}"),
                bytes: row_bytes,
                limit: gpu.max_binding(),
                limit_name: "max_storage_buffer_binding_size",
            });
        }
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < rows {
            let n = max_rows.min(rows - row0);
            parts.push(WeightPart {
                buffer: make(row0, n)?,
                row0,
                rows: n,
            });
            row0 += n;
        }
        Ok(WeightMatrix {
            rows,
            cols,
            format,
            parts,
        })
    }

    /// A `[rows, cols]` matrix of pseudo-random values uniform in [-scale, scale), made on
    /// the GPU (`gpu::fill::fill_random`) instead of uploaded: synthetic models for
    /// benchmarks. Split into parts by rows exactly as `upload` splits; each part is filled
    /// with its own seed derived from `seed`, so the same seed gives the same matrix on the
    /// same adapter limits. Submits the fills and returns without waiting.
    pub fn random(
        gpu: &GpuContext,
        label: &str,
        rows: usize,
        cols: usize,
        format: StorageFormat,
        seed: u32,
        scale: f32,
    ) -> Result<Self, GpuError> {
        Self::random_split(gpu, label, rows, cols, format, seed, scale, usize::MAX)
    }

    /// As `random`, with at most `max_part_rows` rows in each part.
    #[allow(clippy::too_many_arguments)]
    pub fn random_split(
        gpu: &GpuContext,
        label: &str,
        rows: usize,
        cols: usize,
        format: StorageFormat,
        seed: u32,
        scale: f32,
        max_part_rows: usize,
    ) -> Result<Self, GpuError> {
        let row_bytes = (cols * format.bytes_per_element()) as u64;
        let mut index = 0u32;
        Self::in_parts(
            gpu,
            label,
            rows,
            cols,
            format.into(),
            max_part_rows,
            |row0, n| {
                let buffer = gpu.storage(&format!("{label}[{row0}..]"), n as u64 * row_bytes)?;
                index += 1;
                let part_seed = seed ^ index.wrapping_mul(0x9e37_79b9);
                let values = (n * cols) as u64;
                crate::gpu::fill::fill_random(gpu, &buffer, format, values, part_seed, scale)?;
                Ok(buffer)
            },
        )
    }

    /// Bytes of the matrix on the GPU.
    pub fn bytes(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| self.format.bytes_for(p.rows * self.cols))
            .sum()
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Dims {
    k8: u32,
    n: u32,
    row0: u32,
    rows: u32,
    accumulate: u32,
    has_bias: u32,
    t_from_logits: u32,
    _pad: u32,
}

impl Dims {
    pub(super) fn new(w: &WeightMatrix, p: &WeightPart, mode: MatmulMode, has_bias: bool) -> Dims {
        Dims {
            k8: (w.cols / 8) as u32,
            n: w.rows as u32,
            row0: p.row0 as u32,
            rows: p.rows as u32,
            accumulate: mode.accumulate as u32,
            has_bias: has_bias as u32,
            t_from_logits: mode.logits_rows as u32,
            _pad: 0,
        }
    }
}

/// How the result lands in `y`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MatmulMode {
    /// y += result (fuses the residual add)
    pub accumulate: bool,
    /// token rows are the logits rows (lm_head) instead of all rows
    pub logits_rows: bool,
}

struct Part {
    group: wgpu::BindGroup,
    rows: u32,
}

/// Bytes of one 32-value block of x quantized to 8 bits (shaders/quantize_q8.wgsl): 32
/// quants, then the scale and the scaled sum, padded to a 16-byte word.
pub const Q8_BLOCK_BYTES: u64 = 48;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct QuantizeDims {
    blocks: u32,
    t_from_logits: u32,
    _pad: [u32; 2],
}

/// What every kernel of one matmul op binds besides its form of x: the step, the weight
/// matrix, the bias (or a dummy), y, and how the result lands there.
struct Operands<'a> {
    step: &'a wgpu::Buffer,
    w: &'a WeightMatrix,
    bias: Option<&'a wgpu::Buffer>,
    dummy: &'a wgpu::Buffer,
    y: &'a wgpu::Buffer,
    mode: MatmulMode,
}

impl Operands<'_> {
    /// One bind group per weight part (its dims, weights, `x` as binding 3, y, the bias) in
    /// `layout`: every matmul kernel binds the same way, with x in f32 or as the form its
    /// path reads (8-bit blocks, f16 rows).
    fn bind_parts(
        &self,
        gpu: &GpuContext,
        layout: &crate::gpu::SharedLayout,
        label: &str,
        x: &wgpu::Buffer,
    ) -> Vec<Part> {
        let w = self.w;
        w.parts
            .iter()
            .map(|p| self.bind_part(gpu, layout, label, p, x))
            .collect()
    }

    /// The bind group of one part (or any slice of rows bound as a part).
    fn bind_part(
        &self,
        gpu: &GpuContext,
        layout: &crate::gpu::SharedLayout,
        label: &str,
        p: &WeightPart,
        x: &wgpu::Buffer,
    ) -> Part {
        let b = self.bias.unwrap_or(self.dummy);
        let dims = Dims::new(self.w, p, self.mode, self.bias.is_some());
        let dims = gpu.uniform("matmul.dims", &dims);
        let buffers = [self.step, &dims, &p.buffer, x, self.y, b];
        Part {
            group: bind_layout(gpu, layout, label, &buffers),
            rows: p.rows as u32,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CastDims {
    k4: u32,
    t_from_logits: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DequantDims {
    block0: u32,
    blocks: u32,
    _pad: [u32; 2],
}

/// The matrix units reading f16 weights (shaders/coop/gemm_f16*.wgsl): x cast to f16 rows
/// first (shaders/coop/x_to_f16.wgsl). Where the weights are f16, they are read as stored;
/// quantized weights are dequantized into a scratch of f16 rows slice by slice, each
/// slice right before its GEMM (shaders/coop/dequant_f16.wgsl: a pass over the blocks,
/// small beside the GEMM from a few dozen token rows on). Where K is a multiple of 16 (32
/// for blocks) and every part (slice) is 16 rows or more; the staging kernel
/// (shaders/coop/gemm.wgsl) serves every other format and shape.
struct CoopF16Path {
    cast: (Arc<wgpu::ComputePipeline>, wgpu::BindGroup),
    /// x's vec4s per row
    k4: u32,
    /// 32 token rows per subgroup, and 64 (`COOP_WIDE_MIN_WORKGROUPS`)
    gemm: Arc<wgpu::ComputePipeline>,
    wide: Arc<wgpu::ComputePipeline>,
    /// `GpuFeatures::coop_wide`: one of the two for every step
    wide_forced: Option<bool>,
    /// for f16 weights as stored: the few-rows form, per token tiles a workgroup takes
    /// (1, 2 and 4 of 16: `few_tiles`) its pipeline and row tiles (`few_row_tiles`)
    few: Option<[(Arc<wgpu::ComputePipeline>, u32); 3]>,
    /// `GpuFeatures::coop_few`: Some(true) runs the few-rows form at every row count
    few_forced: Option<bool>,
    /// the weight parts (or slices) bound with the f16 rows of x in place of x
    parts: Vec<Part>,
    /// for quantized weights: the dequantizing kernel and, per entry of `parts`, its bind
    /// group and blocks
    dequant: Option<Dequant>,
}

/// The kernel that dequantizes a slice of blocks to f16 rows, and per slice its bind group
/// and block count.
type Dequant = (Arc<wgpu::ComputePipeline>, Vec<(wgpu::BindGroup, u32)>);

impl CoopF16Path {
    fn new(
        gpu: &GpuContext,
        layout: &crate::gpu::SharedLayout,
        ops: &Operands<'_>,
        x: &wgpu::Buffer,
    ) -> Option<CoopF16Path> {
        let (w, step, mode) = (ops.w, ops.step, ops.mode);
        let quant = match w.format {
            WeightFormat::Float(StorageFormat::F16) => None,
            WeightFormat::Quant(q) if gpu.features.coop_dequant => Some(q),
            _ => return None,
        };
        let slices = match quant {
            None => w.parts.iter().map(|p| (p, 0, p.rows)).collect(),
            Some(_) => dequant_slices(w, gpu.features.dequant_slice_bytes),
        };
        let fits = w.cols.is_multiple_of(16) && slices.iter().all(|&(_, _, rows)| rows >= 16);
        if !fits {
            return None;
        }
        // as many rows as x holds, rounded up to the GEMM's widest workgroup of tokens
        let rows = (x.size() / (w.cols as u64 * 4)).div_ceil(COOP_F16_TOKENS_WIDE as u64)
            * COOP_F16_TOKENS_WIDE as u64;
        let xh = gpu.scratch("matmul.xh", rows * w.cols as u64 * 2).ok()?;
        let cast = gpu.pipelines.get(&x_to_f16_source());
        let dims = CastDims {
            k4: (w.cols / 4) as u32,
            t_from_logits: mode.logits_rows as u32,
            _pad: [0; 2],
        };
        let cdims = gpu.uniform("x_to_f16.dims", &dims);
        let cast_group = bind(gpu, &cast, "x_to_f16", &[step, &cdims, x, &xh]);
        let subgroup = gpu.features.subgroup_min_size;
        let fits_staged =
            gpu.limits.max_compute_workgroup_storage_size >= COOP_STAGED_WORKGROUP_BYTES;
        let form = match gpu.features.coop_staged.unwrap_or(fits_staged) && fits_staged {
            true => CoopF16Form::Staged,
            false => CoopF16Form::Direct,
        };
        let [gemm, wide] = [false, true].map(|wide| {
            let src = gemm_coop_f16_source(subgroup, wide, form);
            gpu.pipelines.get_with_layout(&src, Some(layout))
        });
        let few_fits = gpu.limits.max_compute_workgroup_storage_size >= COOP_FEW_WORKGROUP_BYTES;
        let n: u32 = w.parts.iter().map(|p| p.rows as u32).sum();
        let few =
            (quant.is_none() && few_fits && gpu.features.coop_few != Some(false)).then(|| {
                [1, 2, 4].map(|tiles| {
                    // forced (tests): the most row tiles, whatever the grid
                    let rows = match gpu.features.coop_few {
                        Some(true) => 4 / tiles,
                        _ => few_row_tiles(tiles, n),
                    };
                    let src = gemm_coop_f16_few_source(subgroup, tiles, rows);
                    (gpu.pipelines.get_with_layout(&src, Some(layout)), rows)
                })
            });
        let (parts, dequant) = match quant {
            None => (ops.bind_parts(gpu, layout, "gemm_coop_f16", &xh), None),
            Some(q) => {
                let most = slices.iter().map(|s| s.2).max().unwrap_or(0) as u64;
                let wh = gpu.scratch("matmul.wh", most * w.cols as u64 * 2).ok()?;
                let pipeline = gpu.pipelines.get(&dequant_f16_source(q));
                let blocks_per_row = (w.cols / 32) as u32;
                let mut parts = Vec::new();
                let mut groups = Vec::new();
                for &(p, first, rows) in &slices {
                    let slice = WeightPart {
                        buffer: wh.clone(),
                        row0: p.row0 + first,
                        rows,
                    };
                    parts.push(ops.bind_part(gpu, layout, "gemm_coop_f16", &slice, &xh));
                    let blocks = rows as u32 * blocks_per_row;
                    let ddims = DequantDims {
                        block0: first as u32 * blocks_per_row,
                        blocks,
                        _pad: [0; 2],
                    };
                    let ddims = gpu.uniform("dequant_f16.dims", &ddims);
                    let group = bind(gpu, &pipeline, "dequant_f16", &[&ddims, &p.buffer, &wh]);
                    groups.push((group, blocks));
                }
                (parts, Some((pipeline, groups)))
            }
        };
        Some(CoopF16Path {
            cast: (cast, cast_group),
            k4: dims.k4,
            gemm,
            wide,
            wide_forced: gpu.features.coop_wide,
            few,
            few_forced: gpu.features.coop_few,
            parts,
            dequant,
        })
    }

    /// Whether `t` token rows of an `n`-row matrix run the few-rows form: up to 16 rows,
    /// and up to `COOP_FEW_MAX_ROWS` where the wider forms' grid is small
    /// (`few_rows_pay`).
    fn runs_few(&self, t: u32, n: u32) -> bool {
        self.few.is_some() && self.few_forced.unwrap_or(few_rows_pay(t, n))
    }

    fn record(&self, pass: &mut wgpu::ComputePass<'_>, t: u32) {
        let (pipeline, group) = &self.cast;
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, group, &[]);
        let padded = t.div_ceil(COOP_F16_TOKENS_WIDE) * COOP_F16_TOKENS_WIDE;
        let (x, y) = grid_1d((padded * self.k4).div_ceil(256));
        pass.dispatch_workgroups(x, y, 1);
        let n: u32 = self.parts.iter().map(|p| p.rows).sum();
        if let (true, Some(few)) = (self.runs_few(t, n), &self.few) {
            let tiles = few_tiles(t);
            let (pipeline, row_tiles) = &few[tiles.trailing_zeros() as usize];
            pass.set_pipeline(pipeline);
            for p in &self.parts {
                pass.set_bind_group(0, &p.group, &[]);
                let (x, y) = (p.rows.div_ceil(16 * row_tiles), t.div_ceil(16 * tiles));
                pass.dispatch_workgroups(x, y, 1);
            }
            return;
        }
        let (_, tile_rows) = gemm_tile(GemmKernel::Coop, 0);
        let wide_workgroups = t.div_ceil(COOP_F16_TOKENS_WIDE) * n.div_ceil(tile_rows);
        let wide = self
            .wide_forced
            .unwrap_or(wide_workgroups >= COOP_WIDE_MIN_WORKGROUPS);
        // four subgroups: two along the tokens, two along the weight rows
        let (pipeline, tile_t) = match wide {
            true => (&self.wide, COOP_F16_TOKENS_WIDE),
            false => (&self.gemm, gemm_tile(GemmKernel::Coop, 0).0),
        };
        if self.dequant.is_none() {
            pass.set_pipeline(pipeline);
        }
        for (i, p) in self.parts.iter().enumerate() {
            if let Some((dequant, groups)) = &self.dequant {
                let (group, blocks) = &groups[i];
                pass.set_pipeline(dequant);
                pass.set_bind_group(0, group, &[]);
                let (x, y) = grid_1d(blocks.div_ceil(64));
                pass.dispatch_workgroups(x, y, 1);
                pass.set_pipeline(pipeline);
            }
            pass.set_bind_group(0, &p.group, &[]);
            pass.dispatch_workgroups(p.rows.div_ceil(tile_rows), t.div_ceil(tile_t), 1);
        }
    }

    /// Dispatches of one recording: the cast, then per part (slice) the GEMM and its
    /// dequantization where the weights are blocks.
    fn dispatches(&self) -> u32 {
        1 + self.parts.len() as u32 * (1 + self.dequant.is_some() as u32)
    }
}

/// The slices of rows (part, first row in it, rows) a quantized matrix is dequantized in
/// for the f16 matrix-unit path: each part in slices of the most rows, a multiple of 128
/// (the GEMM's workgroup of rows), whose f16 rows fit `budget` bytes (128 rows at least),
/// so the scratch stays small beside the weights (the default 64 MiB: a 7B's gate/up, 180
/// MB as f16, in three slices). A last slice under 16 rows (the GEMM's least) joins the
/// one before.
fn dequant_slices(w: &WeightMatrix, budget: u64) -> Vec<(&WeightPart, usize, usize)> {
    let most = ((budget / (w.cols as u64 * 2)) as usize / 128 * 128).max(128);
    let mut out: Vec<(&WeightPart, usize, usize)> = Vec::new();
    for p in &w.parts {
        let mut first = 0;
        while first < p.rows {
            let rows = most.min(p.rows - first);
            match out.last_mut() {
                Some(prev) if rows < 16 && first > 0 => prev.2 += rows,
                _ => out.push((p, first, rows)),
            }
            first += rows;
        }
    }
    out
}

/// The dequantization of `q` blocks to f16 rows before the f16 matrix-unit GEMM.
pub fn dequant_f16_source(q: QuantType) -> KernelSource {
    KernelSource::new(
        "dequant_f16",
        include_str!("../../shaders/coop/dequant_f16.wgsl"),
    )
    .weights(WeightFormat::Quant(q))
}

/// The integer-dot decode path: x quantized into 8-bit blocks (by `quantize`, or by the
/// kernel that wrote x), then `vec` per token count.
struct Q8Path {
    /// 32-value blocks per row of x
    blocks: u32,
    quantize: Option<(Arc<wgpu::ComputePipeline>, wgpu::BindGroup)>,
    /// per token count, the matvec and the weight rows each of its workgroups takes
    vec: Vec<(Arc<wgpu::ComputePipeline>, u32)>,
    /// the weight parts bound with `xq` in place of x
    parts: Vec<Part>,
}

/// `store_q8(blk, v)`: 32 values stored as an 8-bit block of x, for the kernels that write
/// them (this op's quantize kernel, RMSNorm's and SiLU·mul's Q8 variants); they set
/// `XQ_BINDING`.
pub const Q8_STORE: &str = concat!(
    include_str!("../../shaders/q8_pack.wgsl"),
    include_str!("../../shaders/q8_store.wgsl")
);

/// `src` (a kernel that may also write its output as 8-bit blocks: it has `{{Q8_STORE}}`,
/// `Q8` and `Q8_MAX_ROWS`) with the blocks stored through binding `binding` when `blocks`,
/// else with `store_q8` a no-op and no such binding.
pub fn with_q8_store(src: KernelSource, binding: u32, blocks: bool) -> KernelSource {
    let store = match blocks {
        true => Q8_STORE,
        false => "fn store_q8(blk: u32, v: array<vec4<f32>, 8>) {}",
    };
    src.constant("Q8_STORE", store)
        .constant("XQ_BINDING", binding)
        .constant("Q8", blocks)
        .constant("Q8_MAX_ROWS", VEC_MAX_ROWS)
}

/// The buffer where x's 8-bit blocks live from the kernel that writes them to the matmul
/// that reads them: one for every op of a context (they run one after another), sized
/// for `VEC_MAX_ROWS` rows of the widest x so far and at least 16K values.
pub fn q8_scratch(gpu: &GpuContext, cols: usize) -> Result<wgpu::Buffer, GpuError> {
    let rows_bytes = |cols: usize| VEC_MAX_ROWS as u64 * (cols / 32) as u64 * Q8_BLOCK_BYTES;
    gpu.scratch("matmul.xq", rows_bytes(cols.max(16384)))
}

/// Where a Q8 matmul's x blocks come from.
enum QuantizedX<'a> {
    /// the op quantizes this f32 x itself, one dispatch before its matvec
    Here(&'a wgpu::Buffer),
    /// an earlier kernel of the step wrote them into this buffer (`q8_scratch`)
    ByEarlierKernel(&'a wgpu::Buffer),
}

/// X_SOURCE of the integer-dot matvec where x's blocks are bound (binding 3).
const X_BLOCKS_BOUND: &str = include_str!("../../shaders/subgroup/matvec_q8_x_blocks.wgsl");

/// The integer-dot decode matvec for `format`, `t` token rows and an `n x k` `shape`, with
/// x's blocks from `x_source` (`X_BLOCKS_BOUND`, or a prologue that makes them:
/// `ops::matmul_prologue`), and the weight rows each of its workgroups takes: `rows`
/// rounded up to whole subgroup tiles, or one tile per subgroup.
pub(super) fn matvec_q8_source(
    gpu: &GpuContext,
    format: WeightFormat,
    x_source: &str,
    t: u32,
    shape: (usize, usize),
    rows: Option<u32>,
    loop_rows: bool,
) -> (KernelSource, u32) {
    let rs = matvec_rows_per_subgroup(gpu, format, t, shape, true);
    let rows = rows.map_or(subgroup_vec_rows(gpu) * rs, |r| r.next_multiple_of(rs));
    // X_SOURCE first: the constants are substituted in order and it uses T
    let src = KernelSource::new(
        "matvec_q8",
        include_str!("../../shaders/subgroup/matvec_q8.wgsl"),
    )
    .constant("X_SOURCE", x_source)
    .weights(format)
    .constant("ROWS", rows)
    .constant("T", t)
    .constant("RS", rs)
    // with one row at a time, two blocks along K keep as many loads in flight
    .constant("KP", if rs == 1 { 2 } else { 1 })
    .constant("LOOP", loop_rows)
    .constant("IDOT4", idot4(gpu.features.q8_packed_dot));
    (src, rows)
}

/// Whether quantized weights use the integer-dot decode path on this context (see
/// `GpuFeatures::q8_dot`; the K-quants have no integer-dot layout yet).
pub(super) fn uses_q8_dot(gpu: &GpuContext, format: WeightFormat) -> bool {
    matches!(format, WeightFormat::Quant(q) if q.has_block_dot()) && gpu.features.q8_dot
}

// When each kernel runs, read off bench/2026-11-30-h200-gemm (`bench matmul`, 7B layer
// shapes, 16 to 512 token rows; the `_v2` tables). The kernels walk all of K per
// workgroup, so a kernel pays when its grid fills the GPU or its rows are many enough.
/// Workgroups from which the matrix units win at any token count (gate/up, 172 of them,
/// won at 16 rows; 96-128 lost below 64 rows for f16, below 256 for quantized weights).
const COOP_MIN_WORKGROUPS: u32 = 150;
/// Token rows from which the matrix units win whatever the grid: reading f16 weights as
/// stored (`CoopF16Path`), and staging dequantized blocks.
const COOP_MIN_ROWS_F16: u32 = 64;
const COOP_MIN_ROWS_STAGED: u32 = 256;
/// Workgroups of 128 x 128 from which each subgroup of the f16 path takes 64 token rows
/// instead of 32: twice the matrix work per load, half the workgroups
/// (bench/2026-11-30-h200-coop-wide: wide won from 96 of them, lost at 64 and fewer).
const COOP_WIDE_MIN_WORKGROUPS: u32 = 96;
/// Token rows up to which f16 weights meet the matrix units in the few-rows form
/// (shaders/coop/gemm_f16_few.wgsl) instead of the decode matvec looping over the rows or
/// the GEMMs' wider tiles.
pub const COOP_FEW_MAX_ROWS: u32 = 128;
/// Subgroups of the few-rows form split K at most this many ways (at most 256 lanes).
const COOP_FEW_SPLIT: u32 = 8;
/// Its workgroup memory: each subgroup's sums of 4 tiles of 16 x 16 f32.
const COOP_FEW_WORKGROUP_BYTES: u32 = COOP_FEW_SPLIT * 4 * 256 * 4;
/// Workgroups it keeps where it gives each more than one tile of rows.
const COOP_FEW_MIN_WORKGROUPS: u32 = 256;
/// Token rows per workgroup of the f16 path's wide form (64 per subgroup, two subgroups
/// along the tokens): the cast pads x's f16 rows to a multiple of it.
const COOP_F16_TOKENS_WIDE: u32 = 128;
/// Token rows up to which the decode matvec looping over them wins for float weights
/// (f16 o at 32 rows: 172 us against 247 on the matrix units; quantized blocks with x in
/// f32 lost to every GEMM, 2-5x).
const MATVEC_MAX_ROWS: u32 = 32;
/// Token rows up to which quantized weights run the integer-dot matvec looping over the
/// rows 8 at a time (`Q8Loop`), before the matrix units or the GEMMs. On the H200
/// (bench/2026-12-01-h200-batched) it won every 7B Q4_0 matrix up to 128 rows (down at 64
/// rows: 208 us against 1 597 on the matrix units) and lost three of four at 256;
/// SmolLM2's Q4_1 matrices together took 262 against 278 us at 128 rows.
const Q8_LOOP_MAX_ROWS: u32 = 128;
/// Workgroups of 64 x 64 from which the tiled f32 GEMM beats the cache-blocked one, with
/// at least 32 rows (it won from 96 of them, lost or tied at 64, and at 16 rows).
const TILED_MIN_WORKGROUPS: u32 = 96;

/// The kernels for more than `VEC_MAX_ROWS` token rows of a matrix in `format`, in the
/// order `pick_gemm` tries them: the matrix units for f16 and quantized weights (f32
/// weights keep f32 products: whoever stores them asked for that precision), the decode
/// matvec looping over the rows for float weights on GPUs with subgroups, the tiled f32
/// GEMM on GPUs, the cache-blocked one always. `GpuFeatures::gemm_forced` leaves only that
/// one.
pub fn gemm_kernels(gpu: &GpuContext, format: WeightFormat) -> Vec<GemmKernel> {
    let f32_weights = format == WeightFormat::Float(StorageFormat::F32);
    match gpu.features.gemm_forced {
        Some(GemmKernel::Coop) if f32_weights => vec![GemmKernel::Blocked],
        Some(k) => vec![k],
        None => {
            let mut all = Vec::new();
            // the matvecs over the rows not on CPU adapters: lavapipe prefilled 60 tokens
            // 2.3x slower with the f32 one, and ran SmolLM2's Q4_1 matmuls of 16 and 64
            // rows 1.2-3.5x slower with the integer-dot one than the cache-blocked GEMM
            let cpu = gpu.adapter_info.device_type == wgpu::DeviceType::Cpu;
            // quantized weights: the integer-dot matvec over the rows first, up to
            // Q8_LOOP_MAX_ROWS (where the matmul's x is not the logits rows: `Matmul::new`)
            if uses_q8_dot(gpu, format) && !cpu {
                all.push(GemmKernel::Matvec);
            }
            if gpu.features.coopmat && !f32_weights {
                all.push(GemmKernel::Coop);
            }
            if gpu.features.subgroups && !cpu && matches!(format, WeightFormat::Float(_)) {
                all.push(GemmKernel::Matvec);
            }
            if gpu.features.gemm_tiles {
                all.push(GemmKernel::Tiled);
            }
            all.push(GemmKernel::Blocked);
            all
        }
    }
}

/// (token rows, weight rows) of y per workgroup of `kernel` (Matvec: all rows, and the
/// decode kernel's rows per workgroup)
fn gemm_tile(kernel: GemmKernel, vec_rows: u32) -> (u32, u32) {
    match kernel {
        GemmKernel::Matvec => (u32::MAX, vec_rows),
        GemmKernel::Coop => (64, 128),
        GemmKernel::Tiled => (64, 64),
        GemmKernel::Blocked => (32, 32),
    }
}

/// How the matrix units meet a matrix, which decides from how many token rows they pay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CoopReach {
    /// f16 weights as stored, in the few-rows form (`few_rows_pay`): any rows
    FewRows,
    /// f16 rows (as stored, or dequantized first) in the wider forms
    F16,
    /// the staging kernel
    Staging,
}

/// Which of `kernels` (in `gemm_kernels` order) runs `t` token rows of an `n`-row matrix:
/// the first that pays.
fn pick_gemm(
    kernels: impl ExactSizeIterator<Item = GemmKernel>,
    t: u32,
    n: u32,
    coop: CoopReach,
    matvec_max_rows: u32,
) -> usize {
    let workgroups = |k: GemmKernel| {
        let (bt, bn) = gemm_tile(k, 1);
        t.div_ceil(bt) * n.div_ceil(bn)
    };
    let coop_rows = match coop {
        CoopReach::FewRows => 0,
        CoopReach::F16 => COOP_MIN_ROWS_F16,
        CoopReach::Staging => COOP_MIN_ROWS_STAGED,
    };
    let pays = |k: GemmKernel| match k {
        GemmKernel::Coop => t >= coop_rows || workgroups(k) >= COOP_MIN_WORKGROUPS,
        GemmKernel::Matvec => t <= matvec_max_rows,
        GemmKernel::Tiled => t >= 32 && workgroups(k) >= TILED_MIN_WORKGROUPS,
        GemmKernel::Blocked => true,
    };
    let last = kernels.len().saturating_sub(1);
    let mut kernels = kernels;
    kernels.position(pays).unwrap_or(last)
}

fn gemm_source(gpu: &GpuContext, kernel: GemmKernel, format: WeightFormat) -> KernelSource {
    match kernel {
        GemmKernel::Matvec => subgroup_matvec_source(gpu, format, VEC_MAX_ROWS, 1, true),
        GemmKernel::Coop => gemm_coop_source(format, gpu.features.subgroup_min_size),
        GemmKernel::Tiled => {
            KernelSource::new("gemm_tiled", include_str!("../../shaders/gemm_tiled.wgsl"))
                .weights(format)
        }
        GemmKernel::Blocked => KernelSource::new(
            "matmul_blocked",
            include_str!("../../shaders/matmul_blocked.wgsl"),
        )
        .weights(format),
    }
}

/// Subgroups per workgroup of the subgroup decode matvecs (256 lanes).
fn subgroup_vec_rows(gpu: &GpuContext) -> u32 {
    (256 / gpu.features.subgroup_min_size).clamp(1, 64)
}

/// Weight rows each subgroup of a decode matvec takes at a time for `t` token rows of an
/// `n x k` matrix: it loads each chunk of x once for all of them and has that many rows'
/// weights in flight. Read off bench/2026-12-01-h200-matvec-rows (H200, one token row):
/// two rows won for matrices of 4 096 rows and more (7B Q4_0 blocks with the unpacked
/// integer dot: every shape, the decode 201 -> 215 tok/s; f16: where K is 4 096, up to 4
/// token rows, while the down matrix, K 11 008, lost), and lost for SmolLM2's small
/// matrices (732 -> 705 tok/s, too few workgroups); four lost everywhere. With the packed
/// dot (bench/2026-12-01-h200-packed-dot) one row won the whole 7B Q4_0 step of one token
/// row (2.80 ms against 2.99 with two), while two still won the matvecs alone of 2 and 4
/// token rows. Quantized weights with x in f32 keep one (a chunk is a whole block, 8
/// vec4s a row). `GpuFeatures::matvec_rows` overrides the choice.
pub(super) fn matvec_rows_per_subgroup(
    gpu: &GpuContext,
    format: WeightFormat,
    t: u32,
    (n, k): (usize, usize),
    q8: bool,
) -> u32 {
    if matches!(format, WeightFormat::Quant(_)) && !q8 {
        return 1;
    }
    let wide = n >= 4096
        && match q8 {
            true => !gpu.features.q8_packed_dot || t >= 2,
            false => k <= 4096 && t <= 4,
        };
    gpu.features.matvec_rows.unwrap_or(if wide { 2 } else { 1 })
}

/// The subgroup decode matvec for `t` token rows at a time, `rs` weight rows per subgroup,
/// over all the step's rows when `all_rows` (shaders/subgroup/matmul_vec.wgsl).
fn subgroup_matvec_source(
    gpu: &GpuContext,
    format: WeightFormat,
    t: u32,
    rs: u32,
    all_rows: bool,
) -> KernelSource {
    KernelSource::new(
        "matmul_vec_subgroup",
        include_str!("../../shaders/subgroup/matmul_vec.wgsl"),
    )
    .constant("ROWS", subgroup_vec_rows(gpu) * rs)
    .weights(format)
    .constant("T", t)
    .constant("RS", rs)
    .constant("CHUNK4", format.chunk4())
    .constant("PAIRED", matches!(format, WeightFormat::Float(_)))
    .constant("LOOP", all_rows)
}

/// The cooperative-matrix GEMM for weights in `format` on subgroups of `subgroup_size`
/// (public so that the translation test can check it where no adapter has the feature).
pub fn gemm_coop_source(format: WeightFormat, subgroup_size: u32) -> KernelSource {
    KernelSource::new("gemm_coop", include_str!("../../shaders/coop/gemm.wgsl"))
        .constant("COOP_EPILOGUE", COOP_EPILOGUE)
        .constant("SG", subgroup_size)
        .constant("CHUNK4", format.chunk4())
        .weights(format)
}

/// The cooperative-matrix GEMMs' epilogue (tiles through workgroup memory to `store_y`).
const COOP_EPILOGUE: &str = include_str!("../../shaders/coop/epilogue.wgsl");

/// How the matrix-unit GEMM on f16 weights reads its operands: 128 x 128 tiles staged
/// through workgroup memory (1.6-1.9x the direct form on the H200 at 512 and 2 048 token
/// rows: bench/2026-12-01-h200-prefill), or every fragment straight from memory (the
/// narrow form of 32 token rows per subgroup always, and where the adapter's workgroup
/// memory is short of the staged form's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoopF16Form {
    Direct,
    Staged,
}

impl CoopF16Form {
    pub const ALL: [CoopF16Form; 2] = [CoopF16Form::Direct, CoopF16Form::Staged];
}

/// Workgroup memory of the staged form: two stages of two 128 x 40 f16 tiles, and the
/// epilogue's 16 x 16 f32 tile per subgroup.
const COOP_STAGED_WORKGROUP_BYTES: u32 = 2 * 2 * 128 * 40 * 2 + 4096;

/// The matrix-unit GEMM reading f16 weights as stored, on subgroups of `subgroup_size`,
/// each multiplying 64 token rows (`wide`) or 32 by 64 weight rows; the staged form is
/// wide only.
pub fn gemm_coop_f16_source(subgroup_size: u32, wide: bool, form: CoopF16Form) -> KernelSource {
    let (name, src) = match form {
        CoopF16Form::Staged if wide => (
            "gemm_coop_f16_staged",
            include_str!("../../shaders/coop/gemm_f16_staged.wgsl"),
        ),
        _ => (
            "gemm_coop_f16",
            include_str!("../../shaders/coop/gemm_f16.wgsl"),
        ),
    };
    KernelSource::new(name, src)
        .constant("COOP_EPILOGUE", COOP_EPILOGUE)
        .constant("SG", subgroup_size)
        .constant("TT", if wide { 4 } else { 2 })
}

/// Whether the few-rows form runs `t` token rows of an `n`-row f16 matrix: read off
/// bench/2026-12-01-h200-gemm-loads (7B shapes, H200), it won every matrix at 9 and 16
/// rows (o 42 against 79 us for the matvec over the rows, gate/up 240 against 287 on the
/// wider forms), and beyond that where the wider forms fill few workgroups (down at 128
/// rows: 509 against 712 us), while gate/up (172 workgroups of 64 x 128) lost from 32
/// rows (527 against 299 us at 64).
fn few_rows_pay(t: u32, n: u32) -> bool {
    let wide_grid = t.div_ceil(64) * n.div_ceil(128);
    t <= COOP_FEW_MAX_ROWS && (t <= 16 || wide_grid < COOP_MIN_WORKGROUPS)
}

/// Token tiles of 16 a workgroup of the few-rows form takes for `t` rows: as few as hold
/// them, up to 4 (each weight tile loaded once is used for all of them).
fn few_tiles(t: u32) -> u32 {
    t.div_ceil(16).next_power_of_two().min(4)
}

/// Row tiles of 16 a workgroup of the few-rows form takes with `tiles` token tiles on an
/// `n`-row matrix: as many as keep `COOP_FEW_MIN_WORKGROUPS` workgroups (each x tile
/// loaded then serves them all), up to 4 tiles in all.
fn few_row_tiles(tiles: u32, n: u32) -> u32 {
    [4, 2, 1]
        .into_iter()
        .find(|&r| tiles * r <= 4 && n.div_ceil(16 * r) >= COOP_FEW_MIN_WORKGROUPS)
        .unwrap_or(1)
}

/// The few-rows form of the matrix-unit GEMM on f16 weights, `tiles` token tiles and
/// `row_tiles` row tiles of 16 a workgroup, on subgroups of `subgroup_size`.
pub fn gemm_coop_f16_few_source(subgroup_size: u32, tiles: u32, row_tiles: u32) -> KernelSource {
    let split = (256 / subgroup_size.max(1)).clamp(1, COOP_FEW_SPLIT);
    KernelSource::new(
        "gemm_coop_f16_few",
        include_str!("../../shaders/coop/gemm_f16_few.wgsl"),
    )
    .constant("CHUNK", include_str!("../../shaders/coop/few_chunk.wgsl"))
    .constant("SG", subgroup_size)
    .constant("NS", split)
    .constant("TA", tiles)
    .constant("RT", row_tiles)
    .constant("SUMS", split * tiles * row_tiles * 256)
}

/// The cast of x's rows to f16 before it.
pub fn x_to_f16_source() -> KernelSource {
    KernelSource::new("x_to_f16", include_str!("../../shaders/coop/x_to_f16.wgsl"))
}

pub struct Matmul {
    /// decode kernels, one per token count 1..=VEC_MAX_ROWS, and the weight rows each of
    /// their workgroups takes
    vec: Vec<(Arc<wgpu::ComputePipeline>, u32)>,
    /// which decode kernel: "matmul_vec_subgroup" or the portable "matmul_vec"
    decode_kernel: &'static str,
    /// weight rows per workgroup of the GEMM looping the decode matvec over token rows
    vec_rows: u32,
    /// the kernels for many token rows (`gemm_kernels`) and their pipelines
    gemm: Vec<(GemmKernel, Arc<wgpu::ComputePipeline>)>,
    parts: Vec<Part>,
    q8: Option<Q8Path>,
    /// quantized weights: the integer-dot matvec over many rows (`gemm`'s Matvec)
    q8_loop: Option<Q8Loop>,
    /// the matrix units on f16 weights as stored, where `gemm` has them and the shape fits
    coop_f16: Option<CoopF16Path>,
    k: u32,
    n: u32,
    weight_bytes: u64,
    mode: MatmulMode,
    has_bias: bool,
}

impl Matmul {
    /// The decode kernel this op runs: "matvec_q8" for quantized weights on a context with
    /// `q8_dot`, else "matmul_vec_subgroup" where the context has subgroups, else the
    /// portable "matmul_vec".
    pub fn decode_kernel(&self) -> &'static str {
        match self.q8 {
            Some(_) => "matvec_q8",
            None => self.decode_kernel,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        w: &WeightMatrix,
        bias: Option<&wgpu::Buffer>,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        mode: MatmulMode,
        dummy: &wgpu::Buffer,
    ) -> Self {
        Self::new_with_x_blocks(gpu, step, w, bias, x, None, y, mode, dummy)
    }

    /// As `new`, where an earlier kernel of the step also writes x as 8-bit blocks into
    /// `x_blocks` (`q8_scratch`; RMSNorm's Q8 variant): the integer-dot path then reads
    /// them instead of quantizing x itself.
    #[allow(clippy::too_many_arguments)]
    pub fn new_with_x_blocks(
        gpu: &GpuContext,
        step: &wgpu::Buffer,
        w: &WeightMatrix,
        bias: Option<&wgpu::Buffer>,
        x: &wgpu::Buffer,
        x_blocks: Option<&wgpu::Buffer>,
        y: &wgpu::Buffer,
        mode: MatmulMode,
        dummy: &wgpu::Buffer,
    ) -> Self {
        use BindingKind::*;
        let layout = gpu
            .pipelines
            .layout("matmul", &[Uniform, Uniform, Read, Read, ReadWrite, Read]);
        let (decode_kernel, vec_rows) = match gpu.features.subgroups {
            true => ("matmul_vec_subgroup", subgroup_vec_rows(gpu)),
            false => ("matmul_vec", 256 / gpu.matvec_lanes),
        };
        let vec = (1..=VEC_MAX_ROWS)
            .map(|t| {
                let (src, rows) = match gpu.features.subgroups {
                    true => {
                        let rs =
                            matvec_rows_per_subgroup(gpu, w.format, t, (w.rows, w.cols), false);
                        let src = subgroup_matvec_source(gpu, w.format, t, rs, false);
                        (src, vec_rows * rs)
                    }
                    false => (
                        KernelSource::new(
                            "matmul_vec",
                            include_str!("../../shaders/matmul_vec.wgsl"),
                        )
                        .constant("LANES", gpu.matvec_lanes)
                        .weights(w.format)
                        .constant("T", t)
                        .constant("CHUNK4", w.format.chunk4())
                        .constant("PAIRED", matches!(w.format, WeightFormat::Float(_))),
                        vec_rows,
                    ),
                };
                (gpu.pipelines.get_with_layout(&src, Some(&layout)), rows)
            })
            .collect();
        let ops = Operands {
            step,
            w,
            bias,
            dummy,
            y,
            mode,
        };
        // quantized weights loop the integer-dot matvec over many rows where x is not the
        // logits rows (which keep x in f32, below)
        let quant = matches!(w.format, WeightFormat::Quant(_));
        let q8_loop = (uses_q8_dot(gpu, w.format) && !mode.logits_rows)
            .then(|| Q8Loop::new(gpu, &layout, &ops, x))
            .flatten();
        let gemm: Vec<(GemmKernel, Arc<wgpu::ComputePipeline>)> = gemm_kernels(gpu, w.format)
            .into_iter()
            // (without the loop, the f32 matvec over quantized blocks only where forced)
            .filter(|&k| {
                let unlooped = k == GemmKernel::Matvec && quant && q8_loop.is_none();
                !unlooped || gpu.features.gemm_forced.is_some()
            })
            .map(|k| match (k, &q8_loop) {
                (GemmKernel::Matvec, Some(l)) => (k, l.pipeline.clone()),
                _ => {
                    let src = gemm_source(gpu, k, w.format);
                    (k, gpu.pipelines.get_with_layout(&src, Some(&layout)))
                }
            })
            .collect();
        let parts = ops.bind_parts(gpu, &layout, "matmul", x);
        // the logits keep x in f32: they are what sampling sees, and rounding x moved
        // SmolLM2's near-tied first tokens (a chat answer's "The" became "L'") for 2% of a
        // 7B step's bytes
        let coop_f16 = gemm
            .iter()
            .any(|(k, _)| *k == GemmKernel::Coop)
            .then(|| CoopF16Path::new(gpu, &layout, &ops, x))
            .flatten();
        let q8 = (uses_q8_dot(gpu, w.format) && !mode.logits_rows).then(|| {
            let x = match x_blocks {
                Some(xq) => QuantizedX::ByEarlierKernel(xq),
                None => QuantizedX::Here(x),
            };
            Q8Path::new(gpu, &layout, &ops, x)
        });
        Matmul {
            vec,
            decode_kernel,
            vec_rows,
            gemm,
            parts,
            q8,
            q8_loop,
            coop_f16,
            k: w.cols as u32,
            n: w.rows as u32,
            weight_bytes: w.bytes(),
            mode,
            has_bias: bias.is_some(),
        }
    }

    /// The kernel this op runs for `t` (more than `VEC_MAX_ROWS`) token rows.
    pub fn gemm_kernel(&self, t: u32) -> GemmKernel {
        self.gemm[self.gemm_index(t)].0
    }

    /// Whether `t` (more than `VEC_MAX_ROWS`) rows run the f16 matrix-unit path, which
    /// casts x to f16 rows first.
    fn casts_x(&self, t: u32) -> bool {
        t > VEC_MAX_ROWS && self.coop_f16.is_some() && self.gemm_kernel(t) == GemmKernel::Coop
    }

    fn gemm_index(&self, t: u32) -> usize {
        let matvec_max_rows = match self.q8_loop {
            Some(_) => Q8_LOOP_MAX_ROWS,
            None => MATVEC_MAX_ROWS,
        };
        let coop = match &self.coop_f16 {
            Some(c) if c.runs_few(t, self.n) => CoopReach::FewRows,
            Some(_) => CoopReach::F16,
            None => CoopReach::Staging,
        };
        pick_gemm(
            self.gemm.iter().map(|g| g.0),
            t,
            self.n,
            coop,
            matvec_max_rows,
        )
    }

    /// Whether `t` token rows meet the weights as x's 8-bit blocks (the integer-dot
    /// matvecs), not as f32 or f16 values.
    pub fn x_as_q8_blocks(&self, t: u32) -> bool {
        match t <= VEC_MAX_ROWS {
            true => self.q8.is_some(),
            false => self.loops_q8(t),
        }
    }

    /// Whether `t` (more than `VEC_MAX_ROWS`) rows run `Q8Loop`.
    fn loops_q8(&self, t: u32) -> bool {
        t > VEC_MAX_ROWS && self.q8_loop.is_some() && self.gemm_kernel(t) == GemmKernel::Matvec
    }

    /// The cost of a recording but for reading x (`ops::matmul_prologue` makes x itself).
    pub(super) fn cost_without_x(&self, s: &StepShape) -> Cost {
        let t = self.t(s) as u64;
        let (k, n) = (self.k as u64, self.n as u64);
        let extra = if self.mode.accumulate { t * n * 4 } else { 0 }
            + if self.has_bias { n * 4 } else { 0 };
        Cost {
            bytes_read: self.weight_bytes + extra,
            bytes_written: t * n * 4,
            flops: 2 * t * k * n,
            weight_bytes: self.weight_bytes + if self.has_bias { n * 4 } else { 0 },
            kv_bytes: 0,
        }
    }

    fn t(&self, s: &StepShape) -> u32 {
        if self.mode.logits_rows {
            s.n_out_rows
        } else {
            s.n_tokens
        }
    }
}

/// `pipeline` (a matvec taking `rows_per_group` weight rows a workgroup) over every part.
fn dispatch_matvec(
    pass: &mut wgpu::ComputePass<'_>,
    pipeline: &wgpu::ComputePipeline,
    parts: &[Part],
    rows_per_group: u32,
) {
    pass.set_pipeline(pipeline);
    for p in parts {
        pass.set_bind_group(0, &p.group, &[]);
        let (x, y) = grid_1d(p.rows.div_ceil(rows_per_group));
        pass.dispatch_workgroups(x, y, 1);
    }
}

/// `quantize_x`'s dispatch for `t` rows of `blocks` blocks each.
fn dispatch_quantize(
    pass: &mut wgpu::ComputePass<'_>,
    (pipeline, group): &(Arc<wgpu::ComputePipeline>, wgpu::BindGroup),
    t: u32,
    blocks: u32,
) {
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, group, &[]);
    let (x, y) = grid_1d((t * blocks).div_ceil(64));
    pass.dispatch_workgroups(x, y, 1);
}

/// The dispatch that quantizes `x`'s rows (`blocks` 32-value blocks each) into `xq`.
fn quantize_x(
    gpu: &GpuContext,
    step: &wgpu::Buffer,
    mode: MatmulMode,
    x: &wgpu::Buffer,
    xq: &wgpu::Buffer,
    blocks: u32,
) -> (Arc<wgpu::ComputePipeline>, wgpu::BindGroup) {
    let pipeline = gpu.pipelines.get(
        &KernelSource::new(
            "quantize_q8",
            include_str!("../../shaders/quantize_q8.wgsl"),
        )
        .constant("Q8_STORE", Q8_STORE)
        .constant("XQ_BINDING", 3),
    );
    let qdims = gpu.uniform(
        "quantize_q8.dims",
        &QuantizeDims {
            blocks,
            t_from_logits: mode.logits_rows as u32,
            _pad: [0; 2],
        },
    );
    let group = bind(gpu, &pipeline, "quantize_q8", &[step, &qdims, x, xq]);
    (pipeline, group)
}

/// The integer-dot matvec over more than `VEC_MAX_ROWS` token rows, 8 at a time
/// (`GemmKernel::Matvec` for quantized weights): all rows quantized into a scratch of
/// their own first, then each weight row read from memory once and from the cache for the
/// other groups of 8. Where many sequences decode together the matrix units fill too few
/// workgroups: on the H200, 16 sequences decoding a 7B Q4_0 together ran 7.1x faster
/// with it (bench/2026-12-01-h200-batched).
struct Q8Loop {
    quantize: (Arc<wgpu::ComputePipeline>, wgpu::BindGroup),
    blocks: u32,
    pipeline: Arc<wgpu::ComputePipeline>,
    rows_per_group: u32,
    parts: Vec<Part>,
}

impl Q8Loop {
    /// None where `x` holds no more than `VEC_MAX_ROWS` rows.
    fn new(
        gpu: &GpuContext,
        layout: &crate::gpu::SharedLayout,
        ops: &Operands<'_>,
        x: &wgpu::Buffer,
    ) -> Option<Q8Loop> {
        let w = ops.w;
        let blocks = (w.cols / 32) as u64;
        // every row x holds: the loop runs beyond Q8_LOOP_MAX_ROWS where forced
        let rows = x.size() / (w.cols as u64 * 4);
        if rows <= VEC_MAX_ROWS as u64 {
            return None;
        }
        let xq = gpu
            .scratch("matmul.xq_rows", rows * blocks * Q8_BLOCK_BYTES)
            .ok()?;
        let quantize = quantize_x(gpu, ops.step, ops.mode, x, &xq, blocks as u32);
        let shape = (w.rows, w.cols);
        let (src, rows_per_group) = matvec_q8_source(
            gpu,
            w.format,
            X_BLOCKS_BOUND,
            VEC_MAX_ROWS,
            shape,
            None,
            true,
        );
        Some(Q8Loop {
            quantize,
            blocks: blocks as u32,
            pipeline: gpu.pipelines.get_with_layout(&src, Some(layout)),
            rows_per_group,
            parts: ops.bind_parts(gpu, layout, "matvec_q8_loop", &xq),
        })
    }

    fn record(&self, pass: &mut wgpu::ComputePass<'_>, t: u32) {
        dispatch_quantize(pass, &self.quantize, t, self.blocks);
        dispatch_matvec(pass, &self.pipeline, &self.parts, self.rows_per_group);
    }
}

impl Q8Path {
    fn new(
        gpu: &GpuContext,
        layout: &crate::gpu::SharedLayout,
        ops: &Operands<'_>,
        x: QuantizedX<'_>,
    ) -> Q8Path {
        let (w, step, mode) = (ops.w, ops.step, ops.mode);
        let blocks = (w.cols / 32) as u64;
        let (xq, quantize) = match x {
            QuantizedX::ByEarlierKernel(xq) => (xq.clone(), None),
            QuantizedX::Here(x) => {
                let xq = q8_scratch(gpu, w.cols)
                    .expect("a few 8-bit rows of x fit any binding that fits the weights");
                let quantize = quantize_x(gpu, step, mode, x, &xq, blocks as u32);
                (xq, Some(quantize))
            }
        };
        let vec = (1..=VEC_MAX_ROWS)
            .map(|t| {
                let shape = (w.rows, w.cols);
                let (src, rows) =
                    matvec_q8_source(gpu, w.format, X_BLOCKS_BOUND, t, shape, None, false);
                (gpu.pipelines.get_with_layout(&src, Some(layout)), rows)
            })
            .collect();
        let parts = ops.bind_parts(gpu, layout, "matvec_q8", &xq);
        Q8Path {
            blocks: blocks as u32,
            quantize,
            vec,
            parts,
        }
    }

    fn record(&self, pass: &mut wgpu::ComputePass<'_>, t: u32) {
        if let Some(quantize) = &self.quantize {
            dispatch_quantize(pass, quantize, t, self.blocks);
        }
        let (pipeline, rows_per_group) = &self.vec[t as usize - 1];
        dispatch_matvec(pass, pipeline, &self.parts, *rows_per_group);
    }
}

impl Op for Matmul {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, s: &StepShape) {
        let t = self.t(s);
        if t == 0 {
            return;
        }
        if let (true, Some(q8)) = (t <= VEC_MAX_ROWS, &self.q8) {
            q8.record(pass, t);
        } else if t <= VEC_MAX_ROWS {
            let (pipeline, rows_per_group) = &self.vec[t as usize - 1];
            dispatch_matvec(pass, pipeline, &self.parts, *rows_per_group);
        } else {
            let (kernel, pipeline) = &self.gemm[self.gemm_index(t)];
            if let (GemmKernel::Coop, Some(direct)) = (kernel, &self.coop_f16) {
                direct.record(pass, t);
                return;
            }
            if let (GemmKernel::Matvec, Some(looped)) = (kernel, &self.q8_loop) {
                looped.record(pass, t);
                return;
            }
            let (tile_t, tile_rows) = gemm_tile(*kernel, self.vec_rows);
            pass.set_pipeline(pipeline);
            for p in &self.parts {
                pass.set_bind_group(0, &p.group, &[]);
                let (x, y) = match kernel {
                    GemmKernel::Matvec => grid_1d(p.rows.div_ceil(tile_rows)),
                    _ => (p.rows.div_ceil(tile_rows), t.div_ceil(tile_t)),
                };
                pass.dispatch_workgroups(x, y, 1);
            }
        }
    }
    fn dispatches(&self, s: &StepShape) -> u32 {
        let t = self.t(s);
        let parts = self.parts.len() as u32;
        match (&self.q8, t) {
            (_, 0) => 0,
            (Some(q8), 1..=VEC_MAX_ROWS) => parts + q8.quantize.is_some() as u32,
            _ if self.loops_q8(t) => parts + 1,
            _ => match (&self.coop_f16, self.casts_x(t)) {
                (Some(coop), true) => coop.dispatches(),
                _ => parts,
            },
        }
    }
    fn cost(&self, s: &StepShape) -> Cost {
        let t = self.t(s) as u64;
        let k = self.k as u64;
        // x in f32, or as 8-bit blocks, which this op's quantize dispatch writes from x
        // first where no earlier kernel did (that kernel counts their writing)
        let (x_read, x_written) = match (&self.q8, t as u32 <= VEC_MAX_ROWS) {
            (Some(q8), true) => {
                let xq = t * (k / 32) * Q8_BLOCK_BYTES;
                match q8.quantize {
                    Some(_) => (t * k * 4 + xq, xq),
                    None => (xq, 0),
                }
            }
            // the integer-dot matvec over many rows: x read, its blocks written and read
            _ if self.loops_q8(t as u32) => {
                let xq = t * (k / 32) * Q8_BLOCK_BYTES;
                (t * k * 4 + xq, xq)
            }
            // the f16 matrix-unit path: x read, its f16 rows written and read, and the
            // weights' f16 rows where they are dequantized first
            _ if self.casts_x(t as u32) => {
                let dequantized = self.coop_f16.as_ref().is_some_and(|c| c.dequant.is_some());
                let wh = if dequantized {
                    self.n as u64 * k * 2
                } else {
                    0
                };
                (t * k * 4 + t * k * 2 + wh, t * k * 2 + wh)
            }
            _ => (t * k * 4, 0),
        };
        let c = self.cost_without_x(s);
        Cost {
            bytes_read: c.bytes_read + x_read,
            bytes_written: c.bytes_written + x_written,
            ..c
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_few_rows_form_takes_the_shapes_it_won() {
        // 7B shapes: qkv 6 144, o and down 4 096, gate/up 22 016 rows
        for t in [9, 16] {
            for n in [4096, 6144, 22016] {
                assert!(few_rows_pay(t, n), "{t} rows of {n}");
            }
        }
        // gate/up fills the wide tiles' grid from 32 rows; the others up to 128
        assert!(!few_rows_pay(32, 22016));
        assert!(few_rows_pay(64, 4096) && few_rows_pay(128, 6144));
        assert!(!few_rows_pay(COOP_FEW_MAX_ROWS + 1, 4096));
        let kernels = [GemmKernel::Coop, GemmKernel::Matvec, GemmKernel::Tiled];
        let pick = |t, reach| kernels[pick_gemm(kernels.into_iter(), t, 4096, reach, 32)];
        assert_eq!(pick(9, CoopReach::FewRows), GemmKernel::Coop);
        assert_eq!(pick(9, CoopReach::F16), GemmKernel::Matvec);
    }

    #[test]
    fn few_rows_tiles_cover_the_rows_and_keep_the_grid() {
        assert_eq!(
            [9, 16, 17, 32, 33, 64, 128].map(few_tiles),
            [1, 1, 2, 2, 4, 4, 4]
        );
        // gate/up keeps 344 workgroups with 4 tiles of rows; o and down would keep 64
        assert_eq!(few_row_tiles(1, 22016), 4);
        assert_eq!(few_row_tiles(2, 22016), 2);
        assert_eq!(few_row_tiles(4, 22016), 1);
        assert_eq!(few_row_tiles(1, 4096), 1);
        for tiles in [1, 2, 4] {
            for n in [16, 300, 4096, 49152] {
                let rows = few_row_tiles(tiles, n);
                assert!(tiles * rows <= 4, "the sums fit COOP_FEW_WORKGROUP_BYTES");
            }
        }
    }
}
