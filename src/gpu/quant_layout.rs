//! Quantized weights on the GPU: GGML blocks as the file stores them, repacked at load
//! into super-blocks of 8 blocks (256 values) so that every load is an aligned u32, and
//! the WGSL accessor that dequantizes four values at a time in registers. Repacking moves
//! bytes, never widens them: a super-block holds exactly the 8 blocks' bytes.
//!
//! Layout of one super-block, in u32 words (block b = 0..8 of it):
//! - Q4_0: 4 words of 8 f16 scales (block b's in half b % 2 of word b / 2), then per block
//!   the 16 bytes of nibbles as 4 words: 36 words (18 bytes per 32 values, as in the file);
//! - Q4_1: 8 words, one (scale, min) f16 pair per block, then the nibbles: 40 words;
//! - Q8_0: 4 words of scales, then per block its 32 signed bytes as 8 words: 68 words.
//!
//! A tensor's blocks run in row-major order across the whole buffer, so value `i` of the
//! flat matrix is value `i % 32` of block `i / 32`; a last, partial super-block is padded.

use crate::formats::quant::GgmlType;

/// A GGML block type the GPU reads as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum QuantType {
    Q4_0,
    Q4_1,
    Q8_0,
}

/// Values per GGML block, and blocks per super-block.
const BLOCK: usize = 32;
const BLOCKS_PER_SB: usize = 8;
/// Values per super-block.
pub const SUPER_BLOCK: usize = BLOCK * BLOCKS_PER_SB;

impl QuantType {
    /// The GPU form of a GGML type, where there is one.
    pub fn from_ggml(ty: GgmlType) -> Option<QuantType> {
        match ty {
            GgmlType::Q4_0 => Some(QuantType::Q4_0),
            GgmlType::Q4_1 => Some(QuantType::Q4_1),
            GgmlType::Q8_0 => Some(QuantType::Q8_0),
            _ => None,
        }
    }

    pub fn ggml(self) -> GgmlType {
        match self {
            QuantType::Q4_0 => GgmlType::Q4_0,
            QuantType::Q4_1 => GgmlType::Q4_1,
            QuantType::Q8_0 => GgmlType::Q8_0,
        }
    }

