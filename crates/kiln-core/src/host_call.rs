//! Host calls: a function computed on the host in the middle of a lazy graph, with a gradient
//! rule of its own. A collective operation across processes is the use it was made for
//! (`SyncBatchNorm` gathers every process's batch statistics mid-forward and sums their
//! gradients mid-backward), but any `[..] f32 -> [..] f32` function of the values fits.
//!
//! A graph with host calls cannot run as one plan: the values a host call reads must be on the
//! host before the rest can go on. The realize runs such a graph in stages before the backend
//! sees it. Each stage realizes, in one plan, the inputs of the host calls that depend on
//! no other unresolved host call, together with every node of their subgraph that the rest of
//! the graph reads (so nothing is computed twice); then it runs those calls in graph order and
//! stores each result on its node, which the next stage reads as a realized leaf. A graph without
//! host calls costs one scan of its nodes and nothing else.

use crate::backend::Backend;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::graph::Pending;
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::Tensor;
use std::sync::Arc;

/// A function of one f32 tensor computed on the host, with its vector-Jacobian product
/// expressed in graph ops (which may hold host calls themselves). Recorded with
/// [`Tensor::host_call`].
///
/// A stage runs its calls in the order they were recorded, and a call runs in the first stage
/// where its input needs no other pending call, so processes that record the same graph and
/// realize the same tensors call their host functions in the same order: what collective
/// operations need.
pub trait HostFunction: Send + Sync {
    /// A short name for graph drawings, debug output and plan signatures (`all_gather`).
    fn name(&self) -> String;
    /// The output's dims for an input of dims `input`.
    fn output_dims(&self, input: &[usize]) -> Vec<usize>;
    /// The output's values (row-major, `output_dims` elements) from the input's (row-major).
    fn compute(&self, input: &[f32]) -> Result<Vec<f32>>;
    /// The gradient with respect to the input (the input's dims) given `grad`, the gradient of
    /// the output (the output's dims); `input` is the call's input tensor.
    fn vjp(&self, input: &Tensor, grad: &Tensor) -> Tensor;
    /// Called instead of (or after a failed) [`HostFunction::compute`] when the stage that
    /// holds this call failed on this process with `error` (a device error computing the
    /// inputs, another call of the stage failing): the realize then returns `error`. A
    /// collective operation ends its group here (the other processes would wait for this one
    /// in it forever). The default does nothing.
    fn stage_failed(&self, error: &KilnError) {
        let _ = error;
    }
}

/// The function of an [`Op::HostCall`] node: a shared [`HostFunction`].
#[derive(Clone)]
pub struct HostCall(pub Arc<dyn HostFunction>);

impl std::fmt::Debug for HostCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostCall({})", self.0.name())
    }
}

impl Tensor {
    /// `f` of this f32 tensor, computed on the host when the graph runs (see the module
    /// documentation): `[..] -> f.output_dims(..)`, f32. Gradients flow through `f.vjp`.
    #[track_caller]
    pub fn host_call(&self, f: Arc<dyn HostFunction>) -> Tensor {
        assert!(
            self.dtype() == DType::F32,
            "host_call({}): expects an f32 input, got {} {}",
            f.name(),
            self.dtype(),
            self.shape()
        );
        let dims = f.output_dims(self.dims());
        Tensor::from_op(
            Op::HostCall(HostCall(f)),
            vec![self.clone()],
            Shape(dims),
            DType::F32,
            self.device(),
        )
    }
}

/// Runs the host calls of `pending`'s graph (collected from `targets`) in stages on `backend`
/// (see the module documentation). Returns the graph behind `targets` left without unresolved
/// host calls (`pending` itself when it had none), with the nodes the stages realized besides
/// the calls: the caller runs the graph, then forgets those nodes' values (see
/// [`forget_stage_values`]).
pub(crate) fn resolve_host_calls(
    pending: Pending,
    targets: &[&Tensor],
    backend: &dyn Backend,
) -> Result<(Pending, Vec<Tensor>)> {
    let mut staged = vec![];
    let mut p = pending;
    while has_host_calls(&p) {
        let stage = Stage::of(&p);
        if let Err(e) = run_stage(&p, &stage, backend) {
            for &h in &stage.calls {
                if let Op::HostCall(HostCall(f)) = p.nodes[h].op() {
                    f.stage_failed(&e);
                }
            }
            return Err(e);
        }
        staged.extend(stage.realize.iter().map(|&i| p.nodes[i].clone()));
        p = Pending::collect(targets);
    }
    Ok((p, staged))
}

/// Forgets the values a graph's stages realized (`staged`, from [`resolve_host_calls`]) once
/// the final plan has run, unless they are among `targets`: without host calls these would
/// have been a plan's intermediates, freed after it, and a loss kept for printing must not
/// keep the activations of its forward pass alive. A later realize that needs one computes it
/// again from its inputs (the host calls keep their results, so no collective runs twice).
pub(crate) fn forget_stage_values(staged: &[Tensor], targets: &[&Tensor]) {
    for t in staged {
        if !targets.iter().any(|x| x.same(t)) {
            t.forget_storage();
        }
    }
}

