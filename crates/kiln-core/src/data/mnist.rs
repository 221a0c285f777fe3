//! MNIST and Fashion-MNIST: the four IDX files of a directory, held on the host, with seeded
//! shuffling and mini-batches.
//!
//! ```no_run
//! use kiln_core::data::Mnist;
//! # fn main() -> kiln_core::Result<()> {
//! let mnist = Mnist::from_dir("data/mnist-10k")?;
//! for epoch in 0..3 {
//!     for (x, y) in mnist.train().shuffled(epoch).batches(64) {
//!         // x: f32 [64, 1, 28, 28], normalised; y: i32 [64], the digits
//!     }
//! }
//! # Ok(()) }
//! ```

use crate::data::batches::Batches;
use crate::data::idx::read_idx;
use crate::error::{KilnError, Result};
use crate::rng::philox4x32;
use std::path::{Path, PathBuf};

/// The mean of MNIST's training pixels scaled to [0, 1]; the default of [`Batches`].
pub const MNIST_MEAN: f32 = 0.1307;
/// The standard deviation of MNIST's training pixels scaled to [0, 1]; the default of [`Batches`].
pub const MNIST_STD: f32 = 0.3081;

/// One split (train or test) as read from disk.
#[derive(Clone)]
pub(crate) struct SplitData {
    /// `n * rows * cols` pixels, image after image, row-major.
    pub(crate) images: Vec<u8>,
    /// `n` labels.
    pub(crate) labels: Vec<u8>,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// The label file, for errors.
    pub(crate) label_path: PathBuf,
}

impl std::fmt::Debug for SplitData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} images of {}x{}",
            self.labels.len(),
            self.rows,
            self.cols
        )
    }
}

/// MNIST or Fashion-MNIST (same format): the training and test splits, on the host.
#[derive(Clone, Debug)]
pub struct Mnist {
    dir: PathBuf,
    train: SplitData,
    test: SplitData,
}

/// The file names tried for one file, in order, in `dir` and then in `dir/raw` (torchvision's
/// layout): the standard `train-images-idx3-ubyte`, the dotted `train-images.idx3-ubyte` that
/// some mirrors use, each gzip-compressed (`.gz`) or raw.
fn candidates(stem: &str, kind: &str, rank: usize) -> [String; 4] {
    [
        format!("{stem}-{kind}-idx{rank}-ubyte.gz"),
        format!("{stem}-{kind}-idx{rank}-ubyte"),
        format!("{stem}-{kind}.idx{rank}-ubyte.gz"),
        format!("{stem}-{kind}.idx{rank}-ubyte"),
    ]
}

