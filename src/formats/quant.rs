//! ggml tensor types: ids, block sizes, and dequantization to f32 (exact ggml semantics,
//! after `ggml-quants.c` `dequantize_row_*`), plus the reference quantizers for the simple
//! block formats (Q8_0, Q4_0, Q4_1) that the GGUF test writer uses.
//!
//! A block of `block_size()` elements occupies `type_size()` bytes; the f16 scales inside
//! blocks are little-endian IEEE half floats.

// Bit-unpacking loops read clearest with explicit indices, as in ggml itself.
#![allow(clippy::needless_range_loop)]

use half::{bf16, f16};

/// Elements per super-block of the k-quants.
pub const QK_K: usize = 256;

/// A ggml tensor type, with the numeric id stored in GGUF tensor infos.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// (type, id, name, block size in elements, bytes per block); from ggml's type traits.
const TABLE: &[(GgmlType, u32, &str, usize, usize)] = &[
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 2 + 16),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 2 + 2 + 16),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 2 + 4 + 16),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 2 + 2 + 4 + 16),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 2 + 32),
    (GgmlType::Q8_1, 9, "Q8_1", 32, 4 + 4 + 32),
    (
        GgmlType::Q2_K,
        10,
        "Q2_K",
        QK_K,
        2 + 2 + QK_K / 16 + QK_K / 4,
    ),
    (
        GgmlType::Q3_K,
        11,
        "Q3_K",
        QK_K,
        2 + QK_K / 4 + QK_K / 8 + 12,
    ),
    (GgmlType::Q4_K, 12, "Q4_K", QK_K, 2 + 2 + 12 + QK_K / 2),
    (
        GgmlType::Q5_K,
        13,
        "Q5_K",
        QK_K,
        2 + 2 + 12 + QK_K / 8 + QK_K / 2,
    ),
    (
        GgmlType::Q6_K,
        14,
        "Q6_K",
        QK_K,
        QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
    ),
    (GgmlType::Q8_K, 15, "Q8_K", QK_K, 4 + QK_K + QK_K / 8),
    (GgmlType::IQ2_XXS, 16, "IQ2_XXS", QK_K, 2 + QK_K / 4),
    (
        GgmlType::IQ2_XS,
        17,
        "IQ2_XS",
        QK_K,
        2 + QK_K / 4 + QK_K / 32,
    ),
    (
        GgmlType::IQ3_XXS,
        18,
        "IQ3_XXS",
        QK_K,
        2 + QK_K / 4 + QK_K / 8,
    ),
    (GgmlType::IQ1_S, 19, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 2 + 16),
    (
        GgmlType::IQ3_S,
        21,
        "IQ3_S",
        QK_K,
        2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4,
    ),
    (GgmlType::IQ2_S, 22, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16),
    (
        GgmlType::IQ4_XS,
        23,
        "IQ4_XS",
        QK_K,
        2 + 2 + QK_K / 2 + QK_K / 64,
    ),
    (GgmlType::I8, 24, "I8", 1, 1),
    (GgmlType::I16, 25, "I16", 1, 2),
    (GgmlType::I32, 26, "I32", 1, 4),
    (GgmlType::I64, 27, "I64", 1, 8),
    (GgmlType::F64, 28, "F64", 1, 8),
    (
        GgmlType::IQ1_M,
        29,
        "IQ1_M",
        QK_K,
        QK_K / 8 + QK_K / 16 + QK_K / 32,
    ),
    (GgmlType::BF16, 30, "BF16", 1, 2),
    (GgmlType::TQ1_0, 34, "TQ1_0", QK_K, 2 + 4 * 13),
    (GgmlType::TQ2_0, 35, "TQ2_0", QK_K, 2 + 64),
    (GgmlType::MXFP4, 39, "MXFP4", 32, 1 + 16),
];

