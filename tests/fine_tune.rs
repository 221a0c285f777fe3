//! Fine-tuning (issue 16, part 4): a LeNet-5 trained on the digits 0-4 gets a new head for 5
//! classes and learns the digits 5-9 with a frozen backbone. The frozen parameters come out bit
//! for bit as they went in, and the step's plan computes no gradient for them: it dispatches
//! exactly the kernels of a step whose backbone ran without gradients at all.

mod common;
use common::*;
use kiln::data::{Mnist, Split};
use kiln::models::{FineTune, LeNet5};
use kiln::nn::{
    freeze, frozen_parameters, load_state_dict_except, split_parameters, trainable_parameters,
    MaxPool2d, Module, ParamBuilder,
};
use kiln::optim::{Adam, Optimizer, ParamGroup};
use kiln::prelude::*;

fn digits() -> Mnist {
    Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap()
}

/// The images of `split` whose digit is in `lo..lo + 5`, normalised as MNIST's batches are,
/// with labels `digit - lo` (0..5), in mini-batches of `batch` on `dev`.
fn batches_of(split: Split<'_>, lo: u8, batch: usize, dev: &Device) -> Vec<(Tensor, Tensor)> {
    let (mean, std) = (0.1307f32, 0.3081f32);
    let picked: Vec<usize> = (0..split.len())
        .filter(|&i| (lo..lo + 5).contains(&split.label(i)))
        .collect();
    picked
        .chunks(batch)
        .map(|chunk| {
            let images: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| split.image(i).iter())
                .map(|&p| (p as f32 / 255.0 - mean) / std)
                .collect();
            let labels: Vec<i32> = chunk
                .iter()
                .map(|&i| (split.label(i) - lo) as i32)
                .collect();
            let b = chunk.len();
            (
                Tensor::from_vec(images, [b, 1, 28, 28], dev).unwrap(),
                Tensor::from_vec(labels, [b], dev).unwrap(),
            )
        })
        .collect()
}

/// One training step; returns the gradients it used.
fn step(model: &dyn Module, opt: &mut dyn Optimizer, x: &Tensor, y: &Tensor) -> Gradients {
    let grads = model.forward(x).cross_entropy(y).backward();
    opt.step(&grads).unwrap();
    grads
}

/// The fraction of `batches` that `model` classifies correctly.
fn accuracy(model: &dyn Module, batches: &[(Tensor, Tensor)]) -> f64 {
    no_grad(|| {
        let (mut hits, mut total) = (0.0, 0);
        for (x, y) in batches {
            let right = model.forward(x).argmax(1).eq(y).cast(DType::F32).sum();
            hits += right.item::<f32>().unwrap() as f64;
            total += y.numel();
        }
        hits / total as f64
    })
}

/// The bits of every parameter of `model` whose name does not start with one of `trained`.
fn bits_except(model: &dyn Module, trained: &[&str]) -> Vec<(String, Vec<u32>)> {
    model
        .named_parameters()
        .into_iter()
        .filter(|(n, _)| !trained.iter().any(|t| n.starts_with(t)))
        .map(|(n, p)| {
            let v = p.to_vec::<f32>().unwrap();
            (n, v.into_iter().map(f32::to_bits).collect())
        })
        .collect()
}

/// Trains `model` for `epochs` on the digits 5-9 (labels 0..5) and returns its accuracy on the
/// held-out ones. Asserts that only the parameters under `trained` got gradients and that the
/// others kept every bit.
fn fine_tune(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    trained: &[&str],
    epochs: usize,
    data: &Mnist,
) -> f64 {
    let dev = model.parameters()[0].device().clone();
    let frozen = bits_except(model, trained);
    let with_gradients = model.parameters().len() - frozen.len();
    for _ in 0..epochs {
        for (x, y) in batches_of(data.train(), 5, 64, &dev) {
            assert_eq!(step(model, opt, &x, &y).len(), with_gradients);
        }
    }
    assert!(
        bits_except(model, trained) == frozen,
        "a frozen parameter changed"
    );
    accuracy(model, &batches_of(data.test(), 5, 500, &dev))
}

