//! Grids of small images: a convolution's filters and a layer's feature maps, each tile
//! upscaled by repeating pixels (nearest neighbour) so that a 5x5 filter is visible.

use crate::picture::{blank, draw_text, range_gray, symmetric_gray, Anchor, Picture, Rect};
use image::Rgb;
use kiln_core::{DType, KilnError, Result, Tensor};
use std::path::Path;

/// Space around the grid, in pixels.
const MARGIN: u32 = 8;
/// Space between tiles.
const GAP: u32 = 10;
/// Pixels between the input channels of one filter's tile.
pub const CHANNEL_GAP: u32 = 2;
/// Their colour (light gray, so that the white gaps between tiles stand out).
const CHANNEL_GAP_COLOR: [u8; 3] = [210, 210, 210];
/// Height of a section's caption line.
const CAPTION: u32 = 22;
/// Space between sections.
const SECTION_GAP: u32 = 10;
/// Filters show at most this many input channels per tile; the caption says when more exist.
pub const MAX_INPUTS_SHOWN: usize = 16;

/// One small image of a grid, already upscaled.
#[derive(Clone, Debug)]
pub(crate) struct Tile {
    pub w: u32,
    pub h: u32,
    /// Row-major pixels.
    pub pixels: Vec<[u8; 3]>,
}

impl Tile {
    /// A `h x w` tile from a function of the source pixel `(row, col)`, each source pixel
    /// repeated `scale x scale` times.
    pub fn upscaled(h: usize, w: usize, scale: u32, f: impl Fn(usize, usize) -> [u8; 3]) -> Tile {
        let (tw, th) = (w as u32 * scale, h as u32 * scale);
        let mut pixels = Vec::with_capacity((tw * th) as usize);
        for y in 0..th {
            for x in 0..tw {
                pixels.push(f((y / scale) as usize, (x / scale) as usize));
            }
        }
        Tile {
            w: tw,
            h: th,
            pixels,
        }
    }

    /// `parts` (of one height) left to right, `gap` columns of `color` between them.
    pub fn side_by_side(parts: &[Tile], gap: u32, color: [u8; 3]) -> Tile {
        let h = parts.first().map_or(0, |p| p.h);
        let w =
            parts.iter().map(|p| p.w).sum::<u32>() + gap * (parts.len() as u32).saturating_sub(1);
        let mut pixels = Vec::with_capacity((w * h) as usize);
        for y in 0..h {
            for (k, p) in parts.iter().enumerate() {
                if k > 0 {
                    pixels.extend(std::iter::repeat_n(color, gap as usize));
                }
                let row = (y * p.w) as usize;
                pixels.extend_from_slice(&p.pixels[row..row + p.w as usize]);
            }
        }
        Tile { w, h, pixels }
    }
}

/// The upscaling factor for a source image of `h x w` pixels: the smallest that makes the larger
/// side at least 48 pixels (1 for images that are large already).
pub fn upscale_factor(h: usize, w: usize) -> u32 {
    (48usize.div_ceil(h.max(w).max(1))).max(1) as u32
}

/// Columns for `n` tiles of `w x h`: a roughly square grid.
fn columns(n: usize, w: u32, h: u32) -> usize {
    let ideal = ((n as f64) * h as f64 / w as f64).sqrt().ceil() as usize;
    ideal.clamp(1, n.max(1))
}

/// Lays sections of tiles out top to bottom, each under its caption, and draws them. The
/// regions are the tiles, section after section, in order.
pub(crate) fn compose(sections: &[(String, Vec<Tile>)]) -> Picture {
    // Sizes first.
    let mut width = 0u32;
    let mut height = MARGIN;
    let mut layouts = vec![];
    for (caption, tiles) in sections {
        let (tw, th) = tiles.first().map_or((0, 0), |t| (t.w, t.h));
        let cols = columns(tiles.len(), tw.max(1), th.max(1));
        let rows = tiles.len().div_ceil(cols) as u32;
        let grid_w = cols as u32 * tw + (cols as u32).saturating_sub(1) * GAP;
        let text_w = (caption.chars().count() as u32) * 7 + 4;
        width = width.max(grid_w).max(text_w);
        let top = height + if caption.is_empty() { 0 } else { CAPTION };
        layouts.push((top, cols, tw, th));
        height = top + rows * th + rows.saturating_sub(1) * GAP + SECTION_GAP;
    }
    let (w, h) = (width + 2 * MARGIN, height - SECTION_GAP + MARGIN);
    let mut image = blank(w, h);
    let mut regions = vec![];
    for ((caption, tiles), &(top, cols, tw, th)) in sections.iter().zip(&layouts) {
        if !caption.is_empty() {
            draw_text(
                &mut image,
                caption,
                (MARGIN as i32, (top - CAPTION / 2) as i32),
                14.0,
                [0, 0, 0],
                Anchor::Left,
                false,
            );
        }
        for (k, tile) in tiles.iter().enumerate() {
            let (r, c) = ((k / cols) as u32, (k % cols) as u32);
            let rect = Rect {
                x: MARGIN + c * (tw + GAP),
                y: top + r * (th + GAP),
                w: tile.w,
                h: tile.h,
            };
            for y in 0..tile.h {
                for x in 0..tile.w {
                    let p = tile.pixels[(y * tile.w + x) as usize];
                    image.put_pixel(rect.x + x, rect.y + y, Rgb(p));
                }
            }
            regions.push(rect);
        }
    }
    Picture { image, regions }
}

