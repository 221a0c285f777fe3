//! Reverse-mode automatic differentiation, graph to graph: the gradients are lazy tensors in the
//! same graph as the forward pass, so a training step's forward, backward and update are scheduled,
//! fused and submitted together.
//!
//! All of it is `vjp`, one table of vector-Jacobian rules (one arm per op), and `gradients`,
//! a short reverse walk that applies it and sums the contributions each node receives. The walk
//! builds gradients only for the inputs that lead to a wanted tensor: a frozen parameter
//! (`requires_grad` false), the images and every node computed from nothing else get no
//! gradient node at all, so no kernel of the step computes one.

use crate::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Gradients of one scalar with respect to the tensors that require them, keyed by tensor.
/// Returned by [`Tensor::backward`]; add several with [`Gradients::accumulate`].
#[derive(Clone, Default)]
pub struct Gradients {
    by_id: HashMap<u64, Tensor>,
    loss: Option<Tensor>,
    riders: Vec<Tensor>,
}

impl Gradients {
    /// The gradient for `t` (same shape as `t`), if `t` required one and the loss depends on it.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.by_id.get(&t.id())
    }
    /// The scalar these gradients are of (the last one, after accumulation). Optimisers realize
    /// it together with their update, so that reading it afterwards costs only a copy.
    pub fn loss(&self) -> Option<&Tensor> {
        self.loss.as_ref()
    }
    /// These gradients with `loss` as the scalar they are of: the loss an optimiser step realizes
    /// and checks for finiteness. A data-parallel step gives its wrapped optimiser the mean loss
    /// over the ranks this way, so that every rank's step sees the same value.
    pub fn with_loss(mut self, loss: Tensor) -> Gradients {
        self.loss = Some(loss);
        self
    }
    /// Asks the optimiser step that consumes these gradients to compute `t` too, in the same
    /// submission (a batch accuracy for a progress bar, say), so that reading it costs a copy.
    pub fn compute_with_step(&mut self, t: &Tensor) {
        self.riders.push(t.clone());
    }
    /// The loss and the tensors of [`Gradients::compute_with_step`].
    pub fn step_targets(&self) -> Vec<&Tensor> {
        self.loss.iter().chain(&self.riders).collect()
    }
    /// Number of tensors with a gradient.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
    /// True when no tensor has a gradient.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
    /// Adds `other`'s gradients to these (gradient accumulation over several backward calls,
    /// e.g. micro-batches). The sums are lazy like every other tensor.
    pub fn accumulate(&mut self, other: Gradients) {
        if other.loss.is_some() {
            self.loss = other.loss;
        }
        self.riders.extend(other.riders);
        for (id, g) in other.by_id {
            let sum = match self.by_id.remove(&id) {
                Some(prev) => prev.add(&g),
                None => g,
            };
            self.by_id.insert(id, sum);
        }
    }
    /// Sets (or replaces) the gradient for `t`.
    pub fn insert(&mut self, t: &Tensor, grad: Tensor) {
        self.by_id.insert(t.id(), grad);
    }
}

impl Tensor {
    /// Gradients of this scalar with respect to every tensor it was computed from that requires a
    /// gradient ([`Tensor::set_requires_grad`]: the parameters). Records gradient nodes; nothing
    /// runs until they (or the optimiser update built from them) are realized.
    #[track_caller]
    pub fn backward(&self) -> Gradients {
        assert!(
            self.numel() == 1 && self.dtype().is_float(),
            "backward: needs a float scalar, got {} {}",
            self.dtype(),
            self.shape()
        );
        let order = topological(self);
        let leaves: Vec<Tensor> = order
            .iter()
            .filter(|t| t.requires_grad() && t.inputs().is_empty())
            .cloned()
            .collect();
        let refs: Vec<&Tensor> = leaves.iter().collect();
        let grads = gradients(self, &refs);
        let mut out = Gradients {
            loss: Some(self.clone()),
            ..Gradients::default()
        };
        for (t, g) in leaves.iter().zip(grads) {
            out.insert(t, g);
        }
        out
    }

    /// Gradients of this scalar with respect to `wrt` (any tensors of its graph, requiring
    /// gradients or not), in order. A tensor the scalar does not depend on gets zeros.
    #[track_caller]
    pub fn grad_wrt(&self, wrt: &[&Tensor]) -> Vec<Tensor> {
        assert!(
            self.numel() == 1 && self.dtype().is_float(),
            "grad_wrt: needs a float scalar, got {} {}",
            self.dtype(),
            self.shape()
        );
        gradients(self, wrt)
    }
}