impl GgmlType {
    fn row(self) -> &'static (GgmlType, u32, &'static str, usize, usize) {
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every GgmlType has a TABLE row")
    }

    /// The type with ggml id `id`, or None for ids ggml never had or has removed.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }

    /// The ggml numeric id (as stored in GGUF).
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// ggml's name, e.g. "Q4_1".
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Elements per block (1 for plain float/int types).
    pub fn block_size(self) -> usize {
        self.row().3
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.row().4
    }

    /// Bytes taken by `n_elements` elements, None if not a whole number of blocks or on
    /// overflow.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n_elements.is_multiple_of(bs) {
            return None;
        }
        (n_elements / bs).checked_mul(self.type_size() as u64)
    }

    /// Whether [`dequantize`] handles this type.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4_K | Q5_K | Q6_K
        )
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Dequantizes `n_elements` values of type `ty` from `bytes` (exactly their size).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, String> {
    let mut out = vec![0f32; n_elements];
    dequantize_into(ty, bytes, &mut out)?;
    Ok(out)
}

/// Dequantizes into `out`; `bytes` must hold exactly `out.len()` elements of type `ty`.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), String> {
    if !ty.can_dequantize() {
        return Err(format!("dequantizing {} is not supported", ty.name()));
    }
    let n = out.len();
    let bs = ty.block_size();
    if !n.is_multiple_of(bs) {
        return Err(format!(
            "{n} elements is not a whole number of {} blocks of {bs}",
            ty.name()
        ));
    }
    let expect = n / bs * ty.type_size();
    if bytes.len() != expect {
        return Err(format!(
            "{n} elements of {} take {expect} bytes, got {}",
            ty.name(),
            bytes.len()
        ));
    }
    let blocks = bytes
        .chunks_exact(ty.type_size())
        .zip(out.chunks_exact_mut(bs));
    match ty {
        GgmlType::F32 => {
            for (b, y) in blocks {
                y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (b, y) in blocks {
                y[0] = f16_at(b, 0);
            }
        }
        GgmlType::BF16 => {
            for (b, y) in blocks {
                y[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        GgmlType::Q8_0 => blocks.for_each(|(b, y)| block_q8_0(b, y)),
        GgmlType::Q4_0 => blocks.for_each(|(b, y)| block_q4_0(b, y)),
        GgmlType::Q4_1 => blocks.for_each(|(b, y)| block_q4_1(b, y)),
        GgmlType::Q5_0 => blocks.for_each(|(b, y)| block_q5_0(b, y)),
        GgmlType::Q5_1 => blocks.for_each(|(b, y)| block_q5_1(b, y)),
        GgmlType::Q4_K => blocks.for_each(|(b, y)| block_q4_k(b, y)),
        GgmlType::Q5_K => blocks.for_each(|(b, y)| block_q5_k(b, y)),
        GgmlType::Q6_K => blocks.for_each(|(b, y)| block_q6_k(b, y)),
        _ => unreachable!("checked by can_dequantize"),
    }
    Ok(())
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// block_q8_0 { f16 d; i8 qs[32]; }  y = d * q
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}

/// block_q4_0 { f16 d; u8 qs[16]; }  low nibbles are elements 0..16, high nibbles 16..32;
/// y = d * (q - 8)
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = ((qs[j] & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

/// block_q4_1 { f16 d; f16 m; u8 qs[16]; }  y = d * q + m
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0F) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

/// block_q5_0 { f16 d; u8 qh[4]; u8 qs[16]; }  the 5th bit of element j is bit j of qh;
/// y = d * (q - 16)
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let xh0 = (((qh >> j) & 1) << 4) as u8;
        let xh1 = (((qh >> (j + 16)) & 1) << 4) as u8;
        y[j] = (((qs[j] & 0x0F) | xh0) as i32 - 16) as f32 * d;
        y[j + 16] = (((qs[j] >> 4) | xh1) as i32 - 16) as f32 * d;
    }
}

/// block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }  y = d * q + m
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let xh0 = (((qh >> j) & 1) << 4) as u8;
        let xh1 = (((qh >> (j + 16)) & 1) << 4) as u8;
        y[j] = ((qs[j] & 0x0F) | xh0) as f32 * d + m;
        y[j + 16] = ((qs[j] >> 4) | xh1) as f32 * d + m;
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed scale bytes of
/// Q4_K/Q5_K (ggml `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }
/// 8 sub-blocks of 32; each 64 elements share 32 bytes of qs (low nibbles first).
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for j in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let q = &qs[32 * j..32 * j + 32];
        let y = &mut y[64 * j..64 * j + 64];
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0x0F) as f32 - m1;
            y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }
