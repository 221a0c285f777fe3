//! Optimisers. A step records each parameter's update as graph nodes built from the gradients,
//! realizes all of them together with the loss (forward, backward and update: one plan, one
//! submission, replayed by the next step since every changing number — learning rate, bias
//! corrections — is a runtime scalar), and then gives each parameter its new values, in place:
//! the parameter tensors the model holds see the new values, and the old buffers go back to the
//! pool for the next step.
//!
//! Every step also computes, in the same plan, whether the loss and the gradients were finite
//! ([`StepReport`]); under [`NonFinitePolicy::Skip`] a non-finite step leaves everything as it
//! was.
//!
//! Parameters may come in groups with learning rates of their own ([`ParamGroup`]); a
//! [`Schedule`] then scales each group's rate from that group's base rate, as PyTorch's schedulers
//! do.

mod adam;
mod groups;
mod guard;
mod schedule;
mod sgd;

pub use adam::Adam;
pub use groups::ParamGroup;
pub use guard::{NonFinitePolicy, StepReport};
pub use schedule::Schedule;
pub use sgd::Sgd;

use crate::autodiff::Gradients;
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;

/// What every optimiser does.
pub trait Optimizer {
    /// Updates the parameters from `grads` (from [`Tensor::backward`]); parameters without a
    /// gradient are left alone. Realizes the loss `grads` came from in the same submission, so
    /// reading it afterwards costs only a copy, and with it a flag saying whether the loss and
    /// the gradients were finite (the returned [`StepReport`]); what a non-finite step does is
    /// the optimiser's [`NonFinitePolicy`].
    fn step(&mut self, grads: &Gradients) -> Result<StepReport>;
    /// The learning rate of the next step (of the first parameter group, if there are several).
    fn learning_rate(&self) -> f64;
    /// Changes the learning rate; no recompilation follows. With several parameter groups the
    /// first group's rate becomes `lr` and every other group's `lr` times its base rate over the
    /// first group's, so that a rate a schedule computed from the first group's base rate keeps
    /// the groups' ratios ([`Schedule::apply`] computes each group's own; see
    /// [`Optimizer::set_group_learning_rate`] to set one group).
    fn set_learning_rate(&mut self, lr: f64);
    /// Number of parameter groups (1 unless the optimiser was built from several
    /// [`ParamGroup`]s).
    fn num_groups(&self) -> usize;
    /// The learning rate of parameter group `group` for the next step. Panics if there is no
    /// such group.
    fn group_learning_rate(&self, group: usize) -> f64;
    /// Sets the learning rate of parameter group `group` alone (PyTorch's
    /// `opt.param_groups[group]["lr"] = lr`); no recompilation follows. Panics if there is no
    /// such group.
    fn set_group_learning_rate(&mut self, group: usize, lr: f64);
    /// The rate parameter group `group` was built with: what schedules scale (PyTorch's
    /// `initial_lr`). Panics if there is no such group.
    fn base_learning_rate(&self, group: usize) -> f64;
    /// Steps taken so far.
    fn steps(&self) -> u64;
    /// What a step does when the loss or a gradient is not finite (default
    /// [`NonFinitePolicy::Apply`]).
    fn non_finite_policy(&self) -> NonFinitePolicy;
    /// Sets what a step does when the loss or a gradient is not finite.
    fn set_non_finite_policy(&mut self, policy: NonFinitePolicy);
    /// The optimiser's state as named tensors, for checkpoints (`{i}.exp_avg`, `step`, ...;
    /// `i` is the parameter's position, counted across the groups in order). Learning rates are
    /// not part of it: a schedule recomputes them from the step count.
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores a state saved by [`Optimizer::state`].
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()>;
}

/// Realizes every new value (and the loss behind `grads`, the step's finite flag over the
/// gradients `used`, and the buffer updates that training forward passes left pending on this
/// device: BatchNorm's running statistics) in one plan, then moves each value into its
/// destination tensor: `dest` keeps its identity (the model's handle), its values change. Under
/// [`NonFinitePolicy::Skip`] every new value (buffers included) is `where(flag, new, old)`. If
/// realizing fails nothing changes and the buffer updates stay pending.
pub(crate) fn commit(
    updates: Vec<(Tensor, Tensor)>,
    grads: &Gradients,
    used: &[&Tensor],
    policy: NonFinitePolicy,
) -> Result<StepReport> {
    let device = updates
        .first()
        .map(|(dest, _)| dest.device())
        .or_else(|| grads.loss().map(|l| l.device()))
        .cloned();
    let buffers = match &device {
        Some(d) => crate::nn::take_pending(d),
        None => vec![],
    };
    let flag = crate::tensor::no_grad(|| guard::finite_flag(grads, used));
    let mut updates = updates;
    updates.extend(buffers.iter().cloned());
    let updates = crate::tensor::no_grad(|| guard::guard(updates, flag.as_ref(), policy));
    // The parameters (and state, and buffers) take their new values in place where they can.
    let assign: Vec<(&Tensor, &Tensor)> = updates.iter().map(|(d, v)| (d, v)).collect();
    let mut also: Vec<&Tensor> = grads.step_targets();
    also.extend(flag.iter());
    if let Err(e) = Tensor::realize_assign(&assign, &also) {
        crate::nn::restore_pending(buffers);
        return Err(e);
    }
    Ok(StepReport::new(flag, policy))
}

/// A zero state tensor shaped like parameter `p`, realized.
pub(crate) fn zeros_state(p: &Tensor) -> Result<Tensor> {
    crate::tensor::no_grad(|| p.zeros_like().detach())
}

/// Finds `name` in a saved state and checks its shape.
pub(crate) fn find_state<'a>(
    state: &'a [(String, Tensor)],
    name: &str,
    dims: &[usize],
) -> Result<&'a Tensor> {
    let t = state
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| KilnError::Data(format!("optimizer state has no entry {name:?}")))?;
    if t.dims() != dims {
        return Err(KilnError::Data(format!(
            "optimizer state {name:?} has shape {:?}, the parameter needs {dims:?}",
            t.dims()
        )));
    }
    Ok(t)
}

/// The step count saved as a one-element f32 tensor (exact up to 2^24 steps).
pub(crate) fn step_from_state(state: &[(String, Tensor)]) -> Result<u64> {
    let t = find_state(state, "step", &[1])?;
    Ok(t.to_f64_vec()?[0] as u64)
}
