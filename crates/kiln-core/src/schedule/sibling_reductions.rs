//! Sibling reductions (rule 5a of the scheduler): independent reductions over the same group of
//! inputs become one kernel.
//!
//! A max-pooling layer's forward pass reduces each window twice (its maximum, and where it is for
//! the backward pass); batch norm's backward pass sums both `g` and `g * x̂` over the same axes;
//! a softmax cross-entropy sums twice over the classes. Each is a reduction kernel of its own
//! today, and on a small batch each is a dispatch that moves little. Joined, one kernel walks
//! the group once with one accumulator per reduction, and its epilogue writes every
//! reduction's output (each reduction's own epilogue chain, at the same output element).
//!
//! Walking the kernels in order, a reduction kernel `B` joins an earlier reduction kernel `A`
//! when:
//! - their reductions have the same domain: inputs of one shape, reduced over the same axes, to
//!   outputs of one shape (so one output index and one position in the group serve all);
//! - `B` reads none of `A`'s outputs (the reductions are independent);
//! - neither writes f16 (packed f16 pairs are written by single-output kernels only);
//! - the joined kernel binds at most `max_bindings` storage buffers and computes at most
//!   [`MAX_SIBLINGS`] reductions;
//! - it can sit at `B`'s place (no kernel between them reads `A`'s outputs) or at `A`'s place
//!   (no kernel between them writes what `B` reads).
//!
//! This is a scheduling rule rather than a rule of [`crate::rewrite`]: a graph has no node with
//! two outputs, and which reductions share a dispatch is a decision about kernels.

use super::multi_output::joined_reads;
use super::{Kernel, KernelKind};
use crate::dtype::DType;
use crate::graph::Pending;
use crate::op::Op;

/// How many kernels back a reduction looks for a sibling.
const WINDOW: usize = 64;

/// Most reductions one kernel computes: each has its own accumulator (and, in a kernel with
/// one workgroup per output element, its own workgroup arrays).
pub const MAX_SIBLINGS: usize = 4;

/// Joins reduction kernels over the same domain where the rules of this module allow it.
pub fn join(p: &Pending, kernels: Vec<Kernel>, max_bindings: usize) -> Vec<Kernel> {
    let mut slots: Vec<Option<Kernel>> = kernels.into_iter().map(Some).collect();
    for j in 0..slots.len() {
        let Some(b) = &slots[j] else { continue };
        let KernelKind::Reduce(cb) = b.kind else {
            continue;
        };
        if !b.extra.is_empty() || writes_f16(p, b) {
            continue;
        }
        let Some((i, at_b)) = sibling(p, &slots, j, cb, max_bindings) else {
            continue;
        };
        let a = slots[i].take().unwrap();
        let b = slots[j].take().unwrap();
        slots[if at_b { j } else { i }] = Some(joined(a, b));
    }
    slots.into_iter().flatten().collect()
}

/// The nearest reduction kernel before `j` that reduction kernel `j` (core `cb`) can join: its
/// position, and whether the joined kernel sits at `j`'s place (else at the sibling's).
fn sibling(
    p: &Pending,
    slots: &[Option<Kernel>],
    j: usize,
    cb: usize,
    max_bindings: usize,
) -> Option<(usize, bool)> {
    let b = slots[j].as_ref().unwrap();
    for i in (j.saturating_sub(WINDOW)..j).rev() {
        let Some(a) = &slots[i] else { continue };
        let KernelKind::Reduce(ca) = a.kind else {
            continue;
        };
        if !same_domain(p, ca, cb)
            || writes_f16(p, a)
            || a.siblings.len() + 2 > MAX_SIBLINGS
            || b.reads.iter().any(|r| a.outputs().any(|o| o == *r))
        {
            continue;
        }
        let reads = joined_reads(a, b);
        if a.extra.len() + 2 + reads.len() > max_bindings {
            continue;
        }
        let between = || slots[i + 1..j].iter().flatten();
        let at_b = between().all(|k| !k.reads.iter().any(|r| a.outputs().any(|o| o == *r)));
        let at_a = || between().all(|k| !k.outputs().any(|o| b.reads.contains(&o)));
        if at_b || at_a() {
            return Some((i, at_b));
        }
    }
    None
}

/// True if reductions `a` and `b` reduce inputs of one shape over the same axes to outputs of
/// one shape.
fn same_domain(p: &Pending, a: usize, b: usize) -> bool {
    let (Op::Reduce { axes: axes_a, .. }, Op::Reduce { axes: axes_b, .. }) =
        (p.nodes[a].op(), p.nodes[b].op())
    else {
        return false;
    };
    let (xa, xb) = (p.inputs[a][0], p.inputs[b][0]);
    axes_a == axes_b
        && p.nodes[xa].shape() == p.nodes[xb].shape()
        && p.nodes[a].shape() == p.nodes[b].shape()
        && p.nodes[a].numel() > 0
}

fn writes_f16(p: &Pending, k: &Kernel) -> bool {
    k.outputs().any(|o| p.nodes[o].dtype() == DType::F16)
}

/// Kernel `a` computing `b`'s reduction too: `b`'s core becomes a sibling and `b`'s root an
/// extra output.
fn joined(a: Kernel, b: Kernel) -> Kernel {
    let KernelKind::Reduce(cb) = b.kind else {
        unreachable!()
    };
    let reads = joined_reads(&a, &b);
    let mut scalars = a.scalars.clone();
    scalars.extend(b.scalars.iter().filter(|s| !a.scalars.contains(s)));
    let mut siblings = a.siblings.clone();
    siblings.push(cb);
    let mut extra = a.extra.clone();
    extra.push(b.root);
    Kernel {
        kind: a.kind,
        root: a.root,
        extra,
        segments: vec![],
        siblings,
        in_place: vec![],
        reads,
        scalars,
    }
}
