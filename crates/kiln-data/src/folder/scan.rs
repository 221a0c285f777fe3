//! Finding an image folder's classes and files, and splitting off a validation set.

use kiln_core::error::{KilnError, Result};
use kiln_core::rng::philox4x32;
use std::path::{Path, PathBuf};

/// The file name endings read as images (case-insensitive); other files are ignored.
pub(crate) const EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];

/// One image file and the index of its class.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) path: PathBuf,
    pub(crate) label: u32,
}

fn io(dir: &Path, what: &str, source: std::io::Error) -> KilnError {
    KilnError::Io {
        msg: format!("{}: cannot {what}", dir.display()),
        source,
    }
}

/// The entries of `dir` (names not starting with '.'), sorted by name, with whether each is a
/// directory.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, "list the folder", e))? {
        let entry = entry.map_err(|e| io(dir, "list the folder", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        out.push((name, path.clone(), path.is_dir()));
    }
    out.sort();
    Ok(out)
}

/// The class names of `dir`: its sub-folders, sorted (as torchvision's `ImageFolder`). Errors
/// name `dir` when there are none or only one.
pub(crate) fn classes(dir: &Path) -> Result<Vec<String>> {
    let classes: Vec<String> = entries(dir)?
        .into_iter()
        .filter(|e| e.2)
        .map(|e| e.0)
        .collect();
    match classes.len() {
        0 => Err(KilnError::Data(format!(
            "{}: no class folders; an image folder holds one sub-folder of images per class \
             (e.g. cat/ and dog/), or train/ and val/ folders that do",
            dir.display()
        ))),
        1 => Err(KilnError::Data(format!(
            "{}: only one class folder ({}); a classifier needs at least two",
            dir.display(),
            classes[0]
        ))),
        _ => Ok(classes),
    }
}

/// The image files (by name ending) of each class folder of `dir`, sorted by name.
pub(crate) fn samples(dir: &Path, classes: &[String]) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        for (name, path, is_dir) in entries(&dir.join(class))? {
            let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
            if !is_dir && ext.is_some_and(|e| EXTENSIONS.contains(&e.as_str())) {
                out.push(Sample {
                    path,
                    label: label as u32,
                });
            }
        }
    }
    Ok(out)
}

/// The error when the class sets of `train/` and `val/` differ, listing the difference.
pub(crate) fn check_same_classes(dir: &Path, train: &[String], val: &[String]) -> Result<()> {
    let only_train: Vec<&str> = train
        .iter()
        .filter(|c| !val.contains(c))
        .map(String::as_str)
        .collect();
    let only_val: Vec<&str> = val
        .iter()
        .filter(|c| !train.contains(c))
        .map(String::as_str)
        .collect();
    if only_train.is_empty() && only_val.is_empty() {
        return Ok(());
    }
    Err(KilnError::Data(format!(
        "{}: train/ and val/ hold different classes: only in train/: [{}]; only in val/: [{}]",
        dir.display(),
        only_train.join(", "),
        only_val.join(", ")
    )))
}

/// Splits `samples` into (train, val): of each class, a seeded random `fraction` of its images
/// (rounded, at least one image left for training) goes to validation. Both keep file order.
pub(crate) fn split(samples: Vec<Sample>, fraction: f64, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    let classes = samples.iter().map(|s| s.label + 1).max().unwrap_or(0);
    let mut to_val = vec![false; samples.len()];
    for class in 0..classes {
        let members: Vec<usize> = (0..samples.len())
            .filter(|&i| samples[i].label == class)
            .collect();
        let n = members.len();
        let take = ((n as f64 * fraction).round() as usize).min(n.saturating_sub(1));
        // A seeded shuffle of the class's members: the first `take` go to validation.
        let mut order = members;
        let key = [seed as u32, (seed >> 32) as u32];
        for i in (1..order.len()).rev() {
            let w = philox4x32([i as u32, class, 0x5641_4C53, 0], key);
            let r = ((w[0] as u64) << 32) | w[1] as u64;
            let j = ((r as u128 * (i as u128 + 1)) >> 64) as usize;
            order.swap(i, j);
        }
        for &i in &order[..take] {
            to_val[i] = true;
        }
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (s, v) in samples.into_iter().zip(to_val) {
        if v {
            val.push(s);
        } else {
            train.push(s);
        }
    }
    (train, val)
}
