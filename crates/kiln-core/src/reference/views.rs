//! Views: Reshape (a plain copy, in `mod.rs`), Permute, Expand, Slice, Pad and Cat.
//!
//! Permute, Expand and Slice are all strided reads of the input: output coordinate `c` reads
//! input element `offset + sum(c[d] * stride[d])`, with stride 0 for a broadcast dimension and a
//! negative stride for a reversed one. [`gather`] does that once for all three.

use crate::shape::Shape;

/// Row-major strides of `dims`, as signed numbers.
fn strides(dims: &[usize]) -> Vec<i64> {
    Shape(dims.to_vec())
        .strides()
        .into_iter()
        .map(|s| s as i64)
        .collect()
}

/// Reads `src` at `offset + sum(c[d] * strides[d])` for every coordinate `c` of `out_dims`,
/// row-major.
pub(super) fn gather(src: &[f64], out_dims: &[usize], offset: i64, strides: &[i64]) -> Vec<f64> {
    let numel: usize = out_dims.iter().product();
    (0..numel)
        .map(|i| {
            let (mut rest, mut at) = (i, offset);
            for d in (0..out_dims.len()).rev() {
                at += (rest % out_dims[d]) as i64 * strides[d];
                rest /= out_dims[d];
            }
            src[at as usize]
        })
        .collect()
}

/// Output dimension d is input dimension `perm[d]`.
pub(super) fn permute(src: &[f64], in_dims: &[usize], perm: &[usize]) -> Vec<f64> {
    let in_strides = strides(in_dims);
    let out_dims: Vec<usize> = perm.iter().map(|&p| in_dims[p]).collect();
    let out_strides: Vec<i64> = perm.iter().map(|&p| in_strides[p]).collect();
    gather(src, &out_dims, 0, &out_strides)
}

/// Repeats the input's size-1 dimensions to `out_dims` (same rank).
pub(super) fn expand(src: &[f64], in_dims: &[usize], out_dims: &[usize]) -> Vec<f64> {
    let mut s = strides(in_dims);
    for (d, stride) in s.iter_mut().enumerate() {
        if in_dims[d] == 1 {
            *stride = 0;
        }
    }
    gather(src, out_dims, 0, &s)
}

/// Output coordinate c of dimension d reads input coordinate `start[d] + step[d] * c`.
pub(super) fn slice(
    src: &[f64],
    in_dims: &[usize],
    out_dims: &[usize],
    start: &[i64],
    step: &[i64],
) -> Vec<f64> {
    let in_strides = strides(in_dims);
    let offset = (0..in_dims.len()).map(|d| start[d] * in_strides[d]).sum();
    let out_strides: Vec<i64> = (0..in_dims.len())
        .map(|d| step[d] * in_strides[d])
        .collect();
    gather(src, out_dims, offset, &out_strides)
}

/// Output coordinate c reads input coordinate `c - before[d]` where that is inside the input,
/// else `value`.
pub(super) fn pad(
    src: &[f64],
    in_dims: &[usize],
    out_dims: &[usize],
    before: &[usize],
    value: f64,
) -> Vec<f64> {
    let mut out = vec![value; out_dims.iter().product()];
    let out_strides = Shape(out_dims.to_vec()).strides();
    // Write each input element to its place: output coordinate = input coordinate + before.
    for (i, &v) in src.iter().enumerate() {
        let (mut rest, mut at) = (i, 0);
        for d in (0..in_dims.len()).rev() {
            at += (rest % in_dims[d] + before[d]) * out_strides[d];
            rest /= in_dims[d];
        }
        out[at] = v;
    }
    out
}

