//! Line charts rendered to PNG, for the benchmark commands
//! (`headroom bench attention --plot out.png`).
//!
//! One call, [`write_png`], draws one or more [`Panel`]s (side by side, or in
//! a grid when there are more than two) under a common title. Each panel has
//! its own axes (linear or log), tick labels, grid and a legend placed below
//! its plotting area so it never covers data.
//!
//! Lines, grid and markers are drawn with `plotters`' bitmap backend; text is
//! rasterised with `ab_glyph` from the embedded DejaVu Sans font (no system
//! font lookup). Images up to 2048x2048 are drawn at twice the requested
//! resolution and box-filtered down, which anti-aliases lines and markers.
//!
//! Data rules:
//! - points with a non-finite coordinate, or a non-positive one on a log axis,
//!   are skipped; a series left with no point is drawn nowhere and left out
//!   of the legend; a panel with no point at all shows "no data";
//! - points are drawn in increasing x order;
//! - series take the colours of `PALETTE` (the matplotlib "tab10" colours) in
//!   order, except that a dashed series right after a solid one (its
//!   prediction) takes that series' colour; solid series get point markers (up to 40 points), dashed series
//!   (e.g. roofline predictions) none.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) data points, in any order.
    pub points: Vec<(f64, f64)>,
    /// Draw as a dashed line without markers (predictions, bounds).
    pub dashed: bool,
}

/// One chart: axes, labels and the series drawn on them.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
}

/// Why a chart could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("plot: image size {width}x{height} is out of range (each side must be {MIN_SIDE}..={MAX_SIDE} pixels)")]
    InvalidSize { width: u32, height: u32 },
    #[error("plot: nothing to draw (no panels)")]
    NoPanels,
    #[error("plot: cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plot: PNG encoding failed: {0}")]
    Encode(String),
    #[error("plot: drawing failed: {0}")]
    Draw(String),
    #[error("plot: the embedded font could not be loaded")]
    Font,
}

/// Smallest accepted image side, in pixels.
pub const MIN_SIDE: u32 = 64;
/// Largest accepted image side, in pixels.
pub const MAX_SIDE: u32 = 8192;

/// Series colours, cycled by series index (matplotlib "tab10").
pub const PALETTE: [[u8; 3]; 10] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
    [0xe3, 0x77, 0xc2],
    [0x7f, 0x7f, 0x7f],
    [0xbc, 0xbd, 0x22],
    [0x17, 0xbe, 0xcf],
];

/// The colour (RGB) of series `index` of a panel.
pub fn series_color(index: usize) -> [u8; 3] {
    PALETTE[index % PALETTE.len()]
}

impl Series {
    /// A solid series (measurements).
    pub fn solid(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            dashed: false,
        }
    }

    /// A dashed series (predictions, bounds).
    pub fn dashed(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            dashed: true,
        }
    }
}

/// Draws the panels side by side (or in a grid when more than 2) into one PNG of width x height pixels.
pub fn write_png(
    path: &Path,
    width: u32,
    height: u32,
    title: &str,
    panels: &[Panel],
) -> Result<(), PlotError> {
    let bytes = render_png(width, height, title, panels)?;
    std::fs::write(path, bytes).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Like [`write_png`], but returns the encoded PNG file instead of writing it.
pub fn render_png(
    width: u32,
    height: u32,
    title: &str,
    panels: &[Panel],
) -> Result<Vec<u8>, PlotError> {
    let rgb = render_rgb(width, height, title, panels)?;
    encode_png(&rgb, width, height)
}

/// Renders to packed 8-bit RGB, `width * height * 3` bytes, row-major.
pub fn render_rgb(
    width: u32,
    height: u32,
    title: &str,
    panels: &[Panel],
) -> Result<Vec<u8>, PlotError> {
    if !(MIN_SIDE..=MAX_SIDE).contains(&width) || !(MIN_SIDE..=MAX_SIDE).contains(&height) {
        return Err(PlotError::InvalidSize { width, height });
    }
    if panels.is_empty() {
        return Err(PlotError::NoPanels);
    }
    ensure_font()?;
    // Supersample unless the canvas would get huge.
    let ss: u32 = if u64::from(width) * u64::from(height) <= 2048 * 2048 {
        2
    } else {
        1
    };
    let (w, h) = (width * ss, height * ss);
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    // plotters is third-party code drawing arbitrary user data: keep a
    // panic in it from taking the caller down.
    let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        draw_all(&mut buf, (w, h), ss, title, panels)
    }));
    let texts = match drawn {
        Ok(r) => r?,
        Err(_) => return Err(PlotError::Draw("the renderer panicked".into())),
    };
    let font = text::font().ok_or(PlotError::Font)?;
    for op in &texts {
        text::draw(&font, &mut buf, (w, h), op);
    }
    Ok(if ss == 1 {
        buf
    } else {
        downsample(&buf, w, h, ss)
    })
}

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FONT_NAME: &str = "sans-serif";

/// All text is drawn by [`text`] after plotters is done; plotters only gets
/// empty tick labels, but it still needs a font to lay those out.
fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
    let enc_err = |e: png::EncodingError| PlotError::Encode(e.to_string());
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(enc_err)?;
    writer.write_image_data(rgb).map_err(enc_err)?;
    writer.finish().map_err(enc_err)?;
    Ok(out)
}

/// Box filter an RGB image down by `f` in both directions.
fn downsample(src: &[u8], w: u32, h: u32, f: u32) -> Vec<u8> {
    let (w, h, f) = (w as usize, h as usize, f as usize);
    let (ow, oh) = (w / f, h / f);
    let n = (f * f) as u32;
    let mut out = vec![0u8; ow * oh * 3];
    for oy in 0..oh {
        for ox in 0..ow {
            for c in 0..3 {
                let mut sum = 0u32;
                for dy in 0..f {
                    let row = (oy * f + dy) * w;
                    for dx in 0..f {
                        sum += u32::from(src[(row + ox * f + dx) * 3 + c]);
                    }
                }
                out[(oy * ow + ox) * 3 + c] = ((sum + n / 2) / n) as u8;
            }
        }
    }
    out
}

