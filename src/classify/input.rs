//! An image file made into a model's input tensor.

use crate::{Device, KilnError, Result, Tensor};
use image::imageops::FilterType;
use image::DynamicImage;
use std::path::Path;

/// How image files become a model's input: `channels` (1: gray, 3: RGB), the height and width
/// they are resized to, the per-channel normalisation, and whether gray levels are inverted
/// (MNIST digits are white on black; a digit drawn black on white needs `invert(true)`).
///
/// A pixel `p` (0..=255, after inversion) becomes `(p / 255 - mean[c]) / std[c]`, computed in
/// f32 exactly as [`crate::data::Batches`] computes it, so an MNIST test image written to a PNG
/// and read back gives the same tensor as the batch it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageInput {
    /// Channels of the model's input: 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// Height of the model's input.
    pub height: usize,
    /// Width of the model's input.
    pub width: usize,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by after the mean.
    pub std: Vec<f32>,
    /// True to use `255 - p` instead of `p`.
    pub inverted: bool,
}

impl ImageInput {
    /// Images of `channels` channels (1 or 3) resized to `[height, width]`, scaled to [0, 1]
    /// without normalisation. Panics for another channel count or an empty size (a mistake in
    /// the calling program, not in the data).
    #[track_caller]
    pub fn new(channels: usize, [height, width]: [usize; 2]) -> ImageInput {
        assert!(
            channels == 1 || channels == 3,
            "ImageInput::new: images become 1 (gray) or 3 (RGB) channels, not {channels}"
        );
        assert!(
            height > 0 && width > 0,
            "ImageInput::new: the size must not be empty, got {height}x{width}"
        );
        ImageInput {
            channels,
            height,
            width,
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
            inverted: false,
        }
    }

    /// Normalises with `mean` and `std`: one value for every channel, or one per channel. An
    /// error names the problem for another count, a non-finite value or a std that is not
    /// positive.
    pub fn normalize(mut self, mean: &[f32], std: &[f32]) -> Result<ImageInput> {
        let per_channel = |v: &[f32], what: &str| -> Result<Vec<f32>> {
            match v.len() {
                1 => Ok(vec![v[0]; self.channels]),
                n if n == self.channels => Ok(v.to_vec()),
                n => Err(KilnError::InvalidArgument(format!(
                    "{n} {what} values for {} channel(s); give one, or one per channel",
                    self.channels
                ))),
            }
        };
        let mean = per_channel(mean, "mean")?;
        let std = per_channel(std, "std")?;
        if mean.iter().any(|m| !m.is_finite()) || std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(KilnError::InvalidArgument(format!(
                "normalisation needs finite means and positive standard deviations, got mean \
                 {mean:?} std {std:?}"
            )));
        }
        self.mean = mean;
        self.std = std;
        Ok(self)
    }

    /// Inverts gray levels (`255 - p`) if `yes`.
    pub fn invert(mut self, yes: bool) -> ImageInput {
        self.inverted = yes;
        self
    }

    /// Decodes the image file at `path` (PNG or JPEG) into this input's pixels (see
    /// [`ImageInput::pixels`]). Errors name the file and say whether it could not be opened or
    /// not decoded.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Vec<u8>> {
        let path = path.as_ref();
        let reader = image::ImageReader::open(path)
            .map_err(|e| {
                KilnError::Data(format!("{}: cannot open the image: {e}", path.display()))
            })?
            .with_guessed_format()
            .map_err(|e| {
                KilnError::Data(format!("{}: cannot read the image: {e}", path.display()))
            })?;
        let img = reader.decode().map_err(|e| {
            KilnError::Data(format!(
                "{}: cannot decode the image (PNG and JPEG are supported): {e}",
                path.display()
            ))
        })?;
        Ok(self.pixels(&img))
    }

    /// The pixels of `img` as this input takes them, channel-major (`[C, H, W]`, 0..=255):
    /// resized to `height x width` (bilinear; untouched if it already has that size),
    /// converted to gray (luma) or RGB (alpha dropped), inverted if asked.
    pub fn pixels(&self, img: &DynamicImage) -> Vec<u8> {
        let (w, h) = (self.width as u32, self.height as u32);
        let img = if img.width() == w && img.height() == h {
            img.clone()
        } else {
            img.resize_exact(w, h, FilterType::Triangle)
        };
        let hw = self.height * self.width;
        let mut out = vec![0u8; self.channels * hw];
        if self.channels == 1 {
            out.copy_from_slice(img.to_luma8().as_raw());
        } else {
            for (i, px) in img.to_rgb8().pixels().enumerate() {
                for c in 0..3 {
                    out[c * hw + i] = px.0[c];
                }
            }
        }
        if self.inverted {
            out.iter_mut().for_each(|p| *p = 255 - *p);
        }
        out
    }

    /// One `[N, C, H, W]` f32 tensor of `images` (each `C * H * W` pixels from
    /// [`ImageInput::pixels`]), normalised, on `device`. An error if an image has another
    /// length or there is none.
    pub fn tensor(&self, images: &[Vec<u8>], device: &Device) -> Result<Tensor> {
        let per_image = self.channels * self.height * self.width;
        if images.is_empty() {
            return Err(KilnError::InvalidArgument("no images to classify".into()));
        }
        // One table per channel: the same f32 for the same byte as the MNIST batches make.
        let tables: Vec<Vec<f32>> = (0..self.channels)
            .map(|c| {
                (0..=255u8)
                    .map(|p| (p as f32 / 255.0 - self.mean[c]) / self.std[c])
                    .collect()
            })
            .collect();
        let hw = self.height * self.width;
        let mut values = Vec::with_capacity(images.len() * per_image);
        for (i, img) in images.iter().enumerate() {
            if img.len() != per_image {
                return Err(KilnError::InvalidArgument(format!(
                    "image {i} has {} pixels but a {}x{}x{} input needs {per_image}",
                    img.len(),
                    self.channels,
                    self.height,
                    self.width
                )));
            }
            values.extend(
                img.iter()
                    .enumerate()
                    .map(|(j, &p)| tables[j / hw][p as usize]),
            );
        }
        let shape = [images.len(), self.channels, self.height, self.width];
        Tensor::from_vec(values, shape, device)
    }

    /// Reads and decodes every file of `paths` and makes one batch of them
    /// ([`ImageInput::read`], then [`ImageInput::tensor`]). The first file that fails is the
    /// error, named.
    pub fn load(&self, paths: &[impl AsRef<Path>], device: &Device) -> Result<Tensor> {
        let images = paths
            .iter()
            .map(|p| self.read(p))
            .collect::<Result<Vec<_>>>()?;
        self.tensor(&images, device)
    }
}
