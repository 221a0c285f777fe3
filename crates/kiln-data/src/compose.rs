//! [`Compose`]: seeded transforms of one picture at a time on the host, composed like
//! torchvision's `transforms.Compose`. They run on an image folder's decode threads
//! ([`crate::ImageBatches::cpu_transform`]), where pictures still have their own sizes; the
//! batch-wide augmentation on the device is [`crate::Augment`].
//!
//! ```
//! use kiln_data::{Compose, Image};
//! let train = Compose::new(7)
//!     .random_resized_crop(32, 32, (0.5, 1.0), (3.0 / 4.0, 4.0 / 3.0))
//!     .horizontal_flip(0.5)
//!     .color_jitter(0.2, 0.2, 0.2);
//! let eval = Compose::new(0).resize(36).center_crop(32, 32);
//! let photo = Image::zeros(3, 48, 64);
//! assert_eq!(eval.apply(&photo, 0, 0).height, 32);
//! assert_eq!(train.apply(&photo, 1, 5), train.apply(&photo, 1, 5)); // seeded
//! ```

use crate::pixels::Image;
use kiln_core::rng::philox4x32;

/// One transform of a [`Compose`].
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Resize(usize),
    CenterCrop(usize, usize),
    RandomResizedCrop {
        size: [usize; 2],
        scale: (f64, f64),
        ratio: (f64, f64),
    },
    HorizontalFlip(f64),
    Rotation(f64),
    ColorJitter([f64; 3]),
    Normalize(Vec<f32>, Vec<f32>),
}

/// A list of transforms applied in the order they were added, each image drawing its random
/// parameters from the seed, a stream (an image folder passes its shuffle seed, so each epoch
/// draws anew) and the image's index: the same three give the same output on every machine,
/// whatever thread runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Compose {
    seed: u64,
    steps: Vec<Step>,
}

/// The random numbers of one image: Philox4x32-10 with a key made of the seed and the stream,
/// and a counter made of the image index, the step and the draw.
struct Draws {
    key: [u32; 2],
    index: u64,
    step: u32,
    draw: u32,
}

impl Draws {
    /// A uniform value in [0, 1).
    fn uniform(&mut self) -> f64 {
        let c = [
            self.index as u32,
            (self.index >> 32) as u32,
            self.step,
            self.draw,
        ];
        self.draw += 1;
        let w = philox4x32(c, self.key);
        (((w[0] as u64) << 21) ^ (w[1] as u64 >> 11)) as f64 / (1u64 << 53) as f64
    }
    /// A uniform value in [lo, hi).
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    /// A uniform integer in 0..=n.
    fn upto(&mut self, n: usize) -> usize {
        ((self.uniform() * (n as f64 + 1.0)) as usize).min(n)
    }
}

