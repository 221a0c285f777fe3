//! Activations, softmax and friends, composed from primitive ops only: each is a short chain of
//! elementwise ops (and at most two reductions), so the scheduler fuses it into the kernels around
//! it and autodiff differentiates it through the primitives' rules.

use crate::dtype::DType;
use crate::tensor::{no_grad, Tensor};

/// Coefficients of the Chebyshev-fitted `erfc` of Numerical Recipes (Press et al., 2nd ed.,
/// §6.2, `erfcc`), innermost first: `erfc(z) ≈ t·exp(-z² + P(t))` with `t = 1 / (1 + z/2)`,
/// `z >= 0`, fractional error below 1.2e-7 everywhere.
const ERFC_COEFFS: [f64; 10] = [
    0.17087277,
    -0.82215223,
    1.48851587,
    -1.13520398,
    0.27886807,
    -0.18628806,
    0.09678418,
    0.37409196,
    1.00002368,
    -1.26551223,
];

impl Tensor {
    #[track_caller]
    fn assert_float(&self, op: &str) {
        assert!(
            self.dtype().is_float(),
            "{op}: needs a float tensor, got {} {}",
            self.dtype(),
            self.shape()
        );
    }

    #[track_caller]
    fn assert_axis(&self, op: &str, axis: usize) {
        assert!(
            axis < self.rank(),
            "{op}: axis {axis} out of range for shape {}",
            self.shape()
        );
    }

    /// Leaky ReLU: `x` where `x > 0`, else `slope * x` (the course uses `slope = 0.1`, PyTorch's
    /// default is 0.01). Any shape, float; the result has the input's shape. The gradient at
    /// exactly 0 is `slope`, as in PyTorch.
    #[track_caller]
    pub fn leaky_relu(&self, slope: f64) -> Tensor {
        self.assert_float("leaky_relu");
        let zero = self.scalar_like(0.0);
        self.gt(&zero).where_cond(self, &self.mul_scalar(slope))
    }

    /// ELU: `x` where `x > 0`, else `alpha * (exp(x) - 1)`. Any shape, float; the result has the
    /// input's shape. The exponential only ever sees `min(x, 0)`, so a large positive `x` in the
    /// branch that is not taken cannot overflow to infinity and turn its (zero) gradient into NaN.
    /// The gradient at exactly 0 is `alpha`, as in PyTorch.
    #[track_caller]
    pub fn elu(&self, alpha: f64) -> Tensor {
        self.assert_float("elu");
        let zero = self.scalar_like(0.0);
        let pos = self.gt(&zero);
        let neg_part = pos
            .where_cond(&zero, self)
            .exp()
            .add_scalar(-1.0)
            .mul_scalar(alpha);
        pos.where_cond(self, &neg_part)
    }

    /// `erfc(|x| / sqrt 2)` for the Gaussian CDF, by the Numerical Recipes fit (fractional error
    /// < 1.2e-7). Differentiable everywhere but at 0 (where `|x|` has no slope; callers multiply
    /// by `x` there).
    fn erfc_of_abs_over_sqrt2(&self) -> Tensor {
        // t = 1 / (1 + z / 2) with z = |x| / sqrt 2.
        let t = self
            .abs()
            .mul_scalar(0.5 * std::f64::consts::FRAC_1_SQRT_2)
            .add_scalar(1.0)
            .recip();
        let mut p = t.mul_scalar(ERFC_COEFFS[0]);
        for (i, &c) in ERFC_COEFFS[1..].iter().enumerate() {
            p = p.add_scalar(c);
            if i + 2 < ERFC_COEFFS.len() {
                p = p.mul(&t);
            }
        }
        // -z² = -x² / 2
        t.mul(&self.square().mul_scalar(-0.5).add(&p).exp())
    }

    /// GELU, exact (erf) form, as PyTorch's default `gelu(x, approximate='none')`:
    /// `x * Φ(x) = x * 0.5 * (1 + erf(x / sqrt 2))`. Any shape, float; the result has the input's
    /// shape.
    ///
    /// There is no erf primitive, so `Φ` is composed from `exp` with the Chebyshev fit of `erfc` of
    /// Numerical Recipes (§6.2): its fractional error is below 1.2e-7 for every argument, so
    /// `Φ(x)` is accurate to 6e-8 absolute and, in the negative tail where `Φ` is tiny, to 1.2e-7
    /// relative (before f32 rounding, which adds about half an ulp of `x²/2` relative there:
    /// 2e-6 at `x = -8`); `Φ(x) = erfc(|x|/√2) / 2` for `x < 0` and `1 - erfc(x/√2) / 2`
    /// otherwise. Gradients flow through the same formula.
    #[track_caller]
    pub fn gelu(&self) -> Tensor {
        self.assert_float("gelu");
        // Φ = [x >= 0] ∓ erfc / 2, the erfc term read once (a node read twice gets a kernel and
        // a buffer of its own).
        let neg = |a: f64, b: f64| {
            self.lt(&self.scalar_like(0.0))
                .where_cond(&self.scalar_like(a), &self.scalar_like(b))
        };
        let cdf = neg(0.0, 1.0).add(&neg(0.5, -0.5).mul(&self.erfc_of_abs_over_sqrt2()));
        self.mul(&cdf)
    }