    pub fn name(self) -> &'static str {
        self.ggml().name()
    }

    /// (header words, words of one block's quants) of a super-block.
    fn words(self) -> (usize, usize) {
        match self {
            QuantType::Q4_0 => (4, 4),
            QuantType::Q4_1 => (8, 4),
            QuantType::Q8_0 => (4, 8),
        }
    }

    /// Bytes of one super-block (8 blocks).
    pub fn super_block_bytes(self) -> usize {
        let (h, q) = self.words();
        4 * (h + BLOCKS_PER_SB * q)
    }

    /// Bytes on the GPU of `values` values (a whole number of blocks), the last
    /// super-block padded.
    pub fn bytes_for(self, values: usize) -> u64 {
        (values.div_ceil(SUPER_BLOCK) * self.super_block_bytes()) as u64
    }

    /// GGML blocks (`bytes`, as the file stores them, in row-major order) repacked into
    /// super-blocks.
    pub fn repack(self, bytes: &[u8]) -> Vec<u8> {
        let block_bytes = self.ggml().type_size();
        assert!(
            bytes.len().is_multiple_of(block_bytes),
            "{}: {} bytes are not whole blocks",
            self.name(),
            bytes.len()
        );
        let blocks = bytes.len() / block_bytes;
        let (h, q) = self.words();
        let scale_bytes = block_bytes - 4 * q;
        let mut out = vec![0u8; self.bytes_for(blocks * BLOCK) as usize];
        for (i, block) in bytes.chunks_exact(block_bytes).enumerate() {
            let sb = &mut out[(i / BLOCKS_PER_SB) * self.super_block_bytes()..];
            let b = i % BLOCKS_PER_SB;
            // the scale (and min) bytes first in the block, the quants after them
            sb[b * scale_bytes..(b + 1) * scale_bytes].copy_from_slice(&block[..scale_bytes]);
            let at = 4 * h + b * 4 * q;
            sb[at..at + 4 * q].copy_from_slice(&block[scale_bytes..]);
        }
        out
    }

    /// WGSL declaring `name` at `binding` (u32 words), `name_load4(i)`: values 4i..4i+4
    /// of the flat matrix, and `name_load_chunk(c)`: block c's 32 values, reading its scale
    /// once.
    pub fn accessor(self, name: &str, binding: &str) -> String {
        let (h, q) = self.words();
        let sb = h + BLOCKS_PER_SB * q;
        // per type: the block's scale and offset (or min) from the header word `hw`, and
        // the j-th vec4 of values from quant word `w`
        let (scale, values) = match self {
            QuantType::Q4_0 => (
                "let d = unpack2x16float(hw)[b % 2u]; let m = -8.0 * d;",
                "let n = vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(15u); \
                 return vec4<f32>(n) * d + m;",
            ),
            QuantType::Q4_1 => (
                "let dm = unpack2x16float(hw); let d = dm.x; let m = dm.y;",
                "let n = vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(15u); \
                 return vec4<f32>(n) * d + m;",
            ),
            QuantType::Q8_0 => (
                "let d = unpack2x16float(hw)[b % 2u]; let m = 0.0;",
                "let s = vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u), \
                 bitcast<i32>(w << 8u), bitcast<i32>(w)) >> vec4<u32>(24u); \
                 return vec4<f32>(s) * d + m;",
            ),
        };
        // the header word of block b: Q4_1 has one per block, the others one per two
        let hw = if self == QuantType::Q4_1 {
            "base + b"
        } else {
            "base + b / 2u"
        };
        // the quant word of value group j (0..8) of a block whose quants start at word qa
        let word = match self {
            QuantType::Q8_0 => "let w = {name}[qa + j];",
            _ => "let w = {name}[qa + j % 4u] >> ((j / 4u) * 4u);",
        }
        .replace("{name}", name);
        format!(
            "@group(0) @binding({binding}) var<storage, read> {name}: array<u32>;\n\
             // {ty}: see src/gpu/quant_layout.rs\n\
             fn {name}_group(hw: u32, b: u32, qa: u32, j: u32) -> vec4<f32> {{\n    \
             {scale}\n    {word}\n    {values}\n}}\n\
             fn {name}_load4(i: u32) -> vec4<f32> {{\n    \
             let blk = i / 8u;\n    \
             let b = blk % 8u;\n    \
             let base = (blk / 8u) * {sb}u;\n    \
             return {name}_group({name}[{hw}], b, base + {h}u + b * {q}u, i % 8u);\n}}\n\
             fn {name}_load_chunk(blk: u32) -> array<vec4<f32>, 8> {{\n    \
             let b = blk % 8u;\n    \
             let base = (blk / 8u) * {sb}u;\n    \
             let hw = {name}[{hw}];\n    \
             let qa = base + {h}u + b * {q}u;\n    \
             var out: array<vec4<f32>, 8>;\n    \
             for (var j = 0u; j < 8u; j++) {{ out[j] = {name}_group(hw, b, qa, j); }}\n    \
             return out;\n}}\n",
            ty = self.name()
        )
    }

    /// WGSL declaring `name` at `binding` as whole 16-byte words, with `name_fetch(blk)`:
    /// block `blk`'s quants and scale(s) as a `name_block` (two or three aligned vec4
    /// loads, the header shared by the super-block's 8 blocks), and
    /// `name_dot(wb, q0, q1, xs)`: the block's dot product with a 32-value block of x
    /// quantized to 8 bits (`q0`, `q1`: values 0..16 and 16..32 as packed i8; `xs`: x's
    /// scale and scale times the sum of its quants, see shaders/quantize_q8.wgsl), in
    /// integer dot products of four 8-bit lanes (the kernel defines `idot4`: see
    /// [`idot4`]) and two multiplies.
    pub fn block_dot_accessor(self, name: &str, binding: &str) -> String {
        let (h, q) = self.words();
        // super-block and header sizes in vec4 words
        let (sb4, h4, q4) = ((h + BLOCKS_PER_SB * q) / 4, h / 4, q / 4);
        let (fields, fetch, dot) = match self {
            // nibble j of byte i is value i + 16 j: low nibbles pair with x's first 16
            // values, high nibbles with the last 16
            QuantType::Q4_0 | QuantType::Q4_1 => (
                "q: vec4<u32>, d: f32, m: f32,",
                if self == QuantType::Q4_0 {
                    "let hw = {name}[base][b / 2u]; let d = unpack2x16float(hw >> ((b % 2u) * 16u)).x;                      return {name}_block({name}[base + H4 + b], d, -8.0 * d);"
                } else {
                    "let dm = unpack2x16float({name}[base + b / 4u][b % 4u]);                      return {name}_block({name}[base + H4 + b], dm.x, dm.y);"
                },
                "let m4 = vec4<u32>(0x0f0f0f0fu); let lo = wb.q & m4; let hi = (wb.q >> vec4<u32>(4u)) & m4;                  let s = idot4(lo.x, q0.x) + idot4(lo.y, q0.y) + idot4(lo.z, q0.z)                  + idot4(lo.w, q0.w) + idot4(hi.x, q1.x) + idot4(hi.y, q1.y)                  + idot4(hi.z, q1.z) + idot4(hi.w, q1.w);                  return wb.d * xs.x * f32(s) + wb.m * xs.y;",
            ),
            QuantType::Q8_0 => (
                "q: vec4<u32>, r: vec4<u32>, d: f32,",
                "let hw = {name}[base][b / 2u]; let d = unpack2x16float(hw >> ((b % 2u) * 16u)).x;                  let at = base + H4 + 2u * b; return {name}_block({name}[at], {name}[at + 1u], d);",
                "let s = idot4(wb.q.x, q0.x) + idot4(wb.q.y, q0.y) + idot4(wb.q.z, q0.z)                  + idot4(wb.q.w, q0.w) + idot4(wb.r.x, q1.x) + idot4(wb.r.y, q1.y)                  + idot4(wb.r.z, q1.z) + idot4(wb.r.w, q1.w);                  return wb.d * xs.x * f32(s);",
            ),
        };
        debug_assert_eq!(q4 * 4, q);
        let fetch = fetch
            .replace("{name}", name)
            .replace("H4", &format!("{h4}u"));
        format!(
            "@group(0) @binding({binding}) var<storage, read> {name}: array<vec4<u32>>;\n\
             // {ty} blocks for integer dot products: see src/gpu/quant_layout.rs\n\
             struct {name}_block {{ {fields} }}\n\
             fn {name}_fetch(blk: u32) -> {name}_block {{\n    \
             let b = blk % 8u;\n    \
             let base = (blk / 8u) * {sb4}u;\n    \
             {fetch}\n}}\n\
             fn {name}_dot(wb: {name}_block, q0: vec4<u32>, q1: vec4<u32>, xs: vec2<f32>) -> f32 {{\n    \
             {dot}\n}}\n",
            ty = self.name(),
        )
    }
}

