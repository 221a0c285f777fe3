//! Rule: a convolution's input gradient through col2im becomes a transposed convolution.

use super::Context;
use crate::op::Op;
use crate::tensor::Tensor;
use crate::ConvTranspose2dOptions;

/// Matches col2im of a product with a broadcast kernel: `sum over K of unwindow(reshape(Aᵀ G))`
/// where `A [N, Gr, O/Gr, C/Gr KH KW]` is a kernel broadcast over the `N` images, `G [N, Gr, O/Gr,
/// OH OW]`, the reshape splits the product into `[N, C, KH, KW, OH, OW]` and the unwindow has a
/// 2-D geometry with that kernel size. This is a convolution's input gradient as autodiff's
/// generic rules write it (matmul, reshape, window): the product `[N, C KH KW, OH OW]` is
/// KH KW / stride² times the input's size.
///
/// Produces a transposed convolution of `G` with the kernel (as `[O, C/Gr, KH, KW]`), written to
/// the padded input `[N, C, PH, PW]` directly: it reads `G` through a window view (implicit GEMM)
/// at the price of multiplying the zeros that spread and pad `G` (about twice the arithmetic for
/// LeNet-5's conv2, which is why small products keep col2im: on lavapipe it made a LeNet-5 step
/// 60 -> 200 ms). Only when the product has more than
/// [`crate::schedule::ScheduleLimits::col2im_product_limit`] elements, so that ResNet-sized
/// layers fit a storage binding.
pub fn transposed_conv_input_gradient(cx: &Context, i: usize) -> Option<Tensor> {
    let y = cx.node(i); // [N, C, 1, 1, PH, PW]
    let axes = cx.summed_axes(i)?;
    let u = cx.inputs(i)[0];
    let Op::Unwindow(geom) = cx.node(u).op() else {
        return None;
    };
    let rs = cx.inputs(u)[0];
    let mm = *cx.inputs(rs).first()?;
    if geom.rank() != 2
        || y.rank() != 6
        || axes != [2, 3]
        || !cx.has_one_user(u)
        || !cx.has_one_user(rs)
        || !cx.has_one_user(mm)
        || !matches!(cx.node(rs).op(), Op::Reshape)
        || !matches!(cx.node(mm).op(), Op::Matmul)
        || cx.node(mm).numel() <= cx.limits.col2im_product_limit
    {
        return None;
    }
    let spread = cx.node(rs).dims(); // [N, C, KH, KW, OH, OW]
    let (n, c, kh, kw, oh, ow) = (
        spread[0], spread[1], spread[2], spread[3], spread[4], spread[5],
    );
    let prod = cx.node(mm).dims(); // [N, Gr, C/Gr KH KW, OH OW]
    let groups = prod.get(1).copied().unwrap_or(0);
    if prod.len() != 4
        || groups == 0
        || c % groups != 0
        || prod != [n, groups, c / groups * kh * kw, oh * ow]
        || geom.kernel != [kh, kw]
    {
        return None;
    }
    let kernel = broadcast_kernel_transposed(cx, cx.inputs(mm)[0])?;
    let g = cx.rewritten(cx.inputs(mm)[1]); // [N, Gr, O/Gr, OH OW]
    let o = groups * g.dims()[2];
    if kernel.dims()[kernel.rank() - 1] != c / groups * kh * kw || g.dims()[3] != oh * ow {
        return None;
    }
    let weight = kernel.reshape([o, c / groups, kh, kw]);
    let (ph, pw) = (y.dims()[4], y.dims()[5]);
    let (s, d) = (&geom.stride, &geom.dilation);
    let reach = |o: usize, s: usize, d: usize, k: usize| (o - 1) * s + d * (k - 1) + 1;
    let (rh, rw) = (reach(oh, s[0], d[0], kh), reach(ow, s[1], d[1], kw));
    if rh > ph || rw > pw {
        return None;
    }
    let opts = ConvTranspose2dOptions {
        stride: [s[0], s[1]],
        padding: [0, 0],
        // Rows and columns past the last window get no gradient: zeros at the bottom/right.
        output_padding: [ph - rh, pw - rw],
        dilation: [d[0], d[1]],
        groups,
    };
    let grad = g
        .reshape([n, o, oh, ow])
        .conv_transpose2d(&weight, None, &opts);
    Some(grad.reshape(y.shape().clone()))
}

/// The kernel `[1.., Gr, O/Gr, C/Gr KH KW]` when node `a` is its transpose broadcast over the
/// batch (`expand(kernel)ᵀ`, or the transpose alone when the batch is 1), rewritten; else `None`
/// (a different kernel per image is not a convolution).
fn broadcast_kernel_transposed(cx: &Context, a: usize) -> Option<Tensor> {
    let Op::Permute(perm) = cx.node(a).op() else {
        return None;
    };
    let r = perm.len();
    let swap_last: Vec<usize> = (0..r - 2).chain([r - 1, r - 2]).collect();
    if r != 4 || *perm != swap_last {
        return None;
    }
    let mut k = cx.inputs(a)[0];
    if matches!(cx.node(k).op(), Op::Expand) && !cx.graph.is_leaf(k) {
        k = cx.inputs(k)[0];
    }
    let kernel = cx.rewritten(k);
    (kernel.rank() == 4 && kernel.dims()[0] == 1).then(|| kernel.clone())
}