impl Compose {
    /// No transform yet; random ones draw from `seed`.
    pub fn new(seed: u64) -> Compose {
        Compose {
            seed,
            steps: Vec::new(),
        }
    }
    /// True if no transform was added.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
    /// Scales the image so that its shorter side is `size` pixels, keeping the aspect ratio
    /// (the longer side is `size * long / short`, truncated, as torchvision's `Resize(int)`).
    /// Panics on 0.
    #[track_caller]
    pub fn resize(mut self, size: usize) -> Compose {
        assert!(size > 0, "Compose::resize: the size must be at least 1");
        self.steps.push(Step::Resize(size));
        self
    }
    /// Cuts the central `height x width` rectangle (its top row is
    /// `round((H - height) / 2)`, halves rounded to even, as torchvision); an image smaller
    /// than that is padded with zeros first. Panics on 0.
    #[track_caller]
    pub fn center_crop(mut self, height: usize, width: usize) -> Compose {
        assert!(
            height > 0 && width > 0,
            "Compose::center_crop: need at least 1x1"
        );
        self.steps.push(Step::CenterCrop(height, width));
        self
    }
    /// torchvision's `RandomResizedCrop`: a random rectangle covering a fraction in `scale` of
    /// the image's area with an aspect ratio (width / height) log-uniform in `ratio`, scaled to
    /// `height x width`. After ten draws that do not fit, the central crop of the nearest
    /// allowed ratio. Panics unless `0 < scale.0 <= scale.1 <= 1` and `0 < ratio.0 <= ratio.1`.
    #[track_caller]
    pub fn random_resized_crop(
        mut self,
        height: usize,
        width: usize,
        scale: (f64, f64),
        ratio: (f64, f64),
    ) -> Compose {
        assert!(
            height > 0 && width > 0,
            "Compose::random_resized_crop: need at least 1x1"
        );
        assert!(
            0.0 < scale.0 && scale.0 <= scale.1 && scale.1 <= 1.0,
            "Compose::random_resized_crop: need 0 < scale.0 <= scale.1 <= 1, got {scale:?}"
        );
        assert!(
            0.0 < ratio.0 && ratio.0 <= ratio.1 && ratio.1.is_finite(),
            "Compose::random_resized_crop: need 0 < ratio.0 <= ratio.1, got {ratio:?}"
        );
        self.steps.push(Step::RandomResizedCrop {
            size: [height, width],
            scale,
            ratio,
        });
        self
    }
    /// Mirrors the image left to right with probability `p` (in [0, 1]).
    #[track_caller]
    pub fn horizontal_flip(mut self, p: f64) -> Compose {
        assert!(
            (0.0..=1.0).contains(&p),
            "Compose::horizontal_flip: p must be in [0, 1], got {p}"
        );
        self.steps.push(Step::HorizontalFlip(p));
        self
    }
    /// Rotates the image about its centre by an angle uniform in `[-degrees, degrees]`,
    /// counter-clockwise as displayed for a positive angle (as [`crate::Augment::rotation`]),
    /// bilinear, zeros coming in at the corners.
    #[track_caller]
    pub fn rotation(mut self, degrees: f64) -> Compose {
        assert!(
            degrees.is_finite() && degrees >= 0.0,
            "Compose::rotation: degrees must be finite and >= 0, got {degrees}"
        );
        self.steps.push(Step::Rotation(degrees));
        self
    }
    /// torchvision's `ColorJitter(brightness, contrast, saturation)` in this fixed order: each
    /// factor is uniform in `[max(0, 1 - v), 1 + v]`; brightness multiplies, contrast blends
    /// with the mean grey value, saturation with each pixel's grey value (RGB only), each
    /// result clamped to [0, 1]. Values must be in [0, 1] (before any normalisation).
    #[track_caller]
    pub fn color_jitter(mut self, brightness: f64, contrast: f64, saturation: f64) -> Compose {
        let v = [brightness, contrast, saturation];
        assert!(
            v.iter().all(|x| x.is_finite() && *x >= 0.0),
            "Compose::color_jitter: need finite amounts >= 0, got {v:?}"
        );
        self.steps.push(Step::ColorJitter(v));
        self
    }
    /// Channel c becomes `(x - mean[c]) / std[c]`; one value applies to every channel. Use
    /// given statistics or measured ones ([`crate::ImageSet::mean_std`],
    /// [`crate::Split::channel_mean_std`]). Panics unless both have the same length (at least
    /// 1), all finite, every std positive.
    #[track_caller]
    pub fn normalize(mut self, mean: &[f32], std: &[f32]) -> Compose {
        assert!(
            !mean.is_empty()
                && mean.len() == std.len()
                && mean.iter().all(|m| m.is_finite())
                && std.iter().all(|s| s.is_finite() && *s > 0.0),
            "Compose::normalize: need as many finite means as positive stds, got {mean:?} and {std:?}"
        );
        self.steps
            .push(Step::Normalize(mean.to_vec(), std.to_vec()));
        self
    }

