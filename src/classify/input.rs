//! An image file made into a model's input tensor.

use crate::{Device, KilnError, Result, Tensor};
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Limits};
use std::io::{BufRead, Seek};
use std::path::Path;

/// The largest height or width of a model's input that [`ImageInput`] makes: 4096 (a 3-channel
/// 4096x4096 input is 192 MiB of f32 per image). Sizes come from checkpoints and command lines,
/// so they are checked before anything is allocated.
pub const MAX_INPUT_SIDE: usize = 4096;

/// The largest width or height of an image file [`ImageInput`] decodes: 16384 pixels.
pub const MAX_IMAGE_SIDE: u32 = 16384;

/// The most bytes decoding one image file may allocate: 512 MiB (the `image` crate's default).
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;

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

    /// Checks that this input's size is at most [`MAX_INPUT_SIDE`] on each side and that a
    /// batch of `images` of it fits in one buffer of `device` (its largest storage binding), so
    /// that a size from a checkpoint or a command line is refused before anything of that size
    /// is allocated. An error names the size and the limit it passes.
    pub fn check(&self, images: usize, device: &Device) -> Result<()> {
        self.check_size()?;
        let bytes = (images as u64)
            .saturating_mul((self.channels * self.height * self.width) as u64)
            .saturating_mul(4);
        let most = device.backend().max_binding_bytes();
        if bytes > most {
            return Err(KilnError::InvalidArgument(format!(
                "{images} images of {}x{}x{} take {bytes} bytes of f32, more than the {most} \
                 bytes of one buffer on {}; classify fewer images at once or use a smaller size",
                self.channels,
                self.height,
                self.width,
                device.name()
            )));
        }
        Ok(())
    }

    /// The size check of [`ImageInput::check`], without a device.
    fn check_size(&self) -> Result<()> {
        if self.height > MAX_INPUT_SIDE || self.width > MAX_INPUT_SIDE {
            return Err(KilnError::InvalidArgument(format!(
                "an input size of {}x{} is larger than kiln::classify makes ({MAX_INPUT_SIDE} \
                 pixels a side at most); use the size the model was trained with",
                self.height, self.width
            )));
        }
        Ok(())
    }

    /// Decodes the image file at `path` (PNG or JPEG) into this input's pixels (see
    /// [`ImageInput::pixels`]). Errors name the file and say whether it could not be opened or
    /// not decoded, or was too large.
    ///
    /// Limit: the file may declare at most [`MAX_IMAGE_SIDE`] pixels a side, and decoding it
    /// may allocate at most [`MAX_IMAGE_BYTES`] (the header's size is checked before the pixels
    /// are read), whatever the file's size; this input's own size is checked first
    /// ([`MAX_INPUT_SIDE`]).
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Vec<u8>> {
        let path = path.as_ref();
        self.check_size()?;
        let reader = ImageReader::open(path).map_err(|e| KilnError::Io {
            msg: format!("{}: cannot open the image: {e}", path.display()),
            source: e,
        })?;
        self.decode_from(reader, &path.display().to_string())
    }

    /// Decodes the bytes of an image file (PNG or JPEG) into this input's pixels, as
    /// [`ImageInput::read`] decodes a file, with the same limits. Errors begin with `image
    /// bytes:`.
    pub fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        self.check_size()?;
        let reader = ImageReader::new(std::io::Cursor::new(bytes));
        self.decode_from(reader, "image bytes")
    }

    /// Guesses the format, decodes with kiln's limits and makes the pixels; errors name `source`.
    fn decode_from<R: BufRead + Seek>(
        &self,
        reader: ImageReader<R>,
        source: &str,
    ) -> Result<Vec<u8>> {
        let mut reader = reader.with_guessed_format().map_err(|e| KilnError::Io {
            msg: format!("{source}: cannot read the image: {e}"),
            source: e,
        })?;
        let mut limits = Limits::default();
        limits.max_image_width = Some(MAX_IMAGE_SIDE);
        limits.max_image_height = Some(MAX_IMAGE_SIDE);
        limits.max_alloc = Some(MAX_IMAGE_BYTES);
        reader.limits(limits);
        let img = reader.decode().map_err(|e| {
            let why = match e {
                image::ImageError::Limits(_) => format!(
                    "it is too large to decode ({e}; kiln decodes images of at most \
                     {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels and {MAX_IMAGE_BYTES} bytes)"
                ),
                _ => format!("cannot decode the image (PNG and JPEG are supported): {e}"),
            };
            let msg = format!("{source}: {why}");
            match e {
                image::ImageError::IoError(source) => KilnError::Io { msg, source },
                other => KilnError::Format {
                    msg,
                    source: Box::new(other),
                },
            }
        })?;
        self.pixels(&img)
    }

    /// The pixels of `img` as this input takes them, channel-major (`[C, H, W]`, 0..=255):
    /// resized to `height x width` (bilinear; untouched if it already has that size),
    /// converted to gray (luma) or RGB (alpha dropped), inverted if asked. An error if this
    /// input is larger than [`MAX_INPUT_SIDE`] a side.
    pub fn pixels(&self, img: &DynamicImage) -> Result<Vec<u8>> {
        self.check_size()?;
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
        Ok(out)
    }

    /// One `[N, C, H, W]` f32 tensor of `images` (each `C * H * W` pixels from
    /// [`ImageInput::pixels`]), normalised, on `device`. An error if an image has another
    /// length or there is none.
    pub fn tensor(&self, images: &[Vec<u8>], device: &Device) -> Result<Tensor> {
        if images.is_empty() {
            return Err(KilnError::InvalidArgument("no images to classify".into()));
        }
        self.check(images.len(), device)?;
        let per_image = self.channels * self.height * self.width;
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
    /// error, named. The batch's size is checked ([`ImageInput::check`]) before any file is read.
    pub fn load(&self, paths: &[impl AsRef<Path>], device: &Device) -> Result<Tensor> {
        self.check(paths.len(), device)?;
        let images = paths
            .iter()
            .map(|p| self.read(p))
            .collect::<Result<Vec<_>>>()?;
        self.tensor(&images, device)
    }
}
