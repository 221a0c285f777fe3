//! Window views: [`Op::Window`](crate::op::Op::Window) (im2col) and its transpose
//! [`Op::Unwindow`](crate::op::Op::Unwindow) (col2im before the sum), written as plain loops over
//! output coordinates so that they check the backends' index arithmetic independently.

use crate::op::WindowGeometry;
use crate::shape::Shape;

/// `[.., S..] -> [.., K.., O..]`: output `(b, k, o)` is input `(b, o * stride + k * dilation)`.
pub(super) fn window(
    src: &[f64],
    in_dims: &[usize],
    out_dims: &[usize],
    g: &WindowGeometry,
) -> Vec<f64> {
    let r = g.rank();
    let lead = in_dims.len() - r;
    let in_shape = Shape(in_dims.to_vec());
    let out_shape = Shape(out_dims.to_vec());
    (0..out_shape.numel())
        .map(|i| {
            let c = out_shape.unravel(i);
            let mut at = c[..lead].to_vec();
            for j in 0..r {
                at.push(c[lead + r + j] * g.stride[j] + c[lead + j] * g.dilation[j]);
            }
            src[in_shape.ravel(&at)]
        })
        .collect()
}

/// `[.., K.., O..] -> [.., K.., S..]`: output `(b, k, s)` is input `(b, k, (s - k * dilation) /
/// stride)` when each division is exact and lands inside `O`, else 0.
pub(super) fn unwindow(
    src: &[f64],
    in_dims: &[usize],
    out_dims: &[usize],
    g: &WindowGeometry,
) -> Vec<f64> {
    let r = g.rank();
    let lead = in_dims.len() - 2 * r;
    let in_shape = Shape(in_dims.to_vec());
    let out_shape = Shape(out_dims.to_vec());
    (0..out_shape.numel())
        .map(|i| {
            let c = out_shape.unravel(i);
            let mut at = c[..lead + r].to_vec();
            for j in 0..r {
                let k = c[lead + j];
                let s = c[lead + r + j];
                let tap = k * g.dilation[j];
                if s < tap || !(s - tap).is_multiple_of(g.stride[j]) {
                    return 0.0;
                }
                let o = (s - tap) / g.stride[j];
                if o >= in_dims[lead + r + j] {
                    return 0.0;
                }
                at.push(o);
            }
            src[in_shape.ravel(&at)]
        })
        .collect()
}
