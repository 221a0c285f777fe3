//! Bounded device memory when shapes vary (issue 13): the plan cache keeps at most a budget of
//! bytes of plans (least recently used evicted, their buffers back to a pool that is bounded
//! too), so a server that sees many batch sizes and image sizes does not grow without end.

mod common;

use common::*;
use kiln::data::Mnist;
use kiln::models::{LeNet5, ResNet};
use kiln::nn::{Linear, Module, ParamBuilder, Sequential};
use kiln::optim::{Adam, Optimizer};
use kiln::prelude::*;
use kiln::wgpu_backend::{wgpu_device_with, WgpuOptions};

/// A fresh GPU device whose plan cache (and pool of free buffers) holds at most `bytes`.
fn device_with_budget(bytes: u64) -> Device {
    gpu();
    wgpu_device_with(&WgpuOptions {
        plan_cache_bytes: Some(bytes),
        ..WgpuOptions::from_env().unwrap()
    })
    .unwrap()
}

/// Device bytes that realizing `f`'s result adds on a fresh device with an unbounded cache: the
/// plan's intermediate buffers, its input and its output.
fn footprint(f: impl Fn(&Device) -> Tensor) -> u64 {
    let dev = device_with_budget(u64::MAX);
    let warm = f(&dev); // parameters and everything else made before the plan
    drop(warm);
    let before = dev.stats().bytes_live;
    let y = f(&dev);
    y.realize().unwrap();
    dev.stats().peak_bytes - before
}

fn lenet_logits(dev: &Device, model: &LeNet5, batch: usize) -> Tensor {
    let x =
        Tensor::from_slice(&values(batch * 784, batch as u64), [batch, 1, 28, 28], dev).unwrap();
    no_grad(|| model.forward(&x))
}

#[test]
fn lenet5_inference_over_64_batch_sizes_keeps_memory_bounded() {
    // The largest plan: batch 64 (its parameters are made before, so not counted).
    let largest = footprint(|dev| {
        let model = LeNet5::new(&ParamBuilder::new(dev, 42));
        lenet_logits(dev, &model, 64)
    });
    let dev = device_with_budget(largest);
    let model = LeNet5::new(&ParamBuilder::new(&dev, 42));
    let reference = LeNet5::new(&ParamBuilder::new(&Device::cpu(), 42));
    let base = dev.stats().bytes_live;
    for call in 0..1000 {
        let batch = call % 64 + 1;
        let y = lenet_logits(&dev, &model, batch);
        let got = y.to_vec::<f32>().unwrap();
        if call % 97 == 0 {
            let want = lenet_logits(&Device::cpu(), &reference, batch);
            assert_close(&y, &want, 1e-4, 1e-4);
        }
        assert_eq!(got.len(), batch * 10);
    }
    let s = dev.stats();
    println!(
        "LeNet-5, 1000 calls: peak {} bytes over the parameters, largest plan {largest}: {s}",
        s.peak_bytes - base
    );
    assert!(s.plans_evicted > 0, "no plan was evicted: {s}");
    assert!(
        s.peak_bytes - base <= 2 * largest,
        "peak {} bytes over the parameters' {base}, more than twice the largest plan's {largest}: {s}",
        s.peak_bytes - base
    );
}

#[test]
fn resnet20_on_two_image_sizes_keeps_memory_bounded() {
    let make = |dev: &Device, size: usize| {
        let model = ResNet::resnet20(1, 10, &ParamBuilder::new(dev, 7)).unwrap();
        let x = Tensor::from_slice(
            &values(2 * size * size, size as u64),
            [2, 1, size, size],
            dev,
        )
        .unwrap();
        no_grad(|| model.forward(&x))
    };
    let largest = footprint(|dev| make(dev, 32));
    // Room for less than one plan (the newest is always kept): every change of size evicts the
    // other plan, whichever kernel family makes them (their sizes differ).
    let dev = device_with_budget(largest / 2);
    let model = ResNet::resnet20(1, 10, &ParamBuilder::new(&dev, 7)).unwrap();
    let base = dev.stats().bytes_live;
    let mut first = [vec![], vec![]];
    for call in 0..12 {
        let size = [28, 32][call % 2];
        let x = Tensor::from_slice(
            &values(2 * size * size, size as u64),
            [2, 1, size, size],
            &dev,
        )
        .unwrap();
        let y = no_grad(|| model.forward(&x)).to_vec::<f32>().unwrap();
        // A plan compiled again after its eviction computes the same values.
        if call < 2 {
            first[call % 2] = y;
        } else {
            assert_eq!(y, first[call % 2], "call {call}");
        }
    }
    let s = dev.stats();
    println!(
        "ResNet-20, 12 calls: peak {} bytes over the parameters, largest plan {largest}: {s}",
        s.peak_bytes - base
    );
    assert!(s.plans_evicted >= 10, "{s}");
    assert!(
        s.peak_bytes - base <= 2 * largest,
        "{s}; largest plan {largest}"
    );
}

#[test]
fn training_with_a_partial_last_batch_keeps_memory_flat_over_10_epochs() {
    // A device of its own (its counters count this test only), with the default budget.
    let dev = device_with_budget(WgpuOptions::default().plan_cache_budget());
    let data = Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap();
    let pb = ParamBuilder::new(&dev, 1);
    let model = Sequential::new()
        .push(kiln::nn::Flatten)
        .push(Linear::new(784, 32, &pb.pp(1)))
        .push(kiln::nn::Activation::Relu)
        .push(Linear::new(32, 10, &pb.pp(3)));
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let mut live_after_epoch = vec![];
    for epoch in 0..10 {
        // 8,000 images in batches of 96: 83 full batches and one of 32.
        for (images, labels) in data.train().shuffled(epoch).batches(96).on(&dev) {
            let loss = model.forward(&images).cross_entropy(&labels);
            opt.step(&loss.backward()).unwrap();
        }
        let s = dev.stats();
        live_after_epoch.push((s.bytes_live, s.peak_bytes, s.plans_compiled));
    }
    // After the first epoch (two plans: full and partial batch), nothing grows.
    let (live, peak, plans) = live_after_epoch[1];
    assert!(plans > 0);
    for (epoch, &(l, p, c)) in live_after_epoch.iter().enumerate().skip(2) {
        assert_eq!((l, p, c), (live, peak, plans), "epoch {}", epoch + 1);
    }
}
