//! GGUF (v2, v3) reader: header, metadata, tensor infos, and the data section, validated
//! up front so that a corrupt file gives a clear [`LoadError`], never a panic or a huge
//! allocation.
//!
//! Layout (little-endian):
//!
//! ```text
//! "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//! kv_count x   { string key | u32 value_type | value }
//! tensor_count x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//! padding to general.alignment (default 32)
//! data section: tensor bytes at data_start + offset (offsets aligned)
//! string = u64 len | bytes; array = u32 elem_type | u64 count | elems
//! ```
//! `ne[0]` is the innermost (contiguous) dimension.

#[cfg(not(target_arch = "wasm32"))]
use super::map_file;
use super::quant::GgmlType;
use super::{FileBytes, LoadError};
use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS
pub const MAX_DIMS: usize = 4;
/// arrays of arrays deeper than this are rejected (recursion bound)
const MAX_ARRAY_DEPTH: u32 = 8;

/// GGUF metadata value types, with their ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl MetaType {
    pub fn from_id(id: u32) -> Option<MetaType> {
        use MetaType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Fewest bytes one value of this type takes in the file.
    fn min_size(self) -> usize {
        use MetaType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
            String => 8,
            Array => 12,
        }
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// element type and elements (all of that type)
    Array(MetaType, Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    pub fn meta_type(&self) -> MetaType {
        match self {
            MetaValue::U8(_) => MetaType::U8,
            MetaValue::I8(_) => MetaType::I8,
            MetaValue::U16(_) => MetaType::U16,
            MetaValue::I16(_) => MetaType::I16,
            MetaValue::U32(_) => MetaType::U32,
            MetaValue::I32(_) => MetaType::I32,
            MetaValue::F32(_) => MetaType::F32,
            MetaValue::Bool(_) => MetaType::Bool,
            MetaValue::String(_) => MetaType::String,
            MetaValue::Array(..) => MetaType::Array,
            MetaValue::U64(_) => MetaType::U64,
            MetaValue::I64(_) => MetaType::I64,
            MetaValue::F64(_) => MetaType::F64,
        }
    }

    /// The value as an integer, for any integer type.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v as i128,
            MetaValue::I8(v) => v as i128,
            MetaValue::U16(v) => v as i128,
            MetaValue::I16(v) => v as i128,
            MetaValue::U32(v) => v as i128,
            MetaValue::I32(v) => v as i128,
            MetaValue::U64(v) => v as i128,
            MetaValue::I64(v) => v as i128,
            _ => return None,
        })
    }

    /// The value as a float, for F32 and F64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v as f64),
            MetaValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// A short description for messages: the type, and the value for scalars.
    pub fn describe(&self) -> String {
        match self {
            MetaValue::String(s) if s.len() > 40 => format!("string of {} bytes", s.len()),
            MetaValue::String(s) => format!("string {s:?}"),
            MetaValue::Array(t, v) => format!("array of {} {t:?}", v.len()),
            v => format!("{v:?}"),
        }
    }
}

