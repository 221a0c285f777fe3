//! [`DistributedOptimizer`]: data-parallel training's step, as PyTorch's DistributedDataParallel
//! and Horovod take it. Every rank computes gradients on its own part of the global batch; the
//! gradients are packed on the device into a few flat buckets, read back, summed across the ranks
//! (non-blocking: reading bucket `i + 1` overlaps reducing bucket `i`), averaged, written back and
//! split into per-parameter gradients that the wrapped optimiser applies as if one process had
//! computed them on the whole global batch. The loss travels at the end of the first bucket, so
//! that the wrapped optimiser's finite flag (and what it skips) is the same on every rank.
//!
//! Submissions per step on a GPU: one for the forward pass, the backward pass, the bucket packing,
//! the loss and the batch norms' new running statistics; one readback copy per bucket; one for the upload of the averaged buckets and the
//! optimiser's update ([`DistributedOptimizer::last_submissions`] counts them).

use crate::world::World;
use kiln_core::optim::Optimizer;
use kiln_core::optim::{NonFinitePolicy, StepReport};
use kiln_core::tensor::no_grad;
use kiln_core::{DType, Gradients, Result, Tensor};

/// PyTorch DDP's default bucket size: 25 MiB.
pub const BUCKET_BYTES: usize = 25 << 20;
/// PyTorch DDP's first bucket: 1 MiB (the last layers' gradients, ready first, go out early).
pub const FIRST_BUCKET_BYTES: usize = 1 << 20;
/// How often (in steps) the replicas' parameters are compared across ranks by default.
pub const CHECK_EVERY: u64 = 200;

/// An [`Optimizer`] that averages the gradients over the ranks of a [`World`] before the wrapped
/// optimiser applies them; made by [`World::optimizer`]. With one rank it is the wrapped
/// optimiser itself (no packing, no readback). Every `check_every` steps it compares a checksum
/// of the parameters across ranks and returns an error if the replicas drifted apart.
///
/// The wrapped optimiser sees the averaged gradients and, as their loss, the mean of the ranks'
/// losses (reduced with the first bucket: no collective of its own), as one process with the
/// whole global batch would. So every rank computes the same finite flag from the same values:
/// under [`NonFinitePolicy::Skip`] a step whose loss is not finite on one rank is skipped on
/// every rank, and the [`StepReport`] is the same on every rank. The loss tensor a training loop
/// holds (what it prints) stays this rank's own, as do the tensors of
/// [`Gradients::compute_with_step`].
///
/// A failure during a step (a device error on one rank), between two collective operations or in
/// the wrapped optimiser's update after the averaging, ends every rank of the job
/// ([`World::abort_on_error`]), since the other ranks would otherwise wait for that rank forever.
/// Only an error that every rank gets alike comes back as an error: the replicas' drift, found
/// by the periodic check. With one rank, the wrapped optimiser's errors come back as they are.
pub struct DistributedOptimizer {
    world: World,
    params: Vec<(String, Tensor)>,
    inner: Box<dyn Optimizer>,
    first_bucket_bytes: usize,
    bucket_bytes: usize,
    check_every: u64,
    last_submissions: u64,
    last_buckets: usize,
}

impl DistributedOptimizer {
    /// Wraps `inner`, which updates `params` (named as [`kiln_core::nn::Module::named_parameters`]
    /// names them). [`World::optimizer`] is the short way.
    pub fn new(world: World, params: Vec<(String, Tensor)>, inner: Box<dyn Optimizer>) -> Self {
        DistributedOptimizer {
            world,
            params,
            inner,
            first_bucket_bytes: FIRST_BUCKET_BYTES,
            bucket_bytes: BUCKET_BYTES,
            check_every: CHECK_EVERY,
            last_submissions: 0,
            last_buckets: 0,
        }
    }
    /// Bucket capacities in bytes of f32 gradient: the first bucket's and the others' (defaults
    /// 1 MiB and 25 MiB, as DDP). A bucket closes when it reaches its capacity, so a parameter
    /// larger than the capacity has a bucket of its own.
    pub fn bucket_sizes(mut self, first: usize, rest: usize) -> Self {
        self.first_bucket_bytes = first.max(1);
        self.bucket_bytes = rest.max(1);
        self
    }
    /// Compares the replicas every `n` steps (0: never; default [`CHECK_EVERY`]).
    pub fn check_every(mut self, n: u64) -> Self {
        self.check_every = n;
        self
    }
    /// The wrapped optimiser.
    pub fn inner(&self) -> &dyn Optimizer {
        &*self.inner
    }
    /// Device submissions (kernel submissions and readback copies) of the last step.
    pub fn last_submissions(&self) -> u64 {
        self.last_submissions
    }
    /// Buckets the last step's gradients were packed into.
    pub fn last_buckets(&self) -> usize {
        self.last_buckets
    }