#[test]
fn frozen_parameters_stay_bit_identical_while_a_new_head_learns_the_other_five_digits() {
    let dev = gpu();
    let data = digits();
    let pb = ParamBuilder::new(&dev, 7);

    // Pretraining: a LeNet-5 for 10 classes, one epoch on the digits 0-4.
    let mut pretrained = LeNet5::new(&pb);
    let mut opt = Adam::new(pretrained.parameters(), 1e-3);
    for (x, y) in batches_of(data.train(), 0, 64, &dev) {
        step(&pretrained, &mut opt, &x, &y);
    }
    let base = accuracy(&pretrained, &batches_of(data.test(), 0, 500, &dev));
    println!("digits 0-4 after pretraining: {:.2}%", base * 100.0);
    assert!(base > 0.85, "pretraining reached {base}");

    // A: a 5-class LeNet-5 loads everything but the head; the rest is frozen; the head alone
    // learns (a linear probe of the features fc2 learned on the other digits).
    let probe = LeNet5::with_channels(1, 5, &ParamBuilder::new(&dev, 8)).unwrap();
    let report =
        load_state_dict_except(&probe, &pretrained.state_dict(), &[&probe.head_prefix()]).unwrap();
    assert_eq!(report.kept, ["fc3.weight", "fc3.bias"]);
    assert_eq!(probe.freeze_backbone().unwrap().len(), 8);
    let mut opt = Adam::new(probe.parameters(), 1e-2);
    let probed = fine_tune(&probe, &mut opt, &["fc3."], 2, &data);
    // The optimiser was given every parameter and kept state for fc3's alone (8 and 9).
    let state: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        state,
        [
            "8.exp_avg",
            "8.exp_avg_sq",
            "9.exp_avg",
            "9.exp_avg_sq",
            "step"
        ]
    );

    // B: the pretrained model's head replaced in place; the convolutions frozen; the
    // classifier fine-tuned, the new head at a higher learning rate than fc1 and fc2.
    pretrained.replace_head(5, &pb).unwrap();
    let frozen = freeze(&pretrained, &["conv"]).unwrap();
    assert_eq!(frozen.len(), 4);
    let (head, rest) = split_parameters(&pretrained, &["fc3."]).unwrap();
    let mut opt = Adam::with_groups(vec![
        ParamGroup::new(rest, 1e-3),
        ParamGroup::new(head, 3e-3),
    ]);
    let tuned = fine_tune(&pretrained, &mut opt, &["fc"], 2, &data);

    println!(
        "held-out digits 5-9 (chance 20%): {:.2}% with the head alone, {:.2}% with fc1-fc3",
        probed * 100.0,
        tuned * 100.0
    );
    // Measured on lavapipe: 54.2% and 88.4%.
    assert!(probed > 0.45, "the new head alone reached {probed}");
    assert!(tuned > 0.8, "the classifier reached {tuned}");
}

/// LeNet-5's forward pass with the backbone run without gradients (`no_grad`): a step on it has
/// no gradient of the backbone by construction.
fn forward_with_detached_backbone(net: &LeNet5, x: &Tensor) -> Tensor {
    let features = no_grad(|| {
        let pool = MaxPool2d::new(2);
        let x = pool.forward(&net.conv1.forward(x).relu());
        let x = pool.forward(&net.conv2.forward(&x).relu());
        let x = net.fc1.forward(&x.flatten(1, 3)).relu();
        net.fc2.forward(&x).relu()
    });
    net.fc3.forward(&features)
}

/// Dispatches of the third of three steps on one batch (the first two compile and upload).
fn dispatches_per_step(
    dev: &Device,
    opt: &mut dyn Optimizer,
    forward: impl Fn(&Tensor) -> Tensor,
) -> u64 {
    let data = digits();
    let (x, y) = batches_of(data.train(), 0, 64, dev).swap_remove(0);
    let mut per_step = vec![];
    for _ in 0..3 {
        let before = dev.stats().dispatches;
        let loss = forward(&x).cross_entropy(&y);
        opt.step(&loss.backward()).unwrap();
        per_step.push(dev.stats().dispatches - before);
    }
    per_step[2]
}

