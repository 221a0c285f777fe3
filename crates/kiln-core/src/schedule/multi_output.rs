//! Multi-output kernels (rule 5 of the scheduler).
//!
//! Elementwise kernels that compute over the same iteration space are cheaper as one: one
//! dispatch instead of several, and a value one of them computes is used by the next one from a
//! register instead of a buffer. Adam's update of one parameter is three such kernels (`m`, `v`
//! and the new parameter, which reads both); a bias gradient is a reduction whose output has the
//! parameter's shape, so its update can ride in the reduction's epilogue.
//!
//! Walking the kernels in order, an elementwise kernel `B` joins an earlier kernel `A` when:
//! - `A` is elementwise or a reduction and its root has `B`'s shape (the same element index
//!   serves both; a reduction computes its extra outputs in its epilogue);
//! - `B` reads `A`'s outputs only at its own element (through elementwise ops only, never
//!   through a view), so the joined kernel never reads what another invocation writes;
//! - the joined kernel binds at most `max_bindings` storage buffers;
//! - it can sit at `B`'s place (no kernel between them reads `A`'s outputs) or at `A`'s place
//!   (no kernel between them writes what `B` reads).
//!
//! Candidates are tried nearest first within [`WINDOW`] kernels, so the result depends only on
//! the graph's structure (plans stay deterministic and cacheable).

use super::{Kernel, KernelKind};
use crate::graph::Pending;

/// How many kernels back a kernel looks for a partner: scheduling stays linear in big graphs.
const WINDOW: usize = 64;

/// Joins kernels into multi-output kernels where the rules of this module allow it.
pub fn merge(p: &Pending, mat: &[bool], kernels: Vec<Kernel>, max_bindings: usize) -> Vec<Kernel> {
    let mut slots: Vec<Option<Kernel>> = kernels.into_iter().map(Some).collect();
    for j in 0..slots.len() {
        let b = match &slots[j] {
            Some(b) if b.kind == KernelKind::Elementwise && b.extra.is_empty() => b,
            _ => continue,
        };
        let shape = p.nodes[b.root].shape();
        let far = far_reads(p, mat, b.root);
        let mut chosen = None;
        for i in (j.saturating_sub(WINDOW)..j).rev() {
            let Some(a) = &slots[i] else { continue };
            let kind_ok = matches!(a.kind, KernelKind::Elementwise | KernelKind::Reduce(_));
            if !kind_ok || p.nodes[a.root].shape() != shape {
                continue;
            }
            if a.outputs().any(|o| far.contains(&o)) {
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
                chosen = Some((i, at_b, reads));
                break;
            }
        }
        let Some((i, at_b, reads)) = chosen else {
            continue;
        };
        let a = slots[i].take().unwrap();
        let b = slots[j].take().unwrap();
        let mut scalars = a.scalars.clone();
        scalars.extend(b.scalars.iter().filter(|s| !a.scalars.contains(s)));
        let mut extra = a.extra.clone();
        extra.push(b.root);
        let joined = Kernel {
            kind: a.kind,
            root: a.root,
            extra,
            reads,
            scalars,
        };
        slots[if at_b { j } else { i }] = Some(joined);
    }
    slots.into_iter().flatten().collect()
}

/// The buffers the kernel joining `a` and `b` reads: `a`'s, then `b`'s that are not `a`'s
/// outputs, each once.
fn joined_reads(a: &Kernel, b: &Kernel) -> Vec<usize> {
    let mut reads = a.reads.clone();
    for &r in &b.reads {
        if !reads.contains(&r) && !a.outputs().any(|o| o == r) {
            reads.push(r);
        }
    }
    reads
}

/// The materialized nodes that the inline expression of `root` reads at an element other than
/// its own: through a view (reshape, permute, expand, slice, window, ...) or a core, rather than
/// through elementwise ops alone.
fn far_reads(p: &Pending, mat: &[bool], root: usize) -> Vec<usize> {
    let mut far = vec![];
    // (node, reached through elementwise ops only)
    let mut stack: Vec<(usize, bool)> = vec![(root, true)];
    let mut seen = std::collections::HashSet::new();
    while let Some((i, same)) = stack.pop() {
        if !seen.insert((i, same)) {
            continue;
        }
        if i != root && mat[i] {
            if !same && !far.contains(&i) {
                far.push(i);
            }
            continue;
        }
        let keeps = same && p.nodes[i].op().is_elementwise();
        stack.extend(p.inputs[i].iter().map(|&x| (x, keeps)));
    }
    far
}