/// One tensor's entry in the file.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub ggml_type: GgmlType,
    /// ggml order: `dims[0]` is innermost (the row length of a matrix)
    pub dims: Vec<u64>,
    /// from the start of the data section
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Row-major shape, outermost first: ggml `[576, 1536]` is `[1536, 576]`.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed, validated GGUF file.
pub struct GgufFile {
    path: String,
    bytes: FileBytes,
    version: u32,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_start: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Reads little-endian values; errors are plain strings that the caller puts in context.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: needs {n} bytes at byte offset {} but the file ends at {}",
                self.pos,
                self.buf.len()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, String> {
        let at = self.pos;
        let len = self.u64()?;
        if len > self.remaining() as u64 {
            return Err(format!(
                "string length {len} at byte offset {at} is larger than the {} bytes left",
                self.remaining()
            ));
        }
        let bytes = self.take(len as usize)?;
        // Invalid UTF-8 is replaced (U+FFFD) rather than rejected, like gguf-py.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, ty: MetaType, depth: u32) -> Result<MetaValue, String> {
        Ok(match ty {
            MetaType::U8 => MetaValue::U8(self.array::<1>()?[0]),
            MetaType::I8 => MetaValue::I8(self.array::<1>()?[0] as i8),
            MetaType::U16 => MetaValue::U16(u16::from_le_bytes(self.array()?)),
            MetaType::I16 => MetaValue::I16(i16::from_le_bytes(self.array()?)),
            MetaType::U32 => MetaValue::U32(self.u32()?),
            MetaType::I32 => MetaValue::I32(i32::from_le_bytes(self.array()?)),
            MetaType::F32 => MetaValue::F32(f32::from_le_bytes(self.array()?)),
            MetaType::U64 => MetaValue::U64(self.u64()?),
            MetaType::I64 => MetaValue::I64(i64::from_le_bytes(self.array()?)),
            MetaType::F64 => MetaValue::F64(f64::from_le_bytes(self.array()?)),
            MetaType::Bool => {
                let at = self.pos;
                match self.array::<1>()?[0] {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    b => return Err(format!("invalid bool byte {b} at byte offset {at}")),
                }
            }
            MetaType::String => MetaValue::String(self.string()?),
            MetaType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
                }
                let at = self.pos;
                let elem_id = self.u32()?;
                let elem = MetaType::from_id(elem_id).ok_or_else(|| {
                    format!("unknown array element type {elem_id} at byte offset {at}")
                })?;
                let count = self.u64()?;
                let fits = self.remaining() / elem.min_size();
                if count > fits as u64 {
                    return Err(format!(
                        "array count {count} at byte offset {} is larger than the {} bytes \
                         left can hold ({fits} {elem:?} at most)",
                        at + 4,
                        self.remaining()
                    ));
                }
                let mut items = Vec::with_capacity(count as usize);
                for i in 0..count {
                    let v = self
                        .value(elem, depth + 1)
                        .map_err(|e| format!("array element {i}: {e}"))?;
                    items.push(v);
                }
                MetaValue::Array(elem, items)
            }
        })
    }
}

