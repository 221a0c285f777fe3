//! Multi-output kernels (scheduler rule 5): sibling elementwise kernels of one shape joined into
//! one kernel, elementwise updates riding in a reduction's epilogue, and independent elementwise
//! kernels of different shapes as segments of one dispatch. Each plan shape is checked with the
//! scheduler, and every value against the reference executor, on odd sizes and broadcasts.

mod common;
use common::*;
use kiln::optim::{Adam, Optimizer};
use kiln::prelude::*;
use kiln::schedule::KernelKind;

/// Builds the same graph on the GPU and on the reference device, realizes every target of the
/// GPU graph in one plan, and compares them with the reference. Returns the GPU graph's targets.
fn check(build: impl Fn(&Device) -> Vec<Tensor>) -> Vec<Tensor> {
    let (g, c) = (build(&gpu()), build(&Device::cpu()));
    let refs: Vec<&Tensor> = g.iter().collect();
    Tensor::realize_all(&refs).unwrap();
    for (a, b) in g.iter().zip(&c) {
        assert_close(a, b, 1e-5, 1e-5);
    }
    g
}

/// Three siblings on `[rows, cols]` that share inputs, one reading the other two at its own
/// element; the inputs are broadcast from a row, a column and a scalar-like `[1, 1]`.
fn siblings(dev: &Device, rows: usize, cols: usize, seed: u64) -> Vec<Tensor> {
    let a = seeded(&[rows, cols], seed, dev);
    let row = seeded(&[cols], seed + 1, dev);
    let col = seeded(&[rows, 1], seed + 2, dev);
    let one = seeded(&[1, 1], seed + 3, dev);
    let t1 = (&a * &row + &col).relu();
    let t2 = (&a - &row).exp() * &one;
    let t3 = (&t1 * &t2 + &a).sqrt_safe();
    vec![t1, t2, t3]
}

trait SqrtSafe {
    fn sqrt_safe(&self) -> Tensor;
}
impl SqrtSafe for Tensor {
    /// `sqrt(|x| + 1)`: defined everywhere.
    fn sqrt_safe(&self) -> Tensor {
        self.abs().add_scalar(1.0).sqrt()
    }
}

#[test]
fn sibling_elementwise_kernels_become_one_kernel_with_the_reference_values() {
    for (k, &(rows, cols)) in [(7, 13), (1, 1), (33, 257), (5, 1), (64, 10)]
        .iter()
        .enumerate()
    {
        let seed = 10 + k as u64;
        let cpu = siblings(&Device::cpu(), rows, cols, seed);
        let refs: Vec<&Tensor> = cpu.iter().collect();
        let pl = scheduled(&refs, 8);
        assert_eq!(pl.kernels.len(), 1, "[{rows}, {cols}]: {:?}", pl.kernels);
        assert_eq!(pl.kernels[0].extra.len(), 2, "three outputs in one kernel");
        check(|dev| siblings(dev, rows, cols, seed));
    }
}

#[test]
fn a_kernel_reading_a_sibling_at_another_element_is_not_joined() {
    let build = |dev: &Device| {
        let a = seeded(&[9, 9], 40, dev);
        let e = a.exp();
        // `e.t()` reads e at the transposed element: another invocation's output.
        let f = &e.t() + &a;
        vec![e, f]
    };
    let cpu = build(&Device::cpu());
    assert_eq!(scheduled(&[&cpu[0], &cpu[1]], 8).kernels.len(), 2);
    check(build);
}