    /// The gradients of `grads`, averaged over the ranks, with the mean of the ranks' losses as
    /// their loss (see the module's documentation).
    fn averaged(&mut self, grads: &Gradients) -> Result<Gradients> {
        // Reverse parameter order: the last layers' gradients first, as DDP.
        let with_grad: Vec<(&Tensor, &Tensor)> = self
            .params
            .iter()
            .rev()
            .filter_map(|(_, p)| grads.get(p).map(|g| (p, g)))
            .filter(|(p, _)| p.numel() > 0)
            .collect();
        let sizes: Vec<usize> = with_grad.iter().map(|(p, _)| p.numel() * 4).collect();
        let buckets = plan_buckets(&sizes, self.first_bucket_bytes, self.bucket_bytes);
        self.last_buckets = buckets.len();
        // `backward` only takes scalars, so a loss is always one value.
        let loss = grads.loss().filter(|l| l.numel() == 1);
        let packed = no_grad(|| pack(&with_grad, &sizes, &buckets, loss));
        // One submission: forward, backward, the packed buckets, the loss and its riders, and
        // the batch norms' new running statistics (from the forward pass computed here: the
        // update's plan after the all-reduce would otherwise compute it again).
        let buffers = match self.params.first() {
            Some((_, p)) => kiln_core::nn::pending_values(p.device()),
            None => vec![],
        };
        let mut targets: Vec<&Tensor> = packed.iter().collect();
        targets.extend(
            grads
                .step_targets()
                .into_iter()
                .chain(&buffers)
                .filter(|t| !t.is_realized()),
        );
        self.world.abort_on_error(Tensor::realize_all(&targets));
        let world = self.world.clone();
        // At least one buffer, so that every rank takes part in the loss's reduction.
        let summed = world
            .collective()
            .all_reduce_buffers(packed.len().max(1), &mut |i| {
                let mut values = packed.get(i).map_or(Ok(vec![]), |t| t.to_vec::<f32>())?;
                if i == 0 && loss.is_none() {
                    values.extend([0.0, 0.0]); // no loss here: adds nothing to the sum or count
                }
                Ok(values)
            });
        let mut summed = self.world.abort_on_error(summed);
        // The first buffer ends with (sum of the losses, number of ranks that had one).
        let first = &mut summed[0];
        let (loss_sum, count) = (first[first.len() - 2], first[first.len() - 1]);
        first.truncate(first.len() - 2);
        let n = self.world.size() as f32;
        let mut out = grads.clone();
        for (bucket, mut sum) in buckets.into_iter().zip(summed) {
            sum.iter_mut().for_each(|v| *v /= n);
            let len = sum.len();
            let device = with_grad[bucket.start].1.device();
            let flat = self
                .world
                .abort_on_error(Tensor::from_vec(sum, [len], device));
            let mut at = 0;
            for i in bucket {
                let (p, g) = with_grad[i];
                let numel = sizes[i] / 4;
                let piece = flat.narrow(0, at, numel).reshape(p.dims()).cast(g.dtype());
                out.insert(p, piece);
                at += numel;
            }
        }
        if let Some(local) = loss.filter(|_| count > 0.0) {
            let mean = vec![loss_sum / count];
            let mean = Tensor::from_vec(mean, local.dims(), local.device());
            out = out.with_loss(self.world.abort_on_error(mean));
        }
        Ok(out)
    }
}

/// The device buffers one step reduces: each bucket's gradients (`with_grad[i]`, `sizes[i]`
/// bytes) flattened into one f32 vector, the first bucket followed by the pair (loss, 1) when
/// there is a `loss`. With no gradient, the pair alone (or nothing without a loss either).
fn pack(
    with_grad: &[(&Tensor, &Tensor)],
    sizes: &[usize],
    buckets: &[std::ops::Range<usize>],
    loss: Option<&Tensor>,
) -> Vec<Tensor> {
    let pair = loss.map(|l| {
        let l = l.cast(DType::F32).reshape([1]);
        Tensor::cat(&[&l, &l.ones_like()], 0)
    });
    let mut packed: Vec<Tensor> = buckets
        .iter()
        .enumerate()
        .map(|(b, range)| {
            let mut flat: Vec<Tensor> = range
                .clone()
                .map(|i| with_grad[i].1.cast(DType::F32).reshape([sizes[i] / 4]))
                .collect();
            flat.extend(pair.iter().filter(|_| b == 0).cloned());
            Tensor::cat(&flat.iter().collect::<Vec<_>>(), 0)
        })
        .collect();
    if packed.is_empty() {
        packed.extend(pair);
    }
    packed
}