const WHITE_BG: RGBColor = RGBColor(255, 255, 255);
const TEXT: RGBColor = RGBColor(0x22, 0x22, 0x22);
const TEXT_MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);
const AXIS: RGBColor = RGBColor(0x44, 0x44, 0x44);
const GRID_MAJOR: RGBColor = RGBColor(0xdc, 0xdc, 0xdc);
const GRID_MINOR: RGBColor = RGBColor(0xee, 0xee, 0xee);
const MAX_MARKED_POINTS: usize = 40;

// Font sizes (em, in output pixels).
const TITLE_EM: f32 = 18.0;
const PANEL_TITLE_EM: f32 = 15.0;
const DESC_EM: f32 = 13.0;
const TICK_EM: f32 = 12.0;
const LEGEND_EM: f32 = 12.5;

fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Draws everything but text into `buf`; returns the text to draw on top.
fn draw_all(
    buf: &mut [u8],
    size: (u32, u32),
    ss: u32,
    title: &str,
    panels: &[Panel],
) -> Result<Vec<TextOp>, PlotError> {
    let s = ss as i32;
    let sf = ss as f32;
    let mut texts = Vec::new();
    let backend = BitMapBackend::with_buffer_and_format(buf, size).map_err(draw_err)?;
    let root = backend.into_drawing_area();
    root.fill(&WHITE_BG).map_err(draw_err)?;
    let root = root.margin(6 * s, 6 * s, 6 * s, 6 * s);
    let body = if title.trim().is_empty() {
        root.clone()
    } else {
        let (xr, yr) = root.get_pixel_range();
        let em = TITLE_EM * sf;
        texts.push(TextOp::new(
            title,
            em,
            TEXT,
            (xr.start + xr.end) as f32 / 2.0,
            yr.start as f32,
            Anchor::TopCenter,
        ));
        let title_h = (text::line_height(em) + 6.0 * sf).ceil() as i32;
        root.margin(title_h, 0, 0, 0)
    };
    let n = panels.len();
    let cols = if n <= 2 {
        n
    } else {
        (n as f64).sqrt().ceil() as usize
    };
    let rows = n.div_ceil(cols);
    let areas = body.split_evenly((rows, cols));
    let prepared: Vec<Vec<Prepared<'_>>> = panels.iter().map(prepare).collect();
    // Panels of a row reserve the same legend height so their plots line up.
    let legend_h: Vec<f32> = prepared
        .iter()
        .zip(areas.iter())
        .map(|(p, a)| legend_height(&legend_layout(legend_width(a, sf), sf, p), sf))
        .collect();
    for (i, ((panel, prep), area)) in panels.iter().zip(&prepared).zip(&areas).enumerate() {
        let row = i / cols;
        let row_legend_h = legend_h
            .iter()
            .skip(row * cols)
            .take(cols)
            .copied()
            .fold(0.0, f32::max);
        draw_panel(area, s, panel, prep, row_legend_h, &mut texts)?;
    }
    root.present().map_err(draw_err)?;
    Ok(texts)
}