    /// `image` through every transform, with the random draws of (`stream`, `index`). Panics
    /// if a normalisation has neither 1 nor the image's channel count of values.
    #[track_caller]
    pub fn apply(&self, image: &Image, stream: u64, index: u64) -> Image {
        let key = philox4x32(
            [stream as u32, (stream >> 32) as u32, 0x636F_6D70, 0],
            [self.seed as u32, (self.seed >> 32) as u32],
        );
        let mut draws = Draws {
            key: [key[0], key[1]],
            index,
            step: 0,
            draw: 0,
        };
        let mut x = image.clone();
        for (k, step) in self.steps.iter().enumerate() {
            draws.step = k as u32;
            draws.draw = 0;
            x = step.apply(x, &mut draws);
        }
        x
    }
}

impl Step {
    fn apply(&self, x: Image, r: &mut Draws) -> Image {
        match self {
            Step::Resize(size) => {
                let (h, w) = (x.height, x.width);
                let long =
                    |l: usize, s: usize| ((*size as f64 * l as f64 / s as f64) as usize).max(1);
                if h <= w {
                    x.resize(*size, long(w, h))
                } else {
                    x.resize(long(h, w), *size)
                }
            }
            Step::CenterCrop(h, w) => {
                let top = ((x.height as f64 - *h as f64) / 2.0).round_ties_even() as isize;
                let left = ((x.width as f64 - *w as f64) / 2.0).round_ties_even() as isize;
                crop_padded(&x, top, left, *h, *w)
            }
            Step::RandomResizedCrop { size, scale, ratio } => {
                let (top, left, h, w) = crop_box(x.height, x.width, *scale, *ratio, r);
                x.crop(top, left, h, w).resize(size[0], size[1])
            }
            Step::HorizontalFlip(p) => {
                if r.uniform() < *p {
                    flip(&x)
                } else {
                    x
                }
            }
            Step::Rotation(deg) => rotate(&x, r.between(-deg, *deg)),
            Step::ColorJitter([b, c, s]) => {
                let mut factor = |v: f64| r.between((1.0 - v).max(0.0), 1.0 + v) as f32;
                let (fb, fc, fs) = (factor(*b), factor(*c), factor(*s));
                jitter(x, fb, fc, fs)
            }
            Step::Normalize(mean, std) => normalize(x, mean, std),
        }
    }
}

/// The `h x w` rectangle at (`top`, `left`), which may reach outside `x`: zeros there.
fn crop_padded(x: &Image, top: isize, left: isize, h: usize, w: usize) -> Image {
    if top >= 0 && left >= 0 && top as usize + h <= x.height && left as usize + w <= x.width {
        return x.crop(top as usize, left as usize, h, w);
    }
    let mut out = Image::zeros(x.channels, h, w);
    for c in 0..x.channels {
        for y in 0..h {
            for xx in 0..w {
                let (sy, sx) = (y as isize + top, xx as isize + left);
                if sy >= 0 && sx >= 0 && (sy as usize) < x.height && (sx as usize) < x.width {
                    out.data[(c * h + y) * w + xx] = x.at(c, sy as usize, sx as usize);
                }
            }
        }
    }
    out
}

