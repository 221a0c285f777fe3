//! Classification accuracy of a model on a data split or on any iterator of batches.

use crate::split::Split;
use kiln_core::dtype::DType;
use kiln_core::error::Result;
use kiln_core::nn::Module;
use kiln_core::tensor::{no_grad, Tensor};

/// The fraction of `split`'s images that `model` classifies correctly (argmax of its logits
/// equals the label), in evaluation mode and without gradient tracking, 500 images per batch
/// normalised as [`Split::batches`] does by default. The model is put back in training mode
/// afterwards. For other batches (another normalisation, an image folder), use [`accuracy`].
pub fn evaluate(model: &dyn Module, split: Split<'_>) -> Result<f64> {
    if split.is_empty() {
        return Ok(0.0);
    }
    accuracy(model, split.batches(500))
}

/// The fraction of the images of `batches` (`(images, labels)` pairs, labels i32 `[B]`) that
/// `model` classifies correctly, in evaluation mode and without gradient tracking; 0 when the
/// batches hold no image. The model is put back in training mode afterwards.
pub fn accuracy(
    model: &dyn Module,
    batches: impl IntoIterator<Item = (Tensor, Tensor)>,
) -> Result<f64> {
    model.set_training(false);
    let result = no_grad(|| -> Result<f64> {
        let (mut correct, mut seen) = (0.0, 0usize);
        for (images, labels) in batches {
            seen += labels.dims()[0];
            let logits = model.forward(&images);
            let hits = logits.argmax(1).eq(&labels).cast(DType::F32).sum();
            correct += hits.item::<f32>()? as f64;
        }
        Ok(if seen == 0 {
            0.0
        } else {
            correct / seen as f64
        })
    });
    model.set_training(true);
    result
}
