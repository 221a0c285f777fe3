//! The class list written beside a checkpoint, so that a program classifying with it can name
//! the classes.

use kiln_core::error::{KilnError, Result};
use std::path::{Path, PathBuf};

/// The class list's path for `checkpoint`: its file name with the extension replaced by
/// `classes.txt` (`runs/model.safetensors` -> `runs/model.classes.txt`).
pub fn class_list_path(checkpoint: impl AsRef<Path>) -> PathBuf {
    checkpoint.as_ref().with_extension("classes.txt")
}

/// Writes `classes`, one name a line in label order, to [`class_list_path`]`(checkpoint)` and
/// returns that path. Errors if a name holds a line break or the file cannot be written.
pub fn write_class_list(checkpoint: impl AsRef<Path>, classes: &[String]) -> Result<PathBuf> {
    let path = class_list_path(checkpoint);
    if let Some(bad) = classes.iter().find(|c| c.contains(['\n', '\r'])) {
        return Err(KilnError::Data(format!(
            "{}: the class name {bad:?} holds a line break; a class list holds one name a line",
            path.display()
        )));
    }
    let mut text = classes.join("\n");
    text.push('\n');
    std::fs::write(&path, text).map_err(|source| KilnError::Io {
        msg: format!("{}: cannot write the class list", path.display()),
        source,
    })?;
    Ok(path)
}

/// The class names written by [`write_class_list`] beside `checkpoint`, in label order.
/// Errors name the file when it is missing or holds no name.
pub fn read_class_list(checkpoint: impl AsRef<Path>) -> Result<Vec<String>> {
    let path = class_list_path(checkpoint);
    let text = std::fs::read_to_string(&path).map_err(|source| KilnError::Io {
        msg: format!(
            "{}: cannot read the class list (written beside the checkpoint by \
             write_class_list)",
            path.display()
        ),
        source,
    })?;
    let classes: Vec<String> = text.lines().map(str::to_string).collect();
    if classes.is_empty() {
        return Err(KilnError::Data(format!(
            "{}: the class list holds no name",
            path.display()
        )));
    }
    Ok(classes)
}