/// As Q4_K, with the 5th bit of element 32*s + l in bit s of qh[l].
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for j in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
        let ql = &qs[32 * j..32 * j + 32];
        let y = &mut y[64 * j..64 * j + 64];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((ql[l] & 0x0F) + h1) as f32 - m1;
            y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
        }
    }
}

/// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }
/// Two halves of 128; in each, element 32*k + l takes 4 low bits from ql and 2 high bits
/// from qh[l] bits 2k..2k+2; y = d * scale * (q - 32), 16 elements per scale.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

/// Quantizes `x` (a multiple of 32 long) to Q8_0 like ggml's `quantize_row_q8_0_ref`.
pub fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    assert!(x.len().is_multiple_of(32), "Q8_0 needs whole blocks of 32");
    let mut out = Vec::with_capacity(x.len() / 32 * 34);
    for blk in x.chunks_exact(32) {
        let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend(blk.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

/// Quantizes `x` to Q4_0 like ggml's `quantize_row_q4_0_ref`.
pub fn quantize_q4_0(x: &[f32]) -> Vec<u8> {
    assert!(x.len().is_multiple_of(32), "Q4_0 needs whole blocks of 32");
    let mut out = Vec::with_capacity(x.len() / 32 * 18);
    for blk in x.chunks_exact(32) {
        // the value of largest magnitude, with its sign
        let max = blk
            .iter()
            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        let q = |v: f32| ((v * id + 8.5) as i8).clamp(0, 15) as u8;
        for j in 0..16 {
            out.push(q(blk[j]) | (q(blk[j + 16]) << 4));
        }
    }
    out
}

/// Quantizes `x` to Q4_1 like ggml's `quantize_row_q4_1_ref`.
pub fn quantize_q4_1(x: &[f32]) -> Vec<u8> {
    assert!(x.len().is_multiple_of(32), "Q4_1 needs whole blocks of 32");
    let mut out = Vec::with_capacity(x.len() / 32 * 20);
    for blk in x.chunks_exact(32) {
        let min = blk.iter().copied().fold(f32::INFINITY, f32::min);
        let max = blk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
        let q = |v: f32| (((v - min) * id + 0.5) as i8).clamp(0, 15) as u8;
        for j in 0..16 {
            out.push(q(blk[j]) | (q(blk[j + 16]) << 4));
        }
    }
    out
}

/// Quantizes `x` to Q5_0 like ggml's `quantize_row_q5_0_ref` (`signed`: d = max / -16,
/// q = x / d + 16) or Q5_1 like `quantize_row_q5_1_ref` (d = range / 31, m = min): the low
/// nibbles of elements j and j + 16 share byte j, their fifth bits are bits j and j + 16.
fn quantize_q5(x: &[f32], signed: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for blk in x.chunks_exact(32) {
        let (d, m) = if signed {
            let max = blk
                .iter()
                .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            (max / -16.0, None)
        } else {
            let min = blk.iter().copied().fold(f32::INFINITY, f32::min);
            let max = blk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            ((max - min) / 31.0, Some(min))
        };
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q: Vec<u8> = blk
            .iter()
            .map(|&v| match m {
                None => ((v * id + 16.5) as i8).clamp(0, 31) as u8,
                Some(min) => (((v - min) * id + 0.5) as i8).clamp(0, 31) as u8,
            })
            .collect();
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        if let Some(min) = m {
            out.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
        }
        let qh = (0..32).fold(0u32, |h, j| h | (((q[j] >> 4) as u32) << j));
        out.extend_from_slice(&qh.to_le_bytes());
        out.extend((0..16).map(|j| (q[j] & 15) | ((q[j + 16] & 15) << 4)));
    }
    out
}

/// The 6-bit scales and mins of 8 sub-blocks packed into Q4_K/Q5_K's 12 bytes (the inverse
/// of `scale_min_k4`).
fn pack_scale_min_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
    }
    q
}