    /// GELU, tanh approximation (PyTorch's `gelu(x, approximate='tanh')`):
    /// `0.5 * x * (1 + tanh(sqrt(2/π) * (x + 0.044715 x³)))`. Any shape, float; the result has
    /// the input's shape.
    #[track_caller]
    pub fn gelu_tanh(&self) -> Tensor {
        self.assert_float("gelu_tanh");
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let inner = self
            .add(&self.mul(&self.square()).mul_scalar(0.044715))
            .mul_scalar(k);
        self.mul(&inner.tanh().add_scalar(1.0)).mul_scalar(0.5)
    }

    /// Softmax along `axis`: `exp(x - max) / sum(exp(x - max))`, the max and the sum taken over
    /// `axis`. Any shape, float; the result has the input's shape and sums to 1 along `axis`.
    /// Subtracting the maximum keeps it finite for large inputs; the result does not depend on
    /// it, so no gradient flows through it (its contributions would cancel exactly, at the cost
    /// of several kernels in the backward pass).
    #[track_caller]
    pub fn softmax(&self, axis: usize) -> Tensor {
        self.assert_float("softmax");
        self.assert_axis("softmax", axis);
        let m = no_grad(|| self.max_axes_keepdim(&[axis]));
        // `e` is shared (so it gets a buffer of its own) rather than built twice: building it
        // twice saves that kernel in the forward pass but costs three more in the backward pass,
        // where autodiff reads each copy again.
        let e = self.sub(&m).exp();
        e.div(&e.sum_axes_keepdim(&[axis]))
    }

    /// Log of the softmax along `axis`: `x - max - log(sum(exp(x - max)))`. Any shape, float; the
    /// result has the input's shape. Finite wherever the input is (e.g. `[-1000, 0]`), unlike
    /// `softmax(axis).log()`. As in [`Tensor::softmax`], no gradient flows through the max.
    #[track_caller]
    pub fn log_softmax(&self, axis: usize) -> Tensor {
        self.assert_float("log_softmax");
        self.assert_axis("log_softmax", axis);
        let m = no_grad(|| self.max_axes_keepdim(&[axis]));
        // `x - m` is built twice on purpose: a node read by two users gets a buffer (a kernel) of
        // its own, while each copy folds into its reader's kernel (one kernel fewer forward, the
        // same count with the backward pass).
        let shifted = || self.sub(&m);
        shifted().sub(&shifted().exp().sum_axes_keepdim(&[axis]).log())
    }

    /// `log(sum(exp(x)))` over `axes`, computed as `m + log(sum(exp(x - m)))` with `m` the
    /// maximum, so it is finite for large inputs. Float, any shape; the result drops `axes`
    /// ([`Tensor::logsumexp_keepdim`] keeps them as size 1). With no axes it is `x` itself. No
    /// gradient flows through `m` (the result does not depend on it).
    #[track_caller]
    pub fn logsumexp(&self, axes: &[usize]) -> Tensor {
        self.logsumexp_over(axes, false)
    }

    /// [`Tensor::logsumexp`] with `axes` kept as size 1.
    #[track_caller]
    pub fn logsumexp_keepdim(&self, axes: &[usize]) -> Tensor {
        self.logsumexp_over(axes, true)
    }

    /// `logsumexp` over `axes`, dropped unless `keepdim`.
    #[track_caller]
    fn logsumexp_over(&self, axes: &[usize], keepdim: bool) -> Tensor {
        self.assert_float("logsumexp");
        for &a in axes {
            self.assert_axis("logsumexp", a);
        }
        if axes.is_empty() {
            return self.clone();
        }
        let m = no_grad(|| self.max_axes_keepdim(axes));
        let out = self.sub(&m).exp().sum_axes_keepdim(axes).log().add(&m);
        if keepdim {
            out
        } else {
            out.drop_axes(axes)
        }
    }

    /// Maxout: dimension `axis`, of size `m * pieces`, is split into `m` groups of `pieces`
    /// **consecutive** elements (viewed as `[m, pieces]`, row-major), and each group is replaced
    /// by its maximum. Shape `[.., m * pieces, ..]` -> `[.., m, ..]`. So with `pieces = 2` along
    /// an axis `[a, b, c, d]` the result is `[max(a, b), max(c, d)]`. The gradient goes to the
    /// largest element of each group (ties share it).
    #[track_caller]
    pub fn maxout(&self, pieces: usize, axis: usize) -> Tensor {
        self.assert_axis("maxout", axis);
        assert!(pieces >= 1, "maxout: pieces must be at least 1, got 0");
        let n = self.dims()[axis];
        assert!(
            n.is_multiple_of(pieces),
            "maxout: dimension {axis} of shape {} has size {n}, not a multiple of {pieces} pieces",
            self.shape()
        );
        let mut dims = self.dims().to_vec();
        dims[axis] = n / pieces;
        dims.insert(axis + 1, pieces);
        self.reshape(dims).max_axes(&[axis + 1])
    }

    /// One-hot encoding of integer labels: `[..]` I32 -> `[.., classes]` F32, with 1 at the
    /// label's position and 0 elsewhere. A label outside `0..classes` gives a row of zeros
    /// (labels are lazy, so they cannot be checked when the graph is built).
    #[track_caller]
    pub fn one_hot(&self, classes: usize) -> Tensor {
        assert!(
            self.dtype() == DType::I32,
            "one_hot: labels must be I32 class indices, got {} {}",
            self.dtype(),
            self.shape()
        );
        assert!(
            classes <= i32::MAX as usize,
            "one_hot: {classes} classes do not fit in i32"
        );
        let ids = Tensor::arange_i32(0, classes as i32, 1, self.device());
        self.unsqueeze(self.rank()).eq(&ids).cast(DType::F32)
    }
}