/// Splits parameters of `sizes` bytes (in the order they are reduced) into consecutive buckets:
/// a bucket closes once it holds at least its capacity (`first` for the first, `rest` after).
pub fn plan_buckets(sizes: &[usize], first: usize, rest: usize) -> Vec<std::ops::Range<usize>> {
    let mut buckets = vec![];
    let (mut start, mut bytes) = (0, 0);
    for (i, &s) in sizes.iter().enumerate() {
        bytes += s;
        let cap = if buckets.is_empty() { first } else { rest };
        if bytes >= cap {
            buckets.push(start..i + 1);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < sizes.len() {
        buckets.push(start..sizes.len());
    }
    buckets
}

impl Optimizer for DistributedOptimizer {
    fn step(&mut self, grads: &Gradients) -> Result<StepReport> {
        let device = self.params.first().map(|(_, p)| p.device().clone());
        let before = device.as_ref().map_or(0, |d| d.stats().submissions);
        let report = if self.world.size() == 1 {
            self.inner.step(grads)?
        } else {
            let averaged = self.averaged(grads)?;
            // Every rank steps from the same values, so a failure here is this rank's alone (a
            // device error): the others would wait for it in the next collective forever.
            self.world.abort_on_error(self.inner.step(&averaged))
        };
        self.last_submissions = device.as_ref().map_or(0, |d| d.stats().submissions) - before;
        if self.world.size() > 1
            && self.check_every > 0
            && self.steps().is_multiple_of(self.check_every)
        {
            let params: Vec<Tensor> = self.params.iter().map(|(_, p)| p.clone()).collect();
            self.world.check_replicas(&params)?;
        }
        Ok(report)
    }
    fn learning_rate(&self) -> f64 {
        self.inner.learning_rate()
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.inner.set_learning_rate(lr)
    }
    fn num_groups(&self) -> usize {
        self.inner.num_groups()
    }
    fn group_learning_rate(&self, group: usize) -> f64 {
        self.inner.group_learning_rate(group)
    }
    fn set_group_learning_rate(&mut self, group: usize, lr: f64) {
        self.inner.set_group_learning_rate(group, lr)
    }
    fn base_learning_rate(&self, group: usize) -> f64 {
        self.inner.base_learning_rate(group)
    }
    fn steps(&self) -> u64 {
        self.inner.steps()
    }
    fn non_finite_policy(&self) -> NonFinitePolicy {
        self.inner.non_finite_policy()
    }
    fn set_non_finite_policy(&mut self, policy: NonFinitePolicy) {
        self.inner.set_non_finite_policy(policy)
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        self.inner.state()
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        self.inner.load_state(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::nn::{Linear, Module, ParamBuilder};
    use kiln_core::optim::Sgd;
    use kiln_core::Device;

    #[test]
    fn one_rank_steps_as_the_wrapped_optimizer() {
        let dev = Device::cpu();
        let world = World::single();
        let a = world
            .replicate(Linear::new(3, 2, &ParamBuilder::new(&dev, 5)))
            .unwrap();
        let b = Linear::new(3, 2, &ParamBuilder::new(&dev, 5));
        let mut opt_a = world.optimizer(&a, Sgd::new(a.parameters(), 0.1));
        let mut opt_b = Sgd::new(b.parameters(), 0.1);
        for seed in 0..2 {
            let x = Tensor::randn([4, 3], seed, &dev);
            opt_a
                .step(&a.forward(&x).square().mean().backward())
                .unwrap();
            opt_b
                .step(&b.forward(&x).square().mean().backward())
                .unwrap();
        }
        assert_eq!(opt_a.steps(), 2);
        for (pa, pb) in a.parameters().iter().zip(b.parameters()) {
            assert_eq!(pa.to_vec::<f32>().unwrap(), pb.to_vec::<f32>().unwrap());
        }
        world.check_replicas(&a.parameters()).unwrap();
    }

    #[test]
    fn the_wrapped_optimizer_skips_on_the_loss_it_is_given() {
        // What a multi-rank step relies on: the flag reads the loss of `with_loss`.
        let dev = Device::cpu();
        let model = Linear::new(3, 2, &ParamBuilder::new(&dev, 5));
        let mut sgd = Sgd::new(model.parameters(), 0.1);
        sgd.set_non_finite_policy(NonFinitePolicy::Skip);
        let before: Vec<Vec<f32>> = model
            .parameters()
            .iter()
            .map(|p| p.to_vec().unwrap())
            .collect();
        let loss = model
            .forward(&Tensor::randn([4, 3], 1, &dev))
            .square()
            .mean();
        let grads = loss.backward();
        let infinite = Tensor::from_vec(vec![f32::INFINITY], loss.dims(), &dev).unwrap();
        let grads = grads.with_loss(infinite);
        assert_eq!(
            grads.loss().unwrap().to_vec::<f32>().unwrap(),
            [f32::INFINITY]
        );
        assert!(sgd.step(&grads).unwrap().skipped().unwrap());
        let after: Vec<Vec<f32>> = model
            .parameters()
            .iter()
            .map(|p| p.to_vec().unwrap())
            .collect();
        assert_eq!(after, before);
        // The same gradients with their own (finite) loss apply.
        assert!(!sgd.step(&loss.backward()).unwrap().skipped().unwrap());
        assert_ne!(model.parameters()[0].to_vec::<f32>().unwrap(), before[0]);
    }

    #[test]
    fn buckets_close_at_their_capacity() {
        // First bucket 10 bytes, then 20: [4, 4, 4] closes at 12, [8, 8, 8] at 24, [2] is left.
        let b = plan_buckets(&[4, 4, 4, 8, 8, 8, 2], 10, 20);
        assert_eq!(b, [0..3, 3..6, 6..7]);
        // A parameter larger than the capacity gets a bucket of its own.
        assert_eq!(plan_buckets(&[100, 1, 1], 10, 20), [0..1, 1..3]);
        assert!(plan_buckets(&[], 10, 20).is_empty());
    }
}