/// Quantizes `x` to Q4_K (`bits` = 4) or Q5_K (5): per 32-value sub-block a scale and a
/// min from its range, both as 6-bit multiples of the block's f16 `d` and `dmin`. A plain
/// range fit (ggml's reference also searches for better scales); the test models and the
/// writers need valid blocks, not the best ones.
fn quantize_k(x: &[f32], bits: u32) -> Vec<u8> {
    let top = ((1u32 << bits) - 1) as f32;
    let mut out = Vec::new();
    for blk in x.chunks_exact(QK_K) {
        let (mut scale, mut min) = ([0f32; 8], [0f32; 8]);
        for (j, sub) in blk.chunks_exact(32).enumerate() {
            let lo = sub.iter().copied().fold(0f32, f32::min);
            let hi = sub.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            scale[j] = (hi - lo) / top;
            min[j] = -lo;
        }
        let d = scale.iter().copied().fold(0f32, f32::max) / 63.0;
        let dmin = min.iter().copied().fold(0f32, f32::max) / 63.0;
        let (d, dmin) = (f16::from_f32(d), f16::from_f32(dmin));
        let six = |v: f32, unit: f32| match unit > 0.0 {
            true => (v / unit).round().clamp(0.0, 63.0) as u8,
            false => 0,
        };
        let sc: [u8; 8] = std::array::from_fn(|j| six(scale[j], d.to_f32()));
        let m: [u8; 8] = std::array::from_fn(|j| six(min[j], dmin.to_f32()));
        let mut q = [0u8; QK_K];
        for (j, sub) in blk.chunks_exact(32).enumerate() {
            let (step, off) = (d.to_f32() * sc[j] as f32, dmin.to_f32() * m[j] as f32);
            for (l, &v) in sub.iter().enumerate() {
                q[32 * j + l] = match step > 0.0 {
                    true => ((v + off) / step).round().clamp(0.0, top) as u8,
                    false => 0,
                };
            }
        }
        out.extend_from_slice(&d.to_bits().to_le_bytes());
        out.extend_from_slice(&dmin.to_bits().to_le_bytes());
        out.extend_from_slice(&pack_scale_min_k4(&sc, &m));
        if bits == 5 {
            // bit 4 of element 32 s + l is bit s of qh[l]
            out.extend((0..32).map(|l| (0..8).fold(0u8, |h, s| h | ((q[32 * s + l] >> 4) << s))));
        }
        for pair in 0..4 {
            let (a, b) = (
                &q[64 * pair..64 * pair + 32],
                &q[64 * pair + 32..64 * pair + 64],
            );
            out.extend(a.iter().zip(b).map(|(&a, &b)| (a & 15) | ((b & 15) << 4)));
        }
    }
    out
}

/// Quantizes `x` to Q6_K: per 16 values a signed 8-bit scale of the block's f16 `d`, and
/// 6-bit quants offset by 32 (a plain fit, as `quantize_k`).
fn quantize_q6_k(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for blk in x.chunks_exact(QK_K) {
        let scale: [f32; 16] = std::array::from_fn(|g| {
            blk[16 * g..16 * g + 16]
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()))
                / 31.0
        });
        let d = f16::from_f32(scale.iter().copied().fold(0f32, f32::max) / 127.0);
        let sc: [i8; 16] = std::array::from_fn(|g| match d.to_f32() > 0.0 {
            true => (scale[g] / d.to_f32()).round().clamp(-128.0, 127.0) as i8,
            false => 0,
        });
        let q: Vec<u8> = (0..QK_K)
            .map(|i| {
                let step = d.to_f32() * sc[i / 16] as f32;
                let v = match step != 0.0 {
                    true => (blk[i] / step).round().clamp(-32.0, 31.0) as i32,
                    false => 0,
                };
                (v + 32) as u8
            })
            .collect();
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        for n in 0..2 {
            let q = &q[128 * n..128 * n + 128];
            for l in 0..32 {
                ql[64 * n + l] = (q[l] & 15) | ((q[64 + l] & 15) << 4);
                ql[64 * n + 32 + l] = (q[32 + l] & 15) | ((q[96 + l] & 15) << 4);
                qh[32 * n + l] = (q[l] >> 4)
                    | ((q[32 + l] >> 4) << 2)
                    | ((q[64 + l] >> 4) << 4)
                    | ((q[96 + l] >> 4) << 6);
            }
        }
        out.extend_from_slice(&ql);
        out.extend_from_slice(&qh);
        out.extend(sc.iter().map(|&s| s as u8));
        out.extend_from_slice(&d.to_bits().to_le_bytes());
    }
    out
}

