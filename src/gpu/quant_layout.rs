//! Quantized weights on the GPU: GGML blocks as the file stores them, laid out at load in
//! units whose every load is an aligned u32, and the WGSL accessors that dequantize them in
//! registers. Laying out moves bytes, never widens them: a unit holds exactly its blocks'
//! bytes (only a tensor part's last unit is padded).
//!
//! Units, in u32 words:
//! - Q4_0, Q4_1, Q8_0: super-blocks of 8 blocks (256 values). Q4_0: 4 words of 8 f16 scales
//!   (block b's in half b % 2 of word b / 2), then per block the 16 bytes of nibbles as 4
//!   words: 36 words (18 bytes per 32 values, as in the file); Q4_1: 8 words, one
//!   (scale, min) f16 pair per block, then the nibbles: 40 words; Q8_0: 4 words of scales,
//!   then per block its 32 signed bytes as 8 words: 68 words.
//! - Q4_K (144 bytes), Q5_K (176): one block of 256 values each, as stored (already whole
//!   words).
//! - Q6_K: 210-byte blocks are not whole words, so two blocks (512 values) make a unit of
//!   105 words: both blocks' `ql` (32 words each), both `qh` (16 each), both `scales` (4
//!   each), then both `d` in one word.
//!
//! A tensor's blocks run in row-major order across the whole buffer, so value `i` of the
//! flat matrix is value `i % 256` of super-block `i / 256` (K-quants: of block `i / 256`).

use crate::formats::quant::GgmlType;

/// A GGML block type the GPU reads as stored.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum QuantType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4_K,
    Q5_K,
    Q6_K,
}

/// Values per GGML block of the 32-value types, and blocks per super-block.
const BLOCK: usize = 32;
const BLOCKS_PER_SB: usize = 8;
/// Values per super-block (and per K-quant block).
pub const SUPER_BLOCK: usize = BLOCK * BLOCKS_PER_SB;

impl QuantType {
    /// The GPU form of a GGML type, where there is one.
    pub fn from_ggml(ty: GgmlType) -> Option<QuantType> {
        match ty {
            GgmlType::Q4_0 => Some(QuantType::Q4_0),
            GgmlType::Q4_1 => Some(QuantType::Q4_1),
            GgmlType::Q5_0 => Some(QuantType::Q5_0),
            GgmlType::Q5_1 => Some(QuantType::Q5_1),
            GgmlType::Q8_0 => Some(QuantType::Q8_0),
            GgmlType::Q4_K => Some(QuantType::Q4_K),
            GgmlType::Q5_K => Some(QuantType::Q5_K),
            GgmlType::Q6_K => Some(QuantType::Q6_K),
            _ => None,
        }
    }

    pub fn ggml(self) -> GgmlType {
        match self {
            QuantType::Q4_0 => GgmlType::Q4_0,
            QuantType::Q4_1 => GgmlType::Q4_1,
            QuantType::Q5_0 => GgmlType::Q5_0,
            QuantType::Q5_1 => GgmlType::Q5_1,
            QuantType::Q8_0 => GgmlType::Q8_0,
            QuantType::Q4_K => GgmlType::Q4_K,
            QuantType::Q5_K => GgmlType::Q5_K,
            QuantType::Q6_K => GgmlType::Q6_K,
        }
    }

    /// Every type the GPU reads as blocks.
    pub const ALL: [QuantType; 8] = [
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q5_1,
        QuantType::Q8_0,
        QuantType::Q4_K,
        QuantType::Q5_K,
        QuantType::Q6_K,
    ];

    /// Whether the integer-dot decode path reads this type (`block_dot_accessor`); the
    /// 5-bit types and the K-quants use the f32 path.
    pub fn has_block_dot(self) -> bool {
        matches!(self, QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q8_0)
    }

    /// Values per GGML block: rows hold whole blocks.
    pub fn block_values(self) -> usize {
        self.ggml().block_size()
    }

