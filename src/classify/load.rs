//! A model chosen by name, shaped and filled from a checkpoint file.

use super::MAX_INPUT_SIDE;
use crate::checkpoint;
use crate::models::{by_name, MODEL_NAMES};
use crate::nn::{load_state_dict, Module, ParamBuilder};
use crate::{Device, KilnError, Result, Tensor};
use std::path::Path;

/// Checkpoint metadata key: the model's name as [`by_name`] knows it (`"lenet5"`).
pub const META_MODEL: &str = "model";
/// Checkpoint metadata key: the per-channel means the training normalised with,
/// comma-separated (`"0.1307"`).
pub const META_MEAN: &str = "mean";
/// Checkpoint metadata key: the per-channel standard deviations, comma-separated.
pub const META_STD: &str = "std";
/// Checkpoint metadata key: the training images' height and width, `"28x28"`.
pub const META_INPUT_SIZE: &str = "input_size";

/// A model with the weights of a checkpoint, in evaluation mode, and what the checkpoint says
/// about its input.
pub struct Classifier {
    /// The model, in evaluation mode.
    pub model: Box<dyn Module>,
    /// Its name ([`by_name`]).
    pub name: String,
    /// Channels of its input (from the checkpoint's first convolution).
    pub in_channels: usize,
    /// Number of classes (from the checkpoint's last linear layer).
    pub classes: usize,
    /// The normalisation the training used (`mean`, `std`), if the checkpoint records it.
    pub normalization: Option<(Vec<f32>, Vec<f32>)>,
    /// The training images' `[height, width]`, if the checkpoint records it.
    pub input_size: Option<[usize; 2]>,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> KilnError {
    KilnError::Data(format!("{}: {what}", path.display()))
}

/// `"HxW"` with both sides in 1..=[`MAX_INPUT_SIDE`], or `None`.
fn parse_input_size(v: &str) -> Option<[usize; 2]> {
    let (h, w) = v.split_once('x')?;
    let side = |s: &str| {
        s.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_INPUT_SIDE).contains(n))
    };
    Some([side(h)?, side(w)?])
}

/// Checks a recorded normalisation: one value or one per channel, finite means, positive stds.
fn check_normalization(path: &Path, mean: &[f32], std: &[f32], channels: usize) -> Result<()> {
    let count_ok = |n: usize| n == 1 || n == channels;
    let values_ok =
        mean.iter().all(|m| m.is_finite()) && std.iter().all(|s| s.is_finite() && *s > 0.0);
    if count_ok(mean.len()) && count_ok(std.len()) && values_ok {
        return Ok(());
    }
    let shown = |v: &[f32]| {
        let mut s = format!("{:?}", &v[..v.len().min(4)]);
        if v.len() > 4 {
            s += &format!(" and {} more", v.len() - 4);
        }
        s
    };
    Err(bad(
        path,
        format!(
            "metadata {META_MEAN:?} {} and {META_STD:?} {} are not a normalisation of {channels} \
             channel(s): give one or {channels} finite means and positive standard deviations",
            shown(mean),
            shown(std)
        ),
    ))
}

/// A metadata value for an error message: at most 60 characters of it.
fn shown(v: &str) -> String {
    match v.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &v[..cut]),
        None => v.to_string(),
    }
}

/// Comma-separated floats of metadata `key`, if present.
fn floats(path: &Path, ck: &checkpoint::Checkpoint, key: &str) -> Result<Option<Vec<f32>>> {
    let Some(v) = ck.meta(key) else {
        return Ok(None);
    };
    v.split(',')
        .map(|s| s.trim().parse::<f32>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|e| {
            bad(
                path,
                format!("metadata {key:?} is {:?}, not numbers: {e}", shown(v)),
            )
        })
}

/// Builds the model called `name` (or, if `None`, the one the checkpoint's `"model"` metadata
/// names) with the input channels and classes of the checkpoint at `path` (a kiln checkpoint,
/// whose `optimizer.*` tensors are skipped, or a PyTorch `state_dict` saved with
/// `safetensors.torch.save_file`), loads every tensor of its `state_dict` from the file onto
/// `device`, and puts it in evaluation mode. Errors name the file and the problem: unreadable,
/// no model name, a name that disagrees with the metadata, an unknown model, weights that do
/// not fit the model (every missing, unexpected and mis-shaped tensor), or metadata out of
/// bounds (an input size past [`MAX_INPUT_SIDE`](super::MAX_INPUT_SIDE) a side, a
/// normalisation that is not one finite mean and positive std, or one per input channel).
pub fn load_classifier(
    name: Option<&str>,
    path: impl AsRef<Path>,
    device: &Device,
) -> Result<Classifier> {
    let path = path.as_ref();
    let ck = checkpoint::load(path, &Device::cpu())?;
    classifier_from_checkpoint(name, &ck, path, device)
}

