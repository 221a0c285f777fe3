//! Non-finite steps: the flag every optimiser step computes in its own plan (is the loss finite,
//! is the gradients' squared norm finite?), the policy that decides what a non-finite step does,
//! and the [`StepReport`] a step returns.
//!
//! The flag costs no submission of its own: it is one more target of the step's realize, and
//! reading it later is a copy, like reading the loss.

use crate::autodiff::Gradients;
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::Tensor;

/// What an optimiser step does when the loss or a gradient holds a NaN or an infinity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NonFinitePolicy {
    /// Apply the update anyway, as PyTorch's optimisers do (the parameters then hold NaNs);
    /// [`StepReport::is_finite`] tells the caller, who decides (stop, restore a checkpoint).
    #[default]
    Apply,
    /// Leave parameters, optimiser state and batch-norm statistics exactly as they were, as
    /// AMP's grad scaler does: every new value becomes `where(finite, new, old)` inside the same
    /// plan, so skipping costs no extra submission. The step count still advances (it lives on
    /// the host, and the flag is not read before the next step).
    Skip,
}

/// What one optimiser step computed besides the update: whether the loss and the gradients were
/// finite. The flag is realized with the step; reading it ([`StepReport::is_finite`]) copies one
/// value back and waits for the step to finish, so a training loop that wants speed reads it
/// when it reads the loss (every few steps), not after every step.
#[derive(Clone, Debug)]
pub struct StepReport {
    finite: Option<Tensor>,
    policy: NonFinitePolicy,
}

impl StepReport {
    /// The report of a step with flag `finite` (none when the step had no loss and no
    /// gradient: then it counts as finite) that ran under `policy`.
    pub(crate) fn new(finite: Option<Tensor>, policy: NonFinitePolicy) -> StepReport {
        StepReport { finite, policy }
    }
    /// The flag as a realized bool scalar (shape `[]`): true when the loss and the squared norm
    /// of all gradients were finite. `None` when the step had no gradient and no loss.
    pub fn finite_flag(&self) -> Option<&Tensor> {
        self.finite.as_ref()
    }
    /// True when the loss and every gradient were finite (reads the flag: one copy).
    pub fn is_finite(&self) -> Result<bool> {
        match &self.finite {
            Some(f) => f.item::<bool>(),
            None => Ok(true),
        }
    }
    /// True when the step's update was left out: the policy was [`NonFinitePolicy::Skip`] and
    /// the step was not finite (reads the flag).
    pub fn skipped(&self) -> Result<bool> {
        Ok(self.policy == NonFinitePolicy::Skip && !self.is_finite()?)
    }
    /// The policy the step ran under.
    pub fn policy(&self) -> NonFinitePolicy {
        self.policy
    }
}

/// `|x| <= f32::MAX` elementwise (bool, `x`'s shape): false for NaN (every comparison with NaN
/// is) and for ±inf.
pub(crate) fn is_finite(x: &Tensor) -> Tensor {
    let x = x.cast(DType::F32);
    x.abs().le(&x.scalar_like(f32::MAX as f64))
}

/// How many gradients one reduction of the flag reads on a device that states no binding
/// limit (each gradient is a storage binding; every wgpu device offers at least 8 per kernel).
const GRADIENTS_PER_REDUCTION: usize = 6;

/// The step's flag (bool `[]`): the loss behind `grads` is finite and so is the sum of the
/// squares of every gradient in `used` (an overflow of that sum counts as non-finite, as a
/// non-finite gradient norm does in `clip_grad_norm_`). `None` with no loss and no gradient.
pub(crate) fn finite_flag(grads: &Gradients, used: &[&Tensor]) -> Option<Tensor> {
    // Gradients are summed in groups read by one reduction each (a concatenation is a view),
    // as many as the device binds in one kernel besides the output and a spare: LeNet-5's ten
    // gradients cost one reduction, not ten.
    let per_reduction = used.first().map_or(GRADIENTS_PER_REDUCTION, |g| {
        g.device()
            .backend()
            .schedule_limits()
            .map_or(GRADIENTS_PER_REDUCTION, |l| {
                l.max_storage_buffers.saturating_sub(2).max(1)
            })
    });
    let squares = used
        .chunks(per_reduction)
        .map(|group| {
            let flat: Vec<Tensor> = group
                .iter()
                .map(|g| g.cast(DType::F32).reshape([g.numel()]))
                .collect();
            let refs: Vec<&Tensor> = flat.iter().collect();
            Tensor::cat(&refs, 0).square().sum()
        })
        .reduce(|a, b| a.add(&b));
    let loss = grads.loss().map(|l| is_finite(&l.reshape([])));
    let norm = squares.map(|s| is_finite(&s));
    match (loss, norm) {
        (Some(l), Some(n)) => Some(l.mul(&n)),
        (l, n) => l.or(n),
    }
}

/// Under [`NonFinitePolicy::Skip`], makes every `(dest, new)` update keep `dest`'s values when
/// `flag` is false.
pub(crate) fn guard(
    updates: Vec<(Tensor, Tensor)>,
    flag: Option<&Tensor>,
    policy: NonFinitePolicy,
) -> Vec<(Tensor, Tensor)> {
    match (policy, flag) {
        (NonFinitePolicy::Skip, Some(f)) => updates
            .into_iter()
            .map(|(dest, new)| {
                let kept = f.where_cond(&new, &dest);
                (dest, kept)
            })
            .collect(),
        _ => updates,
    }
}