    pub fn name(self) -> &'static str {
        self.ggml().name()
    }

    /// (header words, words of one block's quants) of a super-block of the 32-value types.
    fn words(self) -> (usize, usize) {
        match self {
            QuantType::Q4_0 => (4, 4),
            QuantType::Q4_1 => (8, 4),
            QuantType::Q8_0 => (4, 8),
            // the scales, then one word of fifth bits per block
            QuantType::Q5_0 => (4 + 8, 4),
            QuantType::Q5_1 => (8 + 8, 4),
            _ => unreachable!("{}: not a 32-value type", self.name()),
        }
    }

    /// (values, bytes) of one unit of the GPU layout (see the module comment).
    fn unit(self) -> (usize, usize) {
        match self {
            QuantType::Q6_K => (2 * SUPER_BLOCK, 2 * self.ggml().type_size()),
            QuantType::Q4_K | QuantType::Q5_K => (SUPER_BLOCK, self.ggml().type_size()),
            _ => {
                let (h, q) = self.words();
                (SUPER_BLOCK, 4 * (h + BLOCKS_PER_SB * q))
            }
        }
    }

    /// Bytes on the GPU of `values` values (a whole number of blocks), the last unit
    /// padded.
    pub fn bytes_for(self, values: usize) -> u64 {
        let (v, b) = self.unit();
        (values.div_ceil(v) * b) as u64
    }

    /// GGML blocks (`bytes`, as the file stores them, in row-major order) laid out in units.
    pub fn repack(self, bytes: &[u8]) -> Vec<u8> {
        let block_bytes = self.ggml().type_size();
        assert!(
            bytes.len().is_multiple_of(block_bytes),
            "{}: {} bytes are not whole blocks",
            self.name(),
            bytes.len()
        );
        let blocks = bytes.len() / block_bytes;
        let mut out = vec![0u8; self.bytes_for(blocks * self.block_values()) as usize];
        match self {
            QuantType::Q4_K | QuantType::Q5_K => out.copy_from_slice(bytes),
            QuantType::Q6_K => {
                // per pair: ql ql qh qh scales scales d d
                for (i, block) in bytes.chunks_exact(block_bytes).enumerate() {
                    let unit = &mut out[(i / 2) * 2 * block_bytes..];
                    let h = i % 2;
                    unit[128 * h..128 * h + 128].copy_from_slice(&block[..128]);
                    unit[256 + 64 * h..256 + 64 * h + 64].copy_from_slice(&block[128..192]);
                    unit[384 + 16 * h..384 + 16 * h + 16].copy_from_slice(&block[192..208]);
                    unit[416 + 2 * h..416 + 2 * h + 2].copy_from_slice(&block[208..210]);
                }
            }
            QuantType::Q5_0 | QuantType::Q5_1 => {
                // scales (d, or d and m), then the qh words, then the nibbles
                let sb_bytes = self.unit().1;
                let scale_bytes = block_bytes - 4 - 16;
                let qh_at = 8 * scale_bytes;
                for (i, block) in bytes.chunks_exact(block_bytes).enumerate() {
                    let sb = &mut out[(i / BLOCKS_PER_SB) * sb_bytes..];
                    let b = i % BLOCKS_PER_SB;
                    sb[b * scale_bytes..(b + 1) * scale_bytes]
                        .copy_from_slice(&block[..scale_bytes]);
                    sb[qh_at + 4 * b..qh_at + 4 * b + 4]
                        .copy_from_slice(&block[scale_bytes..scale_bytes + 4]);
                    let at = qh_at + 32 + 16 * b;
                    sb[at..at + 16].copy_from_slice(&block[scale_bytes + 4..]);
                }
            }
            _ => {
                let (h, q) = self.words();
                let sb_bytes = self.unit().1;
                let scale_bytes = block_bytes - 4 * q;
                for (i, block) in bytes.chunks_exact(block_bytes).enumerate() {
                    let sb = &mut out[(i / BLOCKS_PER_SB) * sb_bytes..];
                    let b = i % BLOCKS_PER_SB;
                    // the scale (and min) bytes first in the block, the quants after them
                    sb[b * scale_bytes..(b + 1) * scale_bytes]
                        .copy_from_slice(&block[..scale_bytes]);
                    let at = 4 * h + b * 4 * q;
                    sb[at..at + 4 * q].copy_from_slice(&block[scale_bytes..]);
                }
            }
        }
        out
    }

    /// WGSL declaring `name` at `binding` (u32 words), `name_load4(i)`: values 4i..4i+4
    /// of the flat matrix, and `name_load_chunk(c)`: block c's 32 values, reading its scale
    /// once.
    pub fn accessor(self, name: &str, binding: &str) -> String {
        if !matches!(self, QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q8_0) {
            return self.sub_accessor(name, binding);
        }
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
            _ => unreachable!("the others: sub_accessor"),
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

    /// `accessor` for the 5-bit types and the K-quants: `name_sub(c)` gathers what 32-value
    /// (sub-)block `c` needs
    /// (its quant words, shifts and scaled scale/min) once, `name_vals(s, g)` gives its
    /// values 4g..4g+4; `load4` and `load_chunk` are built on them.
    fn sub_accessor(self, name: &str, binding: &str) -> String {
        // a 5-bit block's values 4g..4g+4: nibbles of quant word g % 4 (high ones for
        // g >= 4), fifth bits 4g..4g+4 of its qh word
        let five = "let qw = NAME[s.qa + g % 4u] >> ((g / 4u) * 4u); let hb = s.qh >> (4u * g); \
                    let lo = vec4<u32>(qw, qw >> 8u, qw >> 16u, qw >> 24u) & vec4<u32>(15u); \
                    let hi = vec4<u32>(hb, hb >> 1u, hb >> 2u, hb >> 3u) & vec4<u32>(1u); \
                    return vec4<f32>(lo + hi * 16u) * s.d + s.m;";
        let (fields, sub, vals) = match self {
            QuantType::Q5_0 => (
                "qa: u32, qh: u32, d: f32, m: f32,",
                "let b = c % 8u; let base = (c / 8u) * 44u; \
                 let d = unpack2x16float(NAME[base + b / 2u] >> (16u * (b % 2u))).x; \
                 return NAME_sub_t(base + 12u + 4u * b, NAME[base + 4u + b], d, -16.0 * d);",
                five,
            ),
            QuantType::Q5_1 => (
                "qa: u32, qh: u32, d: f32, m: f32,",
                "let b = c % 8u; let base = (c / 8u) * 48u; \
                 let dm = unpack2x16float(NAME[base + b]); \
                 return NAME_sub_t(base + 16u + 4u * b, NAME[base + 8u + b], dm.x, dm.y);",
                five,
            ),
            QuantType::Q4_K => (
                "qa: u32, shift: u32, d: f32, m: f32,",
                "let blk = c / 8u; let j = c % 8u; let base = blk * 36u; \
                 let dm = unpack2x16float(NAME[base]); let sm = NAME_scale_min(base + 1u, j); \
                 return NAME_sub_t(base + 4u + 8u * (j / 2u), 4u * (j % 2u), dm.x * sm.x, dm.y * sm.y);",
                "let qw = NAME[s.qa + g] >> s.shift; \
                 let n = vec4<u32>(qw, qw >> 8u, qw >> 16u, qw >> 24u) & vec4<u32>(15u); \
                 return vec4<f32>(n) * s.d - s.m;",
            ),
            QuantType::Q5_K => (
                "qa: u32, shift: u32, qh: u32, hbit: u32, d: f32, m: f32,",
                "let blk = c / 8u; let j = c % 8u; let base = blk * 44u; \
                 let dm = unpack2x16float(NAME[base]); let sm = NAME_scale_min(base + 1u, j); \
                 return NAME_sub_t(base + 12u + 8u * (j / 2u), 4u * (j % 2u), base + 4u, j, \
                 dm.x * sm.x, dm.y * sm.y);",
                "let qw = NAME[s.qa + g] >> s.shift; let hw = NAME[s.qh + g] >> s.hbit; \
                 let lo = vec4<u32>(qw, qw >> 8u, qw >> 16u, qw >> 24u) & vec4<u32>(15u); \
                 let hi = vec4<u32>(hw, hw >> 8u, hw >> 16u, hw >> 24u) & vec4<u32>(1u); \
                 return vec4<f32>(lo + hi * 16u) * s.d - s.m;",
            ),
            QuantType::Q6_K => (
                "ql: u32, lshift: u32, qh: u32, hshift: u32, d0: f32, d1: f32,",
                // unit of two blocks: ql 2x32 words, qh 2x16, scales 2x4, d's in word 104
                "let blk = c / 8u; let h = blk % 2u; let j = c % 8u; let half = j / 4u; let k = j % 4u; \
                 let base = (blk / 2u) * 105u; \
                 let d = unpack2x16float(NAME[base + 104u])[h]; \
                 let sc = base + 96u + 4u * h; let s0 = 8u * half + 2u * k; \
                 return NAME_sub_t(base + 32u * h + 16u * half + 8u * (k % 2u), 4u * (k / 2u), \
                 base + 64u + 16u * h + 8u * half, 2u * k, \
                 d * NAME_i8(NAME[sc + s0 / 4u], s0 % 4u), d * NAME_i8(NAME[sc + (s0 + 1u) / 4u], (s0 + 1u) % 4u));",
                "let qw = NAME[s.ql + g] >> s.lshift; let hw = NAME[s.qh + g] >> s.hshift; \
                 let lo = vec4<u32>(qw, qw >> 8u, qw >> 16u, qw >> 24u) & vec4<u32>(15u); \
                 let hi = vec4<u32>(hw, hw >> 8u, hw >> 16u, hw >> 24u) & vec4<u32>(3u); \
                 let q = vec4<f32>(vec4<i32>(lo | (hi << vec4<u32>(4u))) - vec4<i32>(32)); \
                 return q * select(s.d1, s.d0, g < 4u);",
            ),
            _ => unreachable!(),
        };
        // the 6-bit scale and min of sub-block j from the 12 scale bytes at word `at`
        // (ggml's get_scale_min_k4); a signed byte of a word
        let helpers = "fn NAME_sbyte(at: u32, k: u32) -> u32 { return (NAME[at + k / 4u] >> (8u * (k % 4u))) & 0xffu; }\n\
             fn NAME_scale_min(at: u32, j: u32) -> vec2<f32> { \
             if (j < 4u) { return vec2<f32>(f32(NAME_sbyte(at, j) & 63u), f32(NAME_sbyte(at, j + 4u) & 63u)); } \
             let sc = (NAME_sbyte(at, j + 4u) & 15u) | ((NAME_sbyte(at, j - 4u) >> 6u) << 4u); \
             let m = (NAME_sbyte(at, j + 4u) >> 4u) | ((NAME_sbyte(at, j) >> 6u) << 4u); \
             return vec2<f32>(f32(sc), f32(m)); }\n\
             fn NAME_i8(word: u32, k: u32) -> f32 { return f32(bitcast<i32>(word << (24u - 8u * k)) >> 24u); }\n";
        format!(
            "@group(0) @binding({binding}) var<storage, read> NAME: array<u32>;\n\
             // {ty}: see src/gpu/quant_layout.rs\n\
             {helpers}\
             struct NAME_sub_t {{ {fields} }}\n\
             fn NAME_sub(c: u32) -> NAME_sub_t {{ {sub} }}\n\
             fn NAME_vals(s: NAME_sub_t, g: u32) -> vec4<f32> {{ {vals} }}\n\
             fn NAME_load4(i: u32) -> vec4<f32> {{ return NAME_vals(NAME_sub(i / 8u), i % 8u); }}\n\
             fn NAME_load_chunk(c: u32) -> array<vec4<f32>, 8> {{\n    \
             let s = NAME_sub(c);\n    \
             var out: array<vec4<f32>, 8>;\n    \
             for (var g = 0u; g < 8u; g++) {{ out[g] = NAME_vals(s, g); }}\n    \
             return out;\n}}\n",
            ty = self.name()
        )
        .replace("NAME", name)
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
        assert!(
            self.has_block_dot(),
            "{}: no integer-dot layout",
            self.name()
        );
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
            _ => unreachable!("asserted above"),
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
/// H200 the packed form decodes a 7B Q4_0 step in 3.0 ms against 4.2 ms (299 against 218
/// tokens/s in `bench generate`, bench/2026-12-01-h200-packed-dot), and lavapipe runs both
/// at one speed, so packed is the default; `GpuOptions::q8_packed_dot` or
/// `HEADROOM_Q8_PACKED_DOT=0` asks for the unpacked one. (An earlier "bimodal" packed run,
/// bench/2026-11-30-h200-q8dot, was the first ~200 ms after loading a synthetic model,
/// when the unpacked form runs 3x slow as well, caught by too few timed steps.)
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
    fn repacking_keeps_the_bytes_and_only_pads_the_last_unit() {
        for ty in [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q8_0] {
            let bb = ty.ggml().type_size();
            // 8 blocks fill a super-block exactly: the same number of bytes
            assert_eq!(ty.unit().1, 8 * bb, "{}", ty.name());
            let blocks: Vec<u8> = (0..11 * bb).map(|i| (i * 7 + 3) as u8).collect();
            let packed = ty.repack(&blocks);
            assert_eq!(packed.len(), 2 * 8 * bb);
            // every byte of block 9 (super-block 1, block 1) is where the layout says
            let (h, q) = ty.words();
            let sb = &packed[ty.unit().1..];
            let scale = bb - 4 * q;
            let src = &blocks[9 * bb..10 * bb];
            assert_eq!(&sb[scale..2 * scale], &src[..scale]);
            assert_eq!(&sb[4 * h + 4 * q..4 * h + 8 * q], &src[scale..]);
        }
        // Q5_0/Q5_1: block 9's scale(s), fifth bits and nibbles in their three areas
        for (ty, sc) in [(QuantType::Q5_0, 2), (QuantType::Q5_1, 4)] {
            let bb = ty.ggml().type_size();
            let blocks: Vec<u8> = (0..11 * bb).map(|i| (i * 7 + 3) as u8).collect();
            let packed = ty.repack(&blocks);
            assert_eq!(packed.len(), 2 * 8 * bb);
            let (sb, src) = (&packed[8 * bb..], &blocks[9 * bb..10 * bb]);
            assert_eq!(&sb[sc..2 * sc], &src[..sc], "{}", ty.name());
            assert_eq!(&sb[8 * sc + 4..8 * sc + 8], &src[sc..sc + 4]);
            assert_eq!(&sb[8 * sc + 32 + 16..8 * sc + 32 + 32], &src[sc + 4..]);
        }
        for ty in [QuantType::Q4_K, QuantType::Q5_K] {
            let blocks: Vec<u8> = (0..3 * ty.ggml().type_size()).map(|i| i as u8).collect();
            assert_eq!(ty.repack(&blocks), blocks, "{}: stored as is", ty.name());
        }
        // Q6_K: three blocks make two units (the last half empty); block 1's fields
        let blocks: Vec<u8> = (0..3 * 210).map(|i| (i * 13 + 1) as u8).collect();
        let packed = QuantType::Q6_K.repack(&blocks);
        assert_eq!(packed.len(), 2 * 420);
        let b1 = &blocks[210..420];
        assert_eq!(&packed[128..256], &b1[..128]);
        assert_eq!(&packed[256 + 64..384], &b1[128..192]);
        assert_eq!(&packed[384 + 16..416], &b1[192..208]);
        assert_eq!(&packed[418..420], &b1[208..210]);
        assert_eq!(&packed[420..420 + 128], &blocks[420..548]);
    }
}
