//! Confusion matrices: counts of (true class, predicted class) pairs and their labelled heat map.

use crate::picture::{blank, blues, draw_text, fill, Anchor, Picture, Rect};
use kiln_core::{KilnError, Result};
use std::path::Path;

/// Counts of each (true, predicted) pair: `m[t][p]` is how many examples of class `t` were
/// predicted as `p`. An error when the slices differ in length or a class is out of range.
pub fn confusion_matrix(
    preds: &[usize],
    labels: &[usize],
    classes: usize,
) -> Result<Vec<Vec<usize>>> {
    if preds.len() != labels.len() {
        return Err(KilnError::Data(format!(
            "confusion matrix: {} predictions but {} labels",
            preds.len(),
            labels.len()
        )));
    }
    let mut m = vec![vec![0usize; classes]; classes];
    for (k, (&p, &t)) in preds.iter().zip(labels).enumerate() {
        if p >= classes || t >= classes {
            return Err(KilnError::Data(format!(
                "confusion matrix: example {k} has prediction {p} and label {t}, but there are only {classes} classes"
            )));
        }
        m[t][p] += 1;
    }
    Ok(m)
}

/// The heat map of [`confusion_matrix`]: rows are true classes, columns predicted classes, both
/// labelled with `classes` (their names, in class order); each cell shows its count and is
/// coloured by the fraction of its row (white 0 to dark blue 1), so the diagonal holds each
/// class's recall. The title gives the accuracy. The regions are the cells, row-major: region
/// `t * n + p` is true class `t`, predicted `p`.
pub fn confusion_picture(preds: &[usize], labels: &[usize], classes: &[&str]) -> Result<Picture> {
    let n = classes.len();
    if n == 0 {
        return Err(KilnError::Data(
            "confusion matrix: no class names were given".into(),
        ));
    }
    let m = confusion_matrix(preds, labels, n)?;
    let cell = (480 / n as u32).clamp(14, 48);
    let longest = classes.iter().map(|c| c.chars().count()).max().unwrap_or(1) as u32;
    let left = 40 + longest * 8 + 8;
    let top = 86;
    let (w, h) = (left + n as u32 * cell + 20, top + n as u32 * cell + 20);
    let w = w.max(360);
    let mut image = blank(w, h);
    let correct: usize = (0..n).map(|i| m[i][i]).sum();
    let total = preds.len();
    let accuracy = if total > 0 {
        100.0 * correct as f64 / total as f64
    } else {
        0.0
    };
    let black = [0, 0, 0];
    draw_text(
        &mut image,
        &format!("confusion matrix: accuracy {accuracy:.2}% of {total}"),
        (w as i32 / 2, 16),
        16.0,
        black,
        Anchor::Center,
        false,
    );
    let grid_mid_x = (left + n as u32 * cell / 2) as i32;
    let grid_mid_y = (top + n as u32 * cell / 2) as i32;
    draw_text(
        &mut image,
        "predicted",
        (grid_mid_x, 44),
        15.0,
        black,
        Anchor::Center,
        false,
    );
    draw_text(
        &mut image,
        "true",
        (16, grid_mid_y),
        15.0,
        black,
        Anchor::Center,
        true,
    );
    let label_size = (cell as f64 * 0.4).clamp(9.0, 14.0);
    let mut regions = Vec::with_capacity(n * n);
    for (t, row) in m.iter().enumerate() {
        let row_total: usize = row.iter().sum();
        let y = top + t as u32 * cell;
        draw_text(
            &mut image,
            classes[t],
            (left as i32 - 6, (y + cell / 2) as i32),
            label_size,
            black,
            Anchor::Right,
            false,
        );
        for (p, &count) in row.iter().enumerate() {
            let rect = Rect {
                x: left + p as u32 * cell,
                y,
                w: cell - 1,
                h: cell - 1,
            };
            let frac = if row_total > 0 {
                count as f32 / row_total as f32
            } else {
                0.0
            };
            fill(&mut image, rect, blues(frac));
            if count > 0 {
                let ink = if frac > 0.5 { [255, 255, 255] } else { black };
                let (cx, cy) = rect.center();
                draw_text(
                    &mut image,
                    &count.to_string(),
                    (cx as i32, cy as i32),
                    label_size * 0.9,
                    ink,
                    Anchor::Center,
                    false,
                );
            }
            regions.push(rect);
        }
    }
    for (p, name) in classes.iter().enumerate() {
        let x = left + p as u32 * cell + cell / 2;
        draw_text(
            &mut image,
            name,
            (x as i32, top as i32 - 14),
            label_size,
            black,
            Anchor::Center,
            false,
        );
    }
    Ok(Picture { image, regions })
}

/// Writes [`confusion_picture`] as a PNG at `path`; returns the picture.
pub fn save_confusion_matrix(
    preds: &[usize],
    labels: &[usize],
    classes: &[&str],
    path: impl AsRef<Path>,
) -> Result<Picture> {
    let picture = confusion_picture(preds, labels, classes)?;
    picture.save(path)?;
    Ok(picture)
}
