//! Seeded data augmentation of whole image batches on the device: random horizontal flips,
//! random crops with padding, random rotations and scalings, composed into one affine matrix per
//! image and applied in one warp ([`Tensor::affine_sample`]), then a per-channel normalisation
//! fused into the same kernel.

use crate::transform::Transform;
use kiln_core::device::Device;
use kiln_core::dtype::DType;
use kiln_core::error::{KilnError, Result};
use kiln_core::rng::philox4x32;
use kiln_core::tensor::{no_grad, Tensor};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// An augmentation pipeline for f32 image batches `[N, C, H, W]`, built like
/// `Augment::new(seed).horizontal_flip(0.5).random_crop(4).rotation(15.0).scale(0.9, 1.1)
/// .normalize(&[0.5], &[0.25])`.
///
/// In training mode (the default) each image of a batch gets its own random parameters, drawn on
/// the device from the counter-based RNG with a key made of the seed and the batch's step, so the
/// same seed and step give the same batch on every device and run, and a new step draws new
/// parameters without a new plan (the key is a runtime value). The geometric transforms act as if
/// applied one after another to the image: crop, then flip, then rotation and scaling about the
/// centre; they are composed into one matrix per image and the batch is warped once (bilinear,
/// zero outside). Crops and flips alone move whole pixels and copy exactly. The normalisation
/// comes last. In evaluation mode ([`Augment::set_training`]) only the normalisation applies.
///
/// [`Augment::apply`] numbers the batches itself (like [`kiln_core::nn::Dropout`]'s masks);
/// [`Augment::apply_at`] takes the step explicitly.
#[derive(Debug)]
pub struct Augment {
    seed: u64,
    flip: f64,
    crop: usize,
    rotation: Option<f64>,
    scale: Option<(f64, f64)>,
    /// Brightness, contrast and saturation amounts.
    jitter: Option<[f64; 3]>,
    norm: Option<(Vec<f32>, Vec<f32>)>,
    training: AtomicBool,
    step: AtomicU64,
}

/// The random parameters of one batch, one value per image (f32 `[N]` each, lazy tensors on the
/// batch's device). Transforms that the pipeline does not have hold their neutral value.
#[derive(Clone, Debug)]
pub struct AugmentParams {
    /// 1 where the image is flipped left to right, else 0.
    pub flip: Tensor,
    /// Crop offset in whole pixels, in `[-padding, padding]`: output pixel `(y, x)` shows what
    /// was at `(y + shift_y, x + shift_x)` (zero where that is outside the image).
    pub shift_x: Tensor,
    /// Crop offset along y, like `shift_x`.
    pub shift_y: Tensor,
    /// Rotation in degrees, counter-clockwise as displayed (y pointing down), about the centre.
    pub angle: Tensor,
    /// Scale factor about the centre (above 1 enlarges the content).
    pub scale: Tensor,
}

fn invalid(msg: String) -> KilnError {
    KilnError::InvalidInput {
        op: "Augment::apply",
        msg,
    }
}

impl Augment {
    /// A pipeline that does nothing yet, in training mode, drawing its randomness from `seed`.
    pub fn new(seed: u64) -> Augment {
        Augment {
            seed,
            flip: 0.0,
            crop: 0,
            rotation: None,
            scale: None,
            jitter: None,
            norm: None,
            training: AtomicBool::new(true),
            step: AtomicU64::new(0),
        }
    }

    /// Flips each image left to right with probability `p` (in [0, 1]).
    #[track_caller]
    pub fn horizontal_flip(mut self, p: f64) -> Augment {
        assert!(
            (0.0..=1.0).contains(&p),
            "Augment::horizontal_flip: p must be in [0, 1], got {p}"
        );
        self.flip = p;
        self
    }

    /// Pads each image by `padding` zero pixels on every side and crops a random window of the
    /// original size: the content moves by a whole number of pixels in `[-padding, padding]`
    /// along each axis (uniformly), with zeros coming in.
    pub fn random_crop(mut self, padding: usize) -> Augment {
        self.crop = padding;
        self
    }

    /// Rotates each image about its centre by an angle uniform in `[-degrees, degrees]`.
    #[track_caller]
    pub fn rotation(mut self, degrees: f64) -> Augment {
        assert!(
            degrees.is_finite() && degrees >= 0.0,
            "Augment::rotation: degrees must be finite and >= 0, got {degrees}"
        );
        self.rotation = Some(degrees);
        self
    }

