//! Row-major indexing: coordinates to a linear index and back, as WGSL u32 expressions.

use kiln_core::Shape;

/// The row-major linear index of `coords` in `shape`, as a WGSL u32 expression.
pub fn ravel(coords: &[String], shape: &Shape) -> String {
    let strides = shape.strides();
    let terms: Vec<String> = coords
        .iter()
        .zip(shape.dims())
        .zip(&strides)
        .filter(|((c, &d), _)| d > 1 && c.as_str() != "0u")
        .map(|((c, _), &s)| {
            if s == 1 {
                c.clone()
            } else {
                format!("{c} * {s}u")
            }
        })
        .collect();
    if terms.is_empty() {
        "0u".into()
    } else {
        format!("({})", terms.join(" + "))
    }
}

/// Coordinates of linear index `lin` in `shape`, as WGSL u32 expressions.
pub fn unravel(lin: &str, shape: &Shape) -> Vec<String> {
    // A shape without elements has no index to split (the code never runs), and its zero
    // strides would put a division by zero into the source, which WGSL rejects.
    if shape.numel() == 0 {
        return vec!["0u".to_string(); shape.rank()];
    }
    let strides = shape.strides();
    shape
        .dims()
        .iter()
        .enumerate()
        .map(|(d, &n)| {
            if n <= 1 {
                "0u".to_string()
            } else if d == 0 {
                if strides[0] == 1 {
                    lin.to_string()
                } else {
                    format!("({lin} / {}u)", strides[0])
                }
            } else if strides[d] == 1 {
                format!("({lin} % {n}u)")
            } else {
                format!("(({lin} / {}u) % {n}u)", strides[d])
            }
        })
        .collect()
}
