//! [`Image`]: one decoded picture on the host, f32 planes in [0, 1], and the resampling that
//! the image folders and the CPU transforms share.

use image::imageops::{self, FilterType};
use image::{ImageBuffer, Luma};

/// One picture on the host: `channels` planes of `height x width` f32 values, each row-major,
/// plane after plane (the layout of one image of an NCHW batch). Values are in [0, 1] until a
/// normalisation moves them.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `channels * height * width` values.
    pub data: Vec<f32>,
}

impl Image {
    /// An image of zeros.
    pub fn zeros(channels: usize, height: usize, width: usize) -> Image {
        Image {
            channels,
            height,
            width,
            data: vec![0.0; channels * height * width],
        }
    }
    /// The image of 8-bit planes `data` (`channels * height * width` bytes), scaled to [0, 1].
    /// Panics if the length does not fit.
    #[track_caller]
    pub fn from_u8(channels: usize, height: usize, width: usize, data: &[u8]) -> Image {
        assert_eq!(
            data.len(),
            channels * height * width,
            "Image::from_u8: length"
        );
        Image {
            channels,
            height,
            width,
            data: data.iter().map(|&p| p as f32 / 255.0).collect(),
        }
    }
    /// Plane `c`, row-major.
    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[c * n..(c + 1) * n]
    }
    /// The value at channel `c`, row `y`, column `x`.
    pub fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.height + y) * self.width + x]
    }
    /// The rectangle of `height x width` pixels whose top-left corner is at row `top`, column
    /// `left`, copied exactly. Panics if it does not lie inside the image.
    #[track_caller]
    pub fn crop(&self, top: usize, left: usize, height: usize, width: usize) -> Image {
        assert!(
            top + height <= self.height && left + width <= self.width,
            "Image::crop: {height}x{width} at ({top}, {left}) is outside a {}x{} image",
            self.height,
            self.width
        );
        let mut out = Vec::with_capacity(self.channels * height * width);
        for c in 0..self.channels {
            let plane = self.plane(c);
            for y in top..top + height {
                out.extend_from_slice(&plane[y * self.width + left..y * self.width + left + width]);
            }
        }
        Image {
            channels: self.channels,
            height,
            width,
            data: out,
        }
    }
    /// This image scaled to `height x width` (aspect ratio not kept) with a triangle
    /// (bilinear) filter that widens when shrinking, so downscaled photos do not alias. The same
    /// size returns a copy.
    pub fn resize(&self, height: usize, width: usize) -> Image {
        if (height, width) == (self.height, self.width) {
            return self.clone();
        }
        let mut data = Vec::with_capacity(self.channels * height * width);
        for c in 0..self.channels {
            let plane: ImageBuffer<Luma<f32>, Vec<f32>> = ImageBuffer::from_raw(
                self.width as u32,
                self.height as u32,
                self.plane(c).to_vec(),
            )
            .expect("plane length");
            let scaled =
                imageops::resize(&plane, width as u32, height as u32, FilterType::Triangle);
            data.extend_from_slice(scaled.as_raw());
        }
        Image {
            channels: self.channels,
            height,
            width,
            data,
        }
    }
}
