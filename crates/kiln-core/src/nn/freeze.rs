//! Freezing parameters by name: PyTorch's `p.requires_grad_(False)` for every parameter whose
//! `state_dict` name starts with a prefix, the way a pretrained backbone is kept fixed while a new
//! head learns.
//!
//! A frozen parameter is a leaf that does not require gradients, so [`Tensor::backward`] gives it
//! none: the reverse walk builds no gradient node for it (nor for any node whose inputs are all
//! frozen or data), the step's plan has no kernel computing its gradient, and optimisers, which
//! skip parameters without a gradient, leave it bit for bit as it was (no update, no weight
//! decay, no optimiser state). The mark is read when `backward` collects the parameters, so
//! freezing or unfreezing takes effect at the next `backward`.
//!
//! Freezing does not change a module's mode. A frozen [`super::BatchNorm`] in training mode still
//! normalises with the batch's statistics and updates its running statistics, as in PyTorch;
//! call [`Module::set_training`]`(false)` on it (after the model's) to keep those fixed as well.
//!
//! [`Tensor::backward`]: crate::tensor::Tensor::backward

use super::Module;
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;

/// Freezes every parameter of `model` whose name ([`Module::named_parameters`]) starts with one
/// of `prefixes` (`"conv"`, `"layer1."`, `"features."`): it gets no gradient from then on. Returns
/// the names frozen, in the model's order. A prefix that matches no parameter is an error (a typo
/// would otherwise freeze nothing), and then nothing changes.
///
/// ```
/// # use kiln_core::{Device, nn::{freeze, trainable_parameters, Linear, Module, ParamBuilder, Sequential}};
/// let pb = ParamBuilder::new(&Device::cpu(), 0);
/// let net = Sequential::new().push(Linear::new(4, 8, &pb.pp(0))).push(Linear::new(8, 2, &pb.pp(1)));
/// assert_eq!(freeze(&net, &["0."]).unwrap(), ["0.weight", "0.bias"]);
/// assert_eq!(trainable_parameters(&net).len(), 2);
/// assert!(freeze(&net, &["2."]).is_err());
/// ```
pub fn freeze<M: Module + ?Sized>(model: &M, prefixes: &[&str]) -> Result<Vec<String>> {
    mark(model, |name| matches(name, prefixes), prefixes, false)
}

/// Undoes [`freeze`]: every parameter whose name starts with one of `prefixes` requires gradients
/// again (an empty prefix `""` unfreezes everything). Returns the names unfrozen; a prefix that
/// matches no parameter is an error, and then nothing changes.
pub fn unfreeze<M: Module + ?Sized>(model: &M, prefixes: &[&str]) -> Result<Vec<String>> {
    mark(model, |name| matches(name, prefixes), prefixes, true)
}

/// Freezes every parameter except those whose name starts with one of `keep` (the head, e.g.
/// `&["fc."]`): the "frozen backbone" of fine-tuning. Returns the names frozen; a `keep` prefix
/// that matches no parameter is an error, and then nothing changes.
pub fn freeze_except<M: Module + ?Sized>(model: &M, keep: &[&str]) -> Result<Vec<String>> {
    mark(model, |name| !matches(name, keep), keep, false)
}

/// The parameters that still require gradients (PyTorch's
/// `[p for p in model.parameters() if p.requires_grad]`), in the model's order.
pub fn trainable_parameters<M: Module + ?Sized>(model: &M) -> Vec<Tensor> {
    model
        .named_parameters()
        .into_iter()
        .filter(|(_, p)| p.requires_grad())
        .map(|(_, p)| p)
        .collect()
}

/// The names of the parameters that do not require gradients (the frozen ones), in the model's
/// order.
pub fn frozen_parameters<M: Module + ?Sized>(model: &M) -> Vec<String> {
    model
        .named_parameters()
        .into_iter()
        .filter(|(_, p)| !p.requires_grad())
        .map(|(n, _)| n)
        .collect()
}

/// The parameters of `model` whose name starts with one of `prefixes`, and the others, each in
/// the model's order: the two halves of a fine-tuning's parameter groups (the new head at one
/// learning rate, the pretrained rest at a smaller one). A prefix that matches no parameter is an
/// error.
pub fn split_parameters<M: Module + ?Sized>(
    model: &M,
    prefixes: &[&str],
) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    let named = model.named_parameters();
    check_prefixes(&named, prefixes)?;
    Ok(named
        .into_iter()
        .map(|(n, p)| (matches(&n, prefixes), p))
        .fold((vec![], vec![]), |(mut hit, mut rest), (m, p)| {
            if m {
                hit.push(p)
            } else {
                rest.push(p)
            }
            (hit, rest)
        }))
}

/// True if `name` starts with one of `prefixes`.
fn matches(name: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| name.starts_with(p))
}

/// Sets `requires_grad` to `on` on the parameters `select` picks, after checking that each of
/// `prefixes` names at least one parameter.
fn mark<M: Module + ?Sized>(
    model: &M,
    select: impl Fn(&str) -> bool,
    prefixes: &[&str],
    on: bool,
) -> Result<Vec<String>> {
    let named = model.named_parameters();
    check_prefixes(&named, prefixes)?;
    let mut changed = vec![];
    for (name, p) in named.iter().filter(|(n, _)| select(n)) {
        p.set_requires_grad(on);
        changed.push(name.clone());
    }
    Ok(changed)
}

/// Errors naming every prefix that starts no parameter's name, with the model's top-level
/// module names as a hint.
fn check_prefixes(named: &[(String, Tensor)], prefixes: &[&str]) -> Result<()> {
    let unmatched: Vec<String> = prefixes
        .iter()
        .filter(|p| !named.iter().any(|(n, _)| n.starts_with(*p)))
        .map(|p| format!("{p:?}"))
        .collect();
    if unmatched.is_empty() {
        return Ok(());
    }
    let mut modules: Vec<&str> = vec![];
    for (n, _) in named {
        let top = n.split('.').next().unwrap_or(n);
        if !modules.contains(&top) {
            modules.push(top);
        }
    }
    Err(KilnError::InvalidArgument(format!(
        "no parameter name starts with {} (the model's parameters are under {})",
        unmatched.join(", "),
        modules.join(", ")
    )))
}
