//! A labelled image set held on the host (`SplitData`, made by the MNIST and CIFAR readers) and
//! views of it in some order ([`Split`]), which [`crate::Batches`] cuts into mini-batches.

use kiln_core::rng::philox4x32;
use std::path::PathBuf;

/// One split (train or test) as read from disk.
#[derive(Clone)]
pub(crate) struct SplitData {
    /// `n * channels * rows * cols` pixels, image after image, each channel-major (planes of
    /// row-major pixels).
    pub(crate) images: Vec<u8>,
    /// `n` labels.
    pub(crate) labels: Vec<u8>,
    /// 1 (grey) or 3 (RGB).
    pub(crate) channels: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// The per-channel `(mean, std)` that [`crate::Batches`] normalises with by default.
    pub(crate) norm: (Vec<f32>, Vec<f32>),
    /// The label file, for errors.
    pub(crate) label_path: PathBuf,
}

impl std::fmt::Debug for SplitData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.labels.len();
        if self.channels == 1 {
            write!(f, "{n} images of {}x{}", self.rows, self.cols)
        } else {
            write!(
                f,
                "{n} images of {}x{}x{}",
                self.channels, self.rows, self.cols
            )
        }
    }
}

/// A view of (part of) one split, in some order: cheap to make, borrows the pixels.
/// Images are u8 `[channels, rows, cols]` (1x28x28 for MNIST, 3x32x32 for CIFAR), labels u8.
#[derive(Clone)]
pub struct Split<'a> {
    pub(crate) data: &'a SplitData,
    /// Which records of `data`, in order.
    pub(crate) order: Vec<u32>,
}

impl std::fmt::Debug for Split<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Split({} of {:?})", self.len(), self.data)
    }
}