/// Every node behind `root` (realized or not), inputs before users.
pub(crate) fn topological(root: &Tensor) -> Vec<Tensor> {
    let mut order = vec![];
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        for x in t.inputs().iter().rev() {
            if !seen.contains(&x.id()) {
                stack.push((x.clone(), false));
            }
        }
    }
    order
}

/// d `loss` / d `wrt[i]` for each i: the reverse walk. Only nodes on a path from some `wrt` to
/// `loss` get gradients; contributions to a node from several users are summed.
fn gradients(loss: &Tensor, wrt: &[&Tensor]) -> Vec<Tensor> {
    let order = topological(loss);
    let wanted: std::collections::HashSet<u64> = wrt.iter().map(|t| t.id()).collect();
    // A node needs a gradient if it is wanted or an input of it needs one (and it was not
    // recorded inside `no_grad`, which stops gradients).
    let mut needs: HashMap<u64, bool> = HashMap::new();
    for t in &order {
        let n = wanted.contains(&t.id())
            || (t.dtype().is_float()
                && !t.grad_stopped()
                && t.inputs().iter().any(|x| needs[&x.id()]));
        needs.insert(t.id(), n);
    }
    let mut grad: HashMap<u64, Tensor> = HashMap::new();
    grad.insert(loss.id(), loss.ones_like());
    for t in order.iter().rev() {
        let Some(g) = grad.get(&t.id()).cloned() else {
            continue;
        };
        if t.inputs().is_empty() || !t.inputs().iter().any(|x| needs[&x.id()]) {
            continue;
        }
        let needed: Vec<bool> = t.inputs().iter().map(|x| needs[&x.id()]).collect();
        for (x, gx) in t.inputs().iter().zip(vjp(t, &g, &needed)) {
            let Some(gx) = gx else { continue };
            if !needs[&x.id()] {
                continue;
            }
            debug_assert_eq!(gx.shape(), x.shape(), "vjp of {:?}", t.op());
            let sum = match grad.remove(&x.id()) {
                Some(prev) => prev.add(&gx),
                None => gx,
            };
            grad.insert(x.id(), sum);
        }
    }
    wrt.iter()
        .map(|t| grad.get(&t.id()).cloned().unwrap_or_else(|| t.zeros_like()))
        .collect()
}

/// The vector-Jacobian products of node `y` for upstream gradient `g` (shape of `y`): one entry
/// per input, `None` where the input has no gradient (integer inputs, comparisons, indices) or
/// where `needed` (one flag per input, at least one true) says the walk does not want it: the
/// rules of ops with several inputs build nothing for those (a frozen weight's product
/// `xᵀ g`). One rule per op, grouped by family below.
pub(crate) fn vjp(y: &Tensor, g: &Tensor, needed: &[bool]) -> Vec<Option<Tensor>> {
    match y.op() {
        Op::Buffer | Op::Data(_) | Op::Full(_) | Op::Arange { .. } | Op::Rand { .. } => vec![],
        // Listed, not `op.is_view()`: the match stays exhaustive when an op is added.
        Op::Reshape
        | Op::Permute(_)
        | Op::Expand
        | Op::Slice { .. }
        | Op::Pad { .. }
        | Op::Cat { .. }
        | Op::Window(_)
        | Op::Unwindow(_) => view_vjp(y, g, needed),
        Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast(_) => elementwise_vjp(y, g, needed),
        Op::Reduce { .. } | Op::Matmul => reduction_vjp(y, g, needed),
        // ---- data-dependent sampling ----
        // No gradient for either input. The image's would be the transpose of the sampling (each
        // input pixel gathering from the output pixels whose taps reach it: a second data-
        // dependent kernel), the matrices' the image's spatial derivative at every sample; data
        // augmentation needs neither. `affine_sample` refuses inputs that require a gradient, so
        // no gradient is silently dropped here.
        Op::AffineSample => vec![None, None],
        // ---- host calls ----
        // The function brings its own rule (a collective's transpose is another collective).
        Op::HostCall(f) => vec![only(needed[0], || f.0.vjp(&y.inputs()[0], g))],
    }
}

/// `f()` if `needed`: the gradient of an input the walk wants, nothing built for one it does not.
fn only(needed: bool, f: impl FnOnce() -> Tensor) -> Option<Tensor> {
    needed.then(f)
}