/// Encodes f32 values as `ty` for the writers: F32, F16, BF16 (round to nearest even),
/// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>, String> {
    let bs = ty.block_size();
    if !x.len().is_multiple_of(bs) {
        return Err(format!(
            "{} elements is not a whole number of {} blocks of {bs}",
            x.len(),
            ty.name()
        ));
    }
    Ok(match ty {
        GgmlType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => x
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
        GgmlType::BF16 => x
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
        GgmlType::Q8_0 => quantize_q8_0(x),
        GgmlType::Q4_0 => quantize_q4_0(x),
        GgmlType::Q4_1 => quantize_q4_1(x),
        GgmlType::Q5_0 => quantize_q5(x, true),
        GgmlType::Q5_1 => quantize_q5(x, false),
        GgmlType::Q4_K => quantize_k(x, 4),
        GgmlType::Q5_K => quantize_k(x, 5),
        GgmlType::Q6_K => quantize_q6_k(x),
        _ => return Err(format!("quantizing to {} is not supported", ty.name())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::path::PathBuf;

    fn data_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/quant")
    }

    /// The K-quant encoders give blocks of the right size that decode (by the decoders
    /// checked against python gguf) to within half a quantization step of the input.
    #[test]
    fn k_quants_round_trip_within_their_step() {
        let mut r = rand::rngs::StdRng::seed_from_u64(7);
        let x: Vec<f32> = (0..4 * QK_K)
            .map(|_| r.random::<f32>() * 2.0 - 1.2)
            .collect();
        for (ty, levels) in [
            (GgmlType::Q4_K, 15.0),
            (GgmlType::Q5_K, 31.0),
            (GgmlType::Q6_K, 31.0),
        ] {
            let q = quantize(ty, &x).unwrap();
            assert_eq!(q.len(), 4 * ty.type_size(), "{}", ty.name());
            let y = dequantize(ty, &q, x.len()).unwrap();
            // a step is about the range of 32 (Q6_K: 16) values over the levels, plus the
            // 6-bit rounding of the scales (a few percent)
            let bound = 2.2 / levels * 0.5 * 1.15 + 0.01;
            let worst = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= bound,
                "{}: worst error {worst} > {bound}",
                ty.name()
            );
        }
    }

    #[test]
    fn ids_and_sizes_match_ggml() {
        assert_eq!(GgmlType::from_id(0), Some(GgmlType::F32));
        assert_eq!(GgmlType::from_id(3), Some(GgmlType::Q4_1));
        assert_eq!(GgmlType::from_id(14), Some(GgmlType::Q6_K));
        assert_eq!(GgmlType::from_id(30), Some(GgmlType::BF16));
        assert_eq!(GgmlType::from_id(4), None, "Q4_2 was removed");
        assert_eq!(GgmlType::from_id(31), None);
        assert_eq!(GgmlType::from_id(1000), None);
        assert_eq!(GgmlType::Q4_K.type_size(), 144);
        assert_eq!(GgmlType::Q5_K.type_size(), 176);
        assert_eq!(GgmlType::Q6_K.type_size(), 210);
        assert_eq!(GgmlType::Q8_0.type_size(), 34);
        for r in TABLE {
            assert_eq!(GgmlType::from_id(r.1), Some(r.0));
            assert_eq!(r.0.id(), r.1);
        }
        assert_eq!(GgmlType::Q4_0.bytes_for(64), Some(36));
        assert_eq!(GgmlType::Q4_0.bytes_for(65), None);
    }

    /// Compares against vectors written by `scripts/make-quant-vectors.py` with python's
    /// `gguf.quants.dequantize` (random blocks, so every bit position is exercised).
    #[test]
    fn dequantize_matches_python_gguf() {
        let manifest = std::fs::read_to_string(data_dir().join("manifest.json"))
            .expect("tests/data/quant/manifest.json (run scripts/make-quant-vectors.py)");
        let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        let entries = manifest["types"].as_array().unwrap();
        let mut seen = Vec::new();
        for e in entries {
            let name = e["type"].as_str().unwrap();
            let id = e["id"].as_u64().unwrap() as u32;
            let n = e["n_elements"].as_u64().unwrap() as usize;
            let ty = GgmlType::from_id(id).unwrap();
            assert_eq!(ty.name(), name);
            let q = std::fs::read(data_dir().join(format!("{name}.q.bin"))).unwrap();
            let f = std::fs::read(data_dir().join(format!("{name}.f32.bin"))).unwrap();
            let want: Vec<f32> = f
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(want.len(), n);
            let got = dequantize(ty, &q, n).unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let tol = 1e-6 * w.abs().max(1e-3);
                assert!((g - w).abs() <= tol, "{name}[{i}]: got {g}, python {w}");
            }
            seen.push(ty);
        }
        for ty in TABLE.iter().map(|r| r.0).filter(|t| t.can_dequantize()) {
            assert!(seen.contains(&ty), "no python vectors for {ty}");
        }
    }

    #[test]
    fn round_trip_simple_quants_bounded_error() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let x: Vec<f32> = (0..32 * 64).map(|_| rng.random_range(-2.0..2.0)).collect();
        for (ty, steps) in [
            (GgmlType::Q8_0, 127.0f32),
            (GgmlType::Q4_0, 8.0),
            (GgmlType::Q4_1, 15.0),
            (GgmlType::Q5_0, 16.0),
            (GgmlType::Q5_1, 31.0),
        ] {
            let q = quantize(ty, &x).unwrap();
            assert_eq!(q.len() as u64, ty.bytes_for(x.len() as u64).unwrap());
            let y = dequantize(ty, &q, x.len()).unwrap();
            for (blk_x, blk_y) in x.chunks(32).zip(y.chunks(32)) {
                let amax = blk_x.iter().fold(0f32, |a, v| a.max(v.abs()));
                let range = match ty {
                    GgmlType::Q4_1 | GgmlType::Q5_1 => {
                        blk_x.iter().copied().fold(f32::MIN, f32::max)
                            - blk_x.iter().copied().fold(f32::MAX, f32::min)
                    }
                    _ => amax,
                };
                // half a quantization step (a full one for Q4_0, which maps the value
                // opposite its largest to 7 steps, not 8), plus the f16 rounding of the scales
                let step = range / steps;
                let bound = if ty == GgmlType::Q4_0 || ty == GgmlType::Q5_0 {
                    step
                } else {
                    step * 0.5
                } + amax * 2e-3;
                for (a, b) in blk_x.iter().zip(blk_y) {
                    assert!((a - b).abs() <= bound, "{ty}: {a} -> {b}, bound {bound}");
                }
            }
        }
    }

    #[test]
    fn float_types_round_trip() {
        let x = [0.0f32, 1.0, -2.5, 65504.0, 1e-3, -7.25];
        let f = dequantize(GgmlType::F32, &quantize(GgmlType::F32, &x).unwrap(), 6).unwrap();
        assert_eq!(f, x);
        let h = dequantize(GgmlType::F16, &quantize(GgmlType::F16, &x).unwrap(), 6).unwrap();
        let b = dequantize(GgmlType::BF16, &quantize(GgmlType::BF16, &x).unwrap(), 6).unwrap();
        for i in 0..6 {
            assert!((h[i] - x[i]).abs() <= x[i].abs() * 1e-3);
            assert!((b[i] - x[i]).abs() <= x[i].abs() * 8e-3);
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let e = dequantize(GgmlType::Q4_0, &[0u8; 17], 32).unwrap_err();
        assert!(e.contains("18 bytes"), "{e}");
        let e = dequantize(GgmlType::Q4_K, &[0u8; 144], 100).unwrap_err();
        assert!(e.contains("whole number"), "{e}");
        let e = dequantize(GgmlType::IQ2_XXS, &[0u8; 66], 256).unwrap_err();
        assert!(e.contains("IQ2_XXS"), "{e}");
    }
}
