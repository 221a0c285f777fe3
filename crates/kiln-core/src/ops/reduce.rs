//! Reductions over any set of axes, with or without keeping the reduced axes.

use crate::dtype::DType;
use crate::op::{Op, ReduceOp};
use crate::shape::Shape;
use crate::tensor::Tensor;

impl Tensor {
    /// Records a reduction of `axes` (sorted, deduplicated); the result keeps them as size 1,
    /// then drops them unless `keepdim`.
    #[track_caller]
    fn reduce(&self, op: ReduceOp, axes: &[usize], keepdim: bool) -> Tensor {
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        assert!(
            axes.iter().all(|&a| a < self.rank()),
            "{op:?}: axes {axes:?} out of range for shape {}",
            self.shape()
        );
        let is_arg = matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin);
        if is_arg || matches!(op, ReduceOp::Max | ReduceOp::Min) {
            assert!(
                axes.iter().all(|&a| self.dims()[a] > 0),
                "{op:?}: cannot reduce an empty dimension of {}",
                self.shape()
            );
        }
        let input = if self.dtype() == DType::Bool {
            self.cast(DType::I32)
        } else {
            self.clone()
        };
        let mut kept = self.dims().to_vec();
        for &a in &axes {
            kept[a] = 1;
        }
        let dtype = if is_arg { DType::I32 } else { input.dtype() };
        let out = Tensor::from_op(
            Op::Reduce {
                op,
                axes: axes.clone(),
            },
            vec![input],
            Shape(kept.clone()),
            dtype,
            self.device(),
        );
        if keepdim {
            out
        } else {
            out.drop_axes(&axes)
        }
    }

    /// Removes `axes` (each of size 1, as a reduction with `keepdim` leaves them).
    pub(crate) fn drop_axes(&self, axes: &[usize]) -> Tensor {
        let dims: Vec<usize> = self
            .dims()
            .iter()
            .enumerate()
            .filter(|(d, _)| !axes.contains(d))
            .map(|(_, &n)| n)
            .collect();
        self.reshape(dims)
    }

    /// Sum over `axes`, which the result drops (bool counts as i32): `[2, 3]` summed over axis
    /// 1 is `[2]`. [`Tensor::sum_axes_keepdim`] keeps them.
    #[track_caller]
    pub fn sum_axes(&self, axes: &[usize]) -> Tensor {
        self.reduce(ReduceOp::Sum, axes, false)
    }
    /// Sum over `axes`, kept as size 1 (bool counts as i32): `[2, 3]` summed over axis 1 is
    /// `[2, 1]`, which broadcasts against `self`.
    #[track_caller]
    pub fn sum_axes_keepdim(&self, axes: &[usize]) -> Tensor {
        self.reduce(ReduceOp::Sum, axes, true)
    }
    /// Maximum over `axes`, which the result drops.
    #[track_caller]
    pub fn max_axes(&self, axes: &[usize]) -> Tensor {
        self.reduce(ReduceOp::Max, axes, false)
    }
    /// Maximum over `axes`, kept as size 1.
    #[track_caller]
    pub fn max_axes_keepdim(&self, axes: &[usize]) -> Tensor {
        self.reduce(ReduceOp::Max, axes, true)
    }
    /// Minimum over `axes`, which the result drops.
    #[track_caller]
    pub fn min_axes(&self, axes: &[usize]) -> Tensor {
        self.reduce(ReduceOp::Min, axes, false)
    }
    /// Minimum over `axes`, kept as size 1.
    #[track_caller]
    pub fn min_axes_keepdim(&self, axes: &[usize]) -> Tensor {
        self.reduce(ReduceOp::Min, axes, true)
    }
    /// Index (i32) of the first maximum over `axes`, counted row-major within the reduced axes;
    /// the result drops `axes`.
    #[track_caller]
    pub fn argmax_axes(&self, axes: &[usize]) -> Tensor {
        self.reduce(ReduceOp::ArgMax, axes, false)
    }
    /// [`Tensor::argmax_axes`] with `axes` kept as size 1.
    #[track_caller]
    pub fn argmax_axes_keepdim(&self, axes: &[usize]) -> Tensor {
        self.reduce(ReduceOp::ArgMax, axes, true)
    }
    /// Index (i32) of the first minimum over `axes`, counted row-major within the reduced axes;
    /// the result drops `axes`.
    #[track_caller]
    pub fn argmin_axes(&self, axes: &[usize]) -> Tensor {
        self.reduce(ReduceOp::ArgMin, axes, false)
    }
    /// [`Tensor::argmin_axes`] with `axes` kept as size 1.
    #[track_caller]
    pub fn argmin_axes_keepdim(&self, axes: &[usize]) -> Tensor {
        self.reduce(ReduceOp::ArgMin, axes, true)
    }
    /// Index (i32) of the first maximum along `axis`, which the result drops.
    #[track_caller]
    pub fn argmax(&self, axis: usize) -> Tensor {
        self.argmax_axes(&[axis])
    }
    /// Index (i32) of the first maximum along `axis`, kept as size 1.
    #[track_caller]
    pub fn argmax_keepdim(&self, axis: usize) -> Tensor {
        self.argmax_axes_keepdim(&[axis])
    }
    /// Index (i32) of the first minimum along `axis`, which the result drops.
    #[track_caller]
    pub fn argmin(&self, axis: usize) -> Tensor {
        self.argmin_axes(&[axis])
    }
    /// Index (i32) of the first minimum along `axis`, kept as size 1.
    #[track_caller]
    pub fn argmin_keepdim(&self, axis: usize) -> Tensor {
        self.argmin_axes_keepdim(&[axis])
    }
    /// Mean over `axes` (float), which the result drops.
    #[track_caller]
    pub fn mean_axes(&self, axes: &[usize]) -> Tensor {
        self.mean_over(axes, false)
    }
    /// Mean over `axes` (float), kept as size 1.
    #[track_caller]
    pub fn mean_axes_keepdim(&self, axes: &[usize]) -> Tensor {
        self.mean_over(axes, true)
    }
    /// Variance over `axes` with Bessel's correction (divides by n - 1, as `torch.var`), which
    /// the result drops.
    #[track_caller]
    pub fn var_axes(&self, axes: &[usize]) -> Tensor {
        self.variance(axes, false, 1)
    }
    /// [`Tensor::var_axes`] with `axes` kept as size 1.
    #[track_caller]
    pub fn var_axes_keepdim(&self, axes: &[usize]) -> Tensor {
        self.variance(axes, true, 1)
    }
    /// Variance over `axes` dividing by `n - correction` (0: population variance), which the
    /// result drops.
    #[track_caller]
    pub fn var_axes_with(&self, axes: &[usize], correction: usize) -> Tensor {
        self.variance(axes, false, correction)
    }
    /// [`Tensor::var_axes_with`] with `axes` kept as size 1.
    #[track_caller]
    pub fn var_axes_with_keepdim(&self, axes: &[usize], correction: usize) -> Tensor {
        self.variance(axes, true, correction)
    }

    /// The mean over `axes`, dropped unless `keepdim`.
    #[track_caller]
    fn mean_over(&self, axes: &[usize], keepdim: bool) -> Tensor {
        assert!(
            self.dtype().is_float(),
            "mean: needs a float tensor, got {}",
            self.dtype()
        );
        let count: usize = axes
            .iter()
            .map(|&a| self.dims().get(a).copied().unwrap_or(1))
            .product();
        self.reduce(ReduceOp::Sum, axes, keepdim)
            .div_scalar(count as f64)
    }

    /// The variance over `axes` dividing by `n - correction`, dropped unless `keepdim`.
    #[track_caller]
    fn variance(&self, axes: &[usize], keepdim: bool, correction: usize) -> Tensor {
        assert!(
            self.dtype().is_float(),
            "var: needs a float tensor, got {}",
            self.dtype()
        );
        let count: usize = axes
            .iter()
            .map(|&a| self.dims().get(a).copied().unwrap_or(1))
            .product();
        let centered = self.sub(&self.mean_axes_keepdim(axes));
        let denom = count.saturating_sub(correction).max(1);
        centered
            .square()
            .reduce(ReduceOp::Sum, axes, keepdim)
            .div_scalar(denom as f64)
    }

    /// Sum of all elements (shape `[]`).
    #[track_caller]
    pub fn sum(&self) -> Tensor {
        self.sum_axes(&(0..self.rank()).collect::<Vec<_>>())
    }
    /// Mean of all elements (shape `[]`).
    #[track_caller]
    pub fn mean(&self) -> Tensor {
        self.mean_axes(&(0..self.rank()).collect::<Vec<_>>())
    }
    /// Largest element (shape `[]`).
    #[track_caller]
    pub fn max(&self) -> Tensor {
        self.max_axes(&(0..self.rank()).collect::<Vec<_>>())
    }
    /// Smallest element (shape `[]`).
    #[track_caller]
    pub fn min(&self) -> Tensor {
        self.min_axes(&(0..self.rank()).collect::<Vec<_>>())
    }
}
