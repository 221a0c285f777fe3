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
//! Failing a partner of its shape, an elementwise kernel joins an earlier elementwise kernel as a
//! segment of its own (horizontal fusion) when it reads none of that kernel's outputs, under
//! the same binding and placement rules: the segments take consecutive ranges of invocations.
//! The updates of a network's weight matrices, independent of each other, become one dispatch.
//!
//! f16 outputs never join (neither kernel may write one): without native f16 they are stored as
//! packed pairs of halves, which only a single-output kernel writes safely.
//!
//! Candidates are tried nearest first within `WINDOW` (64) kernels, so the result depends only on
//! the graph's structure (plans stay deterministic and cacheable).

use super::{Kernel, KernelKind, MAX_INLINE_DEPTH};
use crate::dtype::DType;
use crate::graph::Pending;

/// How many kernels back a kernel looks for a partner: scheduling stays linear in big graphs.
const WINDOW: usize = 64;

/// Most total expression depth of a joined kernel's outputs: that of one kernel
/// ([`MAX_INLINE_DEPTH`]). Joining 8 pieces of a long chain (depth 1,024 in one kernel) made its
/// first realize 28x slower on lavapipe (4.3 s against 153 ms for 1,000 ops) and its replays 3x
/// slower; an optimiser's updates (depth ~10 each) join as before.
pub const MAX_JOINED_DEPTH: usize = MAX_INLINE_DEPTH;

/// Joins kernels into multi-output kernels where the rules of this module allow it.
///
/// `depth` gives each materialized node's expression depth (see `schedule::bound_inline_depth`):
/// the depths of a joined kernel's outputs add up to at most [`MAX_JOINED_DEPTH`], so that a long
/// chain cut into kernels is not joined back into one (each output reads the ones before it from
/// registers, so code generation's recursion stays one output deep).
pub fn merge(
    p: &Pending,
    mat: &[bool],
    depth: &[usize],
    kernels: Vec<Kernel>,
    max_bindings: usize,
) -> Vec<Kernel> {
    let mut slots: Vec<Option<Kernel>> = kernels.into_iter().map(Some).collect();
    for j in 0..slots.len() {
        let b = match &slots[j] {
            Some(b) if b.kind == KernelKind::Elementwise && b.extra.is_empty() => b,
            _ => continue,
        };
        if p.nodes[b.root].numel() == 0 || p.nodes[b.root].dtype() == DType::F16 {
            continue;
        }
        let far = far_reads(p, mat, b.root);
        // Same-shape partners first (shared index arithmetic and registers), then segments.
        let chosen = [false, true]
            .into_iter()
            .find_map(|horizontal| partner(p, &slots, j, &far, horizontal, max_bindings, depth));
        let Some((i, at_b, seg)) = chosen else {
            continue;
        };
        let a = slots[i].take().unwrap();
        let b = slots[j].take().unwrap();
        let joined = join(a, &b, seg);
        slots[if at_b { j } else { i }] = Some(joined);
    }
    slots.into_iter().flatten().collect()
}

/// The nearest kernel before `j` that kernel `j` (elementwise, one output, reading `far` away
/// from its own element) can join: its position, whether the joined kernel sits at `j`'s place
/// (else at the partner's), and the partner's segment `j` joins (`None`: a new segment).
fn partner(
    p: &Pending,
    slots: &[Option<Kernel>],
    j: usize,
    far: &[usize],
    horizontal: bool,
    max_bindings: usize,
    depth: &[usize],
) -> Option<(usize, bool, Option<usize>)> {
    let b = slots[j].as_ref().unwrap();
    let cost = |k: &Kernel| k.outputs().map(|o| depth[o]).sum::<usize>();
    let shape = p.nodes[b.root].shape();
    for i in (j.saturating_sub(WINDOW)..j).rev() {
        let Some(a) = &slots[i] else { continue };
        if a.outputs().any(|o| p.nodes[o].dtype() == DType::F16) {
            continue;
        }
        let seg = a
            .segment_outputs()
            .iter()
            .position(|s| p.nodes[s[0]].shape() == shape);
        let fits = match (a.kind, horizontal) {
            (KernelKind::Elementwise | KernelKind::Reduce(_), false) => seg.is_some(),
            // A segment reads nothing its kernel writes: the segments run side by side.
            (KernelKind::Elementwise, true) => {
                seg.is_none()
                    && p.nodes[a.root].numel() > 0
                    && !b.reads.iter().any(|r| a.outputs().any(|o| o == *r))
            }
            _ => false,
        };
        if !fits || a.outputs().any(|o| far.contains(&o))
            // Segments run side by side: only a kernel one element computes more of is bounded
            // (its source is bounded by the bindings anyway).
            || (!horizontal && cost(a) + cost(b) > MAX_JOINED_DEPTH)
        {
            continue;
        }
        if a.extra.len() + 2 + joined_reads(a, b).len() > max_bindings {
            continue;
        }
        let between = || slots[i + 1..j].iter().flatten();
        let at_b = between().all(|k| !k.reads.iter().any(|r| a.outputs().any(|o| o == *r)));
        let at_a = || between().all(|k| !k.outputs().any(|o| b.reads.contains(&o)));
        if at_b || at_a() {
            return Some((i, at_b, seg));
        }
    }
    None
}

/// Kernel `a` with `b`'s output added: at the end of segment `seg` of `a`, or as a new segment.
fn join(a: Kernel, b: &Kernel, seg: Option<usize>) -> Kernel {
    let reads = joined_reads(&a, b);
    let mut scalars = a.scalars.clone();
    scalars.extend(b.scalars.iter().filter(|s| !a.scalars.contains(s)));
    let mut outs: Vec<usize> = a.outputs().collect();
    let mut segments = a.segments.clone();
    match seg {
        Some(s) => {
            // Insert at the end of segment `s`; later segments start one further on.
            let end = segments.get(s).copied().unwrap_or(outs.len());
            outs.insert(end, b.root);
            for start in segments.iter_mut().skip(s) {
                *start += 1;
            }
        }
        None => {
            segments.push(outs.len());
            outs.push(b.root);
        }
    }
    Kernel {
        kind: a.kind,
        root: outs[0],
        extra: outs[1..].to_vec(),
        segments,
        siblings: a.siblings.clone(),
        in_place: vec![],
        reads,
        scalars,
    }
}

/// The buffers the kernel joining `a` and `b` reads: `a`'s, then `b`'s that are not `a`'s
/// outputs, each once.
pub(super) fn joined_reads(a: &Kernel, b: &Kernel) -> Vec<usize> {
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
pub(super) fn far_reads(p: &Pending, mat: &[bool], root: usize) -> Vec<usize> {
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
