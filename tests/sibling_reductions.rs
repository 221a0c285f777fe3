//! Sibling reductions (scheduler rule 5a): independent reductions over the same group of inputs
//! share one kernel, one accumulator each. Each plan shape is checked with the scheduler, and
//! every value against the reference executor, on both kernel shapes (one invocation per output
//! element for small groups, one workgroup per output element for large ones).

mod common;
use common::*;
use kiln::prelude::*;
use kiln::schedule::{KernelKind, Plan};

/// Realizes `build`'s targets in one plan on the GPU and compares each with the reference.
fn check(build: impl Fn(&Device) -> Vec<Tensor>, atol: f64) {
    let (g, c) = (build(&gpu()), build(&Device::cpu()));
    let refs: Vec<&Tensor> = g.iter().collect();
    Tensor::realize_all(&refs).unwrap();
    for (a, b) in g.iter().zip(&c) {
        assert_eq!(a.dtype(), b.dtype());
        assert_close(a, b, atol, 1e-5);
    }
}

/// The plan of `build`'s graph on the reference device, with room for 32 bindings.
fn plan_of(build: impl Fn(&Device) -> Vec<Tensor>, max_storage_buffers: usize) -> Plan {
    let t = build(&Device::cpu());
    let refs: Vec<&Tensor> = t.iter().collect();
    scheduled(&refs, max_storage_buffers)
}

/// The number of reductions each reduction kernel of `plan` computes.
fn reductions_per_kernel(plan: &Plan) -> Vec<usize> {
    plan.kernels
        .iter()
        .filter(|k| matches!(k.kind, KernelKind::Reduce(_)))
        .map(|k| 1 + k.siblings.len())
        .collect()
}

/// A max pool's two reductions: each window's maximum and its position, with a NaN in one
/// window and ties in another.
fn max_and_argmax(dev: &Device, rows: usize, cols: usize) -> Vec<Tensor> {
    let mut v = values(rows * cols, 3);
    v[cols + 2] = f32::NAN;
    v[2 * cols + 1] = 0.75;
    v[2 * cols + 4] = 0.75;
    for x in &mut v[2 * cols..3 * cols] {
        *x = x.min(0.75);
    }
    let x = Tensor::from_slice(&v, [rows, cols], dev).unwrap();
    vec![x.max_axes(&[1]), x.argmax_axes(&[1])]
}

#[test]
fn a_maximum_and_its_position_share_one_kernel() {
    for (rows, cols) in [(37, 23), (5, 3000)] {
        let build = |d: &Device| max_and_argmax(d, rows, cols);
        assert_eq!(
            reductions_per_kernel(&plan_of(build, 32)),
            [2],
            "{rows}x{cols}"
        );
        check(build, 0.0);
    }
}

/// Batch norm's backward sums: `g` and `g * x̂` over the batch and the pixels, each with an
/// epilogue of its own.
fn batch_norm_sums(dev: &Device, dims: [usize; 4]) -> Vec<Tensor> {
    let g = seeded(&dims, 11, dev);
    let xhat = seeded(&dims, 12, dev);
    let sum_g = g.sum_axes(&[0, 2, 3]);
    let sum_gx = (&g * &xhat).sum_axes(&[0, 2, 3]);
    vec![sum_g.mul_scalar(0.5), (sum_gx + 1.0).relu()]
}

#[test]
fn batch_norm_backward_sums_share_one_kernel() {
    for dims in [[4, 3, 5, 5], [16, 6, 14, 14]] {
        let build = |d: &Device| batch_norm_sums(d, dims);
        assert_eq!(reductions_per_kernel(&plan_of(build, 32)), [2], "{dims:?}");
        check(build, 1e-4);
    }
}

#[test]
fn integer_and_float_reductions_keep_their_types() {
    let build = |dev: &Device| {
        let x = seeded(&[9, 70], 21, dev);
        let i = x.mul_scalar(100.0).cast(DType::I32);
        vec![i.sum_axes(&[1]), x.min_axes(&[1]), i.argmin_axes(&[1])]
    };
    assert_eq!(reductions_per_kernel(&plan_of(build, 32)), [3]);
    check(build, 1e-5);
}

#[test]
fn dependent_or_differently_shaped_reductions_stay_apart() {
    // The second sum reads the first (a softmax's denominator): it cannot run beside it.
    let dependent = |dev: &Device| {
        let x = seeded(&[8, 10], 31, dev);
        let m = x.max_axes_keepdim(&[1]);
        let e = (&x - &m).exp();
        vec![(&e / &e.sum_axes_keepdim(&[1])).sum_axes(&[1])]
    };
    assert_eq!(reductions_per_kernel(&plan_of(dependent, 32)), [1, 1, 1]);
    check(dependent, 1e-5);
    // Other axes, or another input shape: another group of inputs.
    let apart = |dev: &Device| {
        let x = seeded(&[8, 10], 32, dev);
        let y = seeded(&[8, 11], 33, dev);
        vec![x.sum_axes(&[1]), x.sum_axes(&[0]), y.sum_axes(&[1])]
    };
    assert_eq!(reductions_per_kernel(&plan_of(apart, 32)), [1, 1, 1]);
    check(apart, 1e-5);
}

#[test]
fn at_most_four_reductions_or_the_device_bindings_per_kernel() {
    let six = |dev: &Device| {
        let x = seeded(&[6, 40], 41, dev);
        (0..6)
            .map(|k| x.mul_scalar(k as f64 + 1.0).exp().sum_axes(&[1]))
            .collect()
    };
    assert_eq!(reductions_per_kernel(&plan_of(six, 32)), [4, 2]);
    check(six, 1e-4);
    // Two sums of two inputs need 4 bindings: with 3 they stay two kernels.
    let two_inputs = |dev: &Device| {
        let (x, y) = (seeded(&[6, 40], 42, dev), seeded(&[6, 40], 43, dev));
        vec![x.sum_axes(&[1]), y.sum_axes(&[1])]
    };
    assert_eq!(reductions_per_kernel(&plan_of(two_inputs, 3)), [1, 1]);
    assert_eq!(reductions_per_kernel(&plan_of(two_inputs, 4)), [2]);
    check(two_inputs, 1e-5);
}

#[test]
fn a_max_pools_gradient_is_unchanged() {
    let pool = Pool2dOptions::new(2);
    check_gpu_gradients(
        |x| x[0].max_pool2d(&pool).mul(&x[0].avg_pool2d(&pool)).sum(),
        &[&[2, 3, 6, 6]],
        5,
    );
}
