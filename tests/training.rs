//! Training end to end on the GPU (the software Vulkan driver in CI): LeNet-5 learns the shipped
//! MNIST digits; a step after the first compiles nothing and allocates nothing; memory stays
//! flat over 1,000 steps; a resumed run repeats the uninterrupted one bit for bit.

mod common;
use common::*;
use kiln::checkpoint;
use kiln::data::Mnist;
use kiln::models::LeNet5;
use kiln::nn::{
    evaluate, load_parameters, Conv2d, Flatten, Linear, MaxPool2d, Module, ParamBuilder, Sequential,
};
use kiln::optim::{Adam, Optimizer, Sgd};
use kiln::prelude::*;
use kiln::Conv2dOptions;

fn digits() -> Mnist {
    Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap()
}

/// One step: forward, loss, backward and update in one submission. Returns the loss tensor
/// (realized by the step).
fn step(model: &dyn Module, opt: &mut dyn Optimizer, images: &Tensor, labels: &Tensor) -> Tensor {
    let loss = model.forward(images).cross_entropy(labels);
    opt.step(&loss.backward()).unwrap();
    loss
}

#[test]
fn lenet5_reaches_96_percent_on_the_shipped_digits_within_5_epochs() {
    let dev = gpu();
    let data = digits();
    let model = LeNet5::new(&ParamBuilder::new(&dev, 42));
    assert_eq!(model.num_parameters(), 61_706);
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let mut accuracy = 0.0;
    for epoch in 0..5 {
        for (images, labels) in data.train().shuffled(epoch).batches(64) {
            step(&model, &mut opt, &images, &labels);
        }
        accuracy = evaluate(&model, data.test()).unwrap();
        println!(
            "epoch {}: test accuracy {:.2}%",
            epoch + 1,
            accuracy * 100.0
        );
        if accuracy >= 0.96 {
            break;
        }
    }
    assert!(accuracy >= 0.96, "test accuracy {accuracy} after 5 epochs");
}

/// A small CNN for the tests that take many steps: `[N, 1, 28, 28] -> [N, 10]`.
fn small_cnn(dev: &Device, seed: u64) -> Sequential {
    let pb = ParamBuilder::new(dev, seed);
    Sequential::new()
        .push(Conv2d::new(
            1,
            4,
            3,
            Conv2dOptions::default().stride(2),
            &pb.pp(0),
        ))
        .push(kiln::nn::Activation::Relu)
        .push(MaxPool2d::new(2))
        .push(Flatten)
        .push(Linear::new(4 * 6 * 6, 10, &pb.pp(4)))
}

#[test]
fn after_the_first_step_a_step_is_one_submission_with_nothing_compiled_or_allocated() {
    let dev = fresh_gpu();
    let data = digits();
    let model = LeNet5::new(&ParamBuilder::new(&dev, 1));
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let mut batches = data.train().batches(32).on(&dev);
    for _ in 0..2 {
        let (x, y) = batches.next().unwrap();
        step(&model, &mut opt, &x, &y);
    }
    for _ in 0..3 {
        let (x, y) = batches.next().unwrap();
        let before = dev.stats();
        let loss = step(&model, &mut opt, &x, &y);
        let after = dev.stats();
        assert!(loss.is_realized(), "the step computes the loss");
        assert_eq!(after.submissions - before.submissions, 1, "{after}");
        assert_eq!(after.plans_compiled, before.plans_compiled, "{after}");
        assert_eq!(after.pipelines_created, before.pipelines_created, "{after}");
        assert_eq!(after.buffers_allocated, before.buffers_allocated, "{after}");
        assert_eq!(after.plan_cache_hits - before.plan_cache_hits, 1, "{after}");
    }
}

#[test]
fn a_thousand_steps_keep_peak_device_memory_flat() {
    let dev = fresh_gpu();
    let data = digits();
    let model = small_cnn(&dev, 3);
    let mut opt = Sgd::new(model.parameters(), 0.05).with_momentum(0.9, true);
    let batches: Vec<(Tensor, Tensor)> = data.train().take(16 * 8).batches(16).collect();
    let mut peak_after_warmup = 0;
    for i in 0..1000 {
        let (x, y) = &batches[i % batches.len()];
        let loss = step(&model, &mut opt, x, y);
        if i == 10 {
            peak_after_warmup = dev.stats().peak_bytes;
        }
        // Reading the loss needs a staging buffer: read once during warm-up too.
        if i == 5 || i == 999 {
            assert!(loss.item::<f32>().unwrap().is_finite());
        }
    }
    let stats = dev.stats();
    assert_eq!(stats.peak_bytes, peak_after_warmup, "{stats}");
}

/// Trains `epochs` epochs of 256 images from `first_epoch` on and returns every step's loss.
fn run_epochs(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    data: &Mnist,
    first_epoch: u64,
    epochs: u64,
) -> Vec<u32> {
    let mut losses = vec![];
    for epoch in first_epoch..first_epoch + epochs {
        for (x, y) in data.train().take(256).shuffled(epoch).batches(64) {
            let loss = step(model, opt, &x, &y);
            losses.push(loss.item::<f32>().unwrap().to_bits());
        }
    }
    losses
}

#[test]
fn a_resumed_run_matches_the_uninterrupted_run_bit_for_bit() {
    let dev = gpu();
    let data = digits();
    // Uninterrupted: 3 epochs.
    let model = LeNet5::new(&ParamBuilder::new(&dev, 7));
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let straight = run_epochs(&model, &mut opt, &data, 0, 3);

    // Interrupted after epoch 1, saved, and resumed in a fresh model and optimiser.
    let model = LeNet5::new(&ParamBuilder::new(&dev, 7));
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let mut resumed = run_epochs(&model, &mut opt, &data, 0, 1);
    let path = std::env::temp_dir().join(format!("kiln-resume-{}.safetensors", std::process::id()));
    let mut tensors = model.named_parameters();
    tensors.extend(
        opt.state()
            .into_iter()
            .map(|(n, t)| (format!("optimizer.{n}"), t)),
    );
    checkpoint::save(&path, &tensors, &[]).unwrap();
    drop((model, opt));

    let model = LeNet5::new(&ParamBuilder::new(&dev, 99)); // different initial weights: the checkpoint must win
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let ckpt = checkpoint::load(&path, &dev).unwrap();
    std::fs::remove_file(&path).unwrap();
    let (optim, params): (Vec<_>, Vec<_>) = ckpt
        .tensors
        .into_iter()
        .partition(|(n, _)| n.starts_with("optimizer."));
    load_parameters(&model, &params).unwrap();
    let optim: Vec<(String, Tensor)> = optim
        .into_iter()
        .map(|(n, t)| (n["optimizer.".len()..].to_string(), t))
        .collect();
    opt.load_state(&optim).unwrap();
    assert_eq!(opt.steps(), 4);
    resumed.extend(run_epochs(&model, &mut opt, &data, 1, 2));
    assert_eq!(resumed, straight);
}
