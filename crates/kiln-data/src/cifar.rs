//! CIFAR-10 and CIFAR-100 in their binary format, held on the host like [`crate::Mnist`].
//!
//! A CIFAR-10 record is one label byte and 3072 pixel bytes (the 32x32 red plane, then green,
//! then blue); `data_batch_1.bin` .. `data_batch_5.bin` hold the training records and
//! `test_batch.bin` the test records. A CIFAR-100 record has two label bytes (coarse, then fine)
//! before the pixels, in `train.bin` and `test.bin`.
//!
//! ```no_run
//! use kiln_data::Cifar;
//! # fn main() -> kiln_core::Result<()> {
//! let cifar = Cifar::from_dir("data/cifar-10-batches-bin")?;
//! for (x, y) in cifar.train().shuffled(0).batches(128) {
//!     // x: f32 [128, 3, 32, 32], normalised per channel; y: i32 [128]
//! }
//! # Ok(()) }
//! ```

use crate::split::{Split, SplitData};
use kiln_core::error::{KilnError, Result};
use std::path::{Path, PathBuf};

/// CIFAR-10's per-channel (R, G, B) mean of the training pixels scaled to [0, 1]; the default
/// normalisation of its batches.
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// CIFAR-10's per-channel standard deviation of the training pixels scaled to [0, 1].
pub const CIFAR10_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];
/// CIFAR-100's per-channel mean of the training pixels scaled to [0, 1].
pub const CIFAR100_MEAN: [f32; 3] = [0.5071, 0.4865, 0.4409];
/// CIFAR-100's per-channel standard deviation of the training pixels scaled to [0, 1].
pub const CIFAR100_STD: [f32; 3] = [0.2673, 0.2564, 0.2762];

const PIXELS: usize = 3 * 32 * 32;

/// CIFAR-10 or CIFAR-100 (fine labels by default; [`Cifar::coarse_labels`] for the 20
/// super-classes): the training and test splits, on the host.
#[derive(Clone, Debug)]
pub struct Cifar {
    dir: PathBuf,
    train: SplitData,
    test: SplitData,
    classes: usize,
    /// CIFAR-100's coarse labels of (train, test).
    coarse: Option<(Vec<u8>, Vec<u8>)>,
    names: Option<Vec<String>>,
}

/// The records of one file: labels (one per label byte of a record) and pixels appended.
fn read_records(
    path: &Path,
    label_bytes: usize,
    labels: &mut [Vec<u8>],
    pixels: &mut Vec<u8>,
) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|source| KilnError::Io {
        msg: format!("{}: cannot read this CIFAR file", path.display()),
        source,
    })?;
    let record = label_bytes + PIXELS;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(KilnError::Data(format!(
            "{}: {} bytes is not a whole number of {record}-byte records ({} label byte(s) and \
             3072 pixels each): the file is truncated or not in the CIFAR binary format",
            path.display(),
            bytes.len(),
            label_bytes
        )));
    }
    for r in bytes.chunks_exact(record) {
        for (k, list) in labels.iter_mut().enumerate() {
            list.push(r[k]);
        }
        pixels.extend_from_slice(&r[label_bytes..]);
    }
    Ok(())
}

/// One split read from `files`: (the split with the fine labels, the coarse labels if any).
fn read_split(
    files: &[PathBuf],
    label_bytes: usize,
    norm: ([f32; 3], [f32; 3]),
) -> Result<(SplitData, Vec<u8>)> {
    let mut labels = vec![Vec::new(); label_bytes];
    let mut pixels = Vec::new();
    for f in files {
        read_records(f, label_bytes, &mut labels, &mut pixels)?;
    }
    let fine = labels.pop().unwrap_or_default();
    let coarse = labels.pop().unwrap_or_default();
    let data = SplitData {
        images: pixels,
        labels: fine,
        channels: 3,
        rows: 32,
        cols: 32,
        norm: (norm.0.to_vec(), norm.1.to_vec()),
        label_path: files[0].clone(),
    };
    Ok((data, coarse))
}

/// The first label of `labels` that is `classes` or more, as an error naming `file`.
fn check_labels(labels: &[u8], classes: usize, file: &Path, what: &str) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= classes) {
        None => Ok(()),
        Some(i) => Err(KilnError::Data(format!(
            "{}: {what} label {} of record {i} is outside 0..={}; the file is corrupt",
            file.display(),
            labels[i],
            classes - 1
        ))),
    }
}

/// The lines of `dir/name`, without blank ones, if the file is there.
fn names(dir: &Path, name: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    )
}

