//! The model zoo: ResNets and AlexNets against torchvision (parameter counts, `state_dict` names,
//! shapes and order, from files torchvision printed), output shapes for several input sizes,
//! `by_name`, and a short ResNet-20 training run on the shipped digits.
//!
//! The models are built on the reference CPU device (drawing ResNet-152's 60 million weights
//! there takes a few seconds); the shape checks only record graphs, nothing runs.

mod common;
use common::*;
use kiln::data::Mnist;
use kiln::models::{by_name, AlexNet, ResNet, ShortcutKind};
use kiln::nn::{pending_updates, Module, ParamBuilder};
use kiln::optim::{Adam, Optimizer};
use kiln::prelude::*;

/// A model's `state_dict` as torchvision's fixture files list it: `name [shape]` per line.
fn listing(model: &dyn Module) -> Vec<String> {
    model
        .state_dict()
        .iter()
        .map(|(n, t)| format!("{n} {:?}", t.dims()))
        .collect()
}

/// The lines of `tests/fixtures/torchvision/{name}.txt` (printed by torchvision 0.29).
fn torchvision(name: &str) -> Vec<String> {
    let path = format!(
        "{}/tests/fixtures/torchvision/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Parameters of a `k x k` convolution without bias and of a batch norm.
fn conv(i: usize, o: usize, k: usize) -> usize {
    i * o * k * k
}
fn bn(c: usize) -> usize {
    2 * c
}

/// The parameter count of torchvision's ResNet, worked out from the paper's table: the stem
/// (7x7 conv to 64, BN), four stages of 64/128/256/512 planes whose first block projects the
/// shortcut (1x1 conv + BN) when the shape changes, and the classifier.
fn imagenet_resnet_count(bottleneck: bool, blocks: [usize; 4], classes: usize) -> usize {
    let mut total = conv(3, 64, 7) + bn(64);
    let mut inputs = 64;
    for (stage, (&n, planes)) in blocks.iter().zip([64, 128, 256, 512]).enumerate() {
        for j in 0..n {
            let out = if bottleneck { 4 * planes } else { planes };
            total += if bottleneck {
                conv(inputs, planes, 1)
                    + bn(planes)
                    + conv(planes, planes, 3)
                    + bn(planes)
                    + conv(planes, out, 1)
                    + bn(out)
            } else {
                conv(inputs, planes, 3) + bn(planes) + conv(planes, planes, 3) + bn(planes)
            };
            let strided = j == 0 && stage > 0;
            if j == 0 && (strided || inputs != out) {
                total += conv(inputs, out, 1) + bn(out);
            }
            inputs = out;
        }
    }
    total + inputs * classes + classes
}

/// The CIFAR ResNet of depth 6n + 2 with option A shortcuts: no parameters in the shortcuts.
fn cifar_resnet_count(n: usize, in_channels: usize, classes: usize) -> usize {
    let mut total = conv(in_channels, 16, 3) + bn(16);
    let mut inputs = 16;
    for planes in [16, 32, 64] {
        for _ in 0..n {
            total += conv(inputs, planes, 3) + bn(planes) + conv(planes, planes, 3) + bn(planes);
            inputs = planes;
        }
    }
    total + 64 * classes + classes
}

#[test]
fn the_closed_form_counts_are_torchvisions_numbers() {
    // The formulas above against the numbers torchvision reports, so that a mistake in either
    // shows.
    assert_eq!(imagenet_resnet_count(false, [2, 2, 2, 2], 1000), 11_689_512);
    assert_eq!(imagenet_resnet_count(false, [3, 4, 6, 3], 1000), 21_797_672);
    assert_eq!(imagenet_resnet_count(true, [3, 4, 6, 3], 1000), 25_557_032);
    assert_eq!(imagenet_resnet_count(true, [3, 4, 23, 3], 1000), 44_549_160);
    assert_eq!(imagenet_resnet_count(true, [3, 8, 36, 3], 1000), 60_192_808);
    // The paper's Table 6: 0.27M, 0.46M and 0.85M parameters.
    assert_eq!(cifar_resnet_count(3, 3, 10), 269_722);
    assert_eq!(cifar_resnet_count(5, 3, 10), 464_154);
    assert_eq!(cifar_resnet_count(9, 3, 10), 853_018);
}

#[test]
fn resnet18_is_torchvisions_resnet18_and_takes_any_image_size() {
    let dev = Device::cpu();
    let net = ResNet::resnet18(3, 1000, &ParamBuilder::new(&dev, 0)).unwrap();
    assert_eq!(net.num_parameters(), 11_689_512);
    assert_eq!(listing(&net), torchvision("resnet18"));
    let names: Vec<String> = net.state_dict().into_iter().map(|(n, _)| n).collect();
    for name in [
        "layer1.0.conv1.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_mean",
        "fc.bias",
    ] {
        assert!(names.iter().any(|n| n == name), "{name}");
    }
    assert!(!names.iter().any(|n| n.starts_with("layer1.0.downsample")));
    assert_eq!(net.named_buffers().len(), 20 * 3);

    // Shapes only: graphs are recorded, nothing runs (evaluation mode records no updates).
    net.set_training(false);
    let before = dev.stats().submissions;
    for (n, size) in [(2, 64), (1, 224), (1, 97), (1, 33)] {
        let x = Tensor::zeros([n, 3, size, size], &dev);
        assert_eq!(net.forward(&x).dims(), &[n, 1000], "{size}x{size}");
    }
    assert_eq!(dev.stats().submissions, before);
    assert_eq!(pending_updates(), 0);
    // A training-mode forward records three buffer updates per batch norm.
    net.set_training(true);
    net.forward(&Tensor::zeros([2, 3, 64, 64], &dev));
    assert_eq!(pending_updates(), 60);
}

#[test]
fn resnet34_matches_torchvision_in_count_and_names() {
    let net = ResNet::resnet34(3, 1000, &ParamBuilder::new(&Device::cpu(), 0)).unwrap();
    assert_eq!(net.num_parameters(), 21_797_672);
    let sd = net.state_dict();
    assert_eq!(sd.len(), 218);
    assert_eq!(sd[sd.len() - 1].0, "fc.bias");
    assert_eq!(sd[6].0, "layer1.0.conv1.weight");
    assert!(sd
        .iter()
        .any(|(n, _)| n == "layer4.2.bn2.num_batches_tracked"));
}

#[test]
fn resnet50_is_torchvisions_resnet50() {
    let dev = Device::cpu();
    let net = ResNet::resnet50(3, 1000, &ParamBuilder::new(&dev, 0)).unwrap();
    assert_eq!(net.num_parameters(), 25_557_032);
    assert_eq!(listing(&net), torchvision("resnet50"));
    net.set_training(false);
    let x = Tensor::zeros([2, 3, 64, 64], &dev);
    assert_eq!(net.forward(&x).dims(), &[2, 1000]);
}

#[test]
fn resnet101_and_resnet152_match_torchvision_in_count_and_names() {
    let dev = Device::cpu();
    for (net, count, entries, last_block) in [
        (
            ResNet::resnet101(3, 1000, &ParamBuilder::new(&dev, 0)).unwrap(),
            44_549_160,
            626,
            "layer3.22",
        ),
        (
            ResNet::resnet152(3, 1000, &ParamBuilder::new(&dev, 0)).unwrap(),
            60_192_808,
            932,
            "layer3.35",
        ),
    ] {
        assert_eq!(net.num_parameters(), count);
        let sd = net.state_dict();
        assert_eq!(sd.len(), entries);
        assert!(sd
            .iter()
            .any(|(n, _)| *n == format!("{last_block}.conv3.weight")));
        let ds = &sd
            .iter()
            .find(|(n, _)| n == "layer4.0.downsample.0.weight")
            .unwrap()
            .1;
        assert_eq!(ds.dims(), &[2048, 1024, 1, 1]);
    }
}

#[test]
fn alexnet_is_torchvisions_alexnet() {
    let dev = Device::cpu();
    let net = AlexNet::new(3, 1000, &ParamBuilder::new(&dev, 0)).unwrap();
    assert_eq!(net.num_parameters(), 61_100_840);
    assert_eq!(listing(&net), torchvision("alexnet"));
    let names: Vec<String> = net.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[0], "features.0.weight");
    assert_eq!(names[names.len() - 1], "classifier.6.bias");
    net.set_training(false);
    for (n, size) in [(2, 224), (1, 63), (1, 300)] {
        let x = Tensor::zeros([n, 3, size, size], &dev);
        assert_eq!(net.forward(&x).dims(), &[n, 1000], "{size}x{size}");
    }
    assert_eq!(
        AlexNet::new(1, 10, &ParamBuilder::new(&dev, 0))
            .unwrap()
            .num_parameters(),
        61_100_840 - 2 * 64 * 121 - 990 * 4097
    );
}

#[test]
fn the_cifar_resnets_have_the_papers_sizes_and_take_28_and_32_pixel_images() {
    let dev = Device::cpu();
    let r20 = ResNet::resnet20(3, 10, &ParamBuilder::new(&dev, 0)).unwrap();
    assert_eq!(r20.num_parameters(), 269_722);
    assert_eq!(r20.num_parameters(), cifar_resnet_count(3, 3, 10));
    assert_eq!(
        ResNet::resnet32(1, 10, &ParamBuilder::new(&dev, 0))
            .unwrap()
            .num_parameters(),
        cifar_resnet_count(5, 1, 10)
    );
    assert_eq!(
        ResNet::resnet56(3, 100, &ParamBuilder::new(&dev, 0))
            .unwrap()
            .num_parameters(),
        cifar_resnet_count(9, 3, 100)
    );
    let names: Vec<String> = r20.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 1 + 5 + 9 * (2 + 10) + 2);
    assert!(
        !names.iter().any(|n| n.contains("downsample")),
        "option A has no parameters"
    );
    assert_eq!(names[6], "layer1.0.conv1.weight");
    assert_eq!(names[names.len() - 1], "fc.bias");

    // Option B: projections where the shape changes, named as torchvision names them.
    let r20b = ResNet::cifar(
        3,
        3,
        10,
        ShortcutKind::Projection,
        &ParamBuilder::new(&dev, 0),
    )
    .unwrap();
    let extra = (16 * 32 + 64) + (32 * 64 + 128);
    assert_eq!(r20b.num_parameters(), 269_722 + extra);
    let sd = r20b.state_dict();
    let get = |name: &str| {
        sd.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.dims().to_vec())
    };
    assert_eq!(
        get("layer2.0.downsample.0.weight"),
        Some(vec![32, 16, 1, 1])
    );
    assert_eq!(get("layer3.0.downsample.1.running_var"), Some(vec![64]));
    assert_eq!(get("layer1.0.downsample.0.weight"), None);

    for net in [&r20, &r20b] {
        net.set_training(false);
        for (c, size) in [(3, 32), (3, 28)] {
            let x = Tensor::zeros([4, c, size, size], &dev);
            assert_eq!(net.forward(&x).dims(), &[4, 10]);
        }
    }
    let gray = ResNet::resnet20(1, 10, &ParamBuilder::new(&dev, 0)).unwrap();
    gray.set_training(false);
    assert_eq!(
        gray.forward(&Tensor::zeros([2, 1, 28, 28], &dev)).dims(),
        &[2, 10]
    );
}

