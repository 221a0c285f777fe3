//! Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

use super::groups::Groups;
use super::{
    commit, find_state, step_from_state, zeros_state, NonFinitePolicy, Optimizer, ParamGroup,
    StepReport,
};
use crate::autodiff::Gradients;
use crate::error::Result;
use crate::tensor::{no_grad, Tensor};

/// SGD as PyTorch defines it: `g += wd p`; with momentum `b = mu b + g` and the step direction
/// `b` (or `g + mu b` with Nesterov); `p -= lr direction`, with `lr` the rate of the parameter's
/// group ([`Sgd::with_groups`]).
pub struct Sgd {
    params: Vec<Tensor>,
    momentum_buffers: Vec<Option<Tensor>>,
    groups: Groups,
    /// Momentum factor (0 for plain SGD).
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    steps: u64,
    policy: NonFinitePolicy,
}

impl Sgd {
    /// Plain SGD with learning rate `lr`.
    pub fn new(params: Vec<Tensor>, lr: f64) -> Sgd {
        Sgd::with_groups(vec![ParamGroup::new(params, lr)])
    }
    /// Plain SGD over parameter groups, each at its own learning rate (PyTorch's
    /// `SGD([{"params": .., "lr": ..}, ..])`); momentum and weight decay are shared. Panics
    /// without a group.
    #[track_caller]
    pub fn with_groups(groups: Vec<ParamGroup>) -> Sgd {
        let (params, groups) = Groups::flatten(groups);
        let n = params.len();
        Sgd {
            params,
            momentum_buffers: vec![None; n],
            groups,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            steps: 0,
            policy: NonFinitePolicy::Apply,
        }
    }
    /// With momentum `mu` (and Nesterov's variant if `nesterov`).
    pub fn with_momentum(mut self, mu: f64, nesterov: bool) -> Sgd {
        self.momentum = mu;
        self.nesterov = nesterov;
        self
    }
    /// With weight decay `wd`.
    pub fn with_weight_decay(mut self, wd: f64) -> Sgd {
        self.weight_decay = wd;
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Gradients) -> Result<StepReport> {
        let mut updates = vec![];
        let mut used = vec![];
        no_grad(|| -> Result<()> {
            for (i, p) in self.params.iter().enumerate() {
                let Some(g) = grads.get(p) else { continue };
                used.push(g);
                let mut g = g.clone();
                if self.weight_decay != 0.0 {
                    g = g.add(&p.mul_scalar(self.weight_decay));
                }
                let direction = if self.momentum != 0.0 {
                    // A zero buffer makes the first step's `mu b + g` equal PyTorch's `b = g`,
                    // and every step the same graph.
                    if self.momentum_buffers[i].is_none() {
                        self.momentum_buffers[i] = Some(zeros_state(p)?);
                    }
                    let b = self.momentum_buffers[i].as_ref().unwrap();
                    let b = b.mul_scalar(self.momentum).add(&g);
                    updates.push((self.momentum_buffers[i].clone().unwrap(), b.clone()));
                    if self.nesterov {
                        g.add(&b.mul_scalar(self.momentum))
                    } else {
                        b
                    }
                } else {
                    g
                };
                updates.push((
                    p.clone(),
                    p.sub(&direction.mul_scalar(self.groups.lr_of(i))),
                ));
            }
            Ok(())
        })?;
        let report = commit(updates, grads, &used, self.policy)?;
        self.steps += 1;
        Ok(report)
    }
    fn learning_rate(&self) -> f64 {
        self.groups.lr(0)
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.groups.set_all(lr);
    }
    fn num_groups(&self) -> usize {
        self.groups.len()
    }
    fn group_learning_rate(&self, group: usize) -> f64 {
        self.groups.lr(group)
    }
    fn set_group_learning_rate(&mut self, group: usize, lr: f64) {
        self.groups.set_lr(group, lr);
    }
    fn base_learning_rate(&self, group: usize) -> f64 {
        self.groups.base(group)
    }
    fn steps(&self) -> u64 {
        self.steps
    }
    fn non_finite_policy(&self) -> NonFinitePolicy {
        self.policy
    }
    fn set_non_finite_policy(&mut self, policy: NonFinitePolicy) {
        self.policy = policy;
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        let dev = self.params.first().map(|p| p.device().clone());
        let mut v = vec![];
        for (i, b) in self.momentum_buffers.iter().enumerate() {
            if let Some(b) = b {
                v.push((format!("{i}.momentum_buffer"), b.clone()));
            }
        }
        if let Some(dev) = dev {
            v.push(("step".into(), Tensor::full([1], self.steps as f32, &dev)));
        }
        v
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        for (i, p) in self.params.iter().enumerate() {
            let name = format!("{i}.momentum_buffer");
            if state.iter().any(|(n, _)| *n == name) {
                let t = find_state(state, &name, p.dims())?;
                self.momentum_buffers[i] = Some(t.to_device(p.device())?.detach()?);
            }
        }
        self.steps = step_from_state(state)?;
        Ok(())
    }
}
