//! [`open`]: the classes, the files and their headers of an image folder, checked.

use super::decode::{check_header, decode, Failure};
use super::scan::{self, Sample};
use super::FolderOptions;
use kiln_core::error::{KilnError, Result};
use std::path::{Path, PathBuf};

/// What [`super::ImageFolder::open_with`] finds: the root, the classes, the readable training and
/// validation samples, and the files skipped.
pub(crate) type Opened = (PathBuf, Vec<String>, Vec<Sample>, Vec<Sample>, Vec<PathBuf>);

/// Reads the layout of `dir` and checks every file's header (every file's pixels in strict
/// mode); see [`super::ImageFolder::open_with`] for the errors.
pub(crate) fn open(dir: &Path, options: &FolderOptions) -> Result<Opened> {
    if !dir.is_dir() {
        let msg = format!(
            "{}: no such folder; pass a folder of class sub-folders of images",
            dir.display()
        );
        return Err(match std::fs::metadata(dir) {
            Err(source) => KilnError::Io { msg, source },
            Ok(_) => KilnError::Data(msg),
        });
    }
    let (train_dir, val_dir) = if dir.join("train").is_dir() {
        let val = dir.join("val");
        (dir.join("train"), val.is_dir().then_some(val))
    } else {
        (dir.to_path_buf(), None)
    };
    let classes = scan::classes(&train_dir)?;
    let mut skipped = Vec::new();
    let train = readable(&train_dir, &classes, options, &mut skipped)?;
    let (train, val) = match &val_dir {
        Some(val_dir) => {
            let val_classes = scan::classes(val_dir).or_else(|e| {
                // One class or none in val/ is a difference from train/, said as such.
                let listed = list_dirs(val_dir);
                scan::check_same_classes(dir, &classes, &listed).and(Err(e))
            })?;
            scan::check_same_classes(dir, &classes, &val_classes)?;
            (train, readable(val_dir, &classes, options, &mut skipped)?)
        }
        None => match options.val_split {
            Some(f) if f > 0.0 => scan::split(train, f, options.seed),
            _ => (train, Vec::new()),
        },
    };
    Ok((dir.to_path_buf(), classes, train, val, skipped))
}

/// The sub-folder names of `dir`, sorted (none if it cannot be listed).
fn list_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// The samples of `dir` whose files read (header; whole file in strict mode), the others
/// warned about and added to `skipped`. Errors if a class keeps no image, or, in strict mode,
/// at the first file that does not read.
fn readable(
    dir: &Path,
    classes: &[String],
    options: &FolderOptions,
    skipped: &mut Vec<PathBuf>,
) -> Result<Vec<Sample>> {
    let samples = scan::samples(dir, classes)?;
    let checks = check_all(&samples, options);
    let mut kept = Vec::with_capacity(samples.len());
    for (sample, check) in samples.into_iter().zip(checks) {
        match check {
            Ok(()) => kept.push(sample),
            Err(source) if options.strict => {
                return Err(KilnError::Format {
                    msg: format!(
                        "{}: cannot read this image ({source}); remove it, or open the folder \
                         without strict mode to skip it",
                        sample.path.display()
                    ),
                    source,
                })
            }
            Err(why) => {
                eprintln!("kiln: warning: skipping {}: {why}", sample.path.display());
                skipped.push(sample.path);
            }
        }
    }
    for (label, class) in classes.iter().enumerate() {
        if !kept.iter().any(|s| s.label == label as u32) {
            return Err(KilnError::Data(format!(
                "{}: no readable image in this class folder (files ending in {})",
                dir.join(class).display(),
                scan::EXTENSIONS.join(", ")
            )));
        }
    }
    Ok(kept)
}

/// The check of every sample (its header, or its whole file in strict mode), on the option's
/// number of threads, in sample order.
fn check_all(samples: &[Sample], options: &FolderOptions) -> Vec<std::result::Result<(), Failure>> {
    let check = |s: &Sample| -> std::result::Result<(), Failure> {
        if options.strict {
            decode(&s.path, options.channels, options.max_side).map(|_| ())
        } else {
            check_header(&s.path, options.max_side).map(|_| ())
        }
    };
    let threads = options.threads.min(samples.len()).max(1);
    let chunk = samples.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = samples
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(check).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("an image check thread panicked"))
            .collect()
    })
}
