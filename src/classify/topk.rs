//! The most probable classes of a batch of logits, and class names from a file.

use crate::{DType, KilnError, Result, Tensor};
use std::path::Path;

/// For each row of `logits` (`[N, classes]`), its `k` most probable classes as
/// `(class, probability)`, most probable first (ties: the lower class first). Probabilities are
/// the row's softmax, computed on the host in f64 from the logits (realized and read back here).
/// Fewer than `k` entries if there are fewer classes. An error for logits that are not 2-D.
pub fn top_k(logits: &Tensor, k: usize) -> Result<Vec<Vec<(usize, f32)>>> {
    let &[n, classes] = logits.dims() else {
        return Err(KilnError::InvalidArgument(format!(
            "top_k needs logits [N, classes], got {}",
            logits.shape()
        )));
    };
    let values = logits.cast(DType::F32).to_vec::<f32>()?;
    let mut rows = Vec::with_capacity(n);
    for r in 0..n {
        let row = &values[r * classes..(r + 1) * classes];
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        let mut ranked: Vec<(usize, f32)> = exps
            .iter()
            .enumerate()
            .map(|(c, e)| (c, (e / total) as f32))
            .collect();
        // A stable sort keeps the lower class first among equal probabilities.
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(k);
        rows.push(ranked);
    }
    Ok(rows)
}

/// Class names from a text file, one per line (surrounding whitespace trimmed; blank lines at
/// the end ignored). Errors name the file: unreadable, empty, or a blank line between names.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<String>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| KilnError::Io {
        msg: format!("{}: cannot read the class names: {e}", path.display()),
        source: e,
    })?;
    let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while names.last().is_some_and(|n| n.is_empty()) {
        names.pop();
    }
    if names.is_empty() {
        return Err(KilnError::Data(format!(
            "{}: no class names (one name per line expected)",
            path.display()
        )));
    }
    if let Some(i) = names.iter().position(|n| n.is_empty()) {
        return Err(KilnError::Data(format!(
            "{}: line {} is blank; every class needs a name (one per line)",
            path.display(),
            i + 1
        )));
    }
    Ok(names)
}