fn find(dir: &Path, stem: &str, kind: &str, rank: usize) -> Result<PathBuf> {
    let names = candidates(stem, kind, rank);
    for d in [dir.to_path_buf(), dir.join("raw")] {
        for name in &names {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let msg = format!(
        "{}: no {} file (looked for {}, also in raw/); an MNIST directory holds \
         train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and \
         t10k-labels-idx1-ubyte, each raw or .gz",
        dir.display(),
        names[1],
        names.join(", ")
    );
    // Why the usual name is not there (`NotFound`, or the directory cannot be read) is the
    // error's source; something there that is not a file (a directory) has none.
    match std::fs::metadata(dir.join(&names[1])) {
        Err(source) => Err(KilnError::Io { msg, source }),
        Ok(_) => Err(KilnError::Data(msg)),
    }
}

fn read_split(dir: &Path, stem: &str) -> Result<SplitData> {
    let image_path = find(dir, stem, "images", 3)?;
    let label_path = find(dir, stem, "labels", 1)?;
    let images = read_idx(&image_path)?;
    let labels = read_idx(&label_path)?;
    let &[n, rows, cols] = images.dims.as_slice() else {
        return Err(KilnError::Data(format!(
            "{}: images need 3 dimensions [n, rows, cols], found {:?}",
            image_path.display(),
            images.dims
        )));
    };
    let &[n_labels] = labels.dims.as_slice() else {
        return Err(KilnError::Data(format!(
            "{}: labels need 1 dimension [n], found {:?}",
            label_path.display(),
            labels.dims
        )));
    };
    if n != n_labels {
        return Err(KilnError::Data(format!(
            "{}: {} holds {n} images but {} holds {n_labels} labels; the two files must come from the same split",
            dir.display(),
            image_path.file_name().unwrap_or_default().to_string_lossy(),
            label_path.file_name().unwrap_or_default().to_string_lossy(),
        )));
    }
    if n == 0 {
        return Err(KilnError::Data(format!(
            "{}: holds no images; a data set needs at least one training and one test image",
            image_path.display()
        )));
    }
    if rows == 0 || cols == 0 {
        return Err(KilnError::Data(format!(
            "{}: images of {rows}x{cols} pixels hold nothing; every image needs at least one \
             row and one column",
            image_path.display()
        )));
    }
    if n > u32::MAX as usize {
        return Err(KilnError::Data(format!(
            "{}: {n} images are more than this loader indexes (2^32 - 1)",
            image_path.display()
        )));
    }
    Ok(SplitData {
        images: images.data,
        labels: labels.data,
        rows,
        cols,
        label_path,
    })
}

/// The first label of `split` that is `classes` or more, with its index.
fn first_label_outside(split: &SplitData, classes: usize) -> Option<(usize, u8)> {
    split
        .labels
        .iter()
        .position(|&l| l as usize >= classes)
        .map(|i| (i, split.labels[i]))
}

/// The error for label `label` at `index` of `split`, outside `0..classes`.
fn label_error(split: &SplitData, index: usize, label: u8, classes: usize, why: &str) -> KilnError {
    KilnError::Data(format!(
        "{}: label {label} at index {index} is outside the class range 0..={} ({why}); \
         fix the label file or pass the right number of classes",
        split.label_path.display(),
        classes.saturating_sub(1)
    ))
}

impl Mnist {
    /// Reads the four files of `dir`: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    /// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each raw or gzip-compressed (`.gz`);
    /// the dotted names of some mirrors (`train-images.idx3-ubyte`) and torchvision's `raw/`
    /// subdirectory are found too. Works for MNIST, Fashion-MNIST and any other dataset in the
    /// same format. Errors name the directory and the missing or broken file, and say when an
    /// image file and its label file disagree on the count, when a split holds no images or
    /// images of no pixels, when the test images have another size than the training images,
    /// and when a test label is outside the training labels' range `0..classes()` (naming its
    /// index). With a class count of your own, check both splits with [`Mnist::check_labels`].
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Mnist> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            let msg = format!(
                "{}: no such directory; pass a directory holding the MNIST files \
                 (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
                 t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)",
                dir.display()
            );
            // Missing or unreadable: the io error is the source; a file there: a data error.
            return Err(match std::fs::metadata(dir) {
                Err(source) => KilnError::Io { msg, source },
                Ok(_) => KilnError::Data(msg),
            });
        }
        let train = read_split(dir, "train")?;
        let test = read_split(dir, "t10k")?;
        if (train.rows, train.cols) != (test.rows, test.cols) {
            return Err(KilnError::Data(format!(
                "{}: the test images are {}x{} pixels but the training images {}x{}; both \
                 splits must hold images of one size",
                dir.display(),
                test.rows,
                test.cols,
                train.rows,
                train.cols
            )));
        }
        let mnist = Mnist {
            dir: dir.to_path_buf(),
            train,
            test,
        };
        let classes = mnist.classes();
        if let Some((i, label)) = first_label_outside(&mnist.test, classes) {
            let why = format!("the training labels are 0..={}", classes - 1);
            return Err(label_error(&mnist.test, i, label, classes, &why));
        }
        Ok(mnist)
    }
    /// The number of classes: one more than the largest training label (10 for MNIST).
    pub fn classes(&self) -> usize {
        self.train
            .labels
            .iter()
            .max()
            .map_or(0, |&l| l as usize + 1)
    }
    /// Checks that every label of both splits is below `classes` (a model's output count); the
    /// error names the label file, the index of the first label outside the range, and the
    /// label.
    pub fn check_labels(&self, classes: usize) -> Result<()> {
        for split in [&self.train, &self.test] {
            if let Some((i, label)) = first_label_outside(split, classes) {
                let why = format!("{classes} classes");
                return Err(label_error(split, i, label, classes, &why));
            }
        }
        Ok(())
    }
    /// The directory the files were read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The training split, in file order.
    pub fn train(&self) -> Split<'_> {
        Split::whole(&self.train)
    }
    /// The test split, in file order.
    pub fn test(&self) -> Split<'_> {
        Split::whole(&self.test)
    }
}

/// A view of (part of) one split, in some order: cheap to make, borrows the pixels.
/// Images are u8 `[rows, cols]` (28x28 for MNIST), labels u8.
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
    fn whole(data: &'a SplitData) -> Split<'a> {
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
    /// The pixels of image `i` of this view (row-major, 0..=255).
    #[track_caller]
    pub fn image(&self, i: usize) -> &'a [u8] {
        let size = self.data.rows * self.data.cols;
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
    /// [`Batches::normalize`]; MNIST's training set gives about 0.1307 and 0.3081). `(0, 1)`
    /// for an empty view; the std is at least 1e-6 (an image set of one colour).
    pub fn pixel_mean_std(&self) -> (f32, f32) {
        let mut counts = [0u64; 256];
        for i in 0..self.len() {
            for &p in self.image(i) {
                counts[p as usize] += 1;
            }
        }
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
    /// This view in a random order that depends only on `seed` (and the view's order): the same
    /// seed gives the same order on every machine and every run. The permutation is a
    /// Fisher-Yates shuffle whose step `i` (from the last index down to 1) swaps `i` with
    /// `j = floor(r * (i + 1) / 2^64)`, where `r` is the 64-bit word `(w0 << 32) | w1` of
    /// Philox4x32-10 ([`crate::rng::philox4x32`]) with key `seed` and counter `(i, 0x53485546, 0, 0)`.
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
    /// Mini-batches of `batch_size` images in this view's order: `(images, labels)` with images
    /// f32 `[B, 1, rows, cols]` scaled to [0, 1] and normalised with MNIST's mean 0.1307 and
    /// standard deviation 0.3081, labels i32 `[B]`, made on `Device::cpu()` as host data (they
    /// move to the GPU when they meet a GPU tensor). The last batch may be smaller; see
    /// [`Batches::drop_last`], [`Batches::normalize`], [`Batches::unnormalized`], [`Batches::on`].
    /// Panics if `batch_size` is 0.
    #[track_caller]
    pub fn batches(&self, batch_size: usize) -> Batches<'a> {
        Batches::new(self.clone(), batch_size)
    }
}