impl GgufFile {
    /// Memory-maps and parses the file at `path`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &Path) -> Result<GgufFile, LoadError> {
        let bytes = map_file(path)?;
        Self::parse(path.display().to_string(), bytes)
    }

    /// Parses a GGUF held in memory; `path_label` names it in messages.
    pub fn from_bytes(
        path_label: impl Into<String>,
        bytes: Vec<u8>,
    ) -> Result<GgufFile, LoadError> {
        Self::parse(path_label.into(), FileBytes::Owned(bytes))
    }

    fn parse(path: String, bytes: FileBytes) -> Result<GgufFile, LoadError> {
        let err = |m: String| LoadError::new(&path, m);
        let buf: &[u8] = &bytes;
        let mut c = Cursor { buf, pos: 0 };

        // header
        let magic = c
            .array::<4>()
            .map_err(|e| err(format!("not a GGUF file: header {e}")))?;
        if magic != GGUF_MAGIC {
            return Err(err(format!(
                "not a GGUF file: magic is {magic:02x?} ({:?}), expected \"GGUF\"",
                String::from_utf8_lossy(&magic)
            )));
        }
        let version = c.u32().map_err(|e| err(format!("header (version): {e}")))?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(err(
                    "GGUF version 1 is not supported (only versions 2 and 3); re-convert the \
                     model with a recent llama.cpp"
                        .into(),
                ))
            }
            v if (2..=3).contains(&v.swap_bytes()) => {
                return Err(err(format!(
                    "big-endian GGUF (version {}) is not supported",
                    v.swap_bytes()
                )))
            }
            v => {
                return Err(err(format!(
                    "unsupported GGUF version {v} (supported: 2, 3)"
                )))
            }
        }
        let tensor_count = c
            .u64()
            .map_err(|e| err(format!("header (tensor count): {e}")))?;
        let kv_count = c
            .u64()
            .map_err(|e| err(format!("header (kv count): {e}")))?;
        // Each kv takes >= 13 bytes (key length, type, 1-byte value), each tensor info >= 24
        // (name length, n_dims, type, offset): counts beyond that cannot be right. They are
        // reported when the reading runs out of bytes; capacities are capped meanwhile.
        let after_header = c.remaining();
        let count_note = |e: LoadError| -> LoadError {
            let mut notes = String::new();
            if kv_count > (after_header / 13) as u64 {
                notes += &format!(
                    " (the header's metadata count {kv_count} is larger than the {after_header} \
                     bytes after it can hold)"
                );
            }
            if tensor_count > (after_header / 24) as u64 {
                notes += &format!(
                    " (the header's tensor count {tensor_count} is larger than the \
                     {after_header} bytes after it can hold)"
                );
            }
            LoadError::new(e.path, e.message + &notes)
        };
        let cap = |n: u64, each: usize| (n as usize).min(after_header / each);
        let terr = |m: String| count_note(err(m));

        // metadata
        let mut metadata = Vec::with_capacity(cap(kv_count, 13));
        let mut meta_index = HashMap::new();
        for i in 0..kv_count {
            let key = c
                .string()
                .map_err(|e| terr(format!("metadata key #{i}: {e}")))?;
            let ty_at = c.pos;
            let ty_id = c
                .u32()
                .map_err(|e| terr(format!("metadata '{key}' value type: {e}")))?;
            let ty = MetaType::from_id(ty_id).ok_or_else(|| {
                err(format!(
                    "metadata '{key}': unknown value type {ty_id} at byte offset {ty_at}"
                ))
            })?;
            let value = c
                .value(ty, 0)
                .map_err(|e| terr(format!("metadata '{key}': {e}")))?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(err(format!("duplicate metadata key '{key}'")));
            }
            metadata.push((key, value));
        }

        let alignment = match meta_index.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => {
                let v = &metadata[i].1;
                match v.as_i128() {
                    Some(a) if a > 0 && (a as u64).is_power_of_two() && a <= 1 << 30 => a as u64,
                    _ => {
                        return Err(err(format!(
                            "general.alignment must be a power of two, got {}",
                            v.describe()
                        )))
                    }
                }
            }
        };

        // tensor infos
        let mut tensors = Vec::with_capacity(cap(tensor_count, 24));
        let mut tensor_index = HashMap::new();
        for i in 0..tensor_count {
            let name = c
                .string()
                .map_err(|e| terr(format!("tensor info #{i} name: {e}")))?;
            let ctx = |e: String| terr(format!("tensor '{name}' (info #{i}): {e}"));
            let n_dims = c.u32().map_err(ctx)?;
            if n_dims == 0 || n_dims as usize > MAX_DIMS {
                return Err(ctx(format!("n_dims {n_dims} is not in 1..={MAX_DIMS}")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64().map_err(ctx)?);
            }
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| ctx(format!("dims {dims:?} overflow")))?;
            let type_at = c.pos;
            let type_id = c.u32().map_err(ctx)?;
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
                ctx(format!(
                    "unknown ggml tensor type id {type_id} at byte offset {type_at}"
                ))
            })?;
            if dims[0] % ggml_type.block_size() as u64 != 0 {
                return Err(ctx(format!(
                    "row length {} is not a multiple of the {} block size {}",
                    dims[0],
                    ggml_type.name(),
                    ggml_type.block_size()
                )));
            }
            let n_bytes = ggml_type
                .bytes_for(n_elements)
                .ok_or_else(|| ctx(format!("size of dims {dims:?} overflows")))?;
            let offset = c.u64().map_err(ctx)?;
            if offset % alignment != 0 {
                return Err(ctx(format!(
                    "data offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(err(format!("duplicate tensor name '{name}'")));
            }
            tensors.push(TensorInfo {
                name,
                ggml_type,
                dims,
                offset,
                n_elements,
                n_bytes,
            });
        }

        // data section
        let data_start = (c.pos as u64).next_multiple_of(alignment);
        let file_len = buf.len() as u64;
        for t in &tensors {
            let end = data_start
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes));
            match end {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(err(format!(
                        "tensor '{}' data [{}, {}) (data section starts at byte {data_start}) \
                         runs past the end of the file ({file_len} bytes): truncated or \
                         corrupt",
                        t.name,
                        t.offset,
                        t.offset as u128 + t.n_bytes as u128
                    )))
                }
            }
        }
        let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
        by_offset.sort_by_key(|t| t.offset);
        for w in by_offset.windows(2) {
            if w[0].offset + w[0].n_bytes > w[1].offset {
                return Err(err(format!(
                    "tensors '{}' and '{}' overlap in the data section",
                    w[0].name, w[1].name
                )));
            }
        }

        Ok(GgufFile {
            path,
            bytes,
            version,
            metadata,
            meta_index,
            tensors,
            tensor_index,
            alignment,
            data_start,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the data section in the file.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw (quantized) bytes of a tensor of this file.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        // bounds were validated at parse time
        let start = (self.data_start + t.offset) as usize;
        &self.bytes[start..start + t.n_bytes as usize]
    }

    /// The tensor dequantized to f32, in file (ggml) element order.
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>, LoadError> {
        let n = usize::try_from(t.n_elements)
            .map_err(|_| self.err(format!("tensor '{}' is too large", t.name)))?;
        super::quant::dequantize(t.ggml_type, self.tensor_data(t), n)
            .map_err(|e| self.err(format!("tensor '{}': {e}", t.name)))
    }

    fn err(&self, m: String) -> LoadError {
        LoadError::new(&self.path, m)
    }

    fn wrong_type(&self, key: &str, want: &str, v: &MetaValue) -> LoadError {
        self.err(format!(
            "metadata '{key}' should be {want}, found {}",
            v.describe()
        ))
    }

    fn int<T: TryFrom<i128>>(&self, key: &str, want: &str) -> Result<Option<T>, LoadError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let i = v.as_i128().ok_or_else(|| self.wrong_type(key, want, v))?;
        T::try_from(i)
            .map(Some)
            .map_err(|_| self.err(format!("metadata '{key}' = {i} does not fit in {want}")))
    }

    /// Any integer type whose value fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, LoadError> {
        self.int(key, "u32")
    }

    /// Any integer type whose value fits in u64.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, LoadError> {
        self.int(key, "u64")
    }

    /// Any integer type whose value fits in i64.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, LoadError> {
        self.int(key, "i64")
    }

    /// F32 or F64 (narrowed).
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, LoadError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|f| Some(f as f32))
                .ok_or_else(|| self.wrong_type(key, "a float", v)),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, LoadError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong_type(key, "a bool", v)),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>, LoadError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong_type(key, "a string", v)),
        }
    }

    fn array(&self, key: &str, want: &str) -> Result<Option<&[MetaValue]>, LoadError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Array(_, items)) => Ok(Some(items)),
            Some(v) => Err(self.wrong_type(key, want, v)),
        }
    }

    /// Number of elements of an array value (cheap; no conversion).
    pub fn array_len(&self, key: &str) -> Result<Option<usize>, LoadError> {
        Ok(self.array(key, "an array")?.map(|a| a.len()))
    }

    pub fn get_string_array(&self, key: &str) -> Result<Option<Vec<&str>>, LoadError> {
        let Some(items) = self.array(key, "an array of strings")? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            match v {
                MetaValue::String(s) => out.push(s.as_str()),
                v => {
                    return Err(self.err(format!(
                        "metadata '{key}'[{i}] should be a string, found {}",
                        v.describe()
                    )))
                }
            }
        }
        Ok(Some(out))
    }

    /// Elements F32 or F64.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, LoadError> {
        let Some(items) = self.array(key, "an array of floats")? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            let f = v.as_f64().ok_or_else(|| {
                self.err(format!(
                    "metadata '{key}'[{i}] should be a float, found {}",
                    v.describe()
                ))
            })?;
            out.push(f as f32);
        }
        Ok(Some(out))
    }

    /// Elements of any integer type that fit in i32.
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>, LoadError> {
        let Some(items) = self.array(key, "an array of integers")? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            let n = v
                .as_i128()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| {
                    self.err(format!(
                        "metadata '{key}'[{i}] should be an i32, found {}",
                        v.describe()
                    ))
                })?;
            out.push(n);
        }
        Ok(Some(out))
    }
}