/// Views move the gradient back where the elements came from (a view with one input is only
/// asked for when that input needs a gradient; a concatenation's parts are built as `needed`
/// says).
fn view_vjp(y: &Tensor, g: &Tensor, needed: &[bool]) -> Vec<Option<Tensor>> {
    let ins = y.inputs();
    let x = |i: usize| &ins[i];
    match y.op() {
        Op::Reshape => vec![Some(g.reshape(x(0).shape()))],
        Op::Permute(perm) => {
            let mut inverse = vec![0; perm.len()];
            for (d, &p) in perm.iter().enumerate() {
                inverse[p] = d;
            }
            vec![Some(g.permute(&inverse))]
        }
        Op::Expand => {
            let axes: Vec<usize> = (0..y.rank())
                .filter(|&d| x(0).dims()[d] == 1 && y.dims()[d] != 1)
                .collect();
            vec![Some(g.sum_axes_keepdim(&axes))]
        }
        Op::Slice { start, step } => vec![Some(unslice(g, x(0).dims(), start, step))],
        Op::Pad { before, .. } => {
            let mut t = g.clone();
            for (d, &b) in before.iter().enumerate() {
                t = t.narrow(d, b, x(0).dims()[d]);
            }
            vec![Some(t)]
        }
        Op::Cat { axis } => {
            let mut offset = 0;
            ins.iter()
                .zip(needed)
                .map(|(xi, &want)| {
                    let n = xi.dims()[*axis];
                    offset += n;
                    only(want, || g.narrow(*axis, offset - n, n))
                })
                .collect()
        }
        Op::Window(w) => {
            // col2im: each input element receives the gradient of every window tap that read it.
            let r = w.rank();
            let lead = y.rank() - 2 * r;
            let size = &x(0).dims()[lead..];
            let spread = g.unwindow(size, &w.stride, &w.dilation);
            let k_axes: Vec<usize> = (lead..lead + r).collect();
            vec![Some(spread.sum_axes(&k_axes))]
        }
        Op::Unwindow(w) => {
            // The adjoint reads g at (k, o * stride + k * dilation): a window of g, on its
            // diagonal k == k'. Taking the diagonal of [K, K'] is a strided slice of K * K'.
            let r = w.rank();
            let lead = y.rank() - 2 * r;
            let o_dims = &x(0).dims()[lead + r..];
            // Taps that fell outside the output (dropped by unwindow) get zero gradient: pad g
            // so that every one of the O windows exists.
            let mut pads = vec![(0, 0); g.rank()];
            for j in 0..r {
                let need = (o_dims[j] - 1) * w.stride[j] + w.dilation[j] * (w.kernel[j] - 1) + 1;
                pads[lead + r + j] = (0, need.saturating_sub(g.dims()[lead + r + j]));
            }
            let g = g.pad(&pads, 0.0);
            let win = g.window(&w.kernel, &w.stride, &w.dilation); // [.., K.., K'.., O'..]
            let mut perm: Vec<usize> = (0..lead).collect();
            for j in 0..r {
                perm.push(lead + j);
                perm.push(lead + r + j);
            }
            perm.extend(lead + 2 * r..lead + 3 * r);
            let mut t = win.permute(&perm);
            let mut dims = t.dims()[..lead].to_vec();
            dims.extend(w.kernel.iter().map(|k| k * k));
            dims.extend_from_slice(&t.dims()[lead + 2 * r..]);
            t = t.reshape(dims);
            for (j, (&k, &o)) in w.kernel.iter().zip(o_dims).enumerate() {
                t = t.slice(lead + j, 0, k * k, k + 1);
                t = t.narrow(lead + r + j, 0, o);
            }
            vec![Some(t)]
        }

        other => unreachable!("{other:?} is not a view"),
    }
}

