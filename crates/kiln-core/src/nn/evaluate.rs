//! Classification accuracy of a model on a data split.

use super::Module;
use crate::data::Split;
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::no_grad;

/// The fraction of `split`'s images that `model` classifies correctly (argmax of its logits
/// equals the label), in evaluation mode and without gradient tracking, 500 images per batch.
/// The model is put back in training mode afterwards.
pub fn evaluate(model: &dyn Module, split: Split<'_>) -> Result<f64> {
    if split.is_empty() {
        return Ok(0.0);
    }
    model.set_training(false);
    let result = no_grad(|| -> Result<f64> {
        let mut correct = 0.0;
        for (images, labels) in split.batches(500) {
            let logits = model.forward(&images);
            let hits = logits.argmax(1).eq(&labels).cast(DType::F32).sum();
            correct += hits.item::<f32>()? as f64;
        }
        Ok(correct / split.len() as f64)
    });
    model.set_training(true);
    result
}
