//! The LeNet-5 Adam training step's dispatch count (issue 4): sibling elementwise kernels fuse
//! into multi-output kernels, so a regression that splits them again fails here.

mod common;
use common::*;
use kiln::data::Mnist;
use kiln::models::LeNet5;
use kiln::nn::{Module, ParamBuilder};
use kiln::optim::{Adam, Optimizer};

#[test]
fn a_lenet5_adam_step_takes_at_most_36_dispatches() {
    let dev = fresh_gpu();
    let data = Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap();
    let model = LeNet5::new(&ParamBuilder::new(&dev, 1));
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let mut batches = data.train().batches(64).on(&dev);
    let mut per_step = vec![];
    for _ in 0..3 {
        let (x, y) = batches.next().unwrap();
        let before = dev.stats();
        let loss = model.forward(&x).cross_entropy(&y);
        opt.step(&loss.backward()).unwrap();
        per_step.push(dev.stats().dispatches - before.dispatches);
    }
    println!(
        "dispatches per step: {per_step:?} limits {:?}",
        dev.backend().schedule_limits()
    );
    // 77 before multi-output kernels (issue 4), 37 after; the non-finite flag's reduction over
    // all gradients adds one (issue 15); each max pool's maximum and its position share a
    // kernel since issue 17 (sibling reductions). The first step also uploads the initial state.
    assert!(per_step[2] <= 36, "dispatches per step: {per_step:?}");
    assert_eq!(
        per_step[1], per_step[2],
        "a replayed step dispatches the same kernels"
    );
}

#[test]
fn a_step_and_reading_its_loss_take_one_submission() {
    // The step's submission also copies the loss (and the finite flag) into staging buffers, so
    // `loss.item()` and `report.is_finite()` only map them.
    let dev = fresh_gpu();
    let data = Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap();
    let model = LeNet5::new(&ParamBuilder::new(&dev, 1));
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let cpu = kiln::Device::cpu();
    let reference = LeNet5::new(&ParamBuilder::new(&cpu, 1));
    let mut ref_opt = Adam::new(reference.parameters(), 1e-3);
    let batches: Vec<_> = data.train().batches(64).take(3).collect();
    let mut per_step = vec![];
    for (x, y) in &batches {
        let before = dev.stats().submissions;
        let loss = model
            .forward(&x.to_device(&dev).unwrap())
            .cross_entropy(&y.to_device(&dev).unwrap());
        let report = opt.step(&loss.backward()).unwrap();
        let got = loss.item::<f32>().unwrap();
        assert!(report.is_finite().unwrap());
        per_step.push(dev.stats().submissions - before);
        // The staged copy holds the step's loss: the reference computes the same.
        let ref_loss = reference.forward(x).cross_entropy(y);
        ref_opt.step(&ref_loss.backward()).unwrap();
        let want = ref_loss.item::<f32>().unwrap();
        assert!(
            (got - want).abs() < 1e-3 * want.abs().max(1.0),
            "{got} vs {want}"
        );
        // A second read of the same loss still works: a copy of its own.
        let before = dev.stats().submissions;
        assert_eq!(loss.item::<f32>().unwrap(), got);
        assert_eq!(dev.stats().submissions - before, 1);
    }
    // The first step also uploads the initial state; later steps are one submission for the
    // step, the loss and the flag (two before the loss was staged).
    assert_eq!(per_step[1..], [1, 1], "submissions per step: {per_step:?}");
}
