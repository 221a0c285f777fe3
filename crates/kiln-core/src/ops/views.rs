//! Views: ops that move or select elements without arithmetic. Backends fold them into the index
//! arithmetic of the kernel that reads them, so none of them copies memory.

use crate::op::Op;
use crate::shape::{IntoShape, Shape};
use crate::tensor::Tensor;

impl Tensor {
    /// The same elements, row-major, in a new shape with the same number of elements.
    #[track_caller]
    pub fn reshape(&self, shape: impl IntoShape) -> Tensor {
        let shape = shape.into_shape();
        assert!(
            shape.numel() == self.numel(),
            "reshape: cannot reshape {} ({} elements) to {} ({} elements)",
            self.shape(),
            self.numel(),
            shape,
            shape.numel()
        );
        if &shape == self.shape() {
            return self.clone();
        }
        Tensor::from_op(
            Op::Reshape,
            vec![self.clone()],
            shape,
            self.dtype(),
            self.device(),
        )
    }

    /// Reorders dimensions: output dimension d is input dimension `perm[d]`.
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Tensor {
        let mut seen = vec![false; self.rank()];
        assert!(
            perm.len() == self.rank()
                && perm
                    .iter()
                    .all(|&p| p < self.rank() && !std::mem::replace(&mut seen[p], true)),
            "permute: {perm:?} is not a permutation of the {} dimensions of {}",
            self.rank(),
            self.shape()
        );
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return self.clone();
        }
        let shape = Shape(perm.iter().map(|&p| self.dims()[p]).collect());
        Tensor::from_op(
            Op::Permute(perm.to_vec()),
            vec![self.clone()],
            shape,
            self.dtype(),
            self.device(),
        )
    }

    /// Swaps two dimensions.
    #[track_caller]
    pub fn transpose(&self, d0: usize, d1: usize) -> Tensor {
        assert!(
            d0 < self.rank() && d1 < self.rank(),
            "transpose: dimensions {d0}, {d1} out of range for {}",
            self.shape()
        );
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(d0, d1);
        self.permute(&perm)
    }

    /// Swaps the last two dimensions (the matrix transpose of each matrix in a batch).
    #[track_caller]
    pub fn t(&self) -> Tensor {
        assert!(
            self.rank() >= 2,
            "t: needs at least 2 dimensions, got {}",
            self.shape()
        );
        self.transpose(self.rank() - 2, self.rank() - 1)
    }

    /// Broadcasts to `shape` under NumPy's rules (new dimensions on the left; size-1 dimensions
    /// repeated). No copy is made.
    #[track_caller]
    pub fn expand(&self, shape: impl IntoShape) -> Tensor {
        let shape = shape.into_shape();
        let ok = shape.rank() >= self.rank()
            && self
                .dims()
                .iter()
                .rev()
                .zip(shape.dims().iter().rev())
                .all(|(&a, &b)| a == b || a == 1);
        assert!(ok, "expand: cannot broadcast {} to {}", self.shape(), shape);
        if &shape == self.shape() {
            return self.clone();
        }
        let mut padded = vec![1; shape.rank() - self.rank()];
        padded.extend_from_slice(self.dims());
        let x = self.reshape(padded);
        if x.shape() == &shape {
            return x;
        }
        Tensor::from_op(
            Op::Expand,
            vec![x.clone()],
            shape,
            self.dtype(),
            self.device(),
        )
    }

    /// Alias of [`Tensor::expand`].
    #[track_caller]
    pub fn broadcast_to(&self, shape: impl IntoShape) -> Tensor {
        self.expand(shape)
    }

    /// Elements `start, start + step, ...` below `end` along `dim` (`step >= 1`; `end` is clamped
    /// to the dimension's size). Shape: dim becomes `ceil((end - start) / step)`.
    #[track_caller]
    pub fn slice(&self, dim: usize, start: usize, end: usize, step: usize) -> Tensor {
        assert!(
            dim < self.rank(),
            "slice: dimension {dim} out of range for {}",
            self.shape()
        );
        assert!(step >= 1, "slice: step must be at least 1, got {step}");
        let size = self.dims()[dim];
        let end = end.min(size);
        assert!(
            start <= end,
            "slice: start {start} is past end {end} of dimension {dim} of {}",
            self.shape()
        );
        let n = (end - start).div_ceil(step);
        if start == 0 && step == 1 && n == size {
            return self.clone();
        }
        let mut starts = vec![0i64; self.rank()];
        let mut steps = vec![1i64; self.rank()];
        starts[dim] = start as i64;
        steps[dim] = step as i64;
        let mut dims = self.dims().to_vec();
        dims[dim] = n;
        Tensor::from_op(
            Op::Slice {
                start: starts,
                step: steps,
            },
            vec![self.clone()],
            Shape(dims),
            self.dtype(),
            self.device(),
        )
    }

    /// `len` elements of `dim` from `start` (as `torch.narrow`).
    #[track_caller]
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Tensor {
        assert!(
            dim < self.rank() && start + len <= self.dims()[dim],
            "narrow: elements {start}..{} of dimension {dim} are outside {}",
            start + len,
            self.shape()
        );
        self.slice(dim, start, start + len, 1)
    }

    /// Reverses the order of elements along each of `dims`.
    #[track_caller]
    pub fn flip(&self, dims: &[usize]) -> Tensor {
        let mut starts = vec![0i64; self.rank()];
        let mut steps = vec![1i64; self.rank()];
        for &d in dims {
            assert!(
                d < self.rank(),
                "flip: dimension {d} out of range for {}",
                self.shape()
            );
            starts[d] = self.dims()[d] as i64 - 1;
            steps[d] = -1;
        }
        Tensor::from_op(
            Op::Slice {
                start: starts,
                step: steps,
            },
            vec![self.clone()],
            self.shape().clone(),
            self.dtype(),
            self.device(),
        )
    }

    /// Removes dimension `dim`, which must have size 1.
    #[track_caller]
    pub fn squeeze(&self, dim: usize) -> Tensor {
        assert!(
            dim < self.rank() && self.dims()[dim] == 1,
            "squeeze: dimension {dim} of {} is not of size 1",
            self.shape()
        );
        let mut dims = self.dims().to_vec();
        dims.remove(dim);
        self.reshape(dims)
    }

    /// Inserts a dimension of size 1 at `dim` (0..=rank).
    #[track_caller]
    pub fn unsqueeze(&self, dim: usize) -> Tensor {
        assert!(
            dim <= self.rank(),
            "unsqueeze: position {dim} out of range for {}",
            self.shape()
        );
        let mut dims = self.dims().to_vec();
        dims.insert(dim, 1);
        self.reshape(dims)
    }

    /// Merges dimensions `start..=end` into one (as `torch.flatten(x, start, end)`).
    #[track_caller]
    pub fn flatten(&self, start: usize, end: usize) -> Tensor {
        if self.rank() == 0 {
            return self.reshape([1]);
        }
        assert!(
            start <= end && end < self.rank(),
            "flatten: dimensions {start}..={end} out of range for {}",
            self.shape()
        );
        let mut dims = self.dims()[..start].to_vec();
        dims.push(self.dims()[start..=end].iter().product());
        dims.extend_from_slice(&self.dims()[end + 1..]);
        self.reshape(dims)
    }

    /// Constant padding: `pads[d] = (before, after)` elements added to dimension d, filled with
    /// `value`. `pads` may be shorter than the rank; it then applies to the leading dimensions.
    #[track_caller]
    pub fn pad(&self, pads: &[(usize, usize)], value: f64) -> Tensor {
        assert!(
            pads.len() <= self.rank(),
            "pad: {} (before, after) pairs for {}",
            pads.len(),
            self.shape()
        );
        if pads.iter().all(|&(b, a)| b == 0 && a == 0) {
            return self.clone();
        }
        let mut before = vec![0; self.rank()];
        let mut dims = self.dims().to_vec();
        for (d, &(b, a)) in pads.iter().enumerate() {
            before[d] = b;
            dims[d] += b + a;
        }
        let value = self.dtype().round(value);
        Tensor::from_op(
            Op::Pad { before, value },
            vec![self.clone()],
            Shape(dims),
            self.dtype(),
            self.device(),
        )
    }

    /// Joins tensors along `dim`; all other dimensions, dtypes and devices must agree.
    #[track_caller]
    pub fn cat(tensors: &[&Tensor], dim: usize) -> Tensor {
        assert!(!tensors.is_empty(), "cat: no tensors given");
        let first = tensors[0];
        assert!(
            dim < first.rank(),
            "cat: dimension {dim} out of range for {}",
            first.shape()
        );
        for t in tensors {
            let same_rest = t.rank() == first.rank()
                && t.dims()
                    .iter()
                    .zip(first.dims())
                    .enumerate()
                    .all(|(d, (a, b))| d == dim || a == b);
            assert!(
                same_rest && t.dtype() == first.dtype(),
                "cat: cannot join {} ({}) with {} ({}) along dimension {dim}",
                first.shape(),
                first.dtype(),
                t.shape(),
                t.dtype()
            );
            assert!(
                t.device().same(first.device()),
                "cat: tensors are on different devices"
            );
        }
        if tensors.len() == 1 {
            return first.clone();
        }
        // At most four inputs per node, so that a fused kernel can always stay under the device's
        // limit on storage bindings; longer lists become a tree of cats.
        if tensors.len() > 4 {
            let parts: Vec<Tensor> = tensors.chunks(4).map(|c| Tensor::cat(c, dim)).collect();
            let refs: Vec<&Tensor> = parts.iter().collect();
            return Tensor::cat(&refs, dim);
        }
        let mut dims = first.dims().to_vec();
        dims[dim] = tensors.iter().map(|t| t.dims()[dim]).sum();
        let inputs = tensors.iter().map(|t| (*t).clone()).collect();
        Tensor::from_op(
            Op::Cat { axis: dim },
            inputs,
            Shape(dims),
            first.dtype(),
            first.device(),
        )
    }

    /// Stacks tensors of the same shape along a new dimension `dim`.
    #[track_caller]
    pub fn stack(tensors: &[&Tensor], dim: usize) -> Tensor {
        assert!(!tensors.is_empty(), "stack: no tensors given");
        for t in tensors {
            assert!(
                t.shape() == tensors[0].shape(),
                "stack: shapes {} and {} differ",
                tensors[0].shape(),
                t.shape()
            );
        }
        let parts: Vec<Tensor> = tensors.iter().map(|t| t.unsqueeze(dim)).collect();
        let refs: Vec<&Tensor> = parts.iter().collect();
        Tensor::cat(&refs, dim)
    }
}
