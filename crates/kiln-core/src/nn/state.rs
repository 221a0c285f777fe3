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
    load_into(
        &model.named_parameters(),
        values,
        "parameter",
        &LoadOptions::new(),
    )
    .map(|_| ())
}

/// Copies `values` (named as [`Module::state_dict`] names them: parameters and buffers, e.g. a
/// PyTorch `state_dict`) into `model`, in place. Every tensor of the state dict must be present
/// with its shape, and no other name may appear; f16 values (and f32 into an f16 model) are
/// converted to the model's dtype, i32 counters load into i32 buffers. Nothing changes unless
/// everything matches; the error names every missing, unexpected and mis-shaped tensor at once.
/// A buffer update still pending from a training-mode forward pass is dropped for the loaded
/// buffers (the loaded values win).
pub fn load_state_dict(model: &dyn Module, values: &[(String, Tensor)]) -> Result<()> {
    load_state_dict_with(model, values, &LoadOptions::new()).map(|_| ())
}

/// [`load_state_dict`] that leaves the model's tensors under the prefixes `skip` as they are and
/// ignores the values under them: the way a pretrained backbone is loaded into a model whose head
/// was built for another class count (`load_state_dict_except(&net, &values, &["fc."])`).
/// Everything else must fit exactly, as for [`load_state_dict`]. Returns what was loaded and
/// what was skipped.
pub fn load_state_dict_except(
    model: &dyn Module,
    values: &[(String, Tensor)],
    skip: &[&str],
) -> Result<LoadReport> {
    load_state_dict_with(model, values, &LoadOptions::new().skip(skip))
}

/// [`load_state_dict`] under `options` (prefixes to skip, PyTorch's `strict`). Nothing changes
/// unless every tensor that is loaded fits; the error names every problem, and for tensors whose
/// shapes differ, both shapes and the prefix that would skip them.
pub fn load_state_dict_with(
    model: &dyn Module,
    values: &[(String, Tensor)],
    options: &LoadOptions,
) -> Result<LoadReport> {
    load_into(&model.state_dict(), values, "tensor", options)
}

/// Loads a safetensors file holding a model's `state_dict` (saved by [`save_weights`] or by
/// PyTorch's `safetensors.torch.save_file(model.state_dict(), path)`) into `model`, as
/// [`load_state_dict`] does. The file's bf16 and f64 tensors load as f32, i64 (PyTorch's
/// `num_batches_tracked`) as i32, f16 is converted to the model's dtype. Errors name the file.
pub fn load_weights(model: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    load_weights_with(model, path, &LoadOptions::new()).map(|_| ())
}

/// [`load_weights`] under `options`: `load_weights_with(&net, "resnet18.safetensors",
/// &LoadOptions::new().skip(&["fc."]))` loads a pretrained network but its classifier (add
/// `"optimizer."` to the prefixes to load the model from one of kiln's training checkpoints,
/// which hold the optimiser's state too).
pub fn load_weights_with(
    model: &dyn Module,
    path: impl AsRef<Path>,
    options: &LoadOptions,
) -> Result<LoadReport> {
    let path = path.as_ref();
    let ck = checkpoint::load(path, &Device::cpu())?;
    load_state_dict_with(model, &ck.tensors, options).map_err(|e| match e {
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

/// How [`load_state_dict_with`] and [`load_weights_with`] match values to a model's tensors.
/// The default ([`LoadOptions::new`]) is [`load_state_dict`]'s: every tensor, exactly.
///
/// ```
/// # use kiln_core::nn::LoadOptions;
/// let fine_tune = LoadOptions::new().skip(&["fc."]);
/// assert_eq!(fine_tune.skip, ["fc."]);
/// assert!(fine_tune.strict);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Name prefixes (`"fc."`, `"classifier.6."`) whose model tensors keep their values and
    /// whose values are ignored, whatever their shapes. A prefix that matches nothing is no
    /// error (a model without that head loads as usual).
    pub skip: Vec<String>,
    /// PyTorch's `strict`: when true (the default) a model tensor without a value and a value
    /// without a model tensor are errors; when false they are listed in the [`LoadReport`] and
    /// loading goes on. Values whose shapes do not fit are errors either way, as in PyTorch.
    pub strict: bool,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions::new()
    }
}

impl LoadOptions {
    /// Every tensor, exactly (strict, nothing skipped).
    pub fn new() -> LoadOptions {
        LoadOptions {
            skip: vec![],
            strict: true,
        }
    }
    /// Also skips the tensors under `prefixes` (see [`LoadOptions::skip`]).
    pub fn skip(mut self, prefixes: &[&str]) -> LoadOptions {
        self.skip.extend(prefixes.iter().map(|p| p.to_string()));
        self
    }
    /// Sets [`LoadOptions::strict`].
    pub fn strict(mut self, strict: bool) -> LoadOptions {
        self.strict = strict;
        self
    }
    /// True if `name` is under one of the skipped prefixes.
    fn skips(&self, name: &str) -> bool {
        self.skip.iter().any(|p| name.starts_with(p.as_str()))
    }
}

/// What a load under [`LoadOptions`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The model's tensors that received a value, in the model's order.
    pub loaded: Vec<String>,
    /// The model's tensors left as they were: skipped, or without a value when not strict.
    pub kept: Vec<String>,
    /// The values that were not loaded: skipped, or without a model tensor when not strict.
    pub ignored: Vec<String>,
}

