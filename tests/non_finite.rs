//! Numerical faults in training (issue 15, point 2): every optimiser step computes, in its own
//! plan and submission, whether the loss and the gradients were finite; under
//! `NonFinitePolicy::Skip` a non-finite step leaves parameters and optimiser state bit for bit
//! as they were; `debug::first_non_finite` names the op that made the first NaN;
//! `debug::check_finite` refuses non-finite tensors before a checkpoint.

mod common;
use common::*;
use kiln::data::Mnist;
use kiln::debug::{check_finite, first_non_finite};
use kiln::models::LeNet5;
use kiln::nn::{Module, ParamBuilder};
use kiln::optim::{Adam, NonFinitePolicy, Optimizer, Sgd};
use kiln::prelude::*;

fn digits() -> Mnist {
    Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap()
}

/// A realized parameter holding `values`.
fn param(values: &[f32], shape: &[usize], dev: &Device) -> Tensor {
    let t = Tensor::from_slice(values, shape, dev)
        .unwrap()
        .detach()
        .unwrap();
    t.set_requires_grad(true);
    t
}

/// The bits of every tensor, for bit-for-bit comparisons.
fn bits(tensors: &[Tensor]) -> Vec<Vec<u32>> {
    tensors
        .iter()
        .map(|t| {
            t.to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect()
}

/// `sum((x w^T + b)^2)` for a batch `x [4, 3]`: a small model whose gradients are easy.
fn linear_loss(w: &Tensor, b: &Tensor, x: &Tensor) -> Tensor {
    x.matmul(&w.transpose(0, 1)).add(b).square().sum()
}

fn optimisers(params: Vec<Tensor>) -> Vec<(&'static str, Box<dyn Optimizer>)> {
    vec![
        (
            "sgd",
            Box::new(Sgd::new(params.clone(), 0.1).with_momentum(0.9, false)),
        ),
        ("adam", Box::new(Adam::new(params.clone(), 0.1))),
        ("adamw", Box::new(Adam::adamw(params, 0.1, 0.01))),
    ]
}

#[test]
fn a_nan_weight_is_reported_and_applied_by_default_and_skipped_bit_for_bit_on_request() {
    for dev in [gpu(), Device::cpu()] {
        for policy in [NonFinitePolicy::Apply, NonFinitePolicy::Skip] {
            for k in 0..3 {
                let mut w_values = values(6, 1);
                let w = param(&w_values, &[2, 3], &dev);
                let b = param(&[0.5, -0.5], &[2], &dev);
                let x = Tensor::from_slice(&values(12, 2), [4, 3], &dev).unwrap();
                let mut opts = optimisers(vec![w.clone(), b.clone()]);
                let (name, opt) = &mut opts[k];
                opt.set_non_finite_policy(policy);
                // A finite step first, so that the optimiser state is not all zeros.
                let report = opt.step(&linear_loss(&w, &b, &x).backward()).unwrap();
                assert!(report.is_finite().unwrap(), "{name} on {}", dev.name());
                assert!(!report.skipped().unwrap());
                // Now one weight is NaN.
                w_values = w.to_vec::<f32>().unwrap();
                w_values[4] = f32::NAN;
                w.set_storage(param(&w_values, &[2, 3], &dev).storage().unwrap());
                let before = bits(&[w.clone(), b.clone()]);
                let state_before: Vec<Tensor> = opt.state().into_iter().map(|(_, t)| t).collect();
                let state_before = bits(&state_before);
                let loss = linear_loss(&w, &b, &x);
                let report = opt.step(&loss.backward()).unwrap();
                assert!(loss.item::<f32>().unwrap().is_nan());
                assert!(
                    !report.is_finite().unwrap(),
                    "{name} {policy:?} on {}",
                    dev.name()
                );
                let after = bits(&[w.clone(), b.clone()]);
                let state: Vec<Tensor> = opt.state().into_iter().map(|(_, t)| t).collect();
                let state_after = bits(&state);
                match policy {
                    NonFinitePolicy::Skip => {
                        assert!(report.skipped().unwrap());
                        assert_eq!(
                            after, before,
                            "{name}: parameters changed on a skipped step"
                        );
                        // The last entry is the step count, which advances.
                        let n = state_after.len() - 1;
                        assert_eq!(state_after[..n], state_before[..n], "{name}: state changed");
                    }
                    NonFinitePolicy::Apply => {
                        assert!(!report.skipped().unwrap());
                        let b_after = b.to_vec::<f32>().unwrap();
                        assert!(b_after.iter().any(|v| v.is_nan()), "{name}: {b_after:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn an_infinite_gradient_of_a_finite_loss_is_caught() {
    // d sqrt(w) / dw at w = 0 is infinite; the loss sqrt(0) + sqrt(1) = 1 is finite.
    for dev in [gpu(), Device::cpu()] {
        let w = param(&[0.0, 1.0], &[2], &dev);
        let mut opt = Sgd::new(vec![w.clone()], 0.1);
        opt.set_non_finite_policy(NonFinitePolicy::Skip);
        let loss = w.sqrt().sum();
        let report = opt.step(&loss.backward()).unwrap();
        assert_eq!(loss.item::<f32>().unwrap(), 1.0);
        assert!(!report.is_finite().unwrap(), "on {}", dev.name());
        assert_eq!(w.to_vec::<f32>().unwrap(), vec![0.0, 1.0]);
    }
}

#[test]
fn a_learning_rate_of_1e9_is_caught_at_the_step_it_diverges_and_skipping_keeps_lenet5_finite() {
    let dev = gpu();
    let data = digits();
    let batches: Vec<(Tensor, Tensor)> = data.train().take(64 * 4).batches(64).collect();
    for policy in [NonFinitePolicy::Apply, NonFinitePolicy::Skip] {
        let model = LeNet5::new(&ParamBuilder::new(&dev, 3));
        let mut opt = Adam::new(model.parameters(), 1e9);
        opt.set_non_finite_policy(policy);
        let mut flags = vec![];
        for (x, y) in &batches {
            let loss = model.forward(x).cross_entropy(y);
            let report = opt.step(&loss.backward()).unwrap();
            let finite = report.is_finite().unwrap();
            // A non-finite loss always clears the flag.
            if !loss.item::<f32>().unwrap().is_finite() {
                assert!(!finite, "{policy:?}: a NaN loss with a finite flag");
            }
            flags.push(finite);
        }
        println!("{policy:?}: finite flags {flags:?}");
        assert!(flags[0], "the first step starts from finite weights");
        assert!(
            flags.contains(&false),
            "{policy:?}: lr 1e9 never diverged: {flags:?}"
        );
        let weights = model.parameters();
        let finite = check_finite(&model.named_parameters()).is_ok();
        match policy {
            // Skipped steps leave the (huge but finite) weights of the first step.
            NonFinitePolicy::Skip => assert!(finite, "{:?}", bits(&weights[..1])),
            NonFinitePolicy::Apply => assert!(!finite),
        }
    }
}

#[test]
fn the_flag_keeps_a_step_at_one_submission() {
    let dev = fresh_gpu();
    let data = digits();
    for policy in [NonFinitePolicy::Apply, NonFinitePolicy::Skip] {
        let model = LeNet5::new(&ParamBuilder::new(&dev, 1));
        let mut opt = Adam::new(model.parameters(), 1e-3);
        opt.set_non_finite_policy(policy);
        let mut batches = data.train().batches(32).on(&dev);
        let mut per_step = vec![];
        for i in 0..4 {
            let (x, y) = batches.next().unwrap();
            let before = dev.stats();
            let loss = model.forward(&x).cross_entropy(&y);
            let report = opt.step(&loss.backward()).unwrap();
            let after = dev.stats();
            assert!(report.finite_flag().unwrap().is_realized());
            if i >= 2 {
                assert_eq!(after.submissions - before.submissions, 1, "{after}");
                assert_eq!(after.plans_compiled, before.plans_compiled, "{after}");
                assert_eq!(after.buffers_allocated, before.buffers_allocated, "{after}");
            }
            per_step.push(after.dispatches - before.dispatches);
            // Reading the flag is a copy, like reading the loss.
            let before = dev.stats();
            assert!(report.is_finite().unwrap());
            assert_eq!(dev.stats().dispatches, before.dispatches);
        }
        println!("{policy:?}: dispatches per step {per_step:?}");
    }
}

#[test]
fn first_non_finite_names_the_op_that_made_the_first_nan() {
    for dev in [Device::cpu(), gpu()] {
        // log of a negative number, two ops before the end.
        let x = Tensor::from_slice(&[1.0f32, 2.0, -3.0, 4.0], [4], &dev).unwrap();
        let y = x.mul_scalar(2.0).log().exp().sum();
        let r = first_non_finite(&y).unwrap().expect("a NaN");
        assert_eq!(
            (r.op.as_str(), r.shape.as_slice(), r.index),
            ("log", &[4][..], 2)
        );
        assert!(r.value.is_nan());
        assert!(r.inputs.iter().all(|i| !i.non_finite), "{r}");

        // 0 / 0.
        let a = Tensor::from_slice(&[0.0f32, 1.0], [2], &dev).unwrap();
        let q = a.div(&a.mul_scalar(1.0)).add_scalar(1.0);
        let r = first_non_finite(&q).unwrap().expect("a NaN");
        assert_eq!((r.op.as_str(), r.index), ("div", 0), "{r}");

        // A NaN weight: the first op that reads it is named, with the weight as the bad input.
        let w = param(&[1.0, f32::NAN, 0.5, 2.0], &[2, 2], &dev);
        let x = Tensor::from_slice(&[1.0f32, 1.0], [1, 2], &dev).unwrap();
        let out = x.matmul(&w).relu().sum();
        out.realize().unwrap();
        let r = first_non_finite(&out).unwrap().expect("a NaN");
        assert_eq!(r.op, "matmul", "{r}");
        assert!(r.inputs[1].non_finite && r.inputs[1].tensor.same(&w), "{r}");
        assert!(r.to_string().contains("already non-finite: input 1"), "{r}");

        // exp overflows to infinity.
        let big = Tensor::from_slice(&[100.0f32], [1], &dev).unwrap();
        let r = first_non_finite(&big.exp().mul_scalar(0.0))
            .unwrap()
            .expect("inf");
        assert_eq!((r.op.as_str(), r.value), ("exp", f64::INFINITY), "{r}");

        // Every value finite.
        let fine = Tensor::from_slice(&[1.0f32, 2.0], [2], &dev)
            .unwrap()
            .log()
            .sum();
        assert!(first_non_finite(&fine).unwrap().is_none());
    }
}

#[test]
fn check_finite_names_the_first_non_finite_tensor() {
    let dev = gpu();
    let good = Tensor::from_slice(&[1.0f32, 2.0], [2], &dev).unwrap();
    let bad = Tensor::from_slice(&[1.0f32, f32::INFINITY, f32::NAN], [3], &dev).unwrap();
    let labels = Tensor::from_slice(&[1i32, 2], [2], &dev).unwrap();
    let named = vec![
        ("fc.weight".to_string(), good),
        ("labels".to_string(), labels),
        ("fc.bias".to_string(), bad),
    ];
    assert!(check_finite(&named[..2]).is_ok());
    let msg = check_finite(&named).unwrap_err().to_string();
    assert!(
        msg.contains("fc.bias") && msg.contains("2 of 3") && msg.contains("element 1"),
        "{msg}"
    );
}

#[test]
fn a_skipped_step_leaves_batch_norm_statistics_alone() {
    use kiln::nn::BatchNorm2d;
    let dev = gpu();
    let bn = BatchNorm2d::new(2, &ParamBuilder::new(&dev, 0));
    let (mean, var) = (
        bn.0.running_mean.clone().unwrap(),
        bn.0.running_var.clone().unwrap(),
    );
    let x = Tensor::from_slice(&values(2 * 2 * 3 * 3, 5), [2, 2, 3, 3], &dev).unwrap();
    let mut opt = Sgd::new(bn.parameters(), 0.1);
    opt.set_non_finite_policy(NonFinitePolicy::Skip);
    // A finite step moves the statistics; a step with a NaN input must not.
    let report = opt.step(&bn.forward(&x).square().sum().backward()).unwrap();
    assert!(report.is_finite().unwrap());
    let before = bits(&[mean.clone(), var.clone()]);
    let before_params = bits(&bn.parameters());
    let mut bad = values(2 * 2 * 3 * 3, 6);
    bad[3] = f32::NAN;
    let x = Tensor::from_slice(&bad, [2, 2, 3, 3], &dev).unwrap();
    let report = opt.step(&bn.forward(&x).square().sum().backward()).unwrap();
    assert!(report.skipped().unwrap());
    assert_eq!(bits(&[mean, var]), before, "running statistics changed");
    assert_eq!(bits(&bn.parameters()), before_params);
}
