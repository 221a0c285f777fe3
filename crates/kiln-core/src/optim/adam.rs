//! Adam and AdamW.

use super::groups::Groups;
use super::{
    commit, find_state, step_from_state, zeros_state, NonFinitePolicy, Optimizer, ParamGroup,
    StepReport,
};
use crate::autodiff::Gradients;
use crate::error::Result;
use crate::tensor::{no_grad, Tensor};

/// Adam (Kingma & Ba, 2015) as PyTorch defines it, and AdamW (decoupled weight decay, Loshchilov
/// & Hutter, 2019):
/// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g²`,
/// `p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`;
/// Adam's weight decay adds `wd p` to `g`, AdamW's multiplies `p` by `1 - lr wd` first; `lr` is
/// the rate of the parameter's group ([`Adam::with_groups`]).
pub struct Adam {
    params: Vec<Tensor>,
    exp_avg: Vec<Option<Tensor>>,
    exp_avg_sq: Vec<Option<Tensor>>,
    groups: Groups,
    /// (b1, b2): decay of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator.
    pub eps: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// True for AdamW's decoupled weight decay.
    pub decoupled: bool,
    steps: u64,
    policy: NonFinitePolicy,
}

impl Adam {
    /// Adam with learning rate `lr`, betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn new(params: Vec<Tensor>, lr: f64) -> Adam {
        Adam::with_groups(vec![ParamGroup::new(params, lr)])
    }
    /// Adam over parameter groups, each at its own learning rate (PyTorch's
    /// `Adam([{"params": .., "lr": ..}, ..])`), betas (0.9, 0.999), eps 1e-8, no weight decay
    /// (set [`Adam::weight_decay`] and [`Adam::decoupled`] for AdamW). Panics without a group.
    #[track_caller]
    pub fn with_groups(groups: Vec<ParamGroup>) -> Adam {
        let (params, groups) = Groups::flatten(groups);
        let n = params.len();
        Adam {
            params,
            exp_avg: vec![None; n],
            exp_avg_sq: vec![None; n],
            groups,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            steps: 0,
            policy: NonFinitePolicy::Apply,
        }
    }
    /// AdamW with learning rate `lr` and weight decay `wd` (PyTorch's default is 0.01).
    pub fn adamw(params: Vec<Tensor>, lr: f64, wd: f64) -> Adam {
        let mut a = Adam::new(params, lr);
        a.weight_decay = wd;
        a.decoupled = true;
        a
    }
    /// Adam with L2 weight decay `wd` added to the gradient.
    pub fn with_weight_decay(mut self, wd: f64) -> Adam {
        self.weight_decay = wd;
        self
    }
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &Gradients) -> Result<StepReport> {
        let t = (self.steps + 1) as i32;
        let (b1, b2) = self.betas;
        let bias_correction = 1.0 - b1.powi(t);
        let v_scale = 1.0 / (1.0 - b2.powi(t));
        let mut updates = vec![];
        let mut used = vec![];
        no_grad(|| -> Result<()> {
            for (i, p) in self.params.iter().enumerate() {
                let Some(g) = grads.get(p) else { continue };
                used.push(g);
                let lr = self.groups.lr_of(i);
                let mut g = g.clone();
                let mut p_new = p.clone();
                if self.weight_decay != 0.0 {
                    if self.decoupled {
                        p_new = p_new.mul_scalar(1.0 - lr * self.weight_decay);
                    } else {
                        g = g.add(&p.mul_scalar(self.weight_decay));
                    }
                }
                if self.exp_avg[i].is_none() {
                    self.exp_avg[i] = Some(zeros_state(p)?);
                    self.exp_avg_sq[i] = Some(zeros_state(p)?);
                }
                let m = self.exp_avg[i].as_ref().unwrap();
                let v = self.exp_avg_sq[i].as_ref().unwrap();
                let m_new = m.mul_scalar(b1).add(&g.mul_scalar(1.0 - b1));
                let v_new = v.mul_scalar(b2).add(&g.square().mul_scalar(1.0 - b2));
                let denom = v_new.mul_scalar(v_scale).sqrt().add_scalar(self.eps);
                p_new = p_new.sub(&m_new.div(&denom).mul_scalar(lr / bias_correction));
                updates.push((m.clone(), m_new));
                updates.push((v.clone(), v_new));
                updates.push((p.clone(), p_new));
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
        let mut v = vec![];
        for i in 0..self.params.len() {
            if let (Some(m), Some(s)) = (&self.exp_avg[i], &self.exp_avg_sq[i]) {
                v.push((format!("{i}.exp_avg"), m.clone()));
                v.push((format!("{i}.exp_avg_sq"), s.clone()));
            }
        }
        if let Some(p) = self.params.first() {
            v.push((
                "step".into(),
                Tensor::full([1], self.steps as f32, p.device()),
            ));
        }
        v
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        for (i, p) in self.params.iter().enumerate() {
            let name = format!("{i}.exp_avg");
            if state.iter().any(|(n, _)| *n == name) {
                let m = find_state(state, &name, p.dims())?;
                let s = find_state(state, &format!("{i}.exp_avg_sq"), p.dims())?;
                self.exp_avg[i] = Some(m.to_device(p.device())?.detach()?);
                self.exp_avg_sq[i] = Some(s.to_device(p.device())?.detach()?);
            }
        }
        self.steps = step_from_state(state)?;
        Ok(())
    }
}