/// WGSL `idot4(a, b)`: the dot product of two words of four signed 8-bit lanes. With
/// `packed` it is WGSL's `dot4I8Packed` (one IDP4A instruction on NVIDIA through
/// SPV_KHR_integer_dot_product); without, the lanes are unpacked and multiplied. On the
/// H200 the packed form ran bimodal across processes (a 7B Q4_0 step in 3.8 ms in one
/// process, 10-13 ms in others, the same binary and inputs) while the unpacked form held
/// 5.4 ms (bench/2026-11-30-h200-q8dot), so unpacked is the default and
/// `GpuOptions::q8_packed_dot` (or `HEADROOM_Q8_PACKED_DOT`) asks for the packed one.
pub fn idot4(packed: bool) -> &'static str {
    if packed {
        "fn idot4(a: u32, b: u32) -> i32 { return dot4I8Packed(a, b); }"
    } else {
        "fn idot4(a: u32, b: u32) -> i32 { return dot(unpack4xI8(a), unpack4xI8(b)); }"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repacking_keeps_the_bytes_and_only_pads_the_last_super_block() {
        for ty in [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q8_0] {
            let bb = ty.ggml().type_size();
            // 8 blocks fill a super-block exactly: the same number of bytes
            assert_eq!(ty.super_block_bytes(), 8 * bb, "{}", ty.name());
            let blocks: Vec<u8> = (0..11 * bb).map(|i| (i * 7 + 3) as u8).collect();
            let packed = ty.repack(&blocks);
            assert_eq!(packed.len(), 2 * 8 * bb);
            // every byte of block 9 (super-block 1, block 1) is where the layout says
            let (h, q) = ty.words();
            let sb = &packed[ty.super_block_bytes()..];
            let scale = bb - 4 * q;
            let src = &blocks[9 * bb..10 * bb];
            assert_eq!(&sb[scale..2 * scale], &src[..scale]);
            assert_eq!(&sb[4 * h + 4 * q..4 * h + 8 * q], &src[scale..]);
        }
    }
}