/// The inputs (values and dimensions) joined along `axis`, in order.
pub(super) fn cat(parts: &[(&[f64], &[usize])], out_dims: &[usize], axis: usize) -> Vec<f64> {
    // Row-major, each input is `outer` rows of `dims[axis] * inner` values, and each output row
    // is the inputs' rows one after another.
    let outer: usize = out_dims[..axis].iter().product();
    let inner: usize = out_dims[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(out_dims.iter().product());
    for row in 0..outer {
        for (values, dims) in parts {
            let len = dims[axis] * inner;
            out.extend_from_slice(&values[row * len..(row + 1) * len]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::reference::tests::dev;
    use crate::Tensor;

    fn iota(n: usize, dims: &[usize]) -> Tensor {
        let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
        Tensor::from_vec(v, dims, &dev()).unwrap()
    }

    #[test]
    fn reshape_keeps_row_major_order() {
        let t = iota(6, &[2, 3]).reshape([3, 2]);
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![0., 1., 2., 3., 4., 5.]);
    }

    #[test]
    fn transpose_and_permute() {
        let t = iota(6, &[2, 3]).t();
        assert_eq!(t.dims(), &[3, 2]);
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![0., 3., 1., 4., 2., 5.]);
        // [2,3,4] -> [4,2,3]: out[k][i][j] = in[i][j][k] = 12i + 4j + k.
        let p = iota(24, &[2, 3, 4]).permute(&[2, 0, 1]);
        let v = p.to_vec::<f32>().unwrap();
        assert_eq!(&v[..6], &[0., 4., 8., 12., 16., 20.]);
        assert_eq!(v[6 * 3 + 3 + 2], 12. + 8. + 3.);
    }

    #[test]
    fn permute_then_slice_with_a_negative_step() {
        // x = [[0,1,2],[3,4,5]]; x.t() = [[0,3],[1,4],[2,5]]; reversing both dims of that gives
        // [[5,2],[4,1],[3,0]].
        let t = iota(6, &[2, 3]).t().flip(&[0, 1]);
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![5., 2., 4., 1., 3., 0.]);
        // Every second row of the reversed rows: rows 2 and 0 of x.t().
        let s = iota(6, &[2, 3]).t().flip(&[0]).slice(0, 0, 3, 2);
        assert_eq!(s.to_vec::<f32>().unwrap(), vec![2., 5., 0., 3.]);
    }

    #[test]
    fn slice_with_steps_and_narrow() {
        let t = iota(10, &[10]).slice(0, 1, 8, 3);
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![1., 4., 7.]);
        let n = iota(12, &[3, 4]).narrow(1, 1, 2);
        assert_eq!(n.to_vec::<f32>().unwrap(), vec![1., 2., 5., 6., 9., 10.]);
    }

    #[test]
    fn expand_repeats_size_one_dimensions() {
        let t = iota(3, &[3, 1]).expand([2, 3, 2]);
        assert_eq!(
            t.to_vec::<f32>().unwrap(),
            vec![0., 0., 1., 1., 2., 2., 0., 0., 1., 1., 2., 2.]
        );
    }

    #[test]
    fn pad_fills_around_the_input() {
        // [[0,1],[2,3]] padded by one row above and one column each side, with -1.
        let t = iota(4, &[2, 2]).pad(&[(1, 0), (1, 1)], -1.0);
        assert_eq!(t.dims(), &[3, 4]);
        assert_eq!(
            t.to_vec::<f32>().unwrap(),
            vec![-1., -1., -1., -1., -1., 0., 1., -1., -1., 2., 3., -1.]
        );
    }

    #[test]
    fn cat_joins_along_any_axis() {
        let a = iota(4, &[2, 2]);
        let b = iota(2, &[2, 1]).add_scalar(10.0);
        let c = Tensor::cat(&[&a, &b], 1);
        assert_eq!(c.to_vec::<f32>().unwrap(), vec![0., 1., 10., 2., 3., 11.]);
        let r = Tensor::cat(&[&a, &a.add_scalar(4.0)], 0);
        assert_eq!(
            r.to_vec::<f32>().unwrap(),
            (0..8).map(|i| i as f32).collect::<Vec<_>>()
        );
        // More than four inputs become a tree of cats.
        let parts: Vec<Tensor> = (0..6).map(|i| iota(1, &[1]).add_scalar(i as f64)).collect();
        let refs: Vec<&Tensor> = parts.iter().collect();
        assert_eq!(
            Tensor::cat(&refs, 0).to_vec::<f32>().unwrap(),
            vec![0., 1., 2., 3., 4., 5.]
        );
    }

    #[test]
    fn stack_squeeze_unsqueeze_flatten() {
        let a = iota(3, &[3]);
        let s = Tensor::stack(&[&a, &a.mul_scalar(2.0)], 1);
        assert_eq!(s.dims(), &[3, 2]);
        assert_eq!(s.to_vec::<f32>().unwrap(), vec![0., 0., 1., 2., 2., 4.]);
        let f = iota(24, &[2, 3, 4]).flatten(1, 2);
        assert_eq!(f.dims(), &[2, 12]);
        assert_eq!(f.to_vec::<f32>().unwrap()[13], 13.0);
    }

    #[test]
    fn zero_element_views() {
        let e = iota(0, &[0, 3]);
        assert_eq!(e.t().to_vec::<f32>().unwrap(), Vec::<f32>::new());
        assert_eq!(e.flip(&[0, 1]).to_vec::<f32>().unwrap(), Vec::<f32>::new());
        let p = e.pad(&[(1, 0)], 7.0);
        assert_eq!(p.to_vec::<f32>().unwrap(), vec![7.0; 3]);
        let c = Tensor::cat(&[&e, &iota(3, &[1, 3])], 0);
        assert_eq!(c.to_vec::<f32>().unwrap(), vec![0., 1., 2.]);
        let x = iota(3, &[3, 1]).expand([3, 0]);
        assert_eq!(x.to_vec::<f32>().unwrap(), Vec::<f32>::new());
    }
}