#[test]
fn an_update_rides_in_the_epilogue_of_the_reduction_that_computes_its_gradient() {
    // Adam's moments of a bias: g = sum over the batch, then m and v from g.
    let build = |dev: &Device| {
        let dy = seeded(&[37, 11], 50, dev);
        let m = seeded(&[11], 51, dev);
        let v = seeded(&[11], 52, dev).abs();
        let g = dy.sum_axes(&[0]);
        let m2 = m.mul_scalar(0.9).add(&g.mul_scalar(0.1));
        let v2 = v.mul_scalar(0.999).add(&g.square().mul_scalar(0.001));
        let p2 = m2.div(&v2.sqrt().add_scalar(1e-8));
        vec![g, m2, v2, p2]
    };
    let cpu = build(&Device::cpu());
    let refs: Vec<&Tensor> = cpu.iter().collect();
    let pl = scheduled(&refs, 8);
    assert_eq!(pl.kernels.len(), 1, "{:?}", pl.kernels);
    assert!(matches!(pl.kernels[0].kind, KernelKind::Reduce(_)));
    assert_eq!(pl.kernels[0].extra.len(), 3);
    check(build);
    // A large reduction (one workgroup per output) stores its extra outputs once too.
    check(|dev| {
        let dy = seeded(&[5000, 3], 53, dev);
        let g = dy.sum_axes(&[0]);
        let m = seeded(&[3], 54, dev);
        vec![g.clone(), m.mul_scalar(0.5).add(&g)]
    });
}

#[test]
fn independent_elementwise_kernels_of_different_shapes_share_a_dispatch() {
    let build = |dev: &Device| {
        let a = seeded(&[5, 3], 60, dev);
        let b = seeded(&[17], 61, dev);
        let c = seeded(&[2, 3, 7], 62, dev);
        let i = Tensor::from_vec(vec![3i32, -1, 4, 1, 5], [5], dev).unwrap();
        vec![
            a.exp(),
            (&a * 2.0).tanh(),
            b.relu() + 1.0,
            c.sin() * &c,
            i.gt(&i.scalar_like(1.0)),
        ]
    };
    let cpu = build(&Device::cpu());
    let refs: Vec<&Tensor> = cpu.iter().collect();
    let pl = scheduled(&refs, 32);
    assert_eq!(pl.kernels.len(), 1, "{:?}", pl.kernels);
    assert_eq!(
        pl.kernels[0].segment_outputs().len(),
        4,
        "4 shapes, 4 segments"
    );
    let gpu_targets = check(build);
    // The bool segment stores 0/1 words.
    assert_eq!(
        gpu_targets[4].to_vec::<bool>().unwrap(),
        vec![true, false, true, false, true]
    );
}

#[test]
fn joined_kernels_stay_within_the_binding_limit() {
    let build = |dev: &Device| {
        let xs: Vec<Tensor> = (0..12).map(|k| seeded(&[3, 5], 70 + k, dev)).collect();
        (0..11)
            .map(|k| &xs[k] * &xs[k + 1])
            .collect::<Vec<Tensor>>()
    };
    let cpu = build(&Device::cpu());
    let refs: Vec<&Tensor> = cpu.iter().collect();
    for limit in [4, 8, 32] {
        let pl = scheduled(&refs, limit);
        for k in &pl.kernels {
            assert!(k.bindings() <= limit, "{} bindings > {limit}", k.bindings());
        }
        let outputs: usize = pl.kernels.iter().map(|k| 1 + k.extra.len()).sum();
        assert_eq!(outputs, 11, "every target written once");
        if limit == 32 {
            assert_eq!(pl.kernels.len(), 1);
        } else {
            assert!(
                pl.kernels.len() > 1,
                "{limit} bindings need several kernels"
            );
        }
    }
    check(build);
}

#[test]
fn adam_steps_on_the_gpu_match_the_reference() {
    let steps = |dev: &Device| -> Vec<Vec<f32>> {
        let w = seeded(&[13, 7], 80, dev);
        let b = seeded(&[7], 81, dev);
        w.set_requires_grad(true);
        b.set_requires_grad(true);
        let mut opt = Adam::new(vec![w.clone(), b.clone()], 1e-2);
        for s in 0..3 {
            let x = seeded(&[9, 13], 82 + s, dev);
            let loss = (x.matmul(&w) + &b).tanh().square().mean();
            opt.step(&loss.backward()).unwrap();
        }
        let mut out = vec![w.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap()];
        for (_, t) in opt.state() {
            out.push(t.to_vec::<f32>().unwrap());
        }
        out
    };
    let (g, c) = (steps(&gpu()), steps(&Device::cpu()));
    assert_eq!(g.len(), c.len());
    for (a, b) in g.iter().zip(&c) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 + 1e-4 * y.abs(), "{x} vs {y}");
        }
    }
}
