//! Losses and metrics, composed from primitive ops only. Class-index losses build the one-hot of
//! the labels and select with a multiply and a sum, so that log-softmax, selection and the mean
//! fuse into a few kernels and autodiff needs no gather/scatter.
//!
//! Labels are lazy tensors, so their values cannot be checked when the graph is built: a label
//! outside `0..C` selects nothing, i.e. its sample contributes 0 to the summed loss (the mean still
//! divides by the full batch size `N`).

use crate::dtype::DType;
use crate::tensor::Tensor;

impl Tensor {
    /// Checks `self` is float `[N, C]` and `labels` is I32 `[N]`, and returns the labels on
    /// `self`'s device (host data not yet uploaded follows the scores, as in binary ops).
    #[track_caller]
    fn class_labels(&self, op: &str, labels: &Tensor) -> Tensor {
        assert!(
            self.rank() == 2 && self.dtype().is_float(),
            "{op}: expects float [N, C] scores, got {} {}",
            self.dtype(),
            self.shape()
        );
        assert!(
            labels.dtype() == DType::I32 && labels.rank() == 1,
            "{op}: expects I32 [N] class indices, got {} {}",
            labels.dtype(),
            labels.shape()
        );
        assert!(
            labels.dims()[0] == self.dims()[0],
            "{op}: {} scores but {} labels (shapes {} and {})",
            self.dims()[0],
            labels.dims()[0],
            self.shape(),
            labels.shape()
        );
        Tensor::same_device(op, self, labels).1
    }

    /// Checks `self` and `target` are float tensors of the same shape and dtype.
    #[track_caller]
    fn assert_same_float(&self, op: &str, target: &Tensor) {
        assert!(
            self.dtype().is_float() && self.dtype() == target.dtype(),
            "{op}: needs float tensors of one dtype, got {} {} and {} {}",
            self.dtype(),
            self.shape(),
            target.dtype(),
            target.shape()
        );
        assert!(
            self.shape() == target.shape(),
            "{op}: input {} and target {} differ in shape",
            self.shape(),
            target.shape()
        );
    }

    /// Mean cross-entropy of logits `[N, C]` (float) against class indices `labels` `[N]` (I32):
    /// `mean_i(-log_softmax(x)[i, labels[i]])`, a scalar `[]`, as PyTorch's `cross_entropy` with
    /// its defaults. A label outside `0..C` contributes 0 (the values are lazy and cannot be
    /// checked when the graph is built); the mean still divides by `N`.
    #[track_caller]
    pub fn cross_entropy(&self, labels: &Tensor) -> Tensor {
        let labels = self.class_labels("cross_entropy", labels);
        self.log_softmax(1).nll_loss(&labels)
    }

    /// Cross-entropy with label smoothing `e` in `[0, 1]`, with PyTorch's semantics: the target
    /// distribution is `(1 - e) * one_hot + e / C`, so the loss of a sample is
    /// `(1 - e) * (-logp[label]) + e * mean_c(-logp[c])`, averaged over the `N` samples. Logits
    /// `[N, C]` float, labels `[N]` I32; a scalar `[]`. A sample whose label is outside `0..C`
    /// contributes 0 (both terms); the mean still divides by `N`.
    #[track_caller]
    pub fn cross_entropy_with(&self, labels: &Tensor, label_smoothing: f64) -> Tensor {
        let labels = self.class_labels("cross_entropy_with", labels);
        assert!(
            (0.0..=1.0).contains(&label_smoothing),
            "cross_entropy_with: label_smoothing must be in [0, 1], got {label_smoothing}"
        );
        if label_smoothing == 0.0 {
            return self.cross_entropy(&labels);
        }
        let (n, c) = (self.dims()[0], self.dims()[1]);
        let logp = self.log_softmax(1);
        let hot = labels.one_hot(c).cast(self.dtype());
        // 1 for a label in 0..C, else 0, as [N, 1]: an invalid label smooths nothing either.
        let l = labels.unsqueeze(1);
        let valid = l
            .ge(&l.scalar_like(0.0))
            .cast(self.dtype())
            .mul(&l.lt(&l.scalar_like(c as f64)).cast(self.dtype()));
        let target = hot
            .mul_scalar(1.0 - label_smoothing)
            .add(&valid.mul_scalar(label_smoothing / c as f64));
        logp.mul(&target).sum().mul_scalar(-1.0 / n.max(1) as f64)
    }

    /// Mean negative log-likelihood of log-probabilities `[N, C]` (float) at class indices
    /// `labels` `[N]` (I32): `mean_i(-logp[i, labels[i]])`, a scalar `[]`. A label outside
    /// `0..C` contributes 0; the mean still divides by `N`.
    #[track_caller]
    pub fn nll_loss(&self, labels: &Tensor) -> Tensor {
        let labels = self.class_labels("nll_loss", labels);
        let n = self.dims()[0];
        let hot = labels.one_hot(self.dims()[1]).cast(self.dtype());
        self.mul(&hot).sum().mul_scalar(-1.0 / n.max(1) as f64)
    }

    /// Mean squared error `mean((x - target)²)` over all elements, a scalar `[]`. `self` and
    /// `target` are float tensors of one shape and dtype.
    #[track_caller]
    pub fn mse_loss(&self, target: &Tensor) -> Tensor {
        self.assert_same_float("mse_loss", target);
        self.sub(target).square().mean()
    }

    /// Mean binary cross-entropy of logits `x` against targets `t` in `[0, 1]` (same shape and
    /// dtype, float), a scalar `[]`: the mean of `max(x, 0) - x t + log(1 + exp(-|x|))`, which
    /// equals `-(t log σ(x) + (1 - t) log(1 - σ(x)))` without overflowing for large `|x|`. Its
    /// gradient is `(σ(x) - t) / numel` everywhere, `x = 0` included.
    #[track_caller]
    pub fn binary_cross_entropy_with_logits(&self, target: &Tensor) -> Tensor {
        self.assert_same_float("binary_cross_entropy_with_logits", target);
        let zero = self.scalar_like(0.0);
        // Both written with the same `x >= 0` test so their slopes at 0 add up to σ(0) = 1/2.
        let nonneg = self.ge(&zero);
        let relu = nonneg.where_cond(self, &zero);
        let abs = nonneg.where_cond(self, &self.neg());
        let softplus_tail = abs.neg().exp().add_scalar(1.0).log();
        relu.sub(&self.mul(target)).add(&softplus_tail).mean()
    }

    /// Fraction of samples whose highest logit (the first one, on ties) is at the label: logits
    /// `[N, C]` float, labels `[N]` I32 -> F32 scalar `[]` in `[0, 1]`. Not differentiable.
    #[track_caller]
    pub fn accuracy(&self, labels: &Tensor) -> Tensor {
        let labels = self.class_labels("accuracy", labels);
        self.argmax(1).eq(&labels).cast(DType::F32).mean()
    }
}