/// A series after filtering, in transformed (log2 for log axes) coordinates.
struct Prepared<'a> {
    name: &'a str,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn prepare(panel: &Panel) -> Vec<Prepared<'_>> {
    let mut out = Vec::new();
    // a dashed series right after a solid one (its prediction) shares its colour
    let mut colors = Vec::with_capacity(panel.series.len());
    let mut next = 0;
    for (i, series) in panel.series.iter().enumerate() {
        if series.dashed && i > 0 && !panel.series[i - 1].dashed {
            colors.push(next - 1);
        } else {
            colors.push(next);
            next += 1;
        }
    }
    for (i, series) in panel.series.iter().enumerate() {
        let mut points: Vec<(f64, f64)> = series
            .points
            .iter()
            .filter(|&&(x, y)| {
                x.is_finite()
                    && y.is_finite()
                    && (!panel.log_x || x > 0.0)
                    && (!panel.log_y || y > 0.0)
            })
            .map(|&(x, y)| (to_axis(x, panel.log_x), to_axis(y, panel.log_y)))
            .filter(|&(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if points.is_empty() {
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.push(Prepared {
            name: &series.name,
            color: {
                let [r, g, b] = series_color(colors[i]);
                RGBColor(r, g, b)
            },
            dashed: series.dashed,
            points,
        });
    }
    out
}

fn to_axis(v: f64, log: bool) -> f64 {
    if log {
        v.log2()
    } else {
        v
    }
}

/// Axis range and ticks, in transformed coordinates.
struct AxisSpec {
    range: Range<f64>,
    /// (position, label)
    ticks: Vec<(f64, String)>,
    minor: Vec<f64>,
}

impl AxisSpec {
    fn coord(&self) -> AxisCoord {
        AxisCoord {
            range: self.range.clone(),
            ticks: self.ticks.iter().map(|t| t.0).collect(),
            minor: self.minor.clone(),
        }
    }
}

/// A linear plotters coordinate over transformed values whose grid lines
/// are exactly the given ticks (bold) and minor ticks (light).
struct AxisCoord {
    range: Range<f64>,
    ticks: Vec<f64>,
    minor: Vec<f64>,
}

impl Ranged for AxisCoord {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let frac = (v - self.range.start) / span;
        if !frac.is_finite() {
            return limit.0;
        }
        let len = f64::from(limit.1 - limit.0);
        // Clamp far-away values so the cast to i32 stays meaningful.
        let px = (len * frac.clamp(-4.0, 5.0)).round();
        limit.0 + px as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// Builds an axis over data spanning `lo..=hi` (transformed coordinates).
/// `zero_floor`: for linear axes of non-negative data, start at 0 when the
/// data comes reasonably close to it.
fn axis_spec(lo: f64, hi: f64, log: bool, zero_floor: bool) -> AxisSpec {
    if log {
        log_axis(lo, hi)
    } else {
        linear_axis(lo, hi, zero_floor)
    }
}

fn linear_axis(lo: f64, hi: f64, zero_floor: bool) -> AxisSpec {
    let (mut lo, mut hi) = (lo, hi);
    if hi - lo <= f64::EPSILON * hi.abs().max(lo.abs()).max(1e-300) {
        let d = (lo.abs() * 0.1).max(1e-9);
        lo -= d;
        hi += d;
    }
    let pad = (hi - lo) * 0.05;
    let floor_at_zero = zero_floor && lo >= 0.0 && lo <= 0.5 * hi;
    let start = if floor_at_zero { 0.0 } else { lo - pad };
    let end = hi + pad;
    let (ticks, step) = nice_ticks(start, end, 6);
    let labels = ticks
        .iter()
        .map(|&v| (v, fmt_linear(v, step, ticks.last().copied().unwrap_or(v))))
        .collect();
    AxisSpec {
        range: start..end,
        ticks: labels,
        minor: Vec::new(),
    }
}

/// Ticks at multiples of a 1/2/2.5/5 x 10^k step inside `lo..=hi`.
fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return (vec![lo], 1.0);
    }
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let mult = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 2.5 {
        2.5
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    let step = mult * mag;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let ticks = (first..=last)
        .take(100)
        .map(|k| {
            let v = k as f64 * step;
            if v.abs() < step * 1e-9 {
                0.0
            } else {
                v
            }
        })
        .collect();
    (ticks, step)
}

/// Formats a linear tick; `step` sets the precision, `max` the unit suffix.
fn fmt_linear(v: f64, step: f64, max: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let big = max.abs().max(v.abs());
    if !(1e-4..1e12).contains(&big) && big != 0.0 {
        return format!("{v:.1e}");
    }
    let (div, suffix) = if big >= 1e10 && step >= 1e9 {
        (1e9, "G")
    } else if big >= 1e7 && step >= 1e6 {
        (1e6, "M")
    } else if big >= 1e4 && step >= 1e3 {
        (1e3, "K")
    } else {
        (1.0, "")
    };
    let (v, step) = (v / div, step / div);
    let decimals = if step >= 1.0 {
        0
    } else {
        // 0.25 needs two decimals, 0.5 one, 0.2 one.
        let d = (-step.log10()).ceil() as usize;
        let scaled = step * 10f64.powi(d as i32);
        if (scaled - scaled.round()).abs() > 1e-6 {
            d + 1
        } else {
            d
        }
    };
    format!("{v:.decimals$}{suffix}")
}

fn log_axis(lo: f64, hi: f64) -> AxisSpec {
    // lo, hi are log2 of the data.
    let (mut lo, mut hi) = (lo, hi);
    if hi - lo < 1e-9 {
        lo -= 1.0;
        hi += 1.0;
    }
    let pad = ((hi - lo) * 0.04).max(0.05);
    let (start, end) = (lo - pad, hi + pad);
    let decades = (end - start) / std::f64::consts::LOG2_10;
    let mut ticks: Vec<(f64, String)> = Vec::new();
    let mut minor = Vec::new();
    if decades >= 4.0 {
        // Powers of ten, every `step` decades.
        let (d0, d1) = (
            (start / std::f64::consts::LOG2_10).ceil() as i64,
            (end / std::f64::consts::LOG2_10).floor() as i64,
        );
        let count = (d1 - d0 + 1).max(1);
        let step = (count + 7) / 8;
        for d in d0..=d1 {
            let t = d as f64 * std::f64::consts::LOG2_10;
            if d.rem_euclid(step) == 0 {
                ticks.push((t, fmt_pow10(d)));
            } else {
                minor.push(t);
            }
            if step == 1 && decades <= 7.0 {
                for m in 2..10 {
                    let tm = t + f64::from(m).log2();
                    if tm > start && tm < end {
                        minor.push(tm);
                    }
                }
            }
        }
        if step == 1 && decades <= 7.0 {
            // Minor ticks below the first decade.
            let t = (d0 - 1) as f64 * std::f64::consts::LOG2_10;
            for m in 2..10 {
                let tm = t + f64::from(m).log2();
                if tm > start && tm < end {
                    minor.push(tm);
                }
            }
        }
    } else {
        // Powers of two, every `step`-th one.
        let (k0, k1) = (start.ceil() as i64, end.floor() as i64);
        let count = (k1 - k0 + 1).max(0);
        let step = ((count + 8) / 9).max(1);
        for k in k0..=k1 {
            if k.rem_euclid(step) == 0 {
                ticks.push((k as f64, fmt_pow2(k)));
            } else {
                minor.push(k as f64);
            }
        }
    }
    if ticks.len() < 3 {
        // Narrow range: nice linear ticks, placed on the log scale.
        let (vlo, vhi) = (start.exp2(), end.exp2());
        let (vals, step) = nice_ticks(vlo, vhi, 4);
        let last = vals.last().copied().unwrap_or(vhi);
        ticks = vals
            .iter()
            .filter(|&&v| v > 0.0)
            .map(|&v| (v.log2(), fmt_linear(v, step, last)))
            .collect();
        minor.clear();
    }
    AxisSpec {
        range: start..end,
        ticks,
        minor,
    }
}

fn fmt_pow2(k: i64) -> String {
    const SUFFIX: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
    if k >= 0 {
        let unit = ((k / 10) as usize).min(SUFFIX.len() - 1);
        let mant = 1u64 << (k - unit as i64 * 10).min(63);
        format!("{mant}{}", SUFFIX[unit])
    } else if k >= -4 {
        let v = (k as f64).exp2();
        format!("{v}")
    } else {
        format!("2^{k}")
    }
}

fn fmt_pow10(d: i64) -> String {
    match d {
        0 => "1".into(),
        1 => "10".into(),
        2 => "100".into(),
        3..=11 => {
            let (unit, suffix) = match d {
                3..=5 => (3, "K"),
                6..=8 => (6, "M"),
                _ => (9, "G"),
            };
            format!("{}{}", 10u64.pow((d - unit) as u32), suffix)
        }
        -3..=-1 => format!("{}", 10f64.powi(d as i32)),
        _ => format!("1e{d}"),
    }
}

/// Where a text's anchor point sits on its box.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Anchor {
    TopCenter,
    CenterLeft,
    CenterRight,
    Center,
}

/// One piece of text, in canvas pixels.
#[derive(Debug, Clone)]
struct TextOp {
    text: String,
    em: f32,
    color: RGBColor,
    x: f32,
    y: f32,
    anchor: Anchor,
    /// Rotated 90 degrees counter-clockwise (reads bottom to top).
    vertical: bool,
}

impl TextOp {
    fn new(text: &str, em: f32, color: RGBColor, x: f32, y: f32, anchor: Anchor) -> Self {
        TextOp {
            text: text.to_string(),
            em,
            color,
            x,
            y,
            anchor,
            vertical: false,
        }
    }
}

/// Text rendering with ab_glyph straight into the RGB canvas (plotters'
/// own ab_glyph path ignores glyph side bearings, which spaces letters
/// unevenly).
mod text {
    use super::{Anchor, TextOp, FONT};
    use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
    use std::sync::OnceLock;

    pub fn font() -> Option<FontRef<'static>> {
        static PARSED: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
        PARSED
            .get_or_init(|| FontRef::try_from_slice(FONT).ok())
            .clone()
    }

    fn scale(font: &FontRef<'_>, em: f32) -> PxScale {
        let upem = font.units_per_em().unwrap_or(2048.0);
        let h = font.height_unscaled();
        PxScale::from(em * h / upem)
    }

    /// Width of `s` at `em` pixels per em.
    pub fn width(s: &str, em: f32) -> f32 {
        let Some(font) = font() else {
            return em * 0.6 * s.chars().count() as f32;
        };
        let f = font.as_scaled(scale(&font, em));
        let mut w = 0.0;
        let mut prev = None;
        for c in s.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                w += f.kern(p, id);
            }
            w += f.h_advance(id);
            prev = Some(id);
        }
        w
    }

    /// Ascent + descent at `em` pixels per em.
    pub fn line_height(em: f32) -> f32 {
        match font() {
            Some(font) => {
                let f = font.as_scaled(scale(&font, em));
                f.ascent() - f.descent()
            }
            None => em * 1.2,
        }
    }

    fn blend(buf: &mut [u8], (w, h): (u32, u32), x: i64, y: i64, c: [u8; 3], cov: f32) {
        if x < 0 || y < 0 || x >= i64::from(w) || y >= i64::from(h) || cov <= 0.0 {
            return;
        }
        let a = cov.min(1.0);
        let i = (y as usize * w as usize + x as usize) * 3;
        for k in 0..3 {
            let d = f32::from(buf[i + k]);
            buf[i + k] = (d + (f32::from(c[k]) - d) * a).round() as u8;
        }
    }

    pub fn draw(font: &FontRef<'_>, buf: &mut [u8], size: (u32, u32), op: &TextOp) {
        if op.text.is_empty()
            || op.em.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || !op.x.is_finite()
            || !op.y.is_finite()
        {
            return;
        }
        let f = font.as_scaled(scale(font, op.em));
        let (ascent, descent) = (f.ascent(), f.descent());
        let tw = width(&op.text, op.em);
        let th = ascent - descent;
        // Coverage of the horizontal text, with a 2 px border.
        let pad = 2.0;
        let cw = (tw + 2.0 * pad).ceil() as usize;
        let ch = (th + 2.0 * pad).ceil() as usize;
        if cw == 0 || ch == 0 || cw * ch > 64 << 20 {
            return;
        }
        let mut cov = vec![0f32; cw * ch];
        let mut pen = pad;
        let mut prev = None;
        for c in op.text.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                pen += f.kern(p, id);
            }
            let glyph = id.with_scale_and_position(f.scale(), point(pen, pad + ascent));
            pen += f.h_advance(id);
            prev = Some(id);
            if let Some(og) = font.outline_glyph(glyph) {
                let b = og.px_bounds();
                og.draw(|gx, gy, v| {
                    let x = b.min.x as i64 + i64::from(gx);
                    let y = b.min.y as i64 + i64::from(gy);
                    if x >= 0 && y >= 0 && (x as usize) < cw && (y as usize) < ch {
                        let cell = &mut cov[y as usize * cw + x as usize];
                        *cell = (*cell + v).min(1.0);
                    }
                });
            }
        }
        // Box size on the canvas.
        let (bw, bh) = if op.vertical { (th, tw) } else { (tw, th) };
        let (left, top) = match op.anchor {
            Anchor::TopCenter => (op.x - bw / 2.0, op.y),
            Anchor::CenterLeft => (op.x, op.y - bh / 2.0),
            Anchor::CenterRight => (op.x - bw, op.y - bh / 2.0),
            Anchor::Center => (op.x - bw / 2.0, op.y - bh / 2.0),
        };
        let (ox, oy) = ((left - pad).round() as i64, (top - pad).round() as i64);
        let color = [op.color.0, op.color.1, op.color.2];
        for v in 0..ch {
            for u in 0..cw {
                let a = cov[v * cw + u];
                if a <= 0.0 {
                    continue;
                }
                let (x, y) = if op.vertical {
                    (ox + v as i64, oy + (cw - 1 - u) as i64)
                } else {
                    (ox + u as i64, oy + v as i64)
                };
                blend(buf, size, x, y, color, a);
            }
        }
    }
}