/// The values of `t` as f32 on the host.
pub(crate) fn host_values(t: &Tensor) -> Result<Vec<f32>> {
    if t.dtype() == DType::F32 {
        t.to_vec::<f32>()
    } else {
        t.cast(DType::F32).to_vec::<f32>()
    }
}

/// A grid of a convolution weight `[O, I, KH, KW]`: one tile per output channel, in order, left
/// to right and top to bottom. With `I == 3` a tile is one RGB image (the three input channels as
/// red, green and blue); otherwise it shows the input channels side by side in gray (at most
/// [`MAX_INPUTS_SHOWN`]), [`CHANNEL_GAP`] light-gray pixels apart. Each tile is scaled symmetrically
/// around zero on its own: 0 is mid-gray (128), the tile's largest |w| is white (255) if
/// positive, black (0) if negative. Pixels are upscaled by [`upscale_factor`]`(KH, KW)`.
/// `caption` is drawn above the grid (none if empty). The regions are the tiles, one per output
/// channel. An error (not a panic) for a tensor that is not 4-D or is empty.
pub fn filter_grid(weight: &Tensor, caption: &str) -> Result<Picture> {
    let d = weight.dims();
    if d.len() != 4 || d.contains(&0) {
        return Err(KilnError::Data(format!(
            "filter pictures need a convolution weight [O, I, KH, KW] with no empty dimension, got {}",
            weight.shape()
        )));
    }
    let (o, i, kh, kw) = (d[0], d[1], d[2], d[3]);
    let values = host_values(weight)?;
    let scale = upscale_factor(kh, kw);
    let shown = if i == 3 { 3 } else { i.min(MAX_INPUTS_SHOWN) };
    let per_out = i * kh * kw;
    let tiles = (0..o)
        .map(|oc| {
            let w = &values[oc * per_out..(oc + 1) * per_out];
            let max_abs = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let at = |ic: usize, r: usize, c: usize| w[(ic * kh + r) * kw + c];
            if i == 3 {
                Tile::upscaled(kh, kw, scale, |r, c| {
                    [0, 1, 2].map(|ic| symmetric_gray(at(ic, r, c), max_abs))
                })
            } else {
                // Input channels side by side, [`CHANNEL_GAP`] pixels apart.
                let parts: Vec<Tile> = (0..shown)
                    .map(|ic| {
                        Tile::upscaled(kh, kw, scale, |r, c| {
                            let g = symmetric_gray(at(ic, r, c), max_abs);
                            [g, g, g]
                        })
                    })
                    .collect();
                Tile::side_by_side(&parts, CHANNEL_GAP, CHANNEL_GAP_COLOR)
            }
        })
        .collect();
    let mut caption = caption.to_string();
    if shown < i && i != 3 {
        caption.push_str(&format!(" (first {shown} of {i} input channels)"));
    }
    Ok(compose(&[(caption, tiles)]))
}

/// Writes [`filter_grid`] of `weight` as a PNG, captioned with the weight's shape; returns the
/// picture.
pub fn save_filters(weight: &Tensor, path: impl AsRef<Path>) -> Result<Picture> {
    let caption = format!(
        "filters {}: one tile per output channel, gray = 0, white > 0, black < 0",
        weight.shape()
    );
    let picture = filter_grid(weight, &caption)?;
    picture.save(path)?;
    Ok(picture)
}

/// The channels of one image's activation: `[C, H, W]` or `[1, C, H, W]` gives `(C, H, W)`.
fn channels_of(t: &Tensor) -> Result<(usize, usize, usize)> {
    match t.dims() {
        [c, h, w] | [1, c, h, w] if *c > 0 && *h > 0 && *w > 0 => Ok((*c, *h, *w)),
        _ => Err(KilnError::Data(format!(
            "feature maps need one image's activation [C, H, W] or [1, C, H, W], got {}",
            t.shape()
        ))),
    }
}

/// Grids of feature maps, one section per `(caption, activation)`: each activation is one image's
/// channels (`[C, H, W]` or `[1, C, H, W]`), one gray tile per channel, in channel order, left to
/// right and top to bottom. Each tile is scaled on its own from its minimum (black) to its
/// maximum (white); a constant channel is black. Pixels are upscaled by
/// [`upscale_factor`]`(H, W)`. The regions are the tiles, section after section.
pub fn feature_maps(sections: &[(&str, &Tensor)]) -> Result<Picture> {
    let mut drawn = vec![];
    for (caption, t) in sections {
        let (c, h, w) = channels_of(t)?;
        let values = host_values(t)?;
        let scale = upscale_factor(h, w);
        let tiles = (0..c)
            .map(|ch| {
                let v = &values[ch * h * w..(ch + 1) * h * w];
                let (lo, hi) = crate::picture::min_max(v);
                Tile::upscaled(h, w, scale, |r, col| {
                    let g = range_gray(v[r * w + col], lo, hi);
                    [g, g, g]
                })
            })
            .collect();
        drawn.push((caption.to_string(), tiles));
    }
    Ok(compose(&drawn))
}

/// Writes the feature maps of one activation (`[C, H, W]` or `[1, C, H, W]`) as a PNG, captioned
/// with its shape (see [`feature_maps`]); returns the picture.
pub fn save_feature_maps(activation: &Tensor, path: impl AsRef<Path>) -> Result<Picture> {
    let caption = format!(
        "feature maps {}: one tile per channel, black = min, white = max",
        activation.shape()
    );
    let picture = feature_maps(&[(&caption, activation)])?;
    picture.save(path)?;
    Ok(picture)
}
