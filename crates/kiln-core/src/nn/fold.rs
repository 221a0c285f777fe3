//! Folding a batch-norm layer into the convolution before it, for inference.

use super::{parameter, BatchNorm2d, Conv2d};
use crate::error::{KilnError, Result};
use crate::tensor::{no_grad, Tensor};

/// A convolution that computes `bn(conv(x))` of evaluation mode in one layer: with
/// `s = weight_bn / sqrt(running_var + eps)` per output channel, the weight `[O, C/g, k, k]`
/// becomes `weight * s` (each output channel scaled) and the bias `[O]` becomes
/// `(bias - running_mean) * s + bias_bn` (a convolution without a bias counts as bias 0). The
/// new parameters are realized on the convolution's device; `conv` and `bn` are unchanged.
///
/// Errors if `bn` keeps no running statistics (there is nothing fixed to fold) or its channel
/// count differs from the convolution's outputs, or if the device fails.
pub fn fold_batch_norm(conv: &Conv2d, bn: &BatchNorm2d) -> Result<Conv2d> {
    let outputs = conv.weight.dims()[0];
    if bn.channels() != outputs {
        return Err(KilnError::InvalidArgument(format!(
            "fold_batch_norm: the convolution has {outputs} output channels but the batch norm \
             has {}",
            bn.channels()
        )));
    }
    let Some((mean, var)) = bn.running_stats() else {
        return Err(KilnError::InvalidArgument(
            "fold_batch_norm: the batch norm keeps no running statistics \
             (track_running_stats is off), so it has no fixed scale to fold"
                .into(),
        ));
    };
    let dev = conv.weight.device();
    let (mean, var) = (mean.to_device(dev)?, var.to_device(dev)?);
    no_grad(|| -> Result<Conv2d> {
        let mut scale = var.add_scalar(bn.options.eps).rsqrt();
        if let Some(w) = &bn.weight {
            scale = scale.mul(&w.to_device(dev)?);
        }
        let bias = conv
            .bias
            .clone()
            .unwrap_or_else(|| Tensor::zeros([outputs], dev));
        let mut new_bias = bias.sub(&mean).mul(&scale);
        if let Some(b) = &bn.bias {
            new_bias = new_bias.add(&b.to_device(dev)?);
        }
        let weight = conv.weight.mul(&scale.reshape([outputs, 1, 1, 1]));
        Tensor::realize_all(&[&weight, &new_bias])?;
        Ok(Conv2d {
            weight: parameter(weight),
            bias: Some(parameter(new_bias)),
            options: conv.options,
        })
    })
}
