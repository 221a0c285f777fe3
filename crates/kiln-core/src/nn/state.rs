//! Loading parameter values into a model (from a checkpoint or another model).

use super::Module;
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;

/// Copies `values` (named as [`Module::named_parameters`] names them) into `model`'s parameters,
/// in place: the model keeps its tensors, their values change. Every parameter must be present
/// with its shape and dtype; names the model does not have are an error too, so that a
/// checkpoint of another model is not half-loaded. Nothing changes unless everything matches.
pub fn load_parameters(model: &dyn Module, values: &[(String, Tensor)]) -> Result<()> {
    let params = model.named_parameters();
    for (name, _) in values {
        if !params.iter().any(|(n, _)| n == name) {
            return Err(KilnError::Data(format!(
                "the model has no parameter {name:?} (it has {})",
                params
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mut staged = vec![];
    for (name, p) in &params {
        let v = values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| KilnError::Data(format!("no values for parameter {name:?}")))?;
        if v.dims() != p.dims() || v.dtype() != p.dtype() {
            return Err(KilnError::Data(format!(
                "parameter {name:?} is {} {} in the model but {} {} in the values",
                p.dtype(),
                p.shape(),
                v.dtype(),
                v.shape()
            )));
        }
        staged.push((p, v.to_device(p.device())?.detach()?));
    }
    for (p, v) in staged {
        p.set_storage(v.storage().expect("realized"));
    }
    Ok(())
}