    /// Scales each image about its centre by a factor uniform in `[lo, hi]` (above 1 enlarges).
    #[track_caller]
    pub fn scale(mut self, lo: f64, hi: f64) -> Augment {
        assert!(
            lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi,
            "Augment::scale: need 0 < lo <= hi, got lo {lo} hi {hi}"
        );
        self.scale = Some((lo, hi));
        self
    }

    /// After the geometry, torchvision's `ColorJitter(brightness, contrast, saturation)` per
    /// image, in this fixed order: each factor is uniform in `[max(0, 1 - v), 1 + v]`;
    /// brightness multiplies, contrast blends with the image's mean grey value, saturation
    /// with each pixel's grey value (0.299 R + 0.587 G + 0.114 B; 3-channel batches only), each
    /// result clamped to [0, 1]. The images must be in [0, 1]: call
    /// [`crate::Batches::unnormalized`] and normalise here. The factors draw from their own
    /// stream, so adding a jitter leaves the geometry of a seed unchanged. Same rule as
    /// [`crate::Compose::color_jitter`] on the host.
    #[track_caller]
    pub fn color_jitter(mut self, brightness: f64, contrast: f64, saturation: f64) -> Augment {
        let v = [brightness, contrast, saturation];
        assert!(
            v.iter().all(|x| x.is_finite() && *x >= 0.0),
            "Augment::color_jitter: need finite amounts >= 0, got {v:?}"
        );
        self.jitter = Some(v);
        self
    }

    /// Last, channel c becomes `(x - mean[c]) / std[c]`. One value of each applies to every
    /// channel. Panics unless both have the same length (at least 1), every std is positive and
    /// all are finite.
    #[track_caller]
    pub fn normalize(mut self, mean: &[f32], std: &[f32]) -> Augment {
        assert!(
            !mean.is_empty()
                && mean.len() == std.len()
                && mean.iter().all(|m| m.is_finite())
                && std.iter().all(|s| s.is_finite() && *s > 0.0),
            "Augment::normalize: need as many finite means as positive stds, got {mean:?} and {std:?}"
        );
        self.norm = Some((mean.to_vec(), std.to_vec()));
        self
    }

