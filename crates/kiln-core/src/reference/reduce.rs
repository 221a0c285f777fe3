//! Reductions: Sum, Max, Min, ArgMax, ArgMin over any set of axes. The output keeps the reduced
//! axes as size 1, so its row-major order is that of the kept axes.
//!
//! Each group is combined in row-major order of the reduced axes, one element after another (a
//! fixed order: the same input gives the same bits every time). NaN: Max/Min of a group holding
//! a NaN is NaN, and ArgMax/ArgMin give the index of the first NaN (as PyTorch does).

use super::views::gather;
use crate::op::ReduceOp;
use crate::shape::Shape;

/// Reduces `axes` (sorted, distinct) of `src`, which has dimensions `in_dims`.
pub(super) fn reduce(op: ReduceOp, src: &[f64], in_dims: &[usize], axes: &[usize]) -> Vec<f64> {
    // Move the reduced axes last: each output's group is then one contiguous run of the moved
    // values, in row-major order of the reduced axes.
    let in_strides = Shape(in_dims.to_vec()).strides();
    let kept = (0..in_dims.len()).filter(|d| !axes.contains(d));
    let order: Vec<usize> = kept.chain(axes.iter().copied()).collect();
    let moved_dims: Vec<usize> = order.iter().map(|&d| in_dims[d]).collect();
    let moved_strides: Vec<i64> = order.iter().map(|&d| in_strides[d] as i64).collect();
    let moved = gather(src, &moved_dims, 0, &moved_strides);

    let group: usize = axes.iter().map(|&d| in_dims[d]).product();
    let groups: usize = (0..in_dims.len())
        .filter(|d| !axes.contains(d))
        .map(|d| in_dims[d])
        .product();
    (0..groups)
        .map(|g| combine(op, &moved[g * group..(g + 1) * group]))
        .collect()
}

/// Combines one group. An empty group gives 0 (Sum, ArgMax, ArgMin), -inf (Max) or +inf (Min).
fn combine(op: ReduceOp, group: &[f64]) -> f64 {
    match op {
        ReduceOp::Sum => group.iter().fold(0.0, |acc, &v| acc + v),
        ReduceOp::Max => {
            first_best(group, |v, best| v > best).map_or(f64::NEG_INFINITY, |i| group[i])
        }
        ReduceOp::Min => first_best(group, |v, best| v < best).map_or(f64::INFINITY, |i| group[i]),
        ReduceOp::ArgMax => first_best(group, |v, best| v > best).unwrap_or(0) as f64,
        ReduceOp::ArgMin => first_best(group, |v, best| v < best).unwrap_or(0) as f64,
    }
}

/// Index of the best element under `better(v, best)`, the first one on a tie, or of the first
/// NaN if there is one; `None` for an empty group.
fn first_best(group: &[f64], better: fn(f64, f64) -> bool) -> Option<usize> {
    let mut best = 0;
    for (i, &v) in group.iter().enumerate().skip(1) {
        if group[best].is_nan() {
            break;
        }
        if v.is_nan() || better(v, group[best]) {
            best = i;
        }
    }
    (!group.is_empty()).then_some(best)
}

#[cfg(test)]
mod tests {
    use crate::reference::tests::dev;
    use crate::{DType, Tensor};

    fn iota(n: usize, dims: &[usize]) -> Tensor {
        let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
        Tensor::from_vec(v, dims, &dev()).unwrap()
    }

    #[test]
    fn sum_over_axes_0_and_2_of_a_2x3x4() {
        // x[i][j][k] = 12i + 4j + k; summing over i and k: sum_i sum_k = 2*(4*4j + 6) + 4*12.
        let x = iota(24, &[2, 3, 4]);
        let s = x.sum_axes(&[0, 2]);
        assert_eq!(s.dims(), &[3]);
        assert_eq!(s.to_vec::<f32>().unwrap(), vec![60.0, 92.0, 124.0]);
        let k = x.sum_axes_keepdim(&[2, 0]);
        assert_eq!(k.dims(), &[1, 3, 1]);
        assert_eq!(k.to_vec::<f32>().unwrap(), vec![60.0, 92.0, 124.0]);
        assert_eq!(
            x.max_axes(&[0, 2]).to_vec::<f32>().unwrap(),
            vec![15., 19., 23.]
        );
        assert_eq!(
            x.min_axes(&[0, 2]).to_vec::<f32>().unwrap(),
            vec![0., 4., 8.]
        );
        // Row-major index over the reduced axes (i, k): the max of group j is at i=1, k=3.
        let a = x.argmax_axes(&[0, 2]);
        assert_eq!(a.dtype(), DType::I32);
        assert_eq!(a.to_vec::<i32>().unwrap(), vec![7, 7, 7]);
        assert_eq!(x.sum().item::<f32>().unwrap(), 276.0);
    }

    #[test]
    fn argmax_and_argmin_pick_the_first_tie() {
        let x = Tensor::from_vec(
            vec![1.0f32, 3.0, 3.0, 0.0, 0.0, -1.0, 2.0, -1.0],
            [2, 4],
            &dev(),
        )
        .unwrap();
        assert_eq!(x.argmax(1).to_vec::<i32>().unwrap(), vec![1, 2]);
        assert_eq!(x.argmin(1).to_vec::<i32>().unwrap(), vec![3, 1]);
        assert_eq!(x.argmax(0).to_vec::<i32>().unwrap(), vec![0, 0, 0, 0]);
        assert_eq!(x.argmax_axes(&[0, 1]).item::<i32>().unwrap(), 1);
    }

    #[test]
    fn nan_wins_max_and_argmax() {
        let x = Tensor::from_vec(vec![1.0f32, f32::NAN, 5.0, f32::NAN], [4], &dev()).unwrap();
        assert!(x.max().item::<f32>().unwrap().is_nan());
        assert!(x.min().item::<f32>().unwrap().is_nan());
        assert_eq!(x.argmax(0).item::<i32>().unwrap(), 1);
        assert_eq!(x.argmin(0).item::<i32>().unwrap(), 1);
    }

    #[test]
    fn mean_and_unbiased_variance() {
        let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [4], &dev()).unwrap();
        assert_eq!(x.mean().item::<f32>().unwrap(), 2.5);
        let v = x.var_axes(&[0]).item::<f32>().unwrap();
        assert_eq!(v, (5.0f64 / 3.0) as f32);
        assert!((v - 1.6667).abs() < 1e-4);
        let p = x.var_axes_with(&[0], 0).item::<f32>().unwrap();
        assert_eq!(p, 1.25);
    }

    #[test]
    fn sums_of_bool_and_int() {
        let b = Tensor::from_vec(vec![true, false, true], [3], &dev()).unwrap();
        let s = b.sum();
        assert_eq!(s.dtype(), DType::I32);
        assert_eq!(s.item::<i32>().unwrap(), 2);
        let i = Tensor::arange_i32(0, 6, 1, &dev()).reshape([2, 3]);
        assert_eq!(i.sum_axes(&[1]).to_vec::<i32>().unwrap(), vec![3, 12]);
    }

    #[test]
    fn empty_groups_and_empty_outputs() {
        let e = iota(0, &[2, 0]);
        assert_eq!(e.sum_axes(&[1]).to_vec::<f32>().unwrap(), vec![0.0, 0.0]);
        assert_eq!(e.sum().item::<f32>().unwrap(), 0.0);
        assert_eq!(e.sum_axes(&[0]).to_vec::<f32>().unwrap(), Vec::<f32>::new());
        assert_eq!(e.max_axes(&[0]).to_vec::<f32>().unwrap(), Vec::<f32>::new());
    }
}