/// torchvision's `RandomResizedCrop.get_params`: `(top, left, height, width)`.
fn crop_box(
    height: usize,
    width: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    r: &mut Draws,
) -> (usize, usize, usize, usize) {
    let area = (height * width) as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * r.between(scale.0, scale.1);
        let aspect = r.between(lr0, lr1).exp();
        let w = (target * aspect).sqrt().round() as usize;
        let h = (target / aspect).sqrt().round() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = r.upto(height - h);
            let left = r.upto(width - w);
            return (top, left, h, w);
        }
    }
    // Fallback: the central crop of the nearest allowed ratio.
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0 {
        (
            width,
            ((width as f64 / ratio.0).round() as usize).clamp(1, height),
        )
    } else if in_ratio > ratio.1 {
        (
            ((height as f64 * ratio.1).round() as usize).clamp(1, width),
            height,
        )
    } else {
        (width, height)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// `x` mirrored left to right.
fn flip(x: &Image) -> Image {
    let mut out = x.clone();
    for row in out.data.chunks_mut(x.width) {
        row.reverse();
    }
    out
}

/// `x` turned by `degrees` about its centre (counter-clockwise as displayed), bilinear, zeros
/// outside.
fn rotate(x: &Image, degrees: f64) -> Image {
    if degrees == 0.0 {
        return x.clone();
    }
    let (h, w) = (x.height, x.width);
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let mut out = Image::zeros(x.channels, h, w);
    for y in 0..h {
        for xx in 0..w {
            let (dx, dy) = (xx as f64 - cx, y as f64 - cy);
            // Content turned counter-clockwise on screen reads the input turned clockwise.
            let sx = cx + cos * dx - sin * dy;
            let sy = cy + sin * dx + cos * dy;
            for c in 0..x.channels {
                out.data[(c * h + y) * w + xx] = bilinear(x.plane(c), h, w, sx, sy);
            }
        }
    }
    out
}

/// The plane's value at (`x`, `y`) by bilinear interpolation, zero outside.
fn bilinear(plane: &[f32], h: usize, w: usize, x: f64, y: f64) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |yy: f64, xx: f64| {
        if yy < 0.0 || xx < 0.0 || yy >= h as f64 || xx >= w as f64 {
            0.0
        } else {
            plane[yy as usize * w + xx as usize] as f64
        }
    };
    let v = at(y0, x0) * (1.0 - fx) * (1.0 - fy)
        + at(y0, x0 + 1.0) * fx * (1.0 - fy)
        + at(y0 + 1.0, x0) * (1.0 - fx) * fy
        + at(y0 + 1.0, x0 + 1.0) * fx * fy;
    v as f32
}

/// The grey value of each pixel (ITU-R 601: 0.299 R + 0.587 G + 0.114 B; the plane itself
/// for one channel).
fn grey(x: &Image) -> Vec<f32> {
    if x.channels != 3 {
        return x.plane(0).to_vec();
    }
    let (r, g, b) = (x.plane(0), x.plane(1), x.plane(2));
    (0..r.len())
        .map(|i| 0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i])
        .collect()
}

/// Brightness, contrast and saturation by the factors `b`, `c`, `s`, each clamped to [0, 1].
fn jitter(mut x: Image, b: f32, c: f32, s: f32) -> Image {
    let blend = |v: f32, other: f32, f: f32| (f * v + (1.0 - f) * other).clamp(0.0, 1.0);
    x.data.iter_mut().for_each(|v| *v = blend(*v, 0.0, b));
    let g = grey(&x);
    let mean = g.iter().map(|&v| v as f64).sum::<f64>() as f32 / g.len().max(1) as f32;
    x.data.iter_mut().for_each(|v| *v = blend(*v, mean, c));
    if x.channels == 3 {
        let g = grey(&x);
        let plane = g.len();
        for (i, v) in x.data.iter_mut().enumerate() {
            *v = blend(*v, g[i % plane], s);
        }
    }
    x
}

/// Channel c of `x` becomes `(v - mean[c]) / std[c]` (one value for all channels).
#[track_caller]
fn normalize(mut x: Image, mean: &[f32], std: &[f32]) -> Image {
    let channels = x.channels;
    assert!(
        mean.len() == 1 || mean.len() == channels,
        "Compose::normalize: {} values for an image of {channels} channels",
        mean.len()
    );
    let plane = x.height * x.width;
    for (c, values) in x.data.chunks_mut(plane.max(1)).enumerate() {
        let k = if mean.len() == 1 { 0 } else { c };
        values.iter_mut().for_each(|v| *v = (*v - mean[k]) / std[k]);
    }
    x
}