#[test]
fn option_a_shortcuts_subsample_and_pad_with_zero_channels() {
    // The shortcut of layer2.0 (16 -> 32 channels, stride 2): x[:, :, ::2, ::2] with 8 zero
    // channels on each side.
    let dev = Device::cpu();
    let net = ResNet::resnet20(3, 10, &ParamBuilder::new(&dev, 0)).unwrap();
    let block = &net.layers[1];
    let x = Tensor::from_slice(&values(2 * 16 * 5 * 5, 1), [2, 16, 5, 5], &dev).unwrap();
    let shortcut = kiln::models::Shortcut::new(
        16,
        32,
        2,
        ShortcutKind::ZeroPad,
        &ParamBuilder::new(&dev, 0),
    );
    let y = shortcut.forward(&x);
    assert_eq!(y.dims(), &[2, 32, 3, 3]);
    let (xv, yv) = (x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    for n in 0..2 {
        for c in 0..32 {
            for i in 0..3 {
                for j in 0..3 {
                    let want = if (8..24).contains(&c) {
                        xv[((n * 16 + c - 8) * 5 + 2 * i) * 5 + 2 * j]
                    } else {
                        0.0
                    };
                    assert_eq!(yv[((n * 32 + c) * 3 + i) * 3 + j], want);
                }
            }
        }
    }
    assert_eq!(block.len(), 3);
}

#[test]
fn the_small_alexnet_takes_28_and_32_pixel_images_with_or_without_lrn() {
    let dev = Device::cpu();
    let count = |c: usize, classes: usize| {
        let convs = [
            (c, 48, 5),
            (48, 128, 3),
            (128, 192, 3),
            (192, 192, 3),
            (192, 128, 3),
        ];
        let convs: usize = convs.iter().map(|&(i, o, k)| i * o * k * k + o).sum();
        convs + (512 * 512 + 512) * 2 + 512 * classes + classes
    };
    for lrn in [false, true] {
        let net = AlexNet::small(1, 10, lrn, &ParamBuilder::new(&dev, 0)).unwrap();
        assert_eq!(net.num_parameters(), count(1, 10));
        assert_eq!(net.num_parameters(), 1_361_770);
        let net3 = AlexNet::small(3, 100, lrn, &ParamBuilder::new(&dev, 0)).unwrap();
        assert_eq!(net3.num_parameters(), count(3, 100));
        net.set_training(false);
        net3.set_training(false);
        assert_eq!(
            net.forward(&Tensor::zeros([5, 1, 28, 28], &dev)).dims(),
            &[5, 10]
        );
        assert_eq!(
            net3.forward(&Tensor::zeros([2, 3, 32, 32], &dev)).dims(),
            &[2, 100]
        );
        let names: Vec<String> = net.state_dict().into_iter().map(|(n, _)| n).collect();
        let last_conv = if lrn {
            "features.12.weight"
        } else {
            "features.10.weight"
        };
        assert!(names.iter().any(|n| n == last_conv), "{names:?}");
        assert_eq!(names[names.len() - 1], "classifier.6.bias");
    }
    // Training mode: dropout is active in the classifier, so two passes differ.
    let net = AlexNet::small(1, 10, true, &ParamBuilder::new(&dev, 3)).unwrap();
    let x = Tensor::from_slice(&values(2 * 28 * 28, 2), [2, 1, 28, 28], &dev).unwrap();
    let a = net.forward(&x).to_vec::<f32>().unwrap();
    let b = net.forward(&x).to_vec::<f32>().unwrap();
    assert_ne!(a, b);
    net.set_training(false);
    assert_eq!(
        net.forward(&x).to_vec::<f32>().unwrap(),
        net.forward(&x).to_vec::<f32>().unwrap()
    );
}

#[test]
fn by_name_builds_the_examples_models_and_lists_them_for_an_unknown_name() {
    let dev = Device::cpu();
    for (name, params) in [
        ("lenet5", 61_706),
        ("alexnet", 1_361_770),
        ("resnet20", 269_434),
        ("resnet32", 463_866),
        ("resnet56", 852_730),
        // torchvision's 11,689,512 with one input channel and 10 classes.
        ("resnet18", 11_175_370),
    ] {
        let model = by_name(name, 1, 10, &ParamBuilder::new(&dev, 0)).unwrap();
        assert_eq!(model.num_parameters(), params, "{name}");
        model.set_training(false);
        let x = Tensor::zeros([3, 1, 28, 28], &dev);
        assert_eq!(model.forward(&x).dims(), &[3, 10], "{name}");
    }
    assert_eq!(
        by_name("resnet20", 3, 100, &ParamBuilder::new(&dev, 0))
            .unwrap()
            .num_parameters(),
        275_572
    );
    let e = by_name("vgg16", 1, 10, &ParamBuilder::new(&dev, 0))
        .err()
        .unwrap()
        .to_string();
    for known in ["lenet5", "alexnet", "resnet20", "resnet18", "\"vgg16\""] {
        assert!(e.contains(known), "{e}");
    }
}

/// Steps of the training test: six passes over 32 digits in batches of 8. About a second a step
/// on lavapipe with two cores (the first step also compiles ~120 kernels: ~2 s with Mesa's shader
/// cache warm, ~20 s cold).
const EPOCHS: usize = 6;

#[test]
fn resnet20_learns_the_digits_with_adam_and_its_step_stays_one_cached_plan() {
    let dev = fresh_gpu();
    let data = Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap();
    let model = ResNet::resnet20(1, 10, &ParamBuilder::new(&dev, 1)).unwrap();
    let mut opt = Adam::new(model.parameters(), 3e-3);
    let mut losses = vec![];
    for epoch in 0..EPOCHS {
        for (x, y) in data
            .train()
            .take(32)
            .shuffled(epoch as u64)
            .batches(8)
            .on(&dev)
        {
            let step = losses.len();
            let before = dev.stats();
            let loss = model.forward(&x).cross_entropy(&y);
            opt.step(&loss.backward()).unwrap();
            let after = dev.stats();
            if step >= 1 {
                assert_eq!(
                    after.submissions - before.submissions,
                    1,
                    "step {step}: {after}"
                );
                assert_eq!(
                    after.plans_compiled, before.plans_compiled,
                    "step {step}: {after}"
                );
                assert_eq!(
                    after.pipelines_created, before.pipelines_created,
                    "step {step}: {after}"
                );
                assert_eq!(
                    after.buffers_allocated, before.buffers_allocated,
                    "step {step}: {after}"
                );
            }
            losses.push(loss.item::<f32>().unwrap());
        }
    }
    // The same 32 images in the first and the last epoch.
    let epoch_mean = |e: usize| losses[e * 4..e * 4 + 4].iter().sum::<f32>() / 4.0;
    let (first, last) = (epoch_mean(0), epoch_mean(EPOCHS - 1));
    println!("resnet20 mean loss: first epoch {first:.3}, last epoch {last:.3}; {losses:?}");
    assert!(
        first > 1.9,
        "an untrained network is near ln 10 = 2.3: {losses:?}"
    );
    assert!(last < 0.4 * first, "{losses:?}");
    let tracked = model.bn1.num_batches_tracked.as_ref().unwrap();
    assert_eq!(tracked.to_vec::<i32>().unwrap(), vec![(EPOCHS * 4) as i32]);
}
