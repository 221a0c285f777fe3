//! Rule: a long sum into few outputs runs in two stages.

use super::Context;
use crate::tensor::Tensor;

/// A sum of at least this many elements per output ...
pub const SPLIT_GROUP: usize = 1 << 16;
/// ... into fewer than this many outputs runs in two stages, so that more workgroups than
/// outputs share the work (one workgroup per output would leave a GPU, or all but one of
/// lavapipe's threads, idle).
pub const SPLIT_OUTPUTS: usize = 64;
/// Elements per partial sum of a two-stage sum.
pub const SPLIT_CHUNK: usize = 4096;

/// Matches a sum of at least [`SPLIT_GROUP`] elements per output into fewer than
/// [`SPLIT_OUTPUTS`] outputs (a loss's mean over a batch of images, a bias gradient over
/// batch and pixels). Produces two sums: the group, moved to the end, is cut into
/// [`SPLIT_CHUNK`]-element chunks (zero-padded), each chunk summed by its own workgroup, then the
/// partial sums summed. All views: the chunks are index arithmetic in the first kernel's loads.
/// Why: a reduction kernel gives each output one workgroup, so a sum into one output runs on one
/// core of a GPU. Reads no limits.
pub fn two_stage_sum(cx: &Context, i: usize) -> Option<Tensor> {
    let y = cx.node(i);
    let axes = cx.summed_axes(i)?;
    let x = cx.node(cx.inputs(i)[0]);
    let group: usize = axes.iter().map(|&a| x.dims()[a]).product();
    if group < SPLIT_GROUP || y.numel() >= SPLIT_OUTPUTS {
        return None;
    }
    let x = cx.rewritten(cx.inputs(i)[0]);
    Some(sum_in_two_stages(x, axes, group).reshape(y.shape().clone()))
}

/// The sum of `x` over `axes` (whose elements number `group`) as two reductions; returns the
/// kept axes' shape, reduced axes dropped.
fn sum_in_two_stages(x: &Tensor, axes: &[usize], group: usize) -> Tensor {
    let keep: Vec<usize> = (0..x.rank()).filter(|a| !axes.contains(a)).collect();
    let mut shape: Vec<usize> = keep.iter().map(|&a| x.dims()[a]).collect();
    let perm: Vec<usize> = keep.iter().chain(axes).copied().collect();
    let chunks = group.div_ceil(SPLIT_CHUNK);
    let chunk = group.div_ceil(chunks);
    let mut pads = vec![(0, 0); shape.len()];
    pads.push((0, chunks * chunk - group));
    let mut flat = shape.clone();
    flat.push(group);
    shape.extend([chunks, chunk]);
    let last = shape.len() - 1;
    let partial = x
        .permute(&perm)
        .reshape(flat)
        .pad(&pads, 0.0)
        .reshape(shape)
        .sum_axes(&[last]);
    partial.sum_axes(&[last - 1])
}
