//! The LeNet-5 Adam training step's dispatch count (issue 4): sibling elementwise kernels fuse
//! into multi-output kernels, so a regression that splits them again fails here.

mod common;
use common::*;
use kiln::data::Mnist;
use kiln::models::LeNet5;
use kiln::nn::{Module, ParamBuilder};
use kiln::optim::{Adam, Optimizer};

#[test]
fn a_lenet5_adam_step_takes_at_most_38_dispatches() {
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
    // all gradients adds one (issue 15). The first step also uploads the initial state.
    assert!(per_step[2] <= 38, "dispatches per step: {per_step:?}");
    assert_eq!(
        per_step[1], per_step[2],
        "a replayed step dispatches the same kernels"
    );
}