/// Builds GGUF bytes: used by the test writers in `synthetic` and by tests that need
/// corrupt files. Tensors are laid out in order, each aligned.
#[derive(Clone, Debug)]
pub struct GgufBuilder {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, MetaValue)>,
    /// name, ggml dims (innermost first), type, raw bytes
    pub tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl Default for GgufBuilder {
    fn default() -> Self {
        GgufBuilder {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl GgufBuilder {
    pub fn meta(&mut self, key: &str, value: MetaValue) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Adds a tensor; `dims` in ggml order (innermost first).
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, bytes: Vec<u8>) -> &mut Self {
        self.tensors
            .push((name.to_string(), dims.to_vec(), ty, bytes));
        self
    }

    /// Writes the metadata and the infos of `tensors` (name, ggml dims, type, bytes) to
    /// `out`, then each tensor's bytes as `data(i)` makes them, aligned: a file larger
    /// than memory (a 9B model's random weights) one tensor at a time. The builder's own
    /// tensors are not written.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn write_streamed(
        &self,
        out: &mut impl std::io::Write,
        tensors: &[(String, Vec<u64>, GgmlType, u64)],
        mut data: impl FnMut(usize) -> Vec<u8>,
    ) -> std::io::Result<()> {
        let align = self.alignment.max(1);
        let mut head = self.header(tensors.len());
        let mut offset = 0u64;
        for (name, dims, ty, bytes) in tensors {
            put_tensor_info(&mut head, name, dims, *ty, offset);
            offset = (offset + bytes).next_multiple_of(align);
        }
        let mut written = (head.len() as u64).next_multiple_of(align);
        head.resize(written as usize, 0);
        out.write_all(&head)?;
        for (i, (name, _, _, bytes)) in tensors.iter().enumerate() {
            let chunk = data(i);
            if chunk.len() as u64 != *bytes {
                return Err(std::io::Error::other(format!(
                    "tensor '{name}': {} bytes made, {bytes} declared",
                    chunk.len()
                )));
            }
            out.write_all(&chunk)?;
            let end = (written + bytes).next_multiple_of(align);
            out.write_all(&vec![0u8; (end - written - bytes) as usize])?;
            written = end;
        }
        Ok(())
    }

    /// The magic, version, counts and metadata.
    fn header(&self, n_tensors: usize) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(n_tensors as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_string(&mut out, k);
            out.extend_from_slice(&(v.meta_type() as u32).to_le_bytes());
            put_value(&mut out, v);
        }
        out
    }

    /// Serializes. Does not validate: tests rely on being able to write bad files.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header(self.tensors.len());
        let align = self.alignment.max(1);
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, bytes) in &self.tensors {
            put_tensor_info(&mut out, name, dims, *ty, offset);
            offsets.push(offset);
            offset = (offset + bytes.len() as u64).next_multiple_of(align);
        }
        let data_start = (out.len() as u64).next_multiple_of(align);
        out.resize(data_start as usize, 0);
        for ((_, _, _, bytes), off) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + off) as usize, 0);
            out.extend_from_slice(bytes);
        }
        out
    }
}

