//! Mini-batches of a [`Split`]: an iterator of `(images, labels)` tensors.

use crate::split::Split;
use crate::transform::Transform;
use kiln_core::device::Device;
use kiln_core::dtype::DType;
use kiln_core::error::Result;
use kiln_core::tensor::Tensor;

/// An iterator of mini-batches `(images, labels)` over a [`Split`], made by [`Split::batches`]:
/// images f32 `[B, channels, rows, cols]`, labels i32 `[B]`. Builder methods choose whether the last
/// partial batch is kept, the normalisation, the device the tensors are made on, and an
/// augmentation pipeline the images pass through.
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    split: Split<'a>,
    batch_size: usize,
    next: usize,
    drop_last: bool,
    /// Per channel `(mean, std)` applied after scaling to [0, 1], or none.
    norm: Option<(Vec<f32>, Vec<f32>)>,
    device: Device,
    augment: Option<&'a dyn Transform>,
}

impl<'a> Split<'a> {
    /// Mini-batches of `batch_size` images in this view's order: `(images, labels)` with images
    /// f32 `[B, channels, rows, cols]` scaled to [0, 1] and normalised with the data set's usual
    /// statistics (MNIST's mean 0.1307 and standard deviation 0.3081; CIFAR's per channel, see
    /// [`crate::CIFAR10_MEAN`]), labels i32 `[B]`, made on `Device::cpu()` as host data (they
    /// move to the GPU when they meet a GPU tensor). The last batch may be smaller; see
    /// [`Batches::drop_last`], [`Batches::normalize`], [`Batches::unnormalized`], [`Batches::on`].
    /// Panics if `batch_size` is 0.
    #[track_caller]
    pub fn batches(&self, batch_size: usize) -> Batches<'a> {
        Batches::new(self.clone(), batch_size)
    }
}

impl<'a> Batches<'a> {
    #[track_caller]
    pub(crate) fn new(split: Split<'a>, batch_size: usize) -> Batches<'a> {
        assert!(
            batch_size > 0,
            "Split::batches: batch_size must be at least 1"
        );
        let norm = split.default_norm();
        Batches {
            split,
            batch_size,
            next: 0,
            drop_last: false,
            norm: Some(norm),
            device: Device::cpu(),
            augment: None,
        }
    }
    /// With `true`, a last batch smaller than the batch size is skipped (every batch then has
    /// the same shape, so a training step's plan is replayed for all of them). Default `false`.
    pub fn drop_last(mut self, yes: bool) -> Self {
        self.drop_last = yes;
        self
    }
    /// Pixels become `(p / 255 - mean) / std`, in every channel. The default is the data set's
    /// own: MNIST's 0.1307 and 0.3081 (for Fashion-MNIST, 0.2860 and 0.3530), CIFAR's per
    /// channel. Panics unless `std` is positive and both are finite.
    #[track_caller]
    pub fn normalize(self, mean: f32, std: f32) -> Self {
        let c = self.split.channels();
        self.normalize_channels(&vec![mean; c], &vec![std; c])
    }
    /// Pixels of channel `c` become `(p / 255 - mean[c]) / std[c]`. Panics unless there is one
    /// value per channel, all finite, every std positive.
    #[track_caller]
    pub fn normalize_channels(mut self, mean: &[f32], std: &[f32]) -> Self {
        let c = self.split.channels();
        assert!(
            mean.len() == c && std.len() == c,
            "Batches::normalize: need {c} values each (one per channel), got {} and {}",
            mean.len(),
            std.len()
        );
        assert!(
            mean.iter().all(|m| m.is_finite()) && std.iter().all(|s| s.is_finite() && *s > 0.0),
            "Batches::normalize: need a finite mean and a positive std, got mean {mean:?} std {std:?}"
        );
        self.norm = Some((mean.to_vec(), std.to_vec()));
        self
    }
    /// Pixels become `p / 255`, in [0, 1], with no normalisation.
    pub fn unnormalized(mut self) -> Self {
        self.norm = None;
        self
    }
    /// Makes the batch tensors directly on `device` (default: `Device::cpu()` host data, which
    /// follows the first GPU tensor it meets).
    pub fn on(mut self, device: &Device) -> Self {
        self.device = device.clone();
        self
    }
    /// Passes every batch's images through `augment`, any [`Transform`] (for the built-in
    /// [`crate::Augment`], each batch takes the pipeline's next step, so every epoch draws
    /// new randomness). The augmentation is part of
    /// the lazy graph and runs on the device the images meet (a GPU's, for a model there).
    /// `augment` sees the images as these batches make them, normalised unless
    /// [`Batches::unnormalized`] was called; for zeros that mean black in the crops and turns,
    /// call `unnormalized()` and put the normalisation in the pipeline. Errors if the pipeline's
    /// normalisation does not fit the images' channel count.
    pub fn transform(mut self, augment: &'a dyn Transform) -> Result<Self> {
        let [rows, cols] = self.split.image_dims();
        let channels = self.split.channels();
        augment.check_batch(&[self.batch_size, channels, rows, cols], DType::F32)?;
        self.augment = Some(augment);
        Ok(self)
    }
    /// Number of batches still to come.
    fn remaining(&self) -> usize {
        let left = self.split.len() - self.next;
        if self.drop_last {
            left / self.batch_size
        } else {
            left.div_ceil(self.batch_size)
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = (Tensor, Tensor);

    fn next(&mut self) -> Option<(Tensor, Tensor)> {
        if self.remaining() == 0 {
            return None;
        }
        let b = self.batch_size.min(self.split.len() - self.next);
        let [rows, cols] = self.split.image_dims();
        let channels = self.split.channels();
        // One table lookup per pixel: the same f32 for the same byte, on every machine.
        let tables: Vec<Vec<f32>> = (0..channels)
            .map(|c| {
                (0..=255u8)
                    .map(|p| {
                        let x = p as f32 / 255.0;
                        match &self.norm {
                            Some((mean, std)) => (x - mean[c]) / std[c],
                            None => x,
                        }
                    })
                    .collect()
            })
            .collect();
        let mut images = Vec::with_capacity(b * channels * rows * cols);
        let mut labels = Vec::with_capacity(b);
        for i in self.next..self.next + b {
            for (c, plane) in self.split.image(i).chunks(rows * cols).enumerate() {
                images.extend(plane.iter().map(|&p| tables[c][p as usize]));
            }
            labels.push(self.split.label(i) as i32);
        }
        self.next += b;
        let dims = [b, channels, rows, cols];
        Some(finish_batch(
            images,
            dims,
            labels,
            &self.device,
            self.augment,
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// A batch's tensors: `images` as f32 `dims` (`[B, C, H, W]`) and `labels` as i32 `[B]` on
/// `device`, with the device-side transform applied to the images (whose shape it accepted
/// when it was attached).
pub(crate) fn finish_batch(
    images: Vec<f32>,
    dims: [usize; 4],
    labels: Vec<i32>,
    device: &Device,
    augment: Option<&dyn Transform>,
) -> (Tensor, Tensor) {
    let mut x = Tensor::from_vec(images, dims, device).expect("batch shape");
    if let Some(augment) = augment {
        x = augment
            .apply(&x)
            .unwrap_or_else(|e| panic!("the batches' transform failed: {e}"));
    }
    let y = Tensor::from_vec(labels, [dims[0]], device).expect("batch shape");
    (x, y)
}