/// Elementwise ops: the local derivative times `g`, for the inputs `needed` says.
fn elementwise_vjp(y: &Tensor, g: &Tensor, needed: &[bool]) -> Vec<Option<Tensor>> {
    let ins = y.inputs();
    let x = |i: usize| &ins[i];
    match y.op() {
        Op::Unary(op) => {
            let x0 = x(0);
            let gx = match op {
                UnaryOp::Neg => g.neg(),
                UnaryOp::Abs => g.mul(&sign(x0)),
                UnaryOp::Exp => g.mul(y),
                UnaryOp::Log => g.div(x0),
                UnaryOp::Sqrt => g.mul(&y.recip().mul_scalar(0.5)),
                UnaryOp::Rsqrt => g.mul(&y.div(x0).mul_scalar(-0.5)),
                UnaryOp::Recip => g.mul(&y.square()).neg(),
                UnaryOp::Sin => g.mul(&x0.cos()),
                UnaryOp::Cos => g.mul(&x0.sin()).neg(),
                UnaryOp::Tanh => g.mul(&y.square().neg().add_scalar(1.0)),
                UnaryOp::Sigmoid => g.mul(&y.mul(&y.neg().add_scalar(1.0))),
                // From the output (y > 0 exactly where x > 0, NaN included): the input then
                // has no reader but the relu and folds into the kernel that computes it (e.g. a
                // matmul's epilogue stores relu(x W + b) only).
                UnaryOp::Relu => mask(g, &y.gt(&y.zeros_like())),
                UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => g.zeros_like(),
                UnaryOp::Not => return vec![None],
            };
            vec![Some(gx)]
        }
        Op::Binary(op) => {
            let (a, b) = (x(0), x(1));
            let (na, nb) = (needed[0], needed[1]);
            match op {
                BinaryOp::Add => vec![only(na, || g.clone()), only(nb, || g.clone())],
                BinaryOp::Sub => vec![only(na, || g.clone()), only(nb, || g.neg())],
                BinaryOp::Mul => vec![only(na, || g.mul(b)), only(nb, || g.mul(a))],
                BinaryOp::Div => vec![only(na, || g.div(b)), only(nb, || g.mul(y).div(b).neg())],
                BinaryOp::Pow => {
                    // d/da a^b = b a^(b-1) = b y / a (written with pow so a = 0 works for b >= 1);
                    // d/db a^b = y ln a, taken as 0 where a == 0 (the limit for b > 0).
                    let da = only(na, || g.mul(&b.mul(&a.pow(&b.add_scalar(-1.0)))));
                    let db = only(nb, || {
                        let safe_log = a.le(&a.zeros_like()).where_cond(&a.zeros_like(), &a.log());
                        g.mul(&y.mul(&safe_log))
                    });
                    vec![da, db]
                }
                BinaryOp::Maximum | BinaryOp::Minimum => {
                    // The larger (smaller) input takes the gradient; a tie splits it, as in
                    // PyTorch.
                    let wins = if *op == BinaryOp::Maximum {
                        a.gt(b)
                    } else {
                        a.lt(b)
                    };
                    let tie = a.eq(b).cast(g.dtype()).mul_scalar(0.5);
                    let share = wins.cast(g.dtype()).add(&tie);
                    let ga = g.mul(&share);
                    vec![only(na, || ga.clone()), only(nb, || g.sub(&ga))]
                }
                _ => vec![None, None], // comparisons
            }
        }
        Op::Where => {
            let cond = x(0);
            let zero = g.zeros_like();
            vec![
                None,
                only(needed[1], || cond.where_cond(g, &zero)),
                only(needed[2], || cond.where_cond(&zero, g)),
            ]
        }
        Op::Cast(_) => {
            if x(0).dtype().is_float() {
                vec![Some(g.cast(x(0).dtype()))]
            } else {
                vec![None]
            }
        }

        other => unreachable!("{other:?} is not elementwise"),
    }
}

/// Reductions and contractions (a product's two gradients as `needed` says).
fn reduction_vjp(y: &Tensor, g: &Tensor, needed: &[bool]) -> Vec<Option<Tensor>> {
    let ins = y.inputs();
    let x = |i: usize| &ins[i];
    match y.op() {
        Op::Reduce { op, axes } => {
            let x0 = x(0);
            match op {
                ReduceOp::Sum => vec![Some(g.expand(x0.shape()))],
                ReduceOp::Max if window_taps(x0, axes).is_some() => {
                    vec![Some(first_max_of_windows(x0, axes, g))]
                }
                ReduceOp::Max | ReduceOp::Min => {
                    // Every element equal to the extreme shares the gradient equally. The mask
                    // is built once per use: a mask with two users would be stored, and over a
                    // pooling window view it can outgrow a binding (ResNet-50's stem max-pool
                    // at batch 32: 231 MB); recomputing it in each kernel costs a comparison.
                    let hit = || x0.eq(&y.expand(x0.shape())).cast(g.dtype());
                    let count = hit().sum_axes_keepdim(axes);
                    vec![Some(hit().mul(&g.div(&count).expand(x0.shape())))]
                }
                ReduceOp::ArgMax | ReduceOp::ArgMin => vec![None],
            }
        }
        Op::Matmul => {
            let (a, b) = (x(0), x(1));
            vec![
                only(needed[0], || g.matmul(&b.t())),
                only(needed[1], || a.t().matmul(g)),
            ]
        }

        other => unreachable!("{other:?} is not a reduction"),
    }
}

