//! MNIST and Fashion-MNIST: the four IDX files of a directory, held on the host, with seeded
//! shuffling and mini-batches.
//!
//! ```no_run
//! use kiln_data::Mnist;
//! # fn main() -> kiln_core::Result<()> {
//! let mnist = Mnist::from_dir("data/mnist-10k")?;
//! for epoch in 0..3 {
//!     for (x, y) in mnist.train().shuffled(epoch).batches(64) {
//!         // x: f32 [64, 1, 28, 28], normalised; y: i32 [64], the digits
//!     }
//! }
//! # Ok(()) }
//! ```

use crate::idx::read_idx;
use crate::split::{Split, SplitData};
use kiln_core::error::{KilnError, Result};
use std::path::{Path, PathBuf};

/// The mean of MNIST's training pixels scaled to [0, 1]; the default of [`crate::Batches`].
pub const MNIST_MEAN: f32 = 0.1307;
/// The standard deviation of MNIST's training pixels scaled to [0, 1]; the default of [`crate::Batches`].
pub const MNIST_STD: f32 = 0.3081;

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
        channels: 1,
        norm: (vec![MNIST_MEAN], vec![MNIST_STD]),
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