#[test]
fn a_frozen_backbone_step_dispatches_no_kernel_for_the_frozen_gradients() {
    let dev = fresh_gpu();
    let pb = ParamBuilder::new(&dev, 1);

    let full = LeNet5::new(&pb);
    let mut opt = Adam::new(full.parameters(), 1e-3);
    let unfrozen = dispatches_per_step(&dev, &mut opt, |x| full.forward(x));

    let frozen_net = LeNet5::new(&pb);
    frozen_net.freeze_backbone().unwrap();
    let mut opt = Adam::new(frozen_net.parameters(), 1e-3);
    let frozen = dispatches_per_step(&dev, &mut opt, |x| frozen_net.forward(x));

    let detached_net = LeNet5::new(&pb);
    let head = vec![
        detached_net.fc3.weight.clone(),
        detached_net.fc3.bias.clone().unwrap(),
    ];
    let mut opt = Adam::new(head, 1e-3);
    let detached = dispatches_per_step(&dev, &mut opt, |x| {
        forward_with_detached_backbone(&detached_net, x)
    });

    println!("dispatches per step: unfrozen {unfrozen}, frozen backbone {frozen}, backbone under no_grad {detached}");
    assert_eq!(
        frozen, detached,
        "a frozen backbone's step dispatches what a step without its gradients does"
    );
    assert!(
        frozen + 10 <= unfrozen,
        "the backbone's gradients and updates take kernels: {unfrozen} vs {frozen}"
    );
}

#[test]
fn freezing_and_unfreezing_by_prefix_round_trips() {
    let dev = Device::cpu();
    let net = LeNet5::new(&ParamBuilder::new(&dev, 3));
    let all = net.parameters().len();
    let x = Tensor::from_slice(&values(2 * 28 * 28, 1), [2, 1, 28, 28], &dev).unwrap();
    let y = Tensor::from_vec(vec![1i32, 4], [2], &dev).unwrap();
    let grads = |net: &LeNet5| net.forward(&x).cross_entropy(&y).backward();

    let frozen = freeze(&net, &["conv", "fc1."]).unwrap();
    assert_eq!(
        frozen,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "fc1.weight",
            "fc1.bias"
        ]
    );
    assert_eq!(trainable_parameters(&net).len(), all - 6);
    let g = grads(&net);
    assert_eq!(g.len(), all - 6);
    assert!(g.get(&net.conv1.weight).is_none());
    assert!(g.get(&net.fc2.weight).is_some());

    let unfrozen = kiln::nn::unfreeze(&net, &["conv2.", "fc1."]).unwrap();
    assert_eq!(unfrozen.len(), 4);
    assert_eq!(frozen_parameters(&net), ["conv1.weight", "conv1.bias"]);
    kiln::nn::unfreeze(&net, &[""]).unwrap();
    assert!(frozen_parameters(&net).is_empty());
    assert_eq!(grads(&net).len(), all);

    // A prefix that names nothing is an error that says so, and nothing changes.
    let err = freeze(&net, &["fc1.", "backbone."])
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"backbone.\""), "{err}");
    assert!(err.contains("conv1, conv2, fc1, fc2, fc3"), "{err}");
    assert!(frozen_parameters(&net).is_empty());
}

#[test]
fn a_frozen_batch_norm_still_updates_its_running_statistics_in_training_mode() {
    // As PyTorch: freezing stops gradients, not the running statistics; eval mode stops those.
    let dev = Device::cpu();
    let net = kiln::models::ResNet::resnet20(1, 10, &ParamBuilder::new(&dev, 0)).unwrap();
    net.freeze_backbone().unwrap();
    let mean = || {
        net.bn1
            .running_mean
            .as_ref()
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
    };
    let start = mean();
    let x = Tensor::from_slice(&values(2 * 28 * 28, 5), [2, 1, 28, 28], &dev).unwrap();
    let y = Tensor::from_vec(vec![3i32, 7], [2], &dev).unwrap();
    let mut opt = Adam::new(net.parameters(), 1e-3);
    opt.step(&net.forward(&x).cross_entropy(&y).backward())
        .unwrap();
    let trained = mean();
    assert_ne!(trained, start, "training mode updates the running mean");
    net.set_training(false);
    opt.step(&net.forward(&x).cross_entropy(&y).backward())
        .unwrap();
    assert_eq!(mean(), trained, "evaluation mode keeps it");
}
