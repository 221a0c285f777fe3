//! Synchronized batch statistics (PyTorch's `SyncBatchNorm`): in training mode a batch-norm layer
//! whose statistics are gathered normalizes every process's part of a global batch with the
//! mean and variance of the whole global batch, as one process holding all of it would.
//!
//! Each process computes its part's per-channel mean, sum of squared deviations and count; a
//! *gather* (a [`HostFunction`], `[K] -> [R, K]`, made by a collective library such as
//! `kiln-distributed`) gives every process all `R` processes' values; each process combines them
//! with the parallel formula of Chan et al. (`M2 = sum M2_r + sum n_r (mean_r - mean)^2`: no
//! cancellation of large means, unlike `E[x^2] - E[x]^2`). Every process runs the same plan on
//! the same gathered values, so all get the same bits. The gradient flows back through the combination into the gather,
//! whose rule sums every process's gradient of the gathered values: the all-reduce PyTorch's
//! `SyncBatchNorm` makes in its backward pass.
//!
//! Forward and backward thus each hold one host call per layer, and a training step runs as
//! `2 x layers + 1` stages instead of one plan (see [`crate::host_call`]).

use super::{BatchNorm, Module};
use crate::dtype::DType;
use crate::host_call::HostFunction;
use crate::tensor::Tensor;
use std::sync::Arc;

/// The statistics a training-mode batch norm normalizes with.
pub(crate) struct BatchStatistics {
    /// Per-channel mean, keeping the reduced dimensions (`[1, C, 1, ..]`).
    pub mean: Tensor,
    /// Per-channel biased variance, keeping the reduced dimensions.
    pub var: Tensor,
    /// Per-channel unbiased variance `[C]`, for the running statistics.
    pub unbiased: Tensor,
    /// `x - mean`, `x`'s shape.
    pub centered: Tensor,
}

/// The statistics of `x` (`[N, C, ..]`) over `axes` (every dimension but 1) combined over the
/// processes of `gather`. A gather turns this process's `[K]` values into every process's
/// `[R, K]` (row `r` from process `r`, the same on every process); its gradient rule takes the
/// gradient `[R, K]` of the gathered values and returns, for this process, the sum over the
/// processes of their gradients' row for this process.
pub(crate) fn gathered_statistics(
    x: &Tensor,
    axes: &[usize],
    gather: &Arc<dyn HostFunction>,
) -> BatchStatistics {
    let c = x.dims()[1];
    let n = x.numel() / c.max(1);
    let xf = x.cast(DType::F32);
    let local_mean = xf.mean_axes_keepdim(axes);
    let local_m2 = xf.sub(&local_mean).square().sum_axes(axes);
    let count = Tensor::full([1], n as f32, x.device());
    let packed = Tensor::cat(&[&local_mean.reshape([c]), &local_m2, &count], 0);
    let all = packed.host_call(gather.clone());
    assert!(
        all.rank() == 2 && all.dims()[1] == 2 * c + 1,
        "SyncBatchNorm: the gather must return [processes, {}], got {}",
        2 * c + 1,
        all.shape()
    );
    assert!(
        n > 1 || all.dims()[0] > 1,
        "SyncBatchNorm: expects more than one value per channel over all processes when \
         training, got {} on one process",
        x.shape()
    );
    let (means, m2s, counts) = (
        all.narrow(1, 0, c),
        all.narrow(1, c, c),
        all.narrow(1, 2 * c, 1),
    );
    let total = counts.sum_axes_keepdim(&[0]);
    let mean = means.mul(&counts).sum_axes_keepdim(&[0]).div(&total);
    let between = counts.mul(&means.sub(&mean).square());
    let var = m2s.add(&between).sum_axes_keepdim(&[0]).div(&total);
    let unbiased = var
        .mul(&total.div(&total.add_scalar(-1.0)))
        .reshape([c])
        .cast(x.dtype());
    let mut keep = vec![1; x.rank()];
    keep[1] = c;
    let mean = mean.reshape(keep.clone()).cast(x.dtype());
    BatchStatistics {
        centered: x.sub(&mean),
        mean,
        var: var.reshape(keep).cast(x.dtype()),
        unbiased,
    }
}

/// Every batch-norm layer of `model` (found through [`Module::children`] and
/// [`Module::as_batch_norm`]) with its name in the model (`layer1.0.bn1`), in registration order.
pub fn batch_norm_layers(model: &dyn Module) -> Vec<(String, &BatchNorm)> {
    let mut out = vec![];
    collect(model, String::new(), &mut out);
    out
}

fn collect<'a>(m: &'a dyn Module, name: String, out: &mut Vec<(String, &'a BatchNorm)>) {
    if let Some(bn) = m.as_batch_norm() {
        out.push((name, bn));
        return;
    }
    for (child, module) in m.children() {
        let full = if name.is_empty() {
            child
        } else {
            format!("{name}.{child}")
        };
        collect(module, full, out);
    }
}
