//! Reading one image file: its header (cheap, at open) and its pixels (on the decode threads),
//! both under [`image::Limits`] so that a file declaring a huge size is refused before anything
//! of that size is allocated.

use crate::pixels::Image;
use image::{DynamicImage, ImageReader, Limits};
use std::path::Path;

/// Why a file could not be read: the message for the warning line and the library's error.
pub(crate) type Failure = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The decoder limits: no side over `max_side` pixels and no more than 512 MiB allocated (as `kiln::classify`).
fn limits(max_side: u32) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(512 << 20);
    limits
}

/// A reader of `path` that guesses the format from the file's first bytes (a text file named
/// `.jpg` is then no JPEG) and decodes under the limits.
fn reader(
    path: &Path,
    max_side: u32,
) -> Result<ImageReader<std::io::BufReader<std::fs::File>>, Failure> {
    let mut reader = ImageReader::open(path)?.with_guessed_format()?;
    if reader.format().is_none() {
        return Err("not an image file kiln reads (PNG, JPEG, BMP, WebP)".into());
    }
    reader.limits(limits(max_side));
    Ok(reader)
}

/// The width and height the file declares, if it is an image of a format kiln reads and within
/// `max_side` pixels each way. Reads the header only.
pub(crate) fn check_header(path: &Path, max_side: u32) -> Result<(u32, u32), Failure> {
    let (w, h) = reader(path, max_side)?.into_dimensions()?;
    if w == 0 || h == 0 || w > max_side || h > max_side {
        return Err(format!("declares {w}x{h} pixels; the limit is {max_side} per side").into());
    }
    Ok((w, h))
}

/// The pixels of `path` as `channels` (1: grey, 3: RGB) f32 planes in [0, 1]: 16-bit images
/// are scaled to the same range, an alpha channel is dropped (as PIL's `convert("RGB")` does),
/// grey images are repeated into RGB and colour images turned to grey by luminance.
pub(crate) fn decode(path: &Path, channels: usize, max_side: u32) -> Result<Image, Failure> {
    let img = reader(path, max_side)?.decode()?;
    Ok(planes(&img, channels))
}

/// `img` as `channels` planes of u8 values, scaled to [0, 1].
fn planes(img: &DynamicImage, channels: usize) -> Image {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let interleaved = if channels == 1 {
        img.to_luma8().into_raw()
    } else {
        img.to_rgb8().into_raw()
    };
    let mut data = vec![0.0f32; channels * h * w];
    for (i, px) in interleaved.chunks_exact(channels).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            data[c * h * w + i] = v as f32 / 255.0;
        }
    }
    Image {
        channels,
        height: h,
        width: w,
        data,
    }
}
