//! [`DataFormat::detect`]: which reader a data directory needs, for a program with one `--data`
//! flag.

use kiln_core::error::{KilnError, Result};
use std::path::Path;

/// The layouts kiln reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    /// MNIST-style IDX files: read with [`crate::Mnist::from_dir`].
    Idx,
    /// CIFAR-10/100 binary files: read with [`crate::Cifar::from_dir`].
    Cifar,
    /// Class sub-folders of pictures: read with [`crate::ImageFolder::open_with`].
    ImageFolder,
}

impl DataFormat {
    /// The layout of `dir`: CIFAR when it (or the `cifar-10-batches-bin/` or
    /// `cifar-100-binary/` inside it) holds `test_batch.bin`, or `train.bin` and `test.bin`; IDX
    /// when it (or its `raw/`) holds a `train-images` IDX file, raw or gzip-compressed; else an
    /// image folder. Errors name `dir` when it is not a directory. Only file names are looked
    /// at; the reader checks the contents.
    pub fn detect(dir: impl AsRef<Path>) -> Result<DataFormat> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            let msg = format!("{}: no such data directory", dir.display());
            return Err(match std::fs::metadata(dir) {
                Err(source) => KilnError::Io { msg, source },
                Ok(_) => KilnError::Data(format!("{msg} (it is a file)")),
            });
        }
        for sub in ["", "cifar-10-batches-bin", "cifar-100-binary"] {
            let d = dir.join(sub);
            let cifar100 = d.join("train.bin").is_file() && d.join("test.bin").is_file();
            if d.join("test_batch.bin").is_file() || cifar100 {
                return Ok(DataFormat::Cifar);
            }
        }
        for d in [dir.to_path_buf(), dir.join("raw")] {
            let idx = std::fs::read_dir(&d)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with("train-images") && name.contains("idx3-ubyte")
                });
            if idx {
                return Ok(DataFormat::Idx);
            }
        }
        Ok(DataFormat::ImageFolder)
    }
}
