//! Parameter groups: sets of parameters an optimiser trains at learning rates of their own, as
//! PyTorch's `param_groups` (a new head at 1e-3 and a pretrained backbone at 1e-4, say).

use crate::tensor::Tensor;

/// Parameters trained at one learning rate. An optimiser built from several
/// (`Sgd::with_groups`, `Adam::with_groups`) numbers the parameters in group order, the first
/// group's first, as PyTorch's `state_dict` does; a schedule scales each group's rate from the
/// group's own base rate ([`super::Schedule::apply`]).
///
/// ```
/// # use kiln_core::{Device, nn::{split_parameters, Linear, Module, ParamBuilder, Sequential}};
/// # use kiln_core::optim::{Adam, Optimizer, ParamGroup};
/// let pb = ParamBuilder::new(&Device::cpu(), 0);
/// let net = Sequential::new().push(Linear::new(4, 8, &pb.pp(0))).push(Linear::new(8, 2, &pb.pp(1)));
/// let (head, backbone) = split_parameters(&net, &["1."]).unwrap();
/// let opt = Adam::with_groups(vec![ParamGroup::new(backbone, 1e-4), ParamGroup::new(head, 1e-3)]);
/// assert_eq!(opt.num_groups(), 2);
/// assert_eq!(opt.group_learning_rate(1), 1e-3);
/// ```
#[derive(Clone)]
pub struct ParamGroup {
    /// The group's parameters.
    pub params: Vec<Tensor>,
    /// Their learning rate (the group's base rate).
    pub lr: f64,
}

impl ParamGroup {
    /// The group of `params` at learning rate `lr`.
    pub fn new(params: Vec<Tensor>, lr: f64) -> ParamGroup {
        ParamGroup { params, lr }
    }
}

/// An optimiser's groups once the parameters are flattened: each group's current and base
/// learning rate, and the group of each parameter (by its position).
#[derive(Clone, Debug)]
pub(crate) struct Groups {
    lr: Vec<f64>,
    base: Vec<f64>,
    group_of: Vec<usize>,
}

impl Groups {
    /// The parameters of `groups` in order, and their groups. Panics without a group.
    #[track_caller]
    pub(crate) fn flatten(groups: Vec<ParamGroup>) -> (Vec<Tensor>, Groups) {
        assert!(!groups.is_empty(), "an optimiser needs at least one group");
        let mut params = vec![];
        let mut group_of = vec![];
        let mut lr = vec![];
        for (g, group) in groups.into_iter().enumerate() {
            group_of.extend(std::iter::repeat_n(g, group.params.len()));
            params.extend(group.params);
            lr.push(group.lr);
        }
        let base = lr.clone();
        (params, Groups { lr, base, group_of })
    }
    /// The learning rate of the parameter at position `i`.
    pub(crate) fn lr_of(&self, i: usize) -> f64 {
        self.lr[self.group_of[i]]
    }
    /// Number of groups.
    pub(crate) fn len(&self) -> usize {
        self.lr.len()
    }
    /// The current learning rate of group `g`.
    #[track_caller]
    pub(crate) fn lr(&self, g: usize) -> f64 {
        self.check(g);
        self.lr[g]
    }
    /// The base (initial) learning rate of group `g`.
    #[track_caller]
    pub(crate) fn base(&self, g: usize) -> f64 {
        self.check(g);
        self.base[g]
    }
    /// Sets group `g`'s learning rate.
    #[track_caller]
    pub(crate) fn set_lr(&mut self, g: usize, lr: f64) {
        self.check(g);
        self.lr[g] = lr;
    }
    /// Sets the first group's rate to `lr` and every other group's to `lr` times its base rate
    /// over the first group's (every group's to `lr` if the first group's base rate is 0): a
    /// rate a schedule computed from the first group's base rate, applied to all.
    pub(crate) fn set_all(&mut self, lr: f64) {
        let first = self.base[0];
        for g in 0..self.len() {
            self.lr[g] = if g == 0 || first == 0.0 {
                lr
            } else {
                lr * (self.base[g] / first)
            };
        }
    }
    #[track_caller]
    fn check(&self, g: usize) {
        assert!(
            g < self.len(),
            "parameter group {g} does not exist: the optimiser has {}",
            self.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Device;

    #[test]
    fn groups_number_parameters_in_order_and_scale_from_their_base_rates() {
        let t = || Tensor::zeros([1], &Device::cpu());
        let (params, mut g) = Groups::flatten(vec![
            ParamGroup::new(vec![t(), t()], 0.1),
            ParamGroup::new(vec![], 0.5),
            ParamGroup::new(vec![t()], 0.01),
        ]);
        assert_eq!(params.len(), 3);
        assert_eq!((g.lr_of(0), g.lr_of(1), g.lr_of(2)), (0.1, 0.1, 0.01));
        g.set_all(0.05);
        assert_eq!(g.lr(0), 0.05);
        assert!((g.lr(1) - 0.25).abs() < 1e-15);
        assert!((g.lr(2) - 0.005).abs() < 1e-15);
        assert_eq!(g.base(2), 0.01);
        g.set_lr(2, 1.0);
        assert_eq!(g.lr_of(2), 1.0);
    }
}