    /// Training mode (all transforms, the default) or evaluation mode (normalisation only).
    pub fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed)
    }
    /// True in training mode.
    pub fn is_training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }
    /// The step the next [`Augment::apply`] uses (the number of batches it has augmented).
    pub fn step(&self) -> u64 {
        self.step.load(Ordering::Relaxed)
    }
    /// Sets the step the next [`Augment::apply`] uses (to resume a run).
    pub fn set_step(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed)
    }

    /// True if the pipeline moves pixels (flip, crop, rotation or scaling).
    fn has_geometry(&self) -> bool {
        self.flip > 0.0 || self.crop > 0 || self.rotation.is_some() || self.scale.is_some()
    }

    /// Augments `images` (f32 `[N, C, H, W]`) with the next step's randomness and advances the
    /// step; in evaluation mode only normalises (and leaves the step alone). Returns a lazy
    /// tensor of the same shape on the images' device. Errors if `images` is not a 4-D f32 batch
    /// or the normalisation has neither 1 nor C values.
    pub fn apply(&self, images: &Tensor) -> Result<Tensor> {
        if !self.is_training() {
            return self.apply_at(images, self.step());
        }
        self.check(images)?;
        let step = self.step.fetch_add(1, Ordering::Relaxed);
        self.apply_at(images, step)
    }

    /// Like [`Augment::apply`] with the randomness of `step`, without touching the pipeline's own
    /// step: the same seed and step give the same output.
    pub fn apply_at(&self, images: &Tensor, step: u64) -> Result<Tensor> {
        self.check(images)?;
        let mut x = images.clone();
        if self.is_training() && self.has_geometry() {
            let [n, _, h, w] = <[usize; 4]>::try_from(images.dims()).expect("checked");
            let theta = no_grad(|| self.matrices(n, step, [h, w], images.device()));
            x = x.affine_sample(&theta, [h, w])?;
        }
        if let (true, Some(amounts)) = (self.is_training(), self.jitter) {
            x = self.jitter(&x, amounts, step);
        }
        if let Some((mean, std)) = &self.norm {
            let c = images.dims()[1];
            let per_channel = |v: &[f32]| {
                let parts: Vec<Tensor> = v
                    .iter()
                    .map(|&m| Tensor::full([1], m, images.device()))
                    .collect();
                let refs: Vec<&Tensor> = parts.iter().collect();
                Tensor::cat(&refs, 0).reshape([1, v.len(), 1, 1])
            };
            debug_assert!(mean.len() == 1 || mean.len() == c);
            x = x.sub(&per_channel(mean)).div(&per_channel(std));
        }
        Ok(x)
    }

    fn check(&self, images: &Tensor) -> Result<()> {
        self.check_dims(images.dims(), images.dtype())
    }

    /// Errors unless a batch of `dims` and `dtype` can pass through this pipeline.
    fn check_dims(&self, dims: &[usize], dtype: DType) -> Result<()> {
        if dims.len() != 4 || dtype != DType::F32 {
            return Err(invalid(format!(
                "the images must be an f32 [N, C, H, W] batch, got {dtype} {dims:?}"
            )));
        }
        if let Some((mean, _)) = &self.norm {
            let c = dims[1];
            if mean.len() != 1 && mean.len() != c {
                return Err(invalid(format!(
                    "the normalisation has {} values (one per channel) but the batch {dims:?} \
                     has {c} channels",
                    mean.len()
                )));
            }
        }
        Ok(())
    }

    /// The Philox key of `step`: a hash of the seed and the step, so that nearby seeds do not
    /// share batches (seed s at step 1 is not seed s + 1 at step 0).
    fn key(&self, step: u64) -> u64 {
        let w = philox4x32(
            [step as u32, (step >> 32) as u32, 0x6175_6721, 0],
            [self.seed as u32, (self.seed >> 32) as u32],
        );
        w[0] as u64 | (w[1] as u64) << 32
    }

    /// The colour jitter of [`Augment::color_jitter`] on the batch `x` (`[N, C, H, W]`), its
    /// factors drawn from `Tensor::rand([N, 3])` under a key of its own for `step`.
    fn jitter(&self, x: &Tensor, [b, c, s]: [f64; 3], step: u64) -> Tensor {
        let [n, channels, _, _] = <[usize; 4]>::try_from(x.dims()).expect("checked");
        let key = philox4x32(
            [step as u32, (step >> 32) as u32, 0x6A69_7474, 0],
            [self.seed as u32, (self.seed >> 32) as u32],
        );
        let u = Tensor::rand([n, 3], key[0] as u64 | (key[1] as u64) << 32, x.device());
        let factor = |k: usize, v: f64| {
            let lo = (1.0 - v).max(0.0);
            let f = u.narrow(1, k, 1).reshape([n, 1, 1, 1]);
            f.mul_scalar(1.0 + v - lo).add_scalar(lo)
        };
        // f x + (1 - f) other, clamped to [0, 1].
        let blend = |x: &Tensor, other: &Tensor, f: &Tensor| {
            x.sub(other)
                .mul(f)
                .add(other)
                .maximum_scalar(0.0)
                .minimum_scalar(1.0)
        };
        let grey = |x: &Tensor| {
            if channels != 3 {
                return x.narrow(1, 0, 1);
            }
            let ch = |k: usize, w: f64| x.narrow(1, k, 1).mul_scalar(w);
            ch(0, 0.299).add(&ch(1, 0.587)).add(&ch(2, 0.114))
        };
        let mut x = x.clone();
        if b > 0.0 {
            x = x.mul(&factor(0, b)).maximum_scalar(0.0).minimum_scalar(1.0);
        }
        if c > 0.0 {
            let mean = grey(&x).mean_axes_keepdim(&[1, 2, 3]);
            x = blend(&x, &mean, &factor(1, c));
        }
        if s > 0.0 && channels == 3 {
            let g = grey(&x);
            x = blend(&x, &g, &factor(2, s));
        }
        x
    }

    /// The random parameters of a batch of `n` images at `step`, on `device` (lazy: drawn when
    /// computed). Image i's parameters depend only on the seed, the step and i, not on `n`.
    pub fn params(&self, n: usize, step: u64, device: &Device) -> AugmentParams {
        self.draw(&self.uniforms(n, step, device))
    }

    /// Five uniforms per image (flip, shift x, shift y, angle, scale): f32 `[n, 5]`.
    fn uniforms(&self, n: usize, step: u64, device: &Device) -> Tensor {
        Tensor::rand([n, 5], self.key(step), device)
    }

    /// The parameters made from the uniforms `u`. Every call records new nodes: a matrix entry
    /// that needs a parameter takes its own copy, so that the kernel computing the matrices
    /// recomputes it inline (a few operations) instead of the scheduler giving every shared
    /// value a kernel and a buffer of its own.
    fn draw(&self, u: &Tensor) -> AugmentParams {
        let n = u.dims()[0];
        let col = |k: usize| u.narrow(1, k, 1).reshape([n]);
        let zeros = || Tensor::zeros([n], u.device());
        let flip = if self.flip > 0.0 {
            col(0).lt(&col(0).scalar_like(self.flip)).cast(DType::F32)
        } else {
            zeros()
        };
        let shift = |k: usize| {
            if self.crop == 0 {
                return zeros();
            }
            let p = self.crop as f64;
            // floor(u (2p + 1)) is in 0..=2p; the minimum catches u (2p + 1) rounding up to 2p + 1.
            col(k)
                .mul_scalar(2.0 * p + 1.0)
                .floor()
                .minimum_scalar(2.0 * p)
                .sub_scalar(p)
        };
        let angle = match self.rotation {
            Some(deg) => col(3).mul_scalar(2.0).sub_scalar(1.0).mul_scalar(deg),
            None => zeros(),
        };
        let scale = match self.scale {
            Some((lo, hi)) => col(4).mul_scalar(hi - lo).add_scalar(lo),
            None => zeros().add_scalar(1.0),
        };
        AugmentParams {
            flip,
            shift_x: shift(1),
            shift_y: shift(2),
            angle,
            scale,
        }
    }

    /// Entry `(r, k)`, `k < 2`, of the rotation and scaling `R / s` (new nodes on every call):
    /// the identity when the pipeline has neither.
    fn linear(&self, u: &Tensor, r: usize, k: usize) -> Tensor {
        let n = u.dims()[0];
        if self.rotation.is_none() && self.scale.is_none() {
            return Tensor::full([n], if r == k { 1.0 } else { 0.0 }, u.device());
        }
        let p = self.draw(u);
        let rad = p.angle.mul_scalar(std::f64::consts::PI / 180.0);
        // Content turned counter-clockwise on screen reads the input turned clockwise:
        // [[cos, -sin], [sin, cos]] / s.
        let v = match (r, k) {
            (0, 0) | (1, 1) => rad.cos(),
            (0, _) => rad.sin().neg(),
            _ => rad.sin(),
        };
        v.div(&p.scale)
    }

    /// The matrices of [`Tensor::affine_sample`] (f32 `[N, 2, 3]`) that apply the parameters of
    /// `step` ([`Augment::params`]) to `n` images of size `hw = [H, W]`: output pixel p reads
    /// the input at `F(c + R (p - c) / s) + shift`, where c is the centre
    /// `((W - 1) / 2, (H - 1) / 2)`, R the inverse rotation, s the scale and F the flip
    /// `x -> W - 1 - x`. Only the transforms the pipeline has enter the arithmetic, so crops and
    /// flips alone give whole-number matrices. One small elementwise kernel computes them.
    pub fn matrices(&self, n: usize, step: u64, hw: [usize; 2], device: &Device) -> Tensor {
        let u = self.uniforms(n, step, device);
        let centre = [(hw[1] as f64 - 1.0) / 2.0, (hw[0] as f64 - 1.0) / 2.0];
        // Entry (r, k) of the rotation and scaling about the centre: [R / s | c - R c / s].
        let a = |r: usize, k: usize| {
            if k < 2 {
                return self.linear(&u, r, k);
            }
            let rc = self
                .linear(&u, r, 0)
                .mul_scalar(centre[0])
                .add(&self.linear(&u, r, 1).mul_scalar(centre[1]));
            rc.neg().add_scalar(centre[r])
        };
        // The flip mirrors the first row about the centre, then the crop shifts.
        let row0 = |k: usize| {
            let mut m = a(0, k);
            if self.flip > 0.0 {
                let sign = self.draw(&u).flip.mul_scalar(-2.0).add_scalar(1.0);
                m = m.mul(&sign);
                if k == 2 {
                    m = m.add(&self.draw(&u).flip.mul_scalar(hw[1] as f64 - 1.0));
                }
            }
            if k == 2 && self.crop > 0 {
                m = m.add(&self.draw(&u).shift_x);
            }
            m
        };
        let row1 = |k: usize| {
            let m = a(1, k);
            if k == 2 && self.crop > 0 {
                m.add(&self.draw(&u).shift_y)
            } else {
                m
            }
        };
        let cols: Vec<Tensor> = [row0(0), row0(1), row0(2), row1(0), row1(1), row1(2)]
            .iter()
            .map(|t| t.reshape([n, 1]))
            .collect();
        let refs: Vec<&Tensor> = cols.iter().collect();
        Tensor::cat(&refs, 1).reshape([n, 2, 3])
    }
}

impl Transform for Augment {
    /// [`Augment::apply`].
    fn apply(&self, images: &Tensor) -> Result<Tensor> {
        Augment::apply(self, images)
    }
    fn check_batch(&self, dims: &[usize], dtype: DType) -> Result<()> {
        self.check_dims(dims, dtype)
    }
}