/// Legend layout: entries row by row in `cols` columns; column `c` starts
/// `col_x[c]` pixels right of the legend's left edge.
struct LegendLayout {
    cols: usize,
    rows: usize,
    col_x: Vec<f32>,
    width: f32,
    row_h: f32,
}

const LEGEND_SAMPLE: f32 = 30.0;
const LEGEND_GAP: f32 = 6.0;
const LEGEND_COL_PAD: f32 = 24.0;

fn legend_layout(avail_w: f32, sf: f32, entries: &[Prepared<'_>]) -> LegendLayout {
    let em = LEGEND_EM * sf;
    let entry_w: Vec<f32> = entries
        .iter()
        .map(|e| (LEGEND_SAMPLE + LEGEND_GAP) * sf + text::width(e.name, em))
        .collect();
    let pad = LEGEND_COL_PAD * sf;
    // Column offsets and total width for `cols` columns.
    let fit = |cols: usize| {
        let mut col_x = Vec::with_capacity(cols);
        let mut x = 0.0;
        for c in 0..cols {
            col_x.push(x);
            let w = entry_w
                .iter()
                .skip(c)
                .step_by(cols)
                .copied()
                .fold(0.0, f32::max);
            x += w + pad;
        }
        (col_x, (x - pad).max(0.0))
    };
    let n = entries.len();
    let mut best = (1, fit(1));
    for cols in 2..=n {
        // Balanced rows only: 6 entries go 3 + 3 rather than 4 + 2.
        if n.div_ceil(n.div_ceil(cols)) != cols {
            continue;
        }
        let f = fit(cols);
        if f.1 > avail_w {
            break;
        }
        best = (cols, f);
    }
    let (cols, (col_x, width)) = best;
    LegendLayout {
        cols,
        rows: n.div_ceil(cols),
        col_x,
        width,
        row_h: (text::line_height(em) + 5.0 * sf).ceil(),
    }
}

/// Picks every `step`-th label so neighbours do not overlap.
fn label_step(positions: &[f32], widths: &[f32], min_gap: f32) -> usize {
    let n = positions.len();
    for step in 1..n.max(2) {
        let ok = (step..n).step_by(step).all(|i| {
            let j = i - step;
            let need = (widths[i] + widths[j]) / 2.0 + min_gap;
            (positions[i] - positions[j]).abs() >= need
        });
        if ok {
            return step;
        }
    }
    n.max(1)
}

/// Width a panel's legend may take.
fn legend_width(area: &Area<'_>, sf: f32) -> f32 {
    area.dim_in_pixel().0 as f32 - 20.0 * sf
}

fn legend_height(layout: &LegendLayout, sf: f32) -> f32 {
    if layout.rows == 0 {
        0.0
    } else {
        layout.rows as f32 * layout.row_h + 8.0 * sf
    }
}

/// Draws one panel; `legend_h` is the height to reserve for the legend
/// (at least what this panel's own legend needs).
fn draw_panel(
    area: &Area<'_>,
    s: i32,
    panel: &Panel,
    prepared: &[Prepared<'_>],
    legend_h: f32,
    texts: &mut Vec<TextOp>,
) -> Result<(), PlotError> {
    let sf = s as f32;
    let (area_x, area_y) = area.get_pixel_range();
    let (area_w, area_h) = area.dim_in_pixel();

    // Vertical budget: title, plot, tick labels, x description, legend.
    let tick_em = TICK_EM * sf;
    let desc_em = DESC_EM * sf;
    let title_em = PANEL_TITLE_EM * sf;
    let title_h = if panel.title.is_empty() {
        4.0 * sf
    } else {
        text::line_height(title_em) + 8.0 * sf
    };
    let tick_len = 4 * s;
    let tick_gap = 3.0 * sf;
    let tick_label_h = text::line_height(tick_em);
    let x_desc_h = if panel.x_label.is_empty() {
        0.0
    } else {
        text::line_height(desc_em) + 8.0 * sf
    };
    let legend = legend_layout(legend_width(area, sf), sf, prepared);
    let legend_h = legend_height(&legend, sf)
        .max(legend_h)
        .min(area_h as f32 / 2.0);

    let (xs, ys): (Vec<f64>, Vec<f64>) = prepared
        .iter()
        .flat_map(|p| p.points.iter().copied())
        .unzip();
    let minmax = |v: &[f64]| {
        v.iter()
            .fold(None, |acc: Option<(f64, f64)>, &x| match acc {
                None => Some((x, x)),
                Some((a, b)) => Some((a.min(x), b.max(x))),
            })
    };
    let default = |log: bool| if log { (0.0, 10.0) } else { (0.0, 1.0) };
    let (x0, x1) = minmax(&xs).unwrap_or(default(panel.log_x));
    let (y0, y1) = minmax(&ys).unwrap_or(default(panel.log_y));
    let xspec = axis_spec(x0, x1, panel.log_x, false);
    let yspec = axis_spec(y0, y1, panel.log_y, true);

    let y_widths: Vec<f32> = yspec
        .ticks
        .iter()
        .map(|(_, l)| text::width(l, tick_em))
        .collect();
    let y_tick_w = y_widths.iter().copied().fold(0.0, f32::max);
    let y_desc_w = if panel.y_label.is_empty() {
        0.0
    } else {
        text::line_height(desc_em) + 6.0 * sf
    };
    // The last x tick label may stick out to the right of the plot.
    let x_last_w = xspec
        .ticks
        .last()
        .map(|(_, l)| text::width(l, tick_em))
        .unwrap_or(0.0);

    let x_area = tick_len as f32 + tick_gap + tick_label_h + 2.0 * sf + x_desc_h;
    let y_area = tick_len as f32 + tick_gap + y_tick_w + 4.0 * sf + y_desc_w;
    let mut chart = ChartBuilder::on(area)
        .margin_top(title_h.ceil() as i32)
        .margin_right(((x_last_w / 2.0).max(12.0 * sf) + 4.0 * sf).ceil() as i32)
        .margin_left(4 * s)
        .margin_bottom(legend_h.ceil() as i32 + 2 * s)
        .x_label_area_size(x_area.ceil() as i32)
        .y_label_area_size(y_area.ceil() as i32)
        .build_cartesian_2d(xspec.coord(), yspec.coord())
        .map_err(draw_err)?;

    // Grid, axes and tick marks; labels are drawn as text afterwards.
    let no_label = |_: &f64| String::new();
    chart
        .configure_mesh()
        .x_labels(xspec.ticks.len().max(1))
        .y_labels(yspec.ticks.len().max(1))
        .x_label_formatter(&no_label)
        .y_label_formatter(&no_label)
        .label_style((FONT_NAME, 12 * s))
        .bold_line_style(GRID_MAJOR.stroke_width(s as u32))
        .light_line_style(GRID_MINOR.stroke_width(s as u32))
        .axis_style(AXIS.stroke_width(s as u32))
        .set_all_tick_mark_size(tick_len)
        .draw()
        .map_err(draw_err)?;

    let line_w = 2 * s as u32;
    for p in prepared {
        let style = p.color.stroke_width(line_w);
        if p.dashed {
            chart
                .draw_series(DashedLineSeries::new(
                    p.points.iter().copied(),
                    9 * s,
                    6 * s,
                    style,
                ))
                .map_err(draw_err)?;
        } else {
            chart
                .draw_series(LineSeries::new(p.points.iter().copied(), style))
                .map_err(draw_err)?;
            if p.points.len() <= MAX_MARKED_POINTS {
                let r = 3 * s;
                chart
                    .draw_series(
                        p.points
                            .iter()
                            .map(|&pt| Circle::new(pt, r, p.color.filled())),
                    )
                    .map_err(draw_err)?;
            }
        }
    }

    // Text, in absolute canvas pixels.
    let (px, py) = chart.plotting_area().get_pixel_range();
    let plot_cx = (px.start + px.end) as f32 / 2.0;
    let plot_cy = (py.start + py.end) as f32 / 2.0;
    if !panel.title.is_empty() {
        texts.push(TextOp::new(
            &panel.title,
            title_em,
            TEXT,
            plot_cx,
            area_y.start as f32 + 2.0 * sf,
            Anchor::TopCenter,
        ));
    }
    // x tick labels, thinned out if they would collide.
    let x_pos: Vec<f32> = xspec
        .ticks
        .iter()
        .map(|(t, _)| chart.backend_coord(&(*t, yspec.range.start)).0 as f32)
        .collect();
    let x_widths: Vec<f32> = xspec
        .ticks
        .iter()
        .map(|(_, l)| text::width(l, tick_em))
        .collect();
    let step = label_step(&x_pos, &x_widths, 8.0 * sf);
    let x_label_y = py.end as f32 + tick_len as f32 + tick_gap;
    for (i, ((_, label), x)) in xspec.ticks.iter().zip(&x_pos).enumerate() {
        if i % step == 0 {
            texts.push(TextOp::new(
                label,
                tick_em,
                TEXT,
                *x,
                x_label_y,
                Anchor::TopCenter,
            ));
        }
    }
    // y tick labels.
    let y_pos: Vec<f32> = yspec
        .ticks
        .iter()
        .map(|(t, _)| chart.backend_coord(&(xspec.range.start, *t)).1 as f32)
        .collect();
    let heights = vec![tick_label_h; y_pos.len()];
    let step = label_step(&y_pos, &heights, 2.0 * sf);
    let y_label_x = px.start as f32 - tick_len as f32 - tick_gap;
    for (i, ((_, label), y)) in yspec.ticks.iter().zip(&y_pos).enumerate() {
        if i % step == 0 {
            texts.push(TextOp::new(
                label,
                tick_em,
                TEXT,
                y_label_x,
                *y,
                Anchor::CenterRight,
            ));
        }
    }
    if !panel.x_label.is_empty() {
        texts.push(TextOp::new(
            &panel.x_label,
            desc_em,
            TEXT,
            plot_cx,
            x_label_y + tick_label_h + 6.0 * sf,
            Anchor::TopCenter,
        ));
    }
    if !panel.y_label.is_empty() {
        let mut op = TextOp::new(
            &panel.y_label,
            desc_em,
            TEXT,
            y_label_x - y_tick_w - 4.0 * sf - y_desc_w / 2.0,
            plot_cy,
            Anchor::Center,
        );
        op.vertical = true;
        texts.push(op);
    }
    if prepared.is_empty() {
        texts.push(TextOp::new(
            "no data",
            PANEL_TITLE_EM * sf,
            TEXT_MUTED,
            plot_cx,
            plot_cy,
            Anchor::Center,
        ));
    }

    // Legend, centred below the x description.
    if legend.rows > 0 {
        let left = area_x.start as f32 + ((area_w as f32 - legend.width) / 2.0).max(0.0);
        let top = area_y.end as f32 - legend_h + 4.0 * sf;
        let legend_em = LEGEND_EM * sf;
        let root = area.strip_coord_spec();
        let (ax, ay) = (area_x.start, area_y.start);
        for (i, e) in prepared.iter().enumerate() {
            let (row, col) = (i / legend.cols, i % legend.cols);
            let x = left + legend.col_x[col];
            let y = top + row as f32 * legend.row_h + legend.row_h / 2.0;
            if y > area_y.end as f32 {
                break;
            }
            // The drawing area is relative to the panel's top-left corner.
            let (a, b, yy) = (
                x.round() as i32 - ax,
                (x + LEGEND_SAMPLE * sf).round() as i32 - ax,
                y.round() as i32 - ay,
            );
            let style = e.color.stroke_width(2 * s as u32);
            if e.dashed {
                root.draw(&DashedPathElement::new(
                    vec![(a, yy), (b, yy)],
                    8 * s,
                    5 * s,
                    style,
                ))
                .map_err(draw_err)?;
            } else {
                root.draw(&PathElement::new(vec![(a, yy), (b, yy)], style))
                    .map_err(draw_err)?;
                root.draw(&Circle::new(((a + b) / 2, yy), 3 * s, e.color.filled()))
                    .map_err(draw_err)?;
            }
            texts.push(TextOp::new(
                e.name,
                legend_em,
                TEXT,
                x + (LEGEND_SAMPLE + LEGEND_GAP) * sf,
                y,
                Anchor::CenterLeft,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn temp_png(tag: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!(
            "headroom-plot-{tag}-{}-{n}.png",
            std::process::id()
        ))
    }

    /// Decodes a PNG file to (width, height, RGB bytes).
    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn near(px: &[u8], c: [u8; 3], tol: i32) -> bool {
        (0..3).all(|k| (i32::from(px[k]) - i32::from(c[k])).abs() <= tol)
    }

    /// Counts pixels close to `c` in the rectangle `x0..x1, y0..y1`.
    fn count_color(img: &(u32, u32, Vec<u8>), c: [u8; 3], x: Range<u32>, y: Range<u32>) -> usize {
        let (w, _, buf) = img;
        let mut n = 0;
        for yy in y {
            for xx in x.clone() {
                let i = (yy * w + xx) as usize * 3;
                if near(&buf[i..i + 3], c, 40) {
                    n += 1;
                }
            }
        }
        n
    }

    fn panel(log_x: bool, log_y: bool, series: Vec<Series>) -> Panel {
        Panel {
            title: "panel".into(),
            x_label: "context length".into(),
            y_label: "time (us)".into(),
            log_x,
            log_y,
            series,
        }
    }

    #[test]
    fn plot_writes_png_with_series_pixels_where_lines_are() {
        // A flat line at y = 5 in a y range of 0..10: its pixels sit in
        // the vertical middle of the plotting area, the upper half of the
        // image is free of it, and the second colour marks a dashed line
        // near the top.
        let path = temp_png("lines");
        let xs: Vec<f64> = (0..=10).map(|i| 1024.0 * f64::from(1 << (i % 6))).collect();
        let flat: Vec<(f64, f64)> = xs.iter().map(|&x| (x, 5.0)).collect();
        let high: Vec<(f64, f64)> = xs.iter().map(|&x| (x, 10.0)).collect();
        let low: Vec<(f64, f64)> = xs.iter().map(|&x| (x, 0.5)).collect();
        let p = panel(
            true,
            false,
            vec![
                // dashed first: a dashed series right after a solid one
                // would share that series' colour
                Series::dashed("high", high),
                Series::solid("flat", flat),
                Series::solid("low", low),
            ],
        );
        write_png(&path, 640, 480, "test chart", &[p]).unwrap();
        let img = decode(&path);
        std::fs::remove_file(&path).ok();
        assert_eq!((img.0, img.1), (640, 480));

        // Rows holding many pixels of the flat line's colour.
        let c0 = series_color(1);
        let rows: Vec<u32> = (0..480)
            .filter(|&y| count_color(&img, c0, 0..640, y..y + 1) > 200)
            .collect();
        assert!(
            !rows.is_empty(),
            "no horizontal line of the flat series found"
        );
        let c1 = series_color(0);
        let rows1: Vec<u32> = (0..480)
            .filter(|&y| count_color(&img, c1, 0..640, y..y + 1) > 100)
            .collect();
        assert!(!rows1.is_empty(), "no dashed line of the high series found");
        let c2 = series_color(2);
        let rows2: Vec<u32> = (0..480)
            .filter(|&y| count_color(&img, c2, 0..640, y..y + 1) > 200)
            .collect();
        assert!(!rows2.is_empty(), "no line of the low series found");
        // Order on screen: high (y=10) above flat (y=5) above low (y=0.5).
        let mid = |r: &[u32]| r.iter().sum::<u32>() / r.len() as u32;
        let (y_high, y_flat, y_low) = (mid(&rows1), mid(&rows), mid(&rows2));
        assert!(
            y_high < y_flat && y_flat < y_low,
            "{y_high} {y_flat} {y_low}"
        );
        // y = 5 is half-way between y = 0.5 and y = 10 (linear axis).
        let expect = f64::from(y_high)
            + (f64::from(y_low) - f64::from(y_high)) * (10.0 - 5.0) / (10.0 - 0.5);
        assert!(
            (f64::from(y_flat) - expect).abs() < 3.0,
            "flat line at row {y_flat}, expected about {expect} (high {y_high}, low {y_low}: {rows1:?} {rows:?} {rows2:?})"
        );
        // The dashed line has gaps: along its row, not every pixel is set.
        let dashed_row = rows1[rows1.len() / 2];
        let on = count_color(&img, c1, 0..640, dashed_row..dashed_row + 1);
        let span = {
            let (w, _, buf) = &img;
            let xs: Vec<u32> = (0..*w)
                .filter(|&x| near(&buf[((dashed_row * w + x) * 3) as usize..][..3], c1, 40))
                .collect();
            xs.last().unwrap() - xs.first().unwrap() + 1
        };
        assert!(
            on < span as usize * 9 / 10,
            "dashed line looks solid: {on}/{span}"
        );
        // The image background is white and the top-left corner is empty.
        assert_eq!(&img.2[0..3], &[255, 255, 255]);
    }

    #[test]
    fn plot_prediction_shares_its_measured_series_colour() {
        // A dashed series right after a solid one is drawn in the solid
        // series' colour; the next solid series takes the next colour.
        let path = temp_png("shared");
        let xs: Vec<f64> = (0..=8).map(f64::from).collect();
        let at = |y: f64| xs.iter().map(|&x| (x, y)).collect::<Vec<_>>();
        let p = panel(
            false,
            false,
            vec![
                Series::solid("measured", at(8.0)),
                Series::dashed("predicted", at(2.0)),
                Series::solid("other", at(5.0)),
            ],
        );
        write_png(&path, 640, 480, "", &[p]).unwrap();
        let img = decode(&path);
        std::fs::remove_file(&path).ok();
        let rows_with = |c: [u8; 3], min: usize| -> Vec<u32> {
            (0..480)
                .filter(|&y| count_color(&img, c, 0..640, y..y + 1) > min)
                .collect()
        };
        // Colour 0 marks two separate lines (measured high, predicted low).
        let rows0 = rows_with(series_color(0), 100);
        assert!(
            rows0.last().unwrap_or(&0) - rows0.first().unwrap_or(&0) > 100,
            "expected colour 0 on two lines far apart: {rows0:?}"
        );
        // Colour 1 is the third series, between them; colour 2 is unused.
        let rows1 = rows_with(series_color(1), 200);
        assert!(!rows1.is_empty(), "no line in colour 1");
        assert!(rows0[0] < rows1[0] && rows1[0] < *rows0.last().unwrap());
        assert_eq!(count_color(&img, series_color(2), 0..640, 0..480), 0);
    }

    #[test]
    fn plot_two_panels_side_by_side() {
        let path = temp_png("two");
        let a = panel(
            true,
            true,
            vec![Series::solid("a", vec![(1.0, 1.0), (1000.0, 1000.0)])],
        );
        let b = panel(
            false,
            false,
            vec![Series::solid("b", vec![(0.0, 0.0), (1.0, 1.0)])],
        );
        write_png(&path, 800, 300, "", &[a, b]).unwrap();
        let img = decode(&path);
        std::fs::remove_file(&path).ok();
        assert_eq!((img.0, img.1), (800, 300));
        // Series 0 colour appears in both halves (each panel has its own).
        let c = series_color(0);
        assert!(count_color(&img, c, 0..400, 0..300) > 100);
        assert!(count_color(&img, c, 400..800, 0..300) > 100);
    }

    #[test]
    fn plot_log_axis_skips_nonpositive_and_nonfinite() {
        let p = panel(
            true,
            true,
            vec![
                Series::solid(
                    "mixed",
                    vec![
                        (0.0, 1.0),
                        (-4.0, 2.0),
                        (8.0, -1.0),
                        (f64::NAN, 3.0),
                        (16.0, f64::INFINITY),
                        (32.0, 4.0),
                        (64.0, 8.0),
                    ],
                ),
                Series::dashed("all bad", vec![(0.0, 0.0), (-1.0, 5.0)]),
                Series::solid("empty", vec![]),
            ],
        );
        let png = render_png(500, 400, "log", &[p]).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        // A panel with nothing drawable still renders ("no data").
        let q = panel(true, true, vec![Series::solid("bad", vec![(-1.0, -1.0)])]);
        let r = panel(false, false, vec![]);
        render_png(500, 400, "none", &[q, r]).unwrap();
        // A single point and a constant series (zero-width ranges).
        let single = panel(true, true, vec![Series::solid("one", vec![(1024.0, 3.0)])]);
        let flat = panel(
            false,
            false,
            vec![Series::solid("c", vec![(1.0, 2.0), (1.0, 2.0)])],
        );
        render_png(500, 400, "degenerate", &[single, flat]).unwrap();
    }

    #[test]
    fn plot_errors_are_reported() {
        let p = panel(
            false,
            false,
            vec![Series::solid("a", vec![(0.0, 0.0), (1.0, 1.0)])],
        );
        assert!(matches!(
            render_png(10, 400, "", std::slice::from_ref(&p)),
            Err(PlotError::InvalidSize { .. })
        ));
        assert!(matches!(
            render_png(400, 400, "", &[]),
            Err(PlotError::NoPanels)
        ));
        let bad = std::env::temp_dir()
            .join("headroom-plot-no-such-dir")
            .join("x.png");
        let err = write_png(&bad, 400, 300, "", &[p]).unwrap_err();
        assert!(matches!(err, PlotError::Io { .. }));
        assert!(
            err.to_string().contains("headroom-plot-no-such-dir"),
            "{err}"
        );
    }

    #[test]
    fn plot_small_and_grid_layouts_do_not_panic() {
        let mk = |i: u32| {
            panel(
                i & 1 == 0,
                i == 3,
                (0..12)
                    .map(|k| {
                        Series::solid(
                            format!("series number {k}"),
                            (1..20)
                                .map(|j| (f64::from(j) * 100.0, f64::from(j * (k + 1))))
                                .collect(),
                        )
                    })
                    .collect(),
            )
        };
        let panels: Vec<Panel> = (0..5).map(mk).collect();
        let png = render_png(MIN_SIDE, MIN_SIDE, "tiny", &panels).unwrap();
        assert!(!png.is_empty());
        render_png(1200, 900, "grid", &panels).unwrap();
    }

    #[test]
    fn plot_tick_labels() {
        assert_eq!(fmt_pow2(10), "1K");
        assert_eq!(fmt_pow2(12), "4K");
        assert_eq!(fmt_pow2(14), "16K");
        assert_eq!(fmt_pow2(20), "1M");
        assert_eq!(fmt_pow2(9), "512");
        assert_eq!(fmt_pow2(-1), "0.5");
        assert_eq!(fmt_pow10(3), "1K");
        assert_eq!(fmt_pow10(7), "10M");
        assert_eq!(fmt_pow10(-2), "0.01");
        // 1K..32K on a log axis: ticks at every power of two.
        let ax = log_axis(10.0, 15.0);
        let labels: Vec<&str> = ax.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["1K", "2K", "4K", "8K", "16K", "32K"]);
        // 1..1M: powers of ten.
        let ax = log_axis(0.0, 1e6f64.log2());
        let labels: Vec<&str> = ax.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["1", "10", "100", "1K", "10K", "100K", "1M"]);
        // Linear: nice steps.
        let ax = linear_axis(0.0, 9.3, true);
        let labels: Vec<&str> = ax.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0", "2", "4", "6", "8"]);
        assert_eq!(fmt_linear(0.25, 0.25, 1.0), "0.25");
        assert_eq!(fmt_linear(20000.0, 5000.0, 40000.0), "20K");
    }

    /// Renders the sample chart used to eyeball the output:
    /// `cargo test --release --lib plot::tests::plot_sample -- --ignored`
    #[test]
    #[ignore]
    fn plot_sample() {
        let xs: Vec<f64> = (10..=15).map(|k| f64::from(1u32 << k)).collect();
        let mk = |scale: f64, batch: f64| {
            let names = ["naive", "flash-decode", "shared-kv"];
            let mut series = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let eff = 1.0 + i as f64 * 0.6;
                series.push(Series::solid(
                    format!("{name} measured"),
                    xs.iter()
                        .map(|&x| {
                            (
                                x,
                                scale
                                    * (20.0 + x * batch / eff / 900.0)
                                    * (1.0 + 0.05 * (x / 3000.0).sin()),
                            )
                        })
                        .collect(),
                ));
            }
            for (i, name) in names.iter().enumerate() {
                let eff = 1.0 + i as f64 * 0.6;
                series.push(Series::dashed(
                    format!("{name} roofline"),
                    xs.iter()
                        .map(|&x| (x, scale * (12.0 + x * batch / eff / 1100.0)))
                        .collect(),
                ));
            }
            series
        };
        let a = Panel {
            title: "Decode attention latency (batch 8)".into(),
            x_label: "context length (tokens)".into(),
            y_label: "time per step (µs)".into(),
            log_x: true,
            log_y: true,
            series: mk(1.0, 8.0),
        };
        let b = Panel {
            title: "Decode attention latency (batch 32)".into(),
            x_label: "context length (tokens)".into(),
            y_label: "time per step (µs)".into(),
            log_x: true,
            log_y: false,
            series: mk(1.0, 32.0),
        };
        write_png(
            Path::new("/tmp/plot_sample.png"),
            1400,
            600,
            "headroom bench attention — Qwen3 0.6B, f16 KV",
            &[a, b],
        )
        .unwrap();
    }
}
