//! torchvision's AlexNet (61,100,840 parameters; its first classifier weight, 4096 x 9216 f32, is
//! 151 MB, over lavapipe's 128 MiB per storage binding) on the default device: it builds, infers
//! and takes an SGD step matching the reference executor, and its `state_dict` saves and loads.
//! One 63 x 63 image (the smallest the layout allows) keeps the reference executor fast.

mod common;

use common::{gpu, temp_dir};
use kiln::models::AlexNet;
use kiln::nn::{load_weights, save_weights, Module, ParamBuilder};
use kiln::optim::{Optimizer, Sgd};
use kiln::prelude::*;

/// The largest elementwise difference of `got` and `want` relative to `want`'s largest magnitude.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want
        .iter()
        .fold(0f64, |m, &v| m.max(v.abs() as f64))
        .max(1e-30);
    got.iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .fold(0.0, f64::max)
        / scale
}

fn images(dev: &Device) -> Tensor {
    Tensor::rand([1, 3, 63, 63], 5, dev)
}

fn param(net: &AlexNet, name: &str) -> Vec<f32> {
    let (_, t) = net
        .state_dict()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"));
    t.to_vec::<f32>().unwrap()
}

#[test]
fn alexnet_infers_and_trains_on_the_default_device_as_on_the_reference() {
    let dev = gpu();
    let cpu = Device::cpu();
    let nets = [&dev, &cpu].map(|d| AlexNet::new(3, 1000, &ParamBuilder::new(d, 0)).unwrap());
    assert_eq!(nets[0].num_parameters(), 61_100_840);
    let big = 4096 * 9216 * 4;
    assert!(
        big > dev.backend().max_binding_bytes(),
        "{big} fits one binding"
    );
    // Inference (evaluation mode: no dropout).
    let logits: Vec<Vec<f32>> = nets
        .iter()
        .zip([&dev, &cpu])
        .map(|(net, d)| {
            net.set_training(false);
            net.forward(&images(d)).to_vec::<f32>().unwrap()
        })
        .collect();
    assert_eq!(logits[0].len(), 1000);
    let e = rel_err(&logits[0], &logits[1]);
    assert!(e < 1e-4, "logits differ by {e}");
    // One SGD step (training mode: the seeded dropout masks are the same on both devices).
    let labels = |d: &Device| Tensor::from_slice(&[917i32], [1], d).unwrap();
    let names = [
        "classifier.1.weight",
        "classifier.6.weight",
        "features.0.weight",
    ];
    let before: Vec<Vec<f32>> = names.iter().map(|n| param(&nets[1], n)).collect();
    let losses: Vec<f32> = nets
        .iter()
        .zip([&dev, &cpu])
        .map(|(net, d)| {
            net.set_training(true);
            let mut opt = Sgd::new(net.parameters(), 0.5);
            let loss = net.forward(&images(d)).cross_entropy(&labels(d));
            opt.step(&loss.backward()).unwrap();
            loss.item::<f32>().unwrap()
        })
        .collect();
    assert!(
        (losses[0] - losses[1]).abs() < 1e-4 * losses[1].abs(),
        "{losses:?}"
    );
    for (name, before) in names.iter().zip(&before) {
        let (got, want) = (param(&nets[0], name), param(&nets[1], name));
        let moved = rel_err(&want, before);
        assert!(moved > 1e-7, "{name} did not move");
        let e = rel_err(&got, &want);
        assert!(e < 1e-4, "{name} after the step differs by {e}");
    }
}

#[test]
fn alexnets_state_dict_saves_and_loads_on_the_default_device() {
    let dev = gpu();
    let dir = temp_dir("alexnet");
    let path = dir.join("alexnet.safetensors");
    let a = AlexNet::new(3, 1000, &ParamBuilder::new(&dev, 1)).unwrap();
    save_weights(&a, &path).unwrap();
    let b = AlexNet::new(3, 1000, &ParamBuilder::new(&dev, 2)).unwrap();
    load_weights(&b, &path).unwrap();
    for name in [
        "classifier.1.weight",
        "classifier.6.bias",
        "features.0.weight",
    ] {
        assert_eq!(param(&a, name), param(&b, name), "{name}");
    }
    a.set_training(false);
    b.set_training(false);
    let x = images(&dev);
    assert_eq!(
        a.forward(&x).to_vec::<f32>().unwrap(),
        b.forward(&x).to_vec::<f32>().unwrap()
    );
}

#[test]
fn an_alexnet_too_large_for_the_device_is_an_error() {
    let dev = gpu();
    let limit = dev.backend().max_buffer_bytes();
    // The last classifier weight is [classes, 4096].
    let classes = (limit / (4096 * 4) + 1) as usize;
    let Err(err) = AlexNet::new(3, classes, &ParamBuilder::new(&dev, 0)) else {
        panic!("an AlexNet with {classes} classes was built");
    };
    let msg = err.to_string();
    assert!(
        msg.contains("classifier.6.weight") && msg.contains(&limit.to_string()),
        "{msg}"
    );
}

#[test]
fn every_zoo_model_too_large_for_the_device_is_an_error() {
    use kiln::models::{AlexNet, LeNet5, ResNet};
    let dev = gpu();
    let limit = dev.backend().max_buffer_bytes();
    // Each classifier's weight is [classes, width]: past the limit by one row.
    let classes = |width: u64| (limit / (width * 4) + 1) as usize;
    let errors = [
        ResNet::resnet18(3, classes(512), &ParamBuilder::new(&dev, 0)).err(),
        ResNet::resnet50(3, classes(2048), &ParamBuilder::new(&dev, 0)).err(),
        ResNet::resnet20(3, classes(64), &ParamBuilder::new(&dev, 0)).err(),
        LeNet5::with_channels(1, classes(84), &ParamBuilder::new(&dev, 0)).err(),
        AlexNet::small(3, classes(512), false, &ParamBuilder::new(&dev, 0)).err(),
    ];
    for (err, name) in errors
        .into_iter()
        .zip(["fc", "fc", "fc", "fc3", "classifier.6"])
    {
        let msg = err.expect("the model was built").to_string();
        assert!(
            msg.contains(&format!("{name}.weight")) && msg.contains(&limit.to_string()),
            "{msg}"
        );
    }
}
