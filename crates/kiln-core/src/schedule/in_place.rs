//! Updates in place (rule 5c of the scheduler): an output that replaces a realized leaf after
//! the realize is written into the leaf's buffer.
//!
//! An optimiser's step computes every parameter's new value (and Adam's two moments) from the
//! old one, then the parameter takes the new values ([`crate::Tensor::realize_assign`], which
//! records the pairs in [`Pending::updates`]). Computed into new buffers, a step holds two copies
//! of the parameters and the optimiser state at its peak (AlexNet: 2 x 3 x 233 MB); written over
//! the old values, one.
//!
//! Output `t` of kernel `K` is written into the buffer of leaf `l` it replaces when:
//! - `K` is elementwise or a reduction (whose epilogue writes `t` at the element it reduced to),
//!   and `t` is not f16 (packed halves are written two per invocation);
//! - no kernel after `K` reads `l`;
//! - `K` reads `l` only at `t`'s own element: through elementwise ops alone, from outputs of
//!   `t`'s segment only (never through a view, a reduction's input or another segment, which
//!   would read elements other invocations overwrite).
//!
//! `K` then reads `l` through `t`'s read-write binding (one buffer cannot be bound both
//! read-only and writable in one dispatch), and every value of an invocation is computed before
//! it stores any. The backend writes in place only when nothing but `l`'s tensor holds its
//! storage; otherwise it copies `l` into a new buffer first, and the same kernel runs.

use super::multi_output::far_reads;
use super::{kernel_inputs, Kernel, KernelKind};
use crate::dtype::DType;
use crate::graph::Pending;

/// Marks in `kernels` the outputs of `p.updates` that the rules of this module let write in
/// place: the leaf moves from the kernel's reads to [`Kernel::in_place`].
pub fn assign(p: &Pending, mat: &[bool], kernels: &mut [Kernel]) {
    for &(t, l) in &p.updates {
        let Some(k) = kernels.iter().position(|k| k.outputs().any(|o| o == t)) else {
            continue;
        };
        if writable_in_place(p, mat, kernels, k, t, l) {
            let kernel = &mut kernels[k];
            kernel.reads.retain(|&r| r != l);
            kernel.in_place.push((t, l));
        }
    }
}

/// True if output `t` of kernel `kernels[k]` may be written into the buffer of leaf `l`.
fn writable_in_place(
    p: &Pending,
    mat: &[bool],
    kernels: &[Kernel],
    k: usize,
    t: usize,
    l: usize,
) -> bool {
    let kernel = &kernels[k];
    let kind_fits = matches!(kernel.kind, KernelKind::Elementwise | KernelKind::Reduce(_));
    let leaf_fits = p.is_leaf(l)
        && p.nodes[l].is_realized()
        && p.nodes[t].dtype() != DType::F16
        && p.nodes[t].shape() == p.nodes[l].shape()
        && p.nodes[t].dtype() == p.nodes[l].dtype();
    if !kind_fits || !leaf_fits || kernel.in_place.iter().any(|&(_, x)| x == l) {
        return false;
    }
    if kernels[k + 1..]
        .iter()
        .any(|later| later.reads.contains(&l))
    {
        return false;
    }
    if kernel.outputs().any(|o| far_reads(p, mat, o).contains(&l)) {
        return false;
    }
    // Other segments compute other elements at the same invocation: they must not read `l`.
    kernel
        .segment_outputs()
        .iter()
        .filter(|seg| !seg.contains(&t))
        .flatten()
        .all(|&o| {
            !kernel_inputs(p, mat, o, KernelKind::Elementwise)
                .0
                .contains(&l)
        })
}