/// One stage: realizes its nodes (reading the calls' inputs back in the same submission), runs
/// its calls in order and uploads their results.
fn run_stage(p: &Pending, stage: &Stage, backend: &dyn Backend) -> Result<()> {
    let needed: Vec<&Tensor> = stage.realize.iter().map(|&i| &p.nodes[i]).collect();
    let inputs: Vec<usize> = stage.calls.iter().map(|&h| p.inputs[h][0]).collect();
    let read: Vec<usize> = inputs
        .iter()
        .filter_map(|i| stage.realize.iter().position(|r| r == i))
        .collect();
    let mut bytes = match needed.is_empty() {
        true => vec![],
        false => backend.realize(&Pending::collect(&needed), &read)?,
    }
    .into_iter();
    let mut results = Vec::with_capacity(stage.calls.len());
    for (&h, &input) in stage.calls.iter().zip(&inputs) {
        let input = match stage.realize.contains(&input) {
            true => f32_values(&bytes.next().expect("one read per staged input")),
            false => p.nodes[input].to_vec::<f32>()?,
        };
        results.push(host_call_result(&p.nodes[h], &input)?);
    }
    // Every result of the stage uploaded at once (one submission, no wait), then given to its
    // node, a realized leaf for the next stage.
    Tensor::realize_all(&results.iter().collect::<Vec<_>>())?;
    for (&h, values) in stage.calls.iter().zip(&results) {
        p.nodes[h].set_storage(values.storage().expect("realized"));
    }
    Ok(())
}

/// Little-endian f32 words.
fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// True when some node of `p` is a host call not yet computed.
fn has_host_calls(p: &Pending) -> bool {
    (0..p.nodes.len()).any(|i| is_unresolved_call(p, i))
}

fn is_unresolved_call(p: &Pending, i: usize) -> bool {
    matches!(p.nodes[i].op(), Op::HostCall(_)) && !p.is_leaf(i)
}

/// One stage of a graph with host calls: the calls that can run now and what to realize first.
struct Stage {
    /// Host calls whose inputs depend on no unresolved host call, in recording order.
    calls: Vec<usize>,
    /// Nodes to realize in this stage's plan: the calls' inputs and every node of their
    /// subgraph that a later stage reads (or that is a target).
    realize: Vec<usize>,
}

impl Stage {
    fn of(p: &Pending) -> Stage {
        let n = p.nodes.len();
        // after[i]: node i is, or depends on, an unresolved host call.
        let mut after = vec![false; n];
        for i in 0..n {
            after[i] = is_unresolved_call(p, i) || p.inputs[i].iter().any(|&j| after[j]);
        }
        let mut calls: Vec<usize> = (0..n)
            .filter(|&h| is_unresolved_call(p, h) && p.inputs[h].iter().all(|&j| !after[j]))
            .collect();
        // Recording order, not the walk's: the walk depends on what else this realize asks for
        // (rank 0 reading a loss early, say), the recording order only on the model's code.
        calls.sort_by_key(|&h| p.nodes[h].id());
        // The subgraph this stage computes: everything behind the calls' inputs.
        let mut in_stage = vec![false; n];
        let mut stack: Vec<usize> = calls.iter().flat_map(|&h| p.inputs[h].clone()).collect();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut in_stage[i], true) {
                stack.extend(&p.inputs[i]);
            }
        }
        // Realized: the stage's nodes read from outside the stage, and its targets.
        let mut read_later = vec![false; n];
        for u in (0..n).filter(|&u| !in_stage[u]) {
            for &j in &p.inputs[u] {
                read_later[j] |= in_stage[j];
            }
        }
        for &t in &p.targets {
            read_later[t] |= in_stage[t];
        }
        let mut realize = vec![];
        for i in (0..n).filter(|&i| read_later[i]) {
            let is_call_input = calls.iter().any(|&h| p.inputs[h].contains(&i));
            let j = if is_call_input {
                i
            } else {
                through_views(p, i)
            };
            let node = &p.nodes[j];
            if !p.is_leaf(j) || !(node.is_realized() || node.op().is_generator()) {
                realize.push(j);
            }
        }
        realize.sort_unstable();
        realize.dedup();
        Stage { calls, realize }
    }
}

/// The node a chain of one-input views over node `i` starts from: realizing that one instead of
/// the view keeps a broadcast (`Expand`) from being written out at full size; later stages
/// compute the view again as index arithmetic.
fn through_views(p: &Pending, mut i: usize) -> usize {
    while p.nodes[i].op().is_view() && p.inputs[i].len() == 1 {
        i = p.inputs[i][0];
    }
    i
}

/// Host call `call`'s values computed from its input's, as a tensor to upload.
fn host_call_result(call: &Tensor, input: &[f32]) -> Result<Tensor> {
    let Op::HostCall(HostCall(f)) = call.op() else {
        unreachable!("a stage lists host calls only")
    };
    let out = f.compute(input)?;
    if out.len() != call.numel() {
        return Err(KilnError::Backend(format!(
            "host call {}: returned {} values for an output of shape {}",
            f.name(),
            out.len(),
            call.shape()
        )));
    }
    Tensor::from_vec(out, call.dims().to_vec(), call.device())
}
