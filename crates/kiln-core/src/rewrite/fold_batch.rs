//! Rule: a batched product summed over its batch is one product with the batch folded into the
//! contraction.

use super::Context;
use crate::op::Op;
use crate::tensor::Tensor;

/// Sums of products with fewer outputs than this keep their per-batch products.
pub const SMALL_GRADIENT: usize = 16_384;

/// Matches `sum over batch axes S of matmul(X [B.., M, N], Y [B.., N, K])`, where the product has
/// no other user: the gradient of a matmul operand broadcast over a batch (a dense layer's weight
/// on 3-D input, a convolution's weight, which is expanded over the images). Autodiff gives
/// such an operand B products `g_b x_bᵀ`, summed by the broadcast's rule.
///
/// Produces one product with the summed axes folded into the contraction:
/// `[R.., M, S N] x [R.., S N, K]` (R the batch axes kept), reshaped to the sum's shape. One
/// kernel, no `[B, M, K]` buffer of partial products. Only when the result has at least
/// [`SMALL_GRADIENT`] elements: a small result (a convolution's `[out, in k k]`) has too few
/// outputs to keep a device busy through a contraction of length `S N`: B products and a sum
/// spread the work better (split-K with one image per chunk; longer chunks were slower on
/// lavapipe, see docs/DESIGN.md). Reads no limits.
pub fn fold_summed_batch_into_contraction(cx: &Context, i: usize) -> Option<Tensor> {
    let y = cx.node(i);
    let axes = cx.summed_axes(i)?;
    let m = cx.inputs(i)[0];
    let prod = cx.node(m);
    let r = prod.rank();
    if !matches!(prod.op(), Op::Matmul)
        || !cx.has_one_user(m)
        || r < 3
        || axes.is_empty()
        || axes.iter().any(|&a| a >= r - 2)
        || y.numel() < SMALL_GRADIENT
    {
        return None;
    }
    let (x, w) = (cx.rewritten(cx.inputs(m)[0]), cx.rewritten(cx.inputs(m)[1]));
    Some(fold(x, w, axes).reshape(y.shape().clone()))
}

/// `sum over axes of x.matmul(w)` as one product: `[R.., M, S N] x [R.., S N, K]`, shape
/// `[R.., M, K]` (R the batch axes not in `axes`).
fn fold(x: &Tensor, w: &Tensor, axes: &[usize]) -> Tensor {
    let r = x.rank();
    let kept: Vec<usize> = (0..r - 2).filter(|a| !axes.contains(a)).collect();
    let lead: Vec<usize> = kept.iter().map(|&a| x.dims()[a]).collect();
    let s: usize = axes.iter().map(|&a| x.dims()[a]).product();
    let (rows, inner, cols) = (x.dims()[r - 2], x.dims()[r - 1], w.dims()[r - 1]);
    // x [B.., M, N] -> [R.., M, S.., N] -> [R.., M, S N]
    let mut perm = kept.clone();
    perm.push(r - 2);
    perm.extend(axes);
    perm.push(r - 1);
    let mut dims = lead.clone();
    dims.extend([rows, s * inner]);
    let xm = x.permute(&perm).reshape(dims);
    // w [B.., N, K] -> [R.., S.., N, K] -> [R.., S N, K]
    let mut perm = kept;
    perm.extend(axes);
    perm.extend([r - 2, r - 1]);
    let mut dims = lead;
    dims.extend([s * inner, cols]);
    let wm = w.permute(&perm).reshape(dims);
    xm.matmul(&wm)
}
