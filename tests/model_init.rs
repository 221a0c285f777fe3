//! A model's initial parameters depend only on its seed and the parameters' names: each is drawn
//! with the seed `nn::name_seed(model seed, full name)` by the `ParamBuilder` handed down the
//! model. So a layer inserted into a model leaves every other parameter bit for bit as it was,
//! the same seed gives the same model, and another seed another one. On the CPU reference
//! executor (the builder is the same on every device; the random numbers are tested elsewhere).

use kiln::models::{AlexNet, LeNet5, ResNet, ShortcutKind};
use kiln::nn::{name_seed, Conv2d, Init, Linear, Module, ParamBuilder};
use kiln::prelude::*;

/// Every tensor of `model`'s `state_dict` as bits, by name.
fn bits(model: &dyn Module) -> Vec<(String, Vec<u32>)> {
    model
        .state_dict()
        .into_iter()
        .map(|(name, t)| {
            let v = t.cast(DType::F32).to_vec::<f32>().unwrap();
            (name, v.iter().map(|x| x.to_bits()).collect())
        })
        .collect()
}

/// Asserts that every tensor of `small` is in `large` under its name, bit for bit; returns how
/// many there were.
#[track_caller]
fn assert_contained(small: &dyn Module, large: &dyn Module) -> usize {
    let large = bits(large);
    let small = bits(small);
    for (name, values) in &small {
        let (_, other) = large
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is missing from the larger model"));
        assert!(other == values, "{name} changed");
    }
    small.len()
}

/// A model of two layers, with or without an unused layer created between them (and listed
/// first, as the stem of a model would be).
struct TwoLayers {
    extra: Option<Linear>,
    conv1: Conv2d,
    fc: Linear,
}

impl TwoLayers {
    fn new(extra: bool, pb: &ParamBuilder) -> TwoLayers {
        let conv1 = Conv2d::new(1, 4, 3, Conv2dOptions::default(), &pb.pp("conv1"));
        let extra = extra.then(|| Linear::new(7, 5, &pb.pp("extra")));
        let fc = Linear::new(16, 10, &pb.pp("fc"));
        TwoLayers { extra, conv1, fc }
    }
}

impl Module for TwoLayers {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.fc.forward(&self.conv1.forward(x).flatten(1, 3))
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        let mut v: Vec<(String, &dyn Module)> = vec![];
        if let Some(extra) = &self.extra {
            v.push(("extra".into(), extra));
        }
        v.push(("conv1".into(), &self.conv1));
        v.push(("fc".into(), &self.fc));
        v
    }
}

#[test]
fn inserting_an_unused_layer_leaves_every_other_parameter_bit_identical() {
    let pb = ParamBuilder::new(&Device::cpu(), 3);
    let plain = TwoLayers::new(false, &pb);
    let with_extra = TwoLayers::new(true, &pb);
    assert_eq!(with_extra.state_dict().len(), 6);
    assert_eq!(assert_contained(&plain, &with_extra), 4);
}

#[test]
fn a_resnet_with_more_blocks_keeps_the_parameters_of_the_smaller_one() {
    // ResNet-32 inserts blocks 3 and 4 into every stage: layer2 and layer3 come after them, and
    // every tensor ResNet-20 has is still there with the same values.
    let pb = ParamBuilder::new(&Device::cpu(), 11);
    let r20 = ResNet::resnet20(1, 10, &pb).unwrap();
    let r32 = ResNet::resnet32(1, 10, &pb).unwrap();
    assert_eq!(assert_contained(&r20, &r32), r20.state_dict().len());
    // The same with projection shortcuts (`downsample.0.weight`).
    let b20 = ResNet::cifar(3, 1, 10, ShortcutKind::Projection, &pb).unwrap();
    let b32 = ResNet::cifar(5, 1, 10, ShortcutKind::Projection, &pb).unwrap();
    assert!(b20
        .state_dict()
        .iter()
        .any(|(n, _)| n.contains("downsample.0")));
    assert_eq!(assert_contained(&b20, &b32), b20.state_dict().len());
}

#[test]
fn the_small_alexnet_keeps_its_classifier_when_lrn_layers_are_inserted() {
    // The LRN layers shift the later features' positions (their names change, so their values
    // do), but the first convolution and the classifier keep their names and values.
    let pb = ParamBuilder::new(&Device::cpu(), 5);
    let plain = bits(&AlexNet::small(1, 10, false, &pb).unwrap());
    let lrn = bits(&AlexNet::small(1, 10, true, &pb).unwrap());
    let kept: Vec<&str> = plain
        .iter()
        .filter(|(n, _)| n.starts_with("classifier.") || n.starts_with("features.0."))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(kept.len(), 8);
    for name in kept {
        let value = |v: &[(String, Vec<u32>)]| v.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert!(value(&plain) == value(&lrn), "{name} changed");
    }
}

#[test]
fn the_same_seed_gives_the_same_model_and_another_seed_another() {
    let cpu = Device::cpu();
    let a = bits(&LeNet5::new(&ParamBuilder::new(&cpu, 42)));
    let b = bits(&LeNet5::new(&ParamBuilder::new(&cpu, 42)));
    let c = bits(&LeNet5::new(&ParamBuilder::new(&cpu, 43)));
    assert_eq!(a.len(), 10);
    assert!(a == b);
    for ((name, x), (_, y)) in a.iter().zip(&c) {
        let same = x.iter().zip(y).filter(|(p, q)| p == q).count();
        assert!(same * 100 < x.len(), "{name}: {same} of {} equal", x.len());
    }
}

#[test]
fn a_parameter_is_the_initialiser_drawn_with_the_seed_of_its_name() {
    let cpu = Device::cpu();
    let seed = 42;
    let net = LeNet5::new(&ParamBuilder::new(&cpu, seed));
    let to_bits = |t: &Tensor| -> Vec<u32> {
        t.to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    };
    // PyTorch's default initialisation, seeded by the full name.
    let want = Init::KaimingUniformDefault.tensor(&[120, 400], name_seed(seed, "fc1.weight"), &cpu);
    assert_eq!(to_bits(&net.fc1.weight), to_bits(&want));
    let bias = Init::BiasDefault { fan_in: 84 }.tensor(&[10], name_seed(seed, "fc3.bias"), &cpu);
    assert_eq!(to_bits(net.fc3.bias.as_ref().unwrap()), to_bits(&bias));
    // A layer built alone under the same name and seed is the model's layer.
    let alone = Linear::new(120, 84, &ParamBuilder::new(&cpu, seed).pp("fc2"));
    assert_eq!(to_bits(&alone.weight), to_bits(&net.fc2.weight));
    assert_eq!(
        to_bits(alone.bias.as_ref().unwrap()),
        to_bits(net.fc2.bias.as_ref().unwrap())
    );
    // ResNet's convolutions: Kaiming normal (fan-out), seeded by the full name.
    let r20 = ResNet::resnet20(1, 10, &ParamBuilder::new(&cpu, seed)).unwrap();
    let name = "layer2.0.conv1.weight";
    let (_, got) = r20
        .named_parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap();
    let want = Init::KaimingNormalFanOut.tensor(&[32, 16, 3, 3], name_seed(seed, name), &cpu);
    assert_eq!(to_bits(&got), to_bits(&want));
}
