//! Tensor shapes: dimensions, element counts, row-major strides and NumPy broadcasting.

/// The dimensions of a tensor, outermost first. `[]` is a scalar (one element).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    /// The dimensions as a slice.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// Number of elements (1 for a scalar, 0 if any dimension is 0).
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    /// Row-major (C-order) strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut strides = vec![1; self.0.len()];
        for i in (0..self.0.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.0[i + 1];
        }
        strides
    }
    /// The shape both `a` and `b` broadcast to under NumPy's rules (align on the right; each pair
    /// of dimensions equal or one of them 1), or `None` if they do not broadcast.
    pub fn broadcast(a: &Shape, b: &Shape) -> Option<Shape> {
        let rank = a.rank().max(b.rank());
        let mut out = vec![0; rank];
        for (i, o) in out.iter_mut().enumerate() {
            let da = if i + a.rank() >= rank {
                a.0[i + a.rank() - rank]
            } else {
                1
            };
            let db = if i + b.rank() >= rank {
                b.0[i + b.rank() - rank]
            } else {
                1
            };
            *o = match (da, db) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => return None,
            };
        }
        Some(Shape(out))
    }
    /// Splits a row-major linear index into coordinates.
    pub fn unravel(&self, mut index: usize) -> Vec<usize> {
        let mut coords = vec![0; self.rank()];
        for d in (0..self.rank()).rev() {
            let n = self.0[d].max(1);
            coords[d] = index % n;
            index /= n;
        }
        coords
    }
    /// Joins coordinates into a row-major linear index.
    pub fn ravel(&self, coords: &[usize]) -> usize {
        coords
            .iter()
            .zip(&self.0)
            .fold(0, |acc, (&c, &n)| acc * n + c)
    }
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Anything that can be read as a shape: `[2, 3]`, `vec![2, 3]`, `&[2, 3][..]`, `()`, a `Shape`.
pub trait IntoShape {
    /// The shape.
    fn into_shape(self) -> Shape;
}

impl IntoShape for Shape {
    fn into_shape(self) -> Shape {
        self
    }
}
impl IntoShape for &Shape {
    fn into_shape(self) -> Shape {
        self.clone()
    }
}
impl<const N: usize> IntoShape for [usize; N] {
    fn into_shape(self) -> Shape {
        Shape(self.to_vec())
    }
}
impl IntoShape for Vec<usize> {
    fn into_shape(self) -> Shape {
        Shape(self)
    }
}
impl IntoShape for &[usize] {
    fn into_shape(self) -> Shape {
        Shape(self.to_vec())
    }
}
impl IntoShape for &Vec<usize> {
    fn into_shape(self) -> Shape {
        Shape(self.clone())
    }
}
impl IntoShape for () {
    fn into_shape(self) -> Shape {
        Shape(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        let s = |v: &[usize]| Shape(v.to_vec());
        assert_eq!(Shape::broadcast(&s(&[2, 3]), &s(&[3])), Some(s(&[2, 3])));
        assert_eq!(
            Shape::broadcast(&s(&[4, 1, 5]), &s(&[3, 1])),
            Some(s(&[4, 3, 5]))
        );
        assert_eq!(Shape::broadcast(&s(&[2, 3]), &s(&[4])), None);
        assert_eq!(Shape::broadcast(&s(&[0, 3]), &s(&[1, 3])), Some(s(&[0, 3])));
    }

    #[test]
    fn strides_and_ravel_are_row_major() {
        let s = Shape(vec![2, 3, 4]);
        assert_eq!(s.strides(), vec![12, 4, 1]);
        assert_eq!(s.unravel(17), vec![1, 1, 1]);
        assert_eq!(s.ravel(&[1, 1, 1]), 17);
    }
}