impl Cifar {
    /// Reads a CIFAR directory: CIFAR-10's `data_batch_*.bin` and `test_batch.bin`, or
    /// CIFAR-100's `train.bin` and `test.bin`; also found in the sub-folders that the archives
    /// unpack to (`cifar-10-batches-bin/`, `cifar-100-binary/`). Class names come from
    /// `batches.meta.txt` or `fine_label_names.txt` when present. Errors name the directory
    /// when neither layout is there, and the file when it is truncated (not a whole number of
    /// records) or holds a label outside the class range.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Cifar> {
        let dir = dir.as_ref();
        for sub in ["", "cifar-10-batches-bin", "cifar-100-binary"] {
            let d = dir.join(sub);
            if d.join("test_batch.bin").is_file() {
                return Self::read10(&d);
            }
            if d.join("train.bin").is_file() && d.join("test.bin").is_file() {
                return Self::read100(&d);
            }
        }
        let msg = format!(
            "{}: no CIFAR files; a CIFAR-10 directory holds data_batch_1.bin .. \
             data_batch_5.bin and test_batch.bin, a CIFAR-100 directory train.bin and test.bin",
            dir.display()
        );
        Err(match std::fs::metadata(dir) {
            Err(source) => KilnError::Io { msg, source },
            Ok(_) => KilnError::Data(msg),
        })
    }

    fn read10(dir: &Path) -> Result<Cifar> {
        let mut train_files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| KilnError::Io {
                msg: format!("{}: cannot list the folder", dir.display()),
                source,
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with("data_batch_") && name.ends_with(".bin")
            })
            .collect();
        train_files.sort();
        if train_files.is_empty() {
            return Err(KilnError::Data(format!(
                "{}: test_batch.bin but no data_batch_*.bin training file",
                dir.display()
            )));
        }
        let norm = (CIFAR10_MEAN, CIFAR10_STD);
        let (train, _) = read_split(&train_files, 1, norm)?;
        let test_file = dir.join("test_batch.bin");
        let (test, _) = read_split(std::slice::from_ref(&test_file), 1, norm)?;
        for (split, file) in [(&train, &train_files[0]), (&test, &test_file)] {
            check_labels(&split.labels, 10, file, "the")?;
        }
        let names = names(dir, "batches.meta.txt");
        Ok(Cifar {
            dir: dir.to_path_buf(),
            train,
            test,
            classes: 10,
            coarse: None,
            names,
        })
    }

    fn read100(dir: &Path) -> Result<Cifar> {
        let norm = (CIFAR100_MEAN, CIFAR100_STD);
        let (train_file, test_file) = (dir.join("train.bin"), dir.join("test.bin"));
        let (train, train_coarse) = read_split(std::slice::from_ref(&train_file), 2, norm)?;
        let (test, test_coarse) = read_split(std::slice::from_ref(&test_file), 2, norm)?;
        for (split, coarse, file) in [
            (&train, &train_coarse, &train_file),
            (&test, &test_coarse, &test_file),
        ] {
            check_labels(&split.labels, 100, file, "the fine")?;
            check_labels(coarse, 20, file, "the coarse")?;
        }
        let names = names(dir, "fine_label_names.txt");
        let coarse = Some((train_coarse, test_coarse));
        Ok(Cifar {
            dir: dir.to_path_buf(),
            train,
            test,
            classes: 100,
            coarse,
            names,
        })
    }

    /// CIFAR-100 with its 20 coarse labels (super-classes) in place of the 100 fine ones, and
    /// the class names of `coarse_label_names.txt` when present. Errors for CIFAR-10.
    pub fn coarse_labels(mut self) -> Result<Cifar> {
        let Some((train, test)) = self.coarse.take() else {
            return Err(KilnError::Data(format!(
                "{}: CIFAR-10 has no coarse labels (only CIFAR-100 does)",
                self.dir.display()
            )));
        };
        self.coarse = Some((
            std::mem::replace(&mut self.train.labels, train),
            std::mem::replace(&mut self.test.labels, test),
        ));
        self.classes = 20;
        self.names = names(&self.dir, "coarse_label_names.txt");
        Ok(self)
    }
    /// The number of classes: 10 (CIFAR-10), 100 (CIFAR-100) or 20 (its coarse labels).
    pub fn classes(&self) -> usize {
        self.classes
    }
    /// The class names from the directory's name file, when it has one.
    pub fn class_names(&self) -> Option<&[String]> {
        self.names.as_deref()
    }
    /// The directory the files were read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The training split (3x32x32 images), in file order.
    pub fn train(&self) -> Split<'_> {
        Split::whole(&self.train)
    }
    /// The test split, in file order.
    pub fn test(&self) -> Split<'_> {
        Split::whole(&self.test)
    }
}
