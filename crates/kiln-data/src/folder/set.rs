//! [`ImageSet`]: the training or validation images of an [`super::ImageFolder`], in some order.

use super::loader::{ImageBatches, Stream};
use super::Inner;
use std::path::Path;
use std::sync::Arc;

/// A view of an image folder's training or validation images in some order, like
/// [`crate::Split`] for MNIST: cheap to make, [`ImageSet::shuffled`] for an epoch's order,
/// [`ImageSet::batches`] for the mini-batches.
#[derive(Clone, Debug)]
pub struct ImageSet {
    pub(crate) inner: Arc<Inner>,
    /// Indices of the folder's samples, in order.
    pub(crate) order: Vec<u32>,
    /// The seed of the last shuffle (0 for file order): the random CPU transforms draw from it,
    /// so each epoch's shuffle also gives new crops.
    pub(crate) stream: u64,
}

impl ImageSet {
    pub(crate) fn new(inner: Arc<Inner>, range: std::ops::Range<usize>) -> ImageSet {
        ImageSet {
            inner,
            order: range.map(|i| i as u32).collect(),
            stream: 0,
        }
    }
    /// Number of images (files that failed to decode while loading are still counted here;
    /// the batches skip them).
    pub fn len(&self) -> usize {
        self.order.len()
    }
    /// True if there are no images.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
    /// The file of image `i` of this view.
    #[track_caller]
    pub fn path(&self, i: usize) -> &Path {
        self.inner.path(self.order[i] as usize)
    }
    /// The label (class index) of image `i` of this view.
    #[track_caller]
    pub fn label(&self, i: usize) -> u32 {
        self.inner.label(self.order[i] as usize)
    }
    /// The labels of this view, in its order.
    pub fn labels(&self) -> Vec<u32> {
        (0..self.len()).map(|i| self.label(i)).collect()
    }
    /// This view in a random order that depends only on `seed` (the Fisher-Yates shuffle of
    /// [`crate::Split::shuffled`]); the random CPU transforms of its batches draw from `seed`.
    pub fn shuffled(&self, seed: u64) -> ImageSet {
        ImageSet {
            inner: self.inner.clone(),
            order: crate::split::shuffled_order(&self.order, seed),
            stream: seed,
        }
    }
    /// The first `n` images of this view (all of them if it holds fewer).
    pub fn take(&self, n: usize) -> ImageSet {
        ImageSet {
            order: self.order[..n.min(self.len())].to_vec(),
            ..self.clone()
        }
    }
    /// This view without its first `n` images.
    pub fn skip(&self, n: usize) -> ImageSet {
        ImageSet {
            order: self.order[n.min(self.len())..].to_vec(),
            ..self.clone()
        }
    }
    /// Mini-batches of `batch_size` images in this view's order, decoded and resized on the
    /// folder's threads ahead of the consumer: `(images, labels)` with images f32
    /// `[B, channels, height, width]` in [0, 1] (see [`ImageBatches::normalize`]) and labels i32
    /// `[B]`, the form of [`crate::Batches`]. Files that cannot be decoded are skipped (the
    /// batch is filled from the next files). Panics if `batch_size` is 0.
    #[track_caller]
    pub fn batches<'a>(&self, batch_size: usize) -> ImageBatches<'a> {
        ImageBatches::new(self.clone(), batch_size)
    }
    /// The mean and standard deviation of each channel over this view's images as its batches
    /// give them without normalisation (decoded and resized to the image size), for
    /// [`ImageBatches::normalize`]. The std is at least 1e-6; `([0; C], [1; C])` for an empty view.
    pub fn mean_std(&self) -> (Vec<f32>, Vec<f32>) {
        let c = self.inner.options().channels;
        let (mut sum, mut sq, mut n) = (vec![0f64; c], vec![0f64; c], 0usize);
        let mut stream = Stream::start(self, None, 1);
        while let Some((_, image)) = stream.next_image() {
            let plane = image.height * image.width;
            for ch in 0..c {
                for &v in image.plane(ch) {
                    sum[ch] += v as f64;
                    sq[ch] += (v as f64) * (v as f64);
                }
            }
            n += plane;
        }
        if n == 0 {
            return (vec![0.0; c], vec![1.0; c]);
        }
        let mean: Vec<f32> = sum.iter().map(|s| (s / n as f64) as f32).collect();
        let std = (0..c)
            .map(|ch| {
                let m = sum[ch] / n as f64;
                ((sq[ch] / n as f64 - m * m).max(0.0).sqrt() as f32).max(1e-6)
            })
            .collect();
        (mean, std)
    }
}