/// A tensor's info: name, dims (ggml order), type, offset in the data section.
fn put_tensor_info(out: &mut Vec<u8>, name: &str, dims: &[u64], ty: GgmlType, offset: u64) {
    put_string(out, name);
    out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&ty.id().to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(*x as u8),
        MetaValue::String(s) => put_string(out, s),
        MetaValue::Array(t, items) => {
            out.extend_from_slice(&(*t as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                put_value(out, it);
            }
        }
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GgufBuilder {
        let mut b = GgufBuilder::default();
        b.meta("general.architecture", MetaValue::String("llama".into()))
            .meta("u8", MetaValue::U8(200))
            .meta("i8", MetaValue::I8(-5))
            .meta("u16", MetaValue::U16(60000))
            .meta("i16", MetaValue::I16(-30000))
            .meta("u32", MetaValue::U32(4_000_000_000))
            .meta("i32", MetaValue::I32(-7))
            .meta("f32", MetaValue::F32(1.5))
            .meta("bool", MetaValue::Bool(true))
            .meta("u64", MetaValue::U64(1 << 40))
            .meta("i64", MetaValue::I64(-(1 << 40)))
            .meta("f64", MetaValue::F64(0.25))
            .meta(
                "strings",
                MetaValue::Array(
                    MetaType::String,
                    vec![
                        MetaValue::String("a".into()),
                        MetaValue::String("bé".into()),
                    ],
                ),
            )
            .meta(
                "floats",
                MetaValue::Array(
                    MetaType::F32,
                    vec![MetaValue::F32(1.0), MetaValue::F32(-2.0)],
                ),
            )
            .meta(
                "ints",
                MetaValue::Array(MetaType::I32, vec![MetaValue::I32(3), MetaValue::I32(-4)]),
            )
            .meta(
                "nested",
                MetaValue::Array(
                    MetaType::Array,
                    vec![
                        MetaValue::Array(MetaType::U8, vec![MetaValue::U8(1), MetaValue::U8(2)]),
                        MetaValue::Array(MetaType::U8, vec![]),
                    ],
                ),
            );
        let a: Vec<u8> = (0..8u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        b.tensor("t.alpha", &[4, 2], GgmlType::F32, a);
        b.tensor("t.beta", &[32], GgmlType::Q8_0, vec![0u8; 34]);
        b
    }

    fn parse(bytes: Vec<u8>) -> Result<GgufFile, LoadError> {
        GgufFile::from_bytes("test.gguf", bytes)
    }

    fn parse_err(bytes: Vec<u8>) -> String {
        let e = parse(bytes).expect_err("should fail").to_string();
        assert!(e.starts_with("test.gguf: "), "{e}");
        e
    }

    /// position of the first occurrence of `needle`
    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).unwrap()
    }

    /// byte offset just after a tensor info's name (at its n_dims)
    fn info_at(hay: &[u8], name: &str) -> usize {
        let mut pat = (name.len() as u64).to_le_bytes().to_vec();
        pat.extend_from_slice(name.as_bytes());
        find(hay, &pat) + pat.len()
    }

    #[test]
    fn parses_every_value_type() {
        for version in [2, 3] {
            let mut b = sample();
            b.version = version;
            let f = parse(b.to_bytes()).unwrap();
            assert_eq!(f.version(), version);
            assert_eq!(f.metadata().len(), 16);
            assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
            assert_eq!(f.get_u32("u8").unwrap(), Some(200));
            assert_eq!(f.get_i64("i8").unwrap(), Some(-5));
            assert_eq!(f.get_u32("u16").unwrap(), Some(60000));
            assert_eq!(f.get_i64("i16").unwrap(), Some(-30000));
            assert_eq!(f.get_u32("u32").unwrap(), Some(4_000_000_000));
            assert_eq!(f.get_u64("u64").unwrap(), Some(1 << 40));
            assert_eq!(f.get_i64("i64").unwrap(), Some(-(1 << 40)));
            assert_eq!(f.get_f32("f32").unwrap(), Some(1.5));
            assert_eq!(f.get_f32("f64").unwrap(), Some(0.25));
            assert_eq!(f.get_bool("bool").unwrap(), Some(true));
            assert_eq!(
                f.get_string_array("strings").unwrap(),
                Some(vec!["a", "bé"])
            );
            assert_eq!(f.get_f32_array("floats").unwrap(), Some(vec![1.0, -2.0]));
            assert_eq!(f.get_i32_array("ints").unwrap(), Some(vec![3, -4]));
            assert_eq!(f.array_len("nested").unwrap(), Some(2));
            assert_eq!(f.get_u32("missing").unwrap(), None);
            let t = f.tensor("t.alpha").unwrap();
            assert_eq!(t.shape(), vec![2, 4]);
            assert_eq!(
                f.dequantize(t).unwrap(),
                (0..8).map(|i| i as f32).collect::<Vec<_>>()
            );
            assert_eq!(f.tensors().len(), 2);
            assert_eq!(f.tensor_data(f.tensor("t.beta").unwrap()).len(), 34);
            assert_eq!(f.data_start() % 32, 0);
        }
    }

    #[test]
    fn typed_getters_reject_wrong_types() {
        let f = parse(sample().to_bytes()).unwrap();
        let e = f.get_u32("f32").unwrap_err().to_string();
        assert!(
            e.contains("test.gguf") && e.contains("'f32' should be u32"),
            "{e}"
        );
        let e = f.get_u32("i32").unwrap_err().to_string();
        assert!(e.contains("does not fit"), "{e}");
        assert!(f.get_str("u8").is_err());
        assert!(f.get_bool("u8").is_err());
        assert!(f.get_f32("u32").is_err());
        let e = f.get_string_array("ints").unwrap_err().to_string();
        assert!(e.contains("'ints'[0] should be a string"), "{e}");
        assert!(f.get_i32_array("floats").is_err());
        assert!(f.get_f32_array("general.architecture").is_err());
    }

    #[test]
    fn opens_from_disk() {
        let dir = std::env::temp_dir().join(format!("headroom-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.gguf");
        std::fs::write(&p, sample().to_bytes()).unwrap();
        let f = GgufFile::open(&p).unwrap();
        assert_eq!(f.tensors().len(), 2);
        let e = GgufFile::open(&dir.join("missing.gguf"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.gguf"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_magic_and_versions() {
        let e = parse_err(b"GGML\x03\0\0\0".to_vec());
        assert!(e.contains("not a GGUF file") && e.contains("magic"), "{e}");
        let e = parse_err(b"GG".to_vec());
        assert!(
            e.contains("not a GGUF file") && e.contains("truncated"),
            "{e}"
        );
        let mut b = sample();
        b.version = 1;
        let e = parse_err(b.to_bytes());
        assert!(e.contains("version 1 is not supported"), "{e}");
        b.version = 4;
        let e = parse_err(b.to_bytes());
        assert!(e.contains("unsupported GGUF version 4"), "{e}");
        b.version = 3u32.swap_bytes();
        assert!(parse_err(b.to_bytes()).contains("big-endian"));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample().to_bytes();
        for n in 0..bytes.len() {
            let r = parse(bytes[..n].to_vec());
            let e = r.expect_err(&format!("truncated to {n} bytes")).to_string();
            assert!(e.starts_with("test.gguf: "), "{e}");
        }
        // where it says what was cut
        let e = parse_err(bytes[..10].to_vec());
        assert!(e.contains("header") && e.contains("truncated"), "{e}");
        let at = find(&bytes, b"u16") + 3 + 4; // in the u16 value
        let e = parse_err(bytes[..at + 1].to_vec());
        assert!(
            e.contains("metadata 'u16'") && e.contains("byte offset"),
            "{e}"
        );
        let at = info_at(&bytes, "t.alpha");
        let e = parse_err(bytes[..at + 3].to_vec());
        assert!(
            e.contains("tensor 't.alpha'") && e.contains("truncated"),
            "{e}"
        );
        let e = parse_err(bytes[..bytes.len() - 1].to_vec());
        assert!(
            e.contains("tensor 't.beta'") && e.contains("past the end"),
            "{e}"
        );
    }

    #[test]
    fn unknown_value_types() {
        let mut bytes = sample().to_bytes();
        let at = find(&bytes, b"bool") + 4; // the value type of "bool"
        bytes[at] = 13;
        let e = parse_err(bytes);
        assert!(
            e.contains("'bool'") && e.contains("unknown value type 13"),
            "{e}"
        );
        let mut bytes = sample().to_bytes();
        let at = find(&bytes, b"ints") + 4 + 4; // element type of "ints"
        bytes[at] = 99;
        let e = parse_err(bytes);
        assert!(
            e.contains("'ints'") && e.contains("unknown array element type 99"),
            "{e}"
        );
        let mut bytes = sample().to_bytes();
        let at = find(&bytes, b"bool") + 8;
        bytes[at] = 7;
        assert!(parse_err(bytes).contains("invalid bool"));
    }

    #[test]
    fn absurd_counts_do_not_allocate() {
        // array count 2^60
        let mut bytes = sample().to_bytes();
        let at = find(&bytes, b"ints") + 4 + 4 + 4;
        bytes[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let e = parse_err(bytes);
        assert!(
            e.contains("'ints'") && e.contains("array count 1152921504606846976"),
            "{e}"
        );
        // string length 2^60
        let mut bytes = sample().to_bytes();
        let at = find(&bytes, b"llama") - 8;
        bytes[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let e = parse_err(bytes);
        assert!(e.contains("string length 1152921504606846976"), "{e}");
        // tensor and kv counts
        let mut bytes = sample().to_bytes();
        bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = parse_err(bytes);
        assert!(
            e.contains("tensor count 18446744073709551615 is larger"),
            "{e}"
        );
        let mut bytes = sample().to_bytes();
        bytes[16..24].copy_from_slice(&(1u64 << 62).to_le_bytes());
        let e = parse_err(bytes);
        assert!(
            e.contains("metadata count 4611686018427387904 is larger"),
            "{e}"
        );
        // deeply nested arrays
        let mut v = MetaValue::Array(MetaType::U8, vec![]);
        for _ in 0..20 {
            v = MetaValue::Array(MetaType::Array, vec![v]);
        }
        let mut b = GgufBuilder::default();
        b.meta("deep", v);
        assert!(parse_err(b.to_bytes()).contains("nested deeper"));
    }

    #[test]
    fn bad_tensor_infos() {
        // unknown tensor type, naming the tensor and id
        let mut bytes = sample().to_bytes();
        let at = info_at(&bytes, "t.beta") + 4 + 8; // tensor t.beta's type
        bytes[at] = 4;
        let e = parse_err(bytes);
        assert!(
            e.contains("tensor 't.beta'") && e.contains("unknown ggml tensor type id 4"),
            "{e}"
        );
        // misaligned offset
        let mut bytes = sample().to_bytes();
        let at = info_at(&bytes, "t.beta") + 4 + 8 + 4; // its offset
        bytes[at] = 33;
        let e = parse_err(bytes);
        assert!(
            e.contains("tensor 't.beta'") && e.contains("not a multiple of the alignment"),
            "{e}"
        );
        // offset out of the file
        let mut bytes = sample().to_bytes();
        bytes[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let e = parse_err(bytes.clone());
        assert!(
            e.contains("tensor 't.beta'") && e.contains("past the end of the file"),
            "{e}"
        );
        bytes[at..at + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
        assert!(parse_err(bytes.clone()).contains("past the end"));
        // overlapping
        bytes[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
        let e = parse_err(bytes);
        assert!(e.contains("'t.alpha' and 't.beta' overlap"), "{e}");
        // dims overflow
        let mut b = GgufBuilder::default();
        b.tensor("big", &[1 << 32, 1 << 32], GgmlType::F32, vec![]);
        let e = parse_err(b.to_bytes());
        assert!(e.contains("tensor 'big'") && e.contains("overflow"), "{e}");
        // too many dims
        let mut b = GgufBuilder::default();
        b.tensor("five", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0; 4]);
        assert!(parse_err(b.to_bytes()).contains("n_dims 5"));
        // row not a whole number of blocks
        let mut b = GgufBuilder::default();
        b.tensor("odd", &[33], GgmlType::Q8_0, vec![0; 34]);
        assert!(parse_err(b.to_bytes()).contains("not a multiple of the Q8_0 block size"));
        // duplicate names
        let mut b = sample();
        b.tensor("t.alpha", &[1], GgmlType::F32, vec![0; 4]);
        assert!(parse_err(b.to_bytes()).contains("duplicate tensor name 't.alpha'"));
        let mut b = sample();
        b.meta("u8", MetaValue::U8(1));
        assert!(parse_err(b.to_bytes()).contains("duplicate metadata key 'u8'"));
    }

    #[test]
    fn alignment() {
        let mut b = sample();
        b.alignment = 64;
        b.meta("general.alignment", MetaValue::U32(64));
        let f = parse(b.to_bytes()).unwrap();
        assert_eq!(f.alignment(), 64);
        assert_eq!(f.data_start() % 64, 0);
        assert_eq!(f.tensor("t.beta").unwrap().offset % 64, 0);
        let mut b = sample();
        b.meta("general.alignment", MetaValue::U32(48));
        let e = parse_err(b.to_bytes());
        assert!(
            e.contains("general.alignment must be a power of two"),
            "{e}"
        );
        let mut b = sample();
        b.meta("general.alignment", MetaValue::U32(0));
        assert!(parse_err(b.to_bytes()).contains("power of two"));
    }

    #[test]
    fn random_corruption_never_panics() {
        let bytes = sample().to_bytes();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..3000 {
            let mut b = bytes.clone();
            for _ in 0..3 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = (state >> 33) as usize % b.len();
                b[i] = (state >> 17) as u8;
            }
            if let Ok(f) = parse(b) {
                for t in f.tensors() {
                    let _ = f.dequantize(t);
                }
            }
        }
    }
}