/// The kernel of the window view `x` when `axes` are exactly its tap axes (`[.., K.., O..]`
/// reduced over `K..`: max pooling), else `None`.
fn window_taps<'a>(x: &'a Tensor, axes: &[usize]) -> Option<&'a [usize]> {
    let Op::Window(w) = x.op() else {
        return None;
    };
    let lead = x.rank() - 2 * w.rank();
    axes.iter()
        .copied()
        .eq(lead..lead + w.rank())
        .then_some(&w.kernel[..])
}

/// The gradient of max pooling, as PyTorch defines it: each window's whole gradient `g` goes to
/// its first maximum in row-major order of the taps (ties are not shared, unlike
/// [`Tensor::max_axes`] elsewhere). `x` is the window view `[.., K.., O..]`, `axes` its tap axes.
/// The first maximum is the window's argmax (one reduction, recomputed here rather than stored
/// by the forward); the taps that hold it are a comparison folded into the col2im that follows.
fn first_max_of_windows(x: &Tensor, axes: &[usize], g: &Tensor) -> Tensor {
    let kernel = window_taps(x, axes).expect("a window's tap axes");
    let first = x.argmax_axes_keepdim(axes); // [.., 1.., O..], i32
    let taps: usize = kernel.iter().product();
    let mut tap_dims = vec![1; axes[0]];
    tap_dims.extend_from_slice(kernel);
    tap_dims.resize(x.rank(), 1);
    let tap = Tensor::arange_i32(0, taps as i32, 1, x.device()).reshape(tap_dims);
    let zero = Tensor::full_dtype(x.shape(), 0.0, g.dtype(), x.device());
    tap.eq(&first).where_cond(&g.expand(x.shape()), &zero)
}

/// `g` where `keep` is true, else 0.
fn mask(g: &Tensor, keep: &Tensor) -> Tensor {
    keep.where_cond(g, &g.zeros_like())
}

/// -1, 0 or 1 by the sign of `x`.
fn sign(x: &Tensor) -> Tensor {
    let zero = x.zeros_like();
    x.gt(&zero)
        .cast(x.dtype())
        .sub(&x.lt(&zero).cast(x.dtype()))
}

/// The gradient of a strided slice: `g` scattered back to the positions the slice read, zeros
/// elsewhere. Per dimension: reverse if the step is negative, spread out by the step (zeros
/// between), then pad to the input size. All views.
fn unslice(g: &Tensor, in_dims: &[usize], start: &[i64], step: &[i64]) -> Tensor {
    let mut t = g.clone();
    for d in 0..in_dims.len() {
        let n = t.dims()[d];
        let (st, s0) = (step[d], start[d]);
        if n == 0 {
            return Tensor::full_dtype(in_dims, 0.0, g.dtype(), g.device());
        }
        // First input position read, counting upwards.
        let first = if st < 0 {
            t = t.flip(&[d]);
            s0 + st * (n as i64 - 1)
        } else {
            s0
        } as usize;
        let stride = st.unsigned_abs() as usize;
        if stride > 1 {
            t = spread(&t, d, stride);
        }
        let len = t.dims()[d];
        let mut pads = vec![(0, 0); t.rank()];
        pads[d] = (first, in_dims[d] - first - len);
        t = t.pad(&pads, 0.0);
    }
    t
}

/// Inserts `stride - 1` zeros between consecutive elements of dimension `d`:
/// size n becomes (n - 1) * stride + 1.
pub(crate) fn spread(t: &Tensor, d: usize, stride: usize) -> Tensor {
    let n = t.dims()[d];
    let mut pads = vec![(0, 0); t.rank() + 1];
    pads[d + 1] = (0, stride - 1);
    let wide = t.unsqueeze(d + 1).pad(&pads, 0.0).flatten(d, d + 1);
    wide.narrow(d, 0, (n - 1) * stride + 1)
}
