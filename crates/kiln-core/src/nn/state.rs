//! Loading and saving a model's tensors: from named values (another model, a checkpoint) and
//! from safetensors files written by PyTorch (`safetensors.torch.save_file(model.state_dict(),
//! path)`), and back.

use super::pending::{forget_pending, realize_pending_updates};
use super::Module;
use crate::checkpoint;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;
use std::path::Path;

/// Copies `values` (named as [`Module::named_parameters`] names them) into `model`'s parameters,
/// in place: the model keeps its tensors, their values change. Every parameter must be present
/// with its shape; names the model does not have are an error too, so that a checkpoint of
/// another model is not half-loaded. Float values are converted to the parameter's dtype. Nothing
/// changes unless everything matches; the error lists every problem.
pub fn load_parameters(model: &dyn Module, values: &[(String, Tensor)]) -> Result<()> {
    load_into(&model.named_parameters(), values, "parameter")
}

/// Copies `values` (named as [`Module::state_dict`] names them: parameters and buffers, e.g. a
/// PyTorch `state_dict`) into `model`, in place. Every tensor of the state dict must be present
/// with its shape, and no other name may appear; f16 values (and f32 into an f16 model) are
/// converted to the model's dtype, i32 counters load into i32 buffers. Nothing changes unless
/// everything matches; the error names every missing, unexpected and mis-shaped tensor at once.
/// A buffer update still pending from a training-mode forward pass is dropped for the loaded
/// buffers (the loaded values win).
pub fn load_state_dict(model: &dyn Module, values: &[(String, Tensor)]) -> Result<()> {
    load_into(&model.state_dict(), values, "tensor")
}

/// Loads a safetensors file holding a model's `state_dict` (saved by [`save_weights`] or by
/// PyTorch's `safetensors.torch.save_file(model.state_dict(), path)`) into `model`, as
/// [`load_state_dict`] does. The file's bf16 and f64 tensors load as f32, i64 (PyTorch's
/// `num_batches_tracked`) as i32, f16 is converted to the model's dtype. Errors name the file.
pub fn load_weights(model: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let ck = checkpoint::load(path, &Device::cpu())?;
    load_state_dict(model, &ck.tensors).map_err(|e| match e {
        KilnError::Data(m) => KilnError::Data(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Writes `model`'s `state_dict` (parameters and buffers, PyTorch's names and shapes) to a
/// safetensors file, atomically, with the metadata `format: pt` that PyTorch-side loaders
/// expect; `torch_model.load_state_dict(safetensors.torch.load_file(path))` reads it back.
/// Buffer updates still pending from training-mode forward passes are realized first.
pub fn save_weights(model: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    realize_pending_updates()?;
    checkpoint::save(
        path,
        &model.state_dict(),
        &[("format".to_string(), "pt".to_string())],
    )
}

/// True if a value of dtype `from` may be loaded into a tensor of dtype `to` (converted).
fn convertible(from: DType, to: DType) -> bool {
    from == to || (from.is_float() && to.is_float())
}

/// Checks `values` against the model's `entries` (all problems at once), then realizes the
/// converted values (one plan per device) and moves them into the entries' tensors.
fn load_into(entries: &[(String, Tensor)], values: &[(String, Tensor)], what: &str) -> Result<()> {
    let mut missing = vec![];
    let mut mismatched = vec![];
    let mut staged: Vec<(&Tensor, Tensor)> = vec![];
    for (name, dest) in entries {
        let Some((_, v)) = values.iter().find(|(n, _)| n == name) else {
            missing.push(format!("{name:?}"));
            continue;
        };
        if v.dims() != dest.dims() || !convertible(v.dtype(), dest.dtype()) {
            mismatched.push(format!(
                "{name:?} is {} {} in the model but {} {} in the values",
                dest.dtype(),
                dest.shape(),
                v.dtype(),
                v.shape()
            ));
            continue;
        }
        staged.push((dest, v.clone()));
    }
    let unexpected: Vec<String> = values
        .iter()
        .filter(|(n, _)| !entries.iter().any(|(e, _)| e == n))
        .map(|(n, _)| format!("{n:?}"))
        .collect();
    if !(missing.is_empty() && unexpected.is_empty() && mismatched.is_empty()) {
        let mut parts = vec![];
        if !missing.is_empty() {
            parts.push(format!("missing {}", missing.join(", ")));
        }
        if !unexpected.is_empty() {
            parts.push(format!(
                "unexpected (the model has no {what} of that name) {}",
                unexpected.join(", ")
            ));
        }
        if !mismatched.is_empty() {
            parts.push(format!("mismatched {}", mismatched.join("; ")));
        }
        return Err(KilnError::Data(format!(
            "the values do not fit the model ({} missing, {} unexpected, {} mismatched); nothing \
             was loaded: {}",
            missing.len(),
            unexpected.len(),
            mismatched.len(),
            parts.join("; ")
        )));
    }
    let mut converted = Vec::with_capacity(staged.len());
    for (dest, v) in staged {
        converted.push((dest, v.to_device(dest.device())?.cast(dest.dtype())));
    }
    // One plan per device: the uploads and conversions of a whole model at once.
    let mut devices: Vec<(Device, Vec<&Tensor>)> = vec![];
    for (_, v) in converted.iter().filter(|(_, v)| !v.is_realized()) {
        match devices.iter_mut().find(|(d, _)| d.same(v.device())) {
            Some((_, group)) => group.push(v),
            None => devices.push((v.device().clone(), vec![v])),
        }
    }
    for (_, group) in &devices {
        Tensor::realize_all(group)?;
    }
    for (dest, v) in converted {
        forget_pending(dest);
        dest.set_storage(v.storage().expect("realized"));
    }
    Ok(())
}