/// [`load_classifier`] for a checkpoint already read (for example with
/// [`checkpoint::load_bytes`]); errors are named after `source`.
pub fn classifier_from_checkpoint(
    name: Option<&str>,
    ck: &checkpoint::Checkpoint,
    source: &Path,
    device: &Device,
) -> Result<Classifier> {
    let path = source;
    if let Some(n) = name.filter(|n| !MODEL_NAMES.contains(n)) {
        // The same error as by_name's, before the file is blamed for anything.
        by_name(n, 1, 10, &ParamBuilder::new(&Device::cpu(), 0))?;
    }
    // The metadata is checked before any model is built.
    let input_size = match ck.meta(META_INPUT_SIZE) {
        None => None,
        Some(v) => Some(parse_input_size(v).ok_or_else(|| {
            bad(
                path,
                format!(
                    "metadata {META_INPUT_SIZE:?} is {:?}, not HxW with sides of 1 to \
                     {MAX_INPUT_SIDE} pixels; the file is corrupt",
                    shown(v)
                ),
            )
        })?),
    };
    let recorded_normalization = (floats(path, ck, META_MEAN)?, floats(path, ck, META_STD)?);
    let recorded = ck.meta(META_MODEL).map(|m| m.to_lowercase());
    let name = match (name, &recorded) {
        (Some(n), Some(r)) if n != r => {
            let r = shown(r);
            return Err(bad(
                path,
                format!("holds model {r} (its metadata says so), not {n}; pass --model {r}"),
            ));
        }
        (Some(n), _) => n.to_string(),
        (None, Some(r)) => r.clone(),
        (None, None) => {
            return Err(bad(
                path,
                format!(
                    "the file does not say which model it holds (no {META_MODEL:?} metadata); \
                     name the model ({})",
                    MODEL_NAMES.join(", ")
                ),
            ))
        }
    };
    if !MODEL_NAMES.contains(&name.as_str()) {
        return Err(bad(
            path,
            format!(
                "holds model {:?} (its metadata says so), which kiln does not know ({})",
                shown(&name),
                MODEL_NAMES.join(", ")
            ),
        ));
    }
    // The shapes of the first convolution and the last linear layer give the input channels
    // and the classes of the model the file holds.
    let probe = by_name(&name, 1, 10, &ParamBuilder::new(&Device::cpu(), 0))?;
    let entries = probe.state_dict();
    let first_conv = entries.iter().find(|(_, t)| t.rank() == 4);
    let last_linear = entries.iter().rev().find(|(_, t)| t.rank() == 2);
    let (Some((conv, conv_probe)), Some((linear, linear_probe))) = (first_conv, last_linear) else {
        return Err(KilnError::InvalidArgument(format!(
            "model {name} has no convolution or no linear layer to read its shape from"
        )));
    };
    // The file's tensor must have the probe's shape but for `axis`, and a size there, so that
    // the model built from it is no larger than the file.
    let find = |tensor: &str| -> Result<&Tensor> {
        ck.get(tensor).ok_or_else(|| {
            bad(
                path,
                format!("no tensor {tensor:?}, which a {name} has; is it another model's file?"),
            )
        })
    };
    // Both looked up first: a missing tensor says more than a mis-shaped one.
    let (conv_t, linear_t) = (find(conv)?, find(linear)?);
    let shape_of = |t: &Tensor, tensor: &str, probe: &Tensor, axis: usize| -> Result<usize> {
        let (got, want) = (t.dims(), probe.dims());
        let fits = got.len() == want.len()
            && got[axis] > 0
            && (0..got.len()).all(|a| a == axis || got[a] == want[a]);
        if !fits {
            let mut expected: Vec<String> = want.iter().map(|d| d.to_string()).collect();
            expected[axis] = "N".into();
            return Err(bad(
                path,
                format!(
                    "{tensor:?} is {} but a {name} has it as [{}] (N > 0)",
                    t.shape(),
                    expected.join(", ")
                ),
            ));
        }
        Ok(got[axis])
    };
    let in_channels = shape_of(conv_t, conv, conv_probe, 1)?;
    let classes = shape_of(linear_t, linear, linear_probe, 0)?;
    let normalization = match recorded_normalization {
        (Some(m), Some(s)) => {
            check_normalization(path, &m, &s, in_channels)?;
            Some((m, s))
        }
        _ => None,
    };
    let model = by_name(&name, in_channels, classes, &ParamBuilder::new(device, 0))?;
    let weights: Vec<(String, Tensor)> = ck
        .tensors
        .iter()
        .filter(|(n, _)| !n.starts_with("optimizer."))
        .cloned()
        .collect();
    load_state_dict(model.as_ref(), &weights).map_err(|e| match e {
        KilnError::Data(m) => bad(path, format!("not the weights of a {name}: {m}")),
        other => other,
    })?;
    model.set_training(false);
    Ok(Classifier {
        model,
        name,
        in_channels,
        classes,
        normalization,
        input_size,
    })
}
