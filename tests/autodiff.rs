//! The reverse walk and the vector-Jacobian rules of the foundation's ops: finite differences on
//! the exact reference, and the GPU's gradients against the reference's.

mod common;
use common::*;
use kiln::prelude::*;

fn both(f: impl Fn(&[Tensor]) -> Tensor + Copy, shapes: &[&[usize]], seed: u64) {
    check_gradients(f, shapes, seed);
    check_gpu_gradients(f, shapes, seed);
}

#[test]
fn gradients_of_unary_ops() {
    both(|x| x[0].exp(), &[&[3, 4]], 1);
    both(|x| x[0].abs().add_scalar(0.5).log(), &[&[3, 4]], 2);
    both(|x| x[0].abs().add_scalar(0.5).sqrt(), &[&[3, 4]], 3);
    both(|x| x[0].abs().add_scalar(0.5).rsqrt(), &[&[3, 4]], 4);
    both(|x| x[0].abs().add_scalar(0.5).recip(), &[&[3, 4]], 5);
    both(|x| x[0].sin().add(&x[0].cos()), &[&[3, 4]], 6);
    both(|x| x[0].tanh().add(&x[0].sigmoid()), &[&[3, 4]], 7);
    both(
        |x| x[0].relu().add(&x[0].neg()).add(&x[0].abs()),
        &[&[3, 4]],
        8,
    );
}

#[test]
fn gradients_of_binary_ops_with_broadcasting() {
    both(|x| x[0].add(&x[1]).mul(&x[1]), &[&[3, 4], &[4]], 11);
    both(
        |x| x[0].sub(&x[1]).div(&x[1].abs().add_scalar(0.5)),
        &[&[2, 3, 4], &[3, 1]],
        12,
    );
    both(
        |x| x[0].abs().add_scalar(0.5).pow(&x[1]),
        &[&[3, 4], &[3, 4]],
        13,
    );
    both(
        |x| x[0].maximum(&x[1]).add(&x[0].minimum(&x[1])),
        &[&[3, 4], &[3, 4]],
        14,
    );
    both(
        |x| x[0].gt(&x[1]).where_cond(&x[0], &x[1].square()),
        &[&[3, 4], &[3, 4]],
        15,
    );
}

#[test]
fn gradients_of_reductions_and_matmul() {
    both(|x| x[0].sum_axes_keepdim(&[1]), &[&[3, 4, 2]], 21);
    both(|x| x[0].max_axes(&[0, 2]), &[&[3, 4, 2]], 22);
    both(|x| x[0].min_axes(&[1]), &[&[3, 4]], 23);
    both(|x| x[0].mean_axes(&[1]), &[&[3, 4]], 24);
    both(|x| x[0].matmul(&x[1]), &[&[3, 4], &[4, 5]], 25);
    both(|x| x[0].matmul(&x[1].t()), &[&[2, 3, 4], &[5, 4]], 26);
}

#[test]
fn gradients_of_views() {
    both(|x| x[0].reshape([4, 3]).permute(&[1, 0]), &[&[3, 4]], 31);
    both(|x| x[0].slice(1, 1, 4, 2).flip(&[0]), &[&[3, 5]], 32);
    both(|x| x[0].pad(&[(1, 2), (0, 1)], 0.5), &[&[3, 4]], 33);
    both(|x| Tensor::cat(&[&x[0], &x[1]], 1), &[&[3, 4], &[3, 2]], 34);
    both(|x| x[0].expand([2, 3, 4]), &[&[3, 1]], 35);
}

#[test]
fn gradients_of_windows() {
    both(
        |x| x[0].window(&[2, 3], &[1, 2], &[1, 1]),
        &[&[2, 5, 7]],
        41,
    );
    both(
        |x| x[0].window(&[2, 2], &[2, 1], &[2, 1]),
        &[&[1, 6, 5]],
        42,
    );
    both(
        |x| x[0].unwindow(&[6, 5], &[2, 1], &[1, 2]),
        &[&[2, 3, 2, 3, 3]],
        43,
    );
}

#[test]
fn backward_reaches_the_leaves_that_require_gradients() {
    let dev = Device::cpu();
    let w = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], [3], &dev).unwrap();
    w.set_requires_grad(true);
    let x = Tensor::from_vec(vec![4.0f32, 5.0, 6.0], [3], &dev).unwrap();
    let loss = w.mul(&x).sum();
    let grads = loss.backward();
    assert_eq!(grads.len(), 1);
    assert_eq!(
        grads.get(&w).unwrap().to_vec::<f32>().unwrap(),
        vec![4.0, 5.0, 6.0]
    );
    assert!(grads.get(&x).is_none());
    // Accumulating a second backward adds.
    let mut acc = grads.clone();
    acc.accumulate(w.square().sum().backward());
    assert_eq!(
        acc.get(&w).unwrap().to_vec::<f32>().unwrap(),
        vec![6.0, 9.0, 12.0]
    );
    // Under no_grad nothing is tracked.
    let y = kiln::no_grad(|| w.mul_scalar(2.0));
    assert!(!y.requires_grad());
}

#[test]
fn a_weight_broadcast_over_the_batch_gets_the_same_gradient_as_without_the_batch() {
    // [3, 8, 128] x [128, 128]ᵀ: the weight's gradient takes the contracted path (one matmul
    // over the 24 rows); the 2-D form of the same product does not broadcast at all.
    for dev in [gpu(), Device::cpu()] {
        let x = Tensor::from_slice(&values(3 * 8 * 128, 1), [3, 8, 128], &dev).unwrap();
        let w = Tensor::from_slice(&values(128 * 128, 2), [128, 128], &dev).unwrap();
        let batched = weighted_sum(&x.matmul(&w.t()), 3).grad_wrt(&[&w, &x]);
        let flat_x = x.reshape([24, 128]);
        let flat = weighted_sum(&flat_x.matmul(&w.t()).reshape([3, 8, 128]), 3).grad_wrt(&[&w, &x]);
        assert_close(&batched[0], &flat[0], 1e-4, 1e-4);
        assert_close(&batched[1], &flat[1], 1e-4, 1e-4);
    }
}
