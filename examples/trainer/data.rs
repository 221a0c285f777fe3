//! The data of a training run behind one interface: the two splits of an IDX (MNIST) or CIFAR
//! directory, or the training and validation images of an image folder, with the
//! normalisation, the optional device augmentation and the class names.

use super::Norm;
use kiln::data::{Augment, ImageSet, Split};
use kiln::prelude::*;

/// An iterator of `(images, labels)` batches.
pub(crate) type BatchIter<'a> = Box<dyn Iterator<Item = (Tensor, Tensor)> + 'a>;

/// Where the images come from.
pub(crate) enum Source<'a> {
    /// Images held in memory (IDX or CIFAR files): the training and the test split.
    Splits { train: Split<'a>, test: Split<'a> },
    /// An image folder: its training and validation images, decoded on CPU threads.
    Folder { train: ImageSet, val: ImageSet },
}

/// The data of a run, ready to cut into batches.
pub(crate) struct Data<'a> {
    pub(crate) source: Source<'a>,
    /// The class names, in label order.
    pub(crate) classes: Vec<String>,
    /// Channels, and the `[height, width]` of every image.
    pub(crate) channels: usize,
    pub(crate) dims: [usize; 2],
    pub(crate) norm: Norm,
    /// The training pixels' own standard deviations (for the divergence error).
    pub(crate) data_std: Vec<f32>,
    /// The device augmentation of the training batches, normalisation included.
    pub(crate) augment: Option<Augment>,
    /// How many test (validation) images the test passes use.
    pub(crate) test_images: usize,
    /// This process's rank and the number of ranks of a data-parallel run (`(0, 1)` alone):
    /// each rank trains on its shard of every epoch's shuffle (IDX and CIFAR data).
    pub(crate) shard: (usize, usize),
}

/// Images per batch of a test pass over a split in memory, and over an image folder.
const TEST_BATCH: usize = 500;
const FOLDER_TEST_BATCH: usize = 100;

impl<'a> Data<'a> {
    /// The data of `source` with its class names and normalisation: every test image, no
    /// augmentation.
    pub(crate) fn new(
        source: Source<'a>,
        classes: Vec<String>,
        channels: usize,
        dims: [usize; 2],
        norm: Norm,
        data_std: Vec<f32>,
    ) -> Data<'a> {
        Data {
            source,
            classes,
            channels,
            dims,
            norm,
            data_std,
            augment: None,
            test_images: usize::MAX,
            shard: (0, 1),
        }
    }
    /// Adds the device augmentation of `examples/mnist.rs --augment`: random crop (padding 2),
    /// rotation (up to 10 degrees) and scaling (0.9 to 1.1), seeded by `seed`, then the
    /// normalisation (after the warp, so that what a crop or turn brings in is black).
    pub(crate) fn with_augment(mut self, seed: u64) -> Self {
        self.augment = Some(
            Augment::new(seed)
                .random_crop(2)
                .rotation(10.0)
                .scale(0.9, 1.1)
                .normalize(&self.norm.mean, &self.norm.std),
        );
        self
    }
    /// Number of training images (of this rank's shard).
    pub(crate) fn train_len(&self) -> usize {
        let n = match &self.source {
            Source::Splits { train, .. } => train.len(),
            Source::Folder { train, .. } => train.len(),
        };
        n.div_ceil(self.shard.1)
    }
    /// Number of test (validation) images a test pass uses.
    pub(crate) fn test_len(&self) -> usize {
        let n = match &self.source {
            Source::Splits { test, .. } => test.len(),
            Source::Folder { val, .. } => val.len(),
        };
        n.min(self.test_images)
    }
    /// The training batches of one epoch (this rank's shard), shuffled by `seed`, normalised
    /// (and augmented). Image folders are not sharded: one rank only.
    pub(crate) fn train_batches(&self, seed: u64, batch: usize) -> kiln::Result<BatchIter<'_>> {
        let (mean, std) = (&self.norm.mean, &self.norm.std);
        Ok(match &self.source {
            Source::Splits { train, .. } => {
                let (rank, ranks) = self.shard;
                let mut batches = train
                    .shuffled(seed)
                    .shard(rank, ranks, true)
                    .batches(batch)
                    .normalize_channels(mean, std);
                if let Some(aug) = &self.augment {
                    batches = batches.unnormalized().transform(aug)?;
                }
                Box::new(batches)
            }
            Source::Folder { train, .. } => {
                let batches = train.shuffled(seed).batches(batch);
                match &self.augment {
                    Some(aug) => Box::new(batches.transform(aug)?),
                    None => Box::new(batches.normalize(mean, std)),
                }
            }
        })
    }
    /// The test (validation) batches, normalised, in order: the first `test_images` images (of
    /// a folder: a seeded sample of that many) in batches of `batch` (default: 500 in memory,
    /// 100 from a folder).
    pub(crate) fn test_batches(&self, batch: Option<usize>) -> BatchIter<'_> {
        let (mean, std) = (&self.norm.mean, &self.norm.std);
        match &self.source {
            Source::Splits { test, .. } => Box::new(
                test.take(self.test_images)
                    .batches(batch.unwrap_or(TEST_BATCH))
                    .normalize_channels(mean, std),
            ),
            Source::Folder { val, .. } => {
                // A folder's images come class by class: a part of them is a seeded sample.
                let val = if self.test_images < val.len() {
                    val.shuffled(0).take(self.test_images)
                } else {
                    val.clone()
                };
                let batches = val.batches(batch.unwrap_or(FOLDER_TEST_BATCH));
                Box::new(batches.normalize(mean, std))
            }
        }
    }
}