impl<'a> Split<'a> {
    pub(crate) fn whole(data: &'a SplitData) -> Split<'a> {
        Split {
            data,
            order: (0..data.labels.len() as u32).collect(),
        }
    }
    /// Number of images.
    pub fn len(&self) -> usize {
        self.order.len()
    }
    /// True if there are no images.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
    /// Image height and width (`[28, 28]` for MNIST).
    pub fn image_dims(&self) -> [usize; 2] {
        [self.data.rows, self.data.cols]
    }
    /// The per-channel `(mean, std)` that batches normalise with unless told otherwise.
    pub(crate) fn default_norm(&self) -> (Vec<f32>, Vec<f32>) {
        self.data.norm.clone()
    }
    /// Colour channels per image: 1 (MNIST) or 3 (CIFAR).
    pub fn channels(&self) -> usize {
        self.data.channels
    }
    /// The pixels of image `i` of this view (channel after channel, each row-major, 0..=255).
    #[track_caller]
    pub fn image(&self, i: usize) -> &'a [u8] {
        let size = self.data.channels * self.data.rows * self.data.cols;
        let k = self.order[i] as usize;
        &self.data.images[k * size..(k + 1) * size]
    }
    /// The label of image `i` of this view.
    #[track_caller]
    pub fn label(&self, i: usize) -> u8 {
        self.data.labels[self.order[i] as usize]
    }
    /// The labels of this view, in its order.
    pub fn labels(&self) -> Vec<u8> {
        self.order
            .iter()
            .map(|&k| self.data.labels[k as usize])
            .collect()
    }
    /// The mean and standard deviation of every pixel of this view, scaled to [0, 1] (for
    /// [`crate::Batches::normalize`]; MNIST's training set gives about 0.1307 and 0.3081). `(0, 1)`
    /// for an empty view; the std is at least 1e-6 (an image set of one colour).
    pub fn pixel_mean_std(&self) -> (f32, f32) {
        let mut counts = [0u64; 256];
        for i in 0..self.len() {
            for &p in self.image(i) {
                counts[p as usize] += 1;
            }
        }
        mean_std(&counts)
    }
    /// [`Split::pixel_mean_std`] of each channel on its own (for
    /// [`crate::Batches::normalize_channels`]).
    pub fn channel_mean_std(&self) -> (Vec<f32>, Vec<f32>) {
        let plane = self.data.rows * self.data.cols;
        let mut counts = vec![[0u64; 256]; self.channels()];
        for i in 0..self.len() {
            for (c, pixels) in self.image(i).chunks(plane).enumerate() {
                for &p in pixels {
                    counts[c][p as usize] += 1;
                }
            }
        }
        counts.iter().map(mean_std).unzip()
    }
    /// This view in a random order that depends only on `seed` (and the view's order): the same
    /// seed gives the same order on every machine and every run. The permutation is a
    /// Fisher-Yates shuffle whose step `i` (from the last index down to 1) swaps `i` with
    /// `j = floor(r * (i + 1) / 2^64)`, where `r` is the 64-bit word `(w0 << 32) | w1` of
    /// Philox4x32-10 ([`kiln_core::rng::philox4x32`]) with key `seed` and counter `(i, 0x53485546, 0, 0)`.
    pub fn shuffled(&self, seed: u64) -> Split<'a> {
        let mut order = self.order.clone();
        let key = [seed as u32, (seed >> 32) as u32];
        for i in (1..order.len()).rev() {
            let w = philox4x32([i as u32, 0x5348_5546, 0, 0], key);
            let r = ((w[0] as u64) << 32) | w[1] as u64;
            let j = ((r as u128 * (i as u128 + 1)) >> 64) as usize;
            order.swap(i, j);
        }
        Split {
            data: self.data,
            order,
        }
    }
    /// Rank `rank`'s part of this view when `size` processes share it (data-parallel training,
    /// PyTorch's `DistributedSampler`): positions `rank, rank + size, rank + 2 size, ..`, so the
    /// parts are disjoint and together cover the view. With `pad` every part has
    /// `ceil(len / size)` images, the view's first images repeated to fill the last round (as
    /// `DistributedSampler(drop_last=False)`); without, every part has `floor(len / size)` and
    /// the tail is dropped. Shard a shuffled view (`shuffled(epoch).shard(rank, size, true)`) with
    /// the same seed on every rank. Panics unless `rank < size`.
    #[track_caller]
    pub fn shard(&self, rank: usize, size: usize, pad: bool) -> Split<'a> {
        assert!(
            rank < size,
            "Split::shard: rank {rank} is not below size {size}"
        );
        let len = self.order.len();
        let each = if pad { len.div_ceil(size) } else { len / size };
        // Position i of the padded view is position i % len of this one.
        let order = (0..each)
            .map(|k| self.order[(rank + k * size) % len])
            .collect();
        Split {
            data: self.data,
            order,
        }
    }
    /// The first `n` images of this view (all of them if it holds fewer).
    pub fn take(&self, n: usize) -> Split<'a> {
        Split {
            data: self.data,
            order: self.order[..n.min(self.len())].to_vec(),
        }
    }
    /// This view without its first `n` images (empty if it holds fewer); with [`Split::take`], a
    /// validation split: `train.take(7000)` and `train.skip(7000)`.
    pub fn skip(&self, n: usize) -> Split<'a> {
        Split {
            data: self.data,
            order: self.order[n.min(self.len())..].to_vec(),
        }
    }
}

/// The mean and standard deviation (at least 1e-6) of the pixels counted in `counts` (how many
/// of each byte value), scaled to [0, 1]; `(0, 1)` when nothing was counted.
fn mean_std(counts: &[u64; 256]) -> (f32, f32) {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return (0.0, 1.0);
    }
    let value = |p: usize| p as f64 / 255.0;
    let mean = (0..256).map(|p| counts[p] as f64 * value(p)).sum::<f64>() / n as f64;
    let var = (0..256)
        .map(|p| counts[p] as f64 * (value(p) - mean).powi(2))
        .sum::<f64>()
        / n as f64;
    (mean as f32, (var.sqrt() as f32).max(1e-6))
}
