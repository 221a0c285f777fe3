//! `Picture`: an RGB image with the rectangles it is made of (tiles of a grid, cells of a heat
//! map), and what every picture needs: writing PNGs, text in the embedded font, colour maps.

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, Rgb, RgbImage};
use kiln_core::{KilnError, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::Once;

/// The font every picture's text is drawn in: a subset of DejaVu Sans (Latin-1), shipped with
/// kiln (see `fonts/LICENSE`), so that no system font library is needed.
static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans-subset.ttf");

/// The background of every picture.
pub const BACKGROUND: [u8; 3] = [255, 255, 255];

/// A rectangle of a picture in pixels: left, top, width, height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// The pixel at the centre.
    pub fn center(&self) -> (u32, u32) {
        (self.x + self.w / 2, self.y + self.h / 2)
    }
    /// True if pixel `(x, y)` lies inside.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x && x < self.x + self.w && y >= self.y && y < self.y + self.h
    }
}

/// A rendered picture: the image and the rectangles it is made of, in a documented order (one
/// per tile of a grid, one per cell of a heat map), so that callers and tests can find what was
/// drawn where.
#[derive(Clone, Debug)]
pub struct Picture {
    /// The pixels.
    pub image: RgbImage,
    /// The tiles or cells, in the order the function that drew the picture documents.
    pub regions: Vec<Rect>,
}

impl Picture {
    /// Writes the picture as a PNG (creating the parent directory if needed). The error names
    /// the file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_png(&self.image, path.as_ref())
    }
    /// The colour of pixel `(x, y)`.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        self.image.get_pixel(x, y).0
    }
}

/// Writes 8-bit gray `pixels` (`w x h`, row-major) as a PNG at `path`, creating the parent
/// directory; errors name the file, or say that the pixel count does not match.
pub fn save_gray(pixels: &[u8], w: u32, h: u32, path: impl AsRef<Path>) -> Result<()> {
    if pixels.len() != (w as usize) * (h as usize) {
        return Err(KilnError::Data(format!(
            "{}: {} gray pixels for a {w}x{h} picture",
            path.as_ref().display(),
            pixels.len()
        )));
    }
    let gray = image::GrayImage::from_raw(w, h, pixels.to_vec()).expect("w * h pixels");
    write_png(&DynamicImage::ImageLuma8(gray), path.as_ref())
}

/// Writes `image` as a PNG at `path`, creating the parent directory; errors name the file.
pub(crate) fn save_png(image: &RgbImage, path: &Path) -> Result<()> {
    write_png(&DynamicImage::ImageRgb8(image.clone()), path)
}

fn write_png(image: &DynamicImage, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| KilnError::Io {
            msg: format!("{}: cannot create the directory: {e}", dir.display()),
            source: e,
        })?;
    }
    let msg = |e: &dyn std::fmt::Display| format!("{}: cannot write the PNG: {e}", path.display());
    // Best compression: pictures meant for documentation stay small.
    let file = std::fs::File::create(path).map_err(|e| KilnError::Io {
        msg: msg(&e),
        source: e,
    })?;
    let encoder = PngEncoder::new_with_quality(
        std::io::BufWriter::new(file),
        CompressionType::Best,
        FilterType::Adaptive,
    );
    image.write_with_encoder(encoder).map_err(|e| match e {
        image::ImageError::IoError(source) => KilnError::Io {
            msg: msg(&source),
            source,
        },
        other => KilnError::Format {
            msg: msg(&other),
            source: Box::new(other),
        },
    })
}

/// A blank picture of `w x h` pixels filled with [`BACKGROUND`].
pub(crate) fn blank(w: u32, h: u32) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb(BACKGROUND))
}

/// Makes the embedded font plotters' "sans-serif" (once per process).
pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            panic!("kiln-viz: the embedded font does not parse");
        }
    });
}

/// Where a text's anchor point is: its centre, or the middle of its left or right edge.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Anchor {
    Center,
    Left,
    Right,
}

/// Draws `text` of `size` pixels (the em height) in `color` onto `image` with its anchor at
/// `(x, y)`, optionally rotated a quarter turn counter-clockwise (for a vertical axis label).
pub(crate) fn draw_text(
    image: &mut RgbImage,
    text: &str,
    (x, y): (i32, i32),
    size: f64,
    color: [u8; 3],
    anchor: Anchor,
    vertical: bool,
) {
    register_font();
    let (w, h) = image.dimensions();
    let root = BitMapBackend::with_buffer(image.as_mut(), (w, h)).into_drawing_area();
    let h_pos = match anchor {
        Anchor::Center => HPos::Center,
        Anchor::Left => HPos::Left,
        Anchor::Right => HPos::Right,
    };
    let mut font = ("sans-serif", size)
        .into_font()
        .color(&RGBColor(color[0], color[1], color[2]))
        .pos(Pos::new(h_pos, VPos::Center));
    if vertical {
        font = font.transform(FontTransform::Rotate270);
    }
    // Text that does not fit is clipped by the backend; a font error cannot happen with the
    // embedded font, so the result carries nothing worth reporting.
    let _ = root.draw(&Text::new(text, (x, y), font));
    let _ = root.present();
}

/// Fills `r` with `color`.
pub(crate) fn fill(image: &mut RgbImage, r: Rect, color: [u8; 3]) {
    for y in r.y..r.y + r.h {
        for x in r.x..r.x + r.w {
            image.put_pixel(x, y, Rgb(color));
        }
    }
}

/// Gray for a value scaled symmetrically around zero: `t = v / max_abs` in [-1, 1] maps to
/// 0 (black, t = -1) .. 128 (zero) .. 255 (white, t = 1): `128 + 128 t` below zero, `128 + 127 t`
/// above. `max_abs == 0` gives 128.
pub(crate) fn symmetric_gray(v: f32, max_abs: f32) -> u8 {
    if max_abs <= 0.0 || !v.is_finite() {
        return 128;
    }
    let t = (v / max_abs).clamp(-1.0, 1.0);
    let span = if t < 0.0 { 128.0 } else { 127.0 };
    (128.0 + span * t).round() as u8
}

/// Gray for a value scaled from `[min, max]` to 0..=255 (0 when the range is empty).
pub(crate) fn range_gray(v: f32, min: f32, max: f32) -> u8 {
    if max <= min || !v.is_finite() {
        return 0;
    }
    (255.0 * ((v - min) / (max - min)).clamp(0.0, 1.0)).round() as u8
}

/// The "hot" colour map for `t` in [0, 1]: black, red, yellow, white.
pub(crate) fn hot(t: f32) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let c = |s: f32| (255.0 * s.clamp(0.0, 1.0)).round() as u8;
    [c(3.0 * t), c(3.0 * t - 1.0), c(3.0 * t - 2.0)]
}

/// A white-to-blue ramp for `t` in [0, 1] (heat maps of fractions: 0 white, 1 dark blue).
pub(crate) fn blues(t: f32) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let lerp = |a: f32, b: f32| (a + (b - a) * t).round() as u8;
    [lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0)]
}

/// Smallest and largest finite value (`(0, 0)` when there is none).
pub(crate) fn min_max(values: &[f32]) -> (f32, f32) {
    let mut it = values.iter().copied().filter(|v| v.is_finite());
    match it.next() {
        None => (0.0, 0.0),
        Some(first) => it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))),
    }
}