/// True if a value of dtype `from` may be loaded into a tensor of dtype `to` (converted).
fn convertible(from: DType, to: DType) -> bool {
    from == to || (from.is_float() && to.is_float())
}

/// The problems that stop a load: model tensors without a value, values without a model tensor
/// (both only when strict), and tensors whose shape or dtype does not fit.
#[derive(Default)]
struct Problems {
    missing: Vec<String>,
    unexpected: Vec<String>,
    mismatched: Vec<String>,
    /// The modules (`fc3.`) of the mismatched tensors: the prefixes that would skip them.
    mismatched_modules: Vec<String>,
}

impl Problems {
    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
    /// The error listing every problem; `what` names the model's tensors ("tensor").
    fn error(&self, what: &str) -> KilnError {
        let mut parts = vec![];
        if !self.missing.is_empty() {
            parts.push(format!("missing {}", self.missing.join(", ")));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "unexpected (the model has no {what} of that name) {}",
                self.unexpected.join(", ")
            ));
        }
        if !self.mismatched.is_empty() {
            let modules: Vec<String> = self
                .mismatched_modules
                .iter()
                .map(|m| format!("{m:?}"))
                .collect();
            parts.push(format!(
                "mismatched {} (to keep the model's own values there, e.g. a head built for \
                 another class count, skip them: LoadOptions::new().skip(&[{}]))",
                self.mismatched.join("; "),
                modules.join(", ")
            ));
        }
        KilnError::Data(format!(
            "the values do not fit the model ({} missing, {} unexpected, {} mismatched); nothing \
             was loaded: {}",
            self.missing.len(),
            self.unexpected.len(),
            self.mismatched.len(),
            parts.join("; ")
        ))
    }
}

/// The module of tensor `name` as a prefix: `fc3.weight` -> `fc3.` (`weight` -> `weight`).
fn module_prefix(name: &str) -> String {
    match name.rfind('.') {
        Some(i) => name[..=i].to_string(),
        None => name.to_string(),
    }
}

/// Pairs the model's `entries` with `values` under `options`: the (destination, value) pairs to
/// load, the report, and every problem.
fn match_values<'a>(
    entries: &'a [(String, Tensor)],
    values: &[(String, Tensor)],
    options: &LoadOptions,
) -> (Vec<(&'a Tensor, Tensor)>, LoadReport, Problems) {
    let mut staged = vec![];
    let mut report = LoadReport::default();
    let mut problems = Problems::default();
    for (name, dest) in entries {
        if options.skips(name) {
            report.kept.push(name.clone());
            continue;
        }
        let Some((_, v)) = values.iter().find(|(n, _)| n == name) else {
            match options.strict {
                true => problems.missing.push(format!("{name:?}")),
                false => report.kept.push(name.clone()),
            }
            continue;
        };
        if v.dims() != dest.dims() || !convertible(v.dtype(), dest.dtype()) {
            problems.mismatched.push(format!(
                "{name:?} is {} {} in the model but {} {} in the values",
                dest.dtype(),
                dest.shape(),
                v.dtype(),
                v.shape()
            ));
            let module = module_prefix(name);
            if !problems.mismatched_modules.contains(&module) {
                problems.mismatched_modules.push(module);
            }
            continue;
        }
        report.loaded.push(name.clone());
        staged.push((dest, v.clone()));
    }
    for (n, _) in values {
        let known = entries.iter().any(|(e, _)| e == n);
        if options.skips(n) || (!known && !options.strict) {
            report.ignored.push(n.clone());
        } else if !known {
            problems.unexpected.push(format!("{n:?}"));
        }
    }
    (staged, report, problems)
}

/// Checks `values` against the model's `entries` under `options` (all problems at once), then
/// realizes the converted values (one plan per device) and moves them into the entries' tensors.
fn load_into(
    entries: &[(String, Tensor)],
    values: &[(String, Tensor)],
    what: &str,
    options: &LoadOptions,
) -> Result<LoadReport> {
    let (staged, report, problems) = match_values(entries, values, options);
    if !problems.is_empty() {
        return Err(problems.error(what));
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
    Ok(report)
}
