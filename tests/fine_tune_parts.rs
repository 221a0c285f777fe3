//! The parts of fine-tuning (issue 16, part 4) on the CPU: a `state_dict` whose head does not
//! fit loads with the head skipped and is refused (naming the head) without; replaced heads are
//! those of a model built for the new class count; parameter groups step at their own learning
//! rates, keep the optimisers' checkpoint names, and schedules scale each from its own base.

mod common;
use common::*;
use kiln::models::{by_name, AlexNet, FineTune, LeNet5, ResNet};
use kiln::nn::{
    load_state_dict, load_state_dict_except, load_state_dict_with, load_weights, load_weights_with,
    save_weights, LoadOptions, Module, ParamBuilder,
};
use kiln::optim::{Adam, Optimizer, ParamGroup, Schedule, Sgd};
use kiln::prelude::*;

/// The values of `model`'s tensors whose names start with `prefix`, by name.
fn values_under(model: &dyn Module, prefix: &str) -> Vec<(String, Vec<f64>)> {
    model
        .state_dict()
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(n, t)| (n, t.to_f64_vec().unwrap()))
        .collect()
}

#[test]
fn a_state_dict_with_another_head_loads_with_the_head_skipped_and_is_refused_without() {
    let cpu = Device::cpu();
    let pretrained = LeNet5::new(&ParamBuilder::new(&cpu, 1)); // 10 classes
    let values = pretrained.state_dict();
    let fresh = || LeNet5::with_channels(1, 5, &ParamBuilder::new(&cpu, 2)).unwrap();

    // Without the option: an error naming the head's tensors and both shapes; nothing loaded.
    let net = fresh();
    let err = load_state_dict(&net, &values).unwrap_err().to_string();
    for part in [
        "2 mismatched",
        "\"fc3.weight\" is f32 [5, 84] in the model but f32 [10, 84] in the values",
        "\"fc3.bias\" is f32 [5] in the model but f32 [10] in the values",
        "LoadOptions::new().skip(&[\"fc3.\"])",
    ] {
        assert!(err.contains(part), "{part:?} not in: {err}");
    }
    assert_eq!(values_under(&net, ""), values_under(&fresh(), ""));

    // With it: everything but the head loads; the head keeps its own values.
    let report = load_state_dict_except(&net, &values, &[&net.head_prefix()]).unwrap();
    assert_eq!(report.loaded.len(), 8);
    assert_eq!(report.kept, ["fc3.weight", "fc3.bias"]);
    assert_eq!(report.ignored, ["fc3.weight", "fc3.bias"]);
    assert_eq!(
        values_under(&net, "conv"),
        values_under(&pretrained, "conv")
    );
    assert_eq!(
        values_under(&net, "fc2."),
        values_under(&pretrained, "fc2.")
    );
    assert_eq!(values_under(&net, "fc3."), values_under(&fresh(), "fc3."));

    // The same through a safetensors file; the plain load's error names the file.
    let dir = temp_dir("fine_tune_head");
    let path = dir.join("lenet5.safetensors");
    save_weights(&pretrained, &path).unwrap();
    let net = fresh();
    let err = load_weights(&net, &path).unwrap_err().to_string();
    assert!(
        err.contains("lenet5.safetensors") && err.contains("fc3.weight"),
        "{err}"
    );
    load_weights_with(&net, &path, &LoadOptions::new().skip(&["fc3."])).unwrap();
    assert_eq!(
        values_under(&net, "fc1."),
        values_under(&pretrained, "fc1.")
    );
}

#[test]
fn a_non_strict_load_lists_what_it_left_out_but_still_refuses_other_shapes() {
    let cpu = Device::cpu();
    let source = LeNet5::new(&ParamBuilder::new(&cpu, 1));
    let mut values: Vec<(String, Tensor)> = source
        .state_dict()
        .into_iter()
        .filter(|(n, _)| n != "conv1.bias")
        .collect();
    values.push(("extra.weight".into(), Tensor::zeros([3], &cpu)));
    let net = LeNet5::with_channels(1, 5, &ParamBuilder::new(&cpu, 2)).unwrap();
    let loose = LoadOptions::new().strict(false);

    // fc3 does not fit: refused even when not strict, as in PyTorch.
    let err = load_state_dict_with(&net, &values, &loose).unwrap_err();
    assert!(
        err.to_string().contains("\"fc3.weight\" is f32 [5, 84]"),
        "{err}"
    );

    let report = load_state_dict_with(&net, &values, &loose.skip(&["fc3."])).unwrap();
    assert_eq!(report.kept, ["conv1.bias", "fc3.weight", "fc3.bias"]);
    assert_eq!(report.ignored, ["fc3.weight", "fc3.bias", "extra.weight"]);
    assert_eq!(report.loaded.len(), 7);
    // Strict, the same values are refused for the missing and the unexpected tensor.
    let err = load_state_dict_except(&net, &values, &["fc3."])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 missing, 1 unexpected, 0 mismatched"),
        "{err}"
    );
}

#[test]
fn a_replaced_head_is_that_of_the_model_built_for_the_new_class_count() {
    let cpu = Device::cpu();
    let pb = ParamBuilder::new(&cpu, 3);
    type Build = fn(usize, &ParamBuilder) -> Box<dyn FineTune>;
    let models: [(&str, Build); 3] = [
        ("fc3", |c, pb| {
            Box::new(LeNet5::with_channels(1, c, pb).unwrap())
        }),
        ("fc", |c, pb| Box::new(ResNet::resnet20(1, c, pb).unwrap())),
        ("classifier.6", |c, pb| {
            Box::new(AlexNet::small(1, c, false, pb).unwrap())
        }),
    ];
    for (head, build) in models {
        let mut net = build(10, &pb);
        let names: Vec<String> = net.state_dict().into_iter().map(|(n, _)| n).collect();
        let prefix = format!("{head}.");
        let backbone_before: Vec<_> = values_under(net.as_ref(), "")
            .into_iter()
            .filter(|(n, _)| !n.starts_with(&prefix))
            .collect();
        assert_eq!((net.head_name(), net.classes()), (head, 10));

        net.replace_head(4, &pb).unwrap();
        assert_eq!(net.classes(), 4);
        let after: Vec<String> = net.state_dict().into_iter().map(|(n, _)| n).collect();
        assert_eq!(after, names, "{head}: the same names in the same order");
        assert_eq!(
            values_under(net.as_ref(), &prefix),
            values_under(build(4, &pb).as_ref(), &prefix),
            "{head}: the new head is drawn as the 4-class model's"
        );
        let backbone_after: Vec<_> = values_under(net.as_ref(), "")
            .into_iter()
            .filter(|(n, _)| !n.starts_with(&prefix))
            .collect();
        assert!(
            backbone_after == backbone_before,
            "{head}: the backbone kept its values"
        );
        net.set_training(false);
        let x = Tensor::from_slice(&values(2 * 28 * 28, 4), [2, 1, 28, 28], &cpu).unwrap();
        assert_eq!(net.forward(&x).dims(), &[2, 4]);
    }
    // by_name's models can have their heads replaced too.
    let mut net = by_name("resnet20", 1, 10, &pb).unwrap();
    net.replace_head(3, &pb).unwrap();
    assert_eq!((net.head_prefix(), net.classes()), ("fc.".to_string(), 3));
    // A builder on another device than the model's is refused, and the head is kept.
    let err = net
        .replace_head(7, &ParamBuilder::new(&gpu(), 3))
        .unwrap_err();
    assert!(err.to_string().contains("lives on"), "{err}");
    assert_eq!(net.classes(), 3);
}

/// Two parameters `a = [1, 2]` and `b = [3]` on the CPU and the gradients of
/// `sum(a * [1, -1]) + 2 sum(b)`: `[1, -1]` and `[2]`.
fn two_parameters() -> (Tensor, Tensor, Gradients) {
    let cpu = Device::cpu();
    let a = Tensor::from_slice(&[1.0f32, 2.0], [2], &cpu).unwrap();
    let b = Tensor::from_slice(&[3.0f32], [1], &cpu).unwrap();
    a.set_requires_grad(true);
    b.set_requires_grad(true);
    let signs = Tensor::from_slice(&[1.0f32, -1.0], [2], &cpu).unwrap();
    let loss = a.mul(&signs).sum().add(&b.sum().mul_scalar(2.0));
    let grads = loss.backward();
    (a, b, grads)
}

#[track_caller]
fn assert_values(t: &Tensor, want: &[f32]) {
    let got = t.to_vec::<f32>().unwrap();
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

#[test]
fn sgd_and_adam_step_each_group_at_its_own_learning_rate() {
    // SGD: p -= lr g, with lr 0.1 for a and 0.01 for b.
    let (a, b, grads) = two_parameters();
    let groups = vec![
        ParamGroup::new(vec![a.clone()], 0.1),
        ParamGroup::new(vec![b.clone()], 0.01),
    ];
    let mut sgd = Sgd::with_groups(groups).with_momentum(0.9, false);
    sgd.step(&grads).unwrap();
    assert_values(&a, &[0.9, 2.1]);
    assert_values(&b, &[2.98]);
    // The momentum buffers are numbered across the groups.
    let names: Vec<String> = sgd.state().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.momentum_buffer", "1.momentum_buffer", "step"]);

    // Adam's first step moves each parameter by its rate times g / (|g| + eps).
    let (a, b, grads) = two_parameters();
    let groups = vec![
        ParamGroup::new(vec![a.clone()], 0.1),
        ParamGroup::new(vec![b.clone()], 0.01),
    ];
    let mut adam = Adam::with_groups(groups);
    adam.step(&grads).unwrap();
    assert_values(&a, &[0.9, 2.1]);
    assert_values(&b, &[2.99]);
    let names: Vec<String> = adam.state().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "0.exp_avg",
            "0.exp_avg_sq",
            "1.exp_avg",
            "1.exp_avg_sq",
            "step"
        ]
    );

    // One group is the plain optimiser: the same names, the same values, and the state loads
    // into either.
    let (a2, b2, grads2) = two_parameters();
    let mut single = Adam::new(vec![a2.clone(), b2.clone()], 0.1);
    single.step(&grads2).unwrap();
    assert_values(&b2, &[2.9]);
    let state = single.state();
    let names: Vec<String> = state.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        names,
        [
            "0.exp_avg",
            "0.exp_avg_sq",
            "1.exp_avg",
            "1.exp_avg_sq",
            "step"
        ]
    );
    adam.load_state(&state).unwrap();
    assert_eq!(adam.steps(), 1);
}

#[test]
fn schedules_scale_every_group_from_its_own_base_rate() {
    let (a, b, _) = two_parameters();
    let mut opt = Adam::with_groups(vec![
        ParamGroup::new(vec![a], 0.1),
        ParamGroup::new(vec![b], 0.01),
    ]);
    let opt: &mut dyn Optimizer = &mut opt;
    let rates = |opt: &dyn Optimizer| -> Vec<f64> {
        (0..opt.num_groups())
            .map(|g| opt.group_learning_rate(g))
            .collect()
    };
    let close = |got: Vec<f64>, want: [f64; 2]| {
        assert!(
            got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-12),
            "{got:?} vs {want:?}"
        );
    };
    Schedule::Step {
        every: 2,
        gamma: 0.1,
    }
    .apply(opt, 2);
    close(rates(opt), [0.01, 0.001]);
    // Cosine's floor is shared, as PyTorch's eta_min: min + (base - min) / 2 half-way.
    Schedule::Cosine {
        total: 10,
        min_lr: 0.001,
    }
    .apply(opt, 5);
    close(rates(opt), [0.0505, 0.0055]);
    // set_learning_rate keeps the groups' ratio; set_group_learning_rate sets one group.
    opt.set_learning_rate(0.05);
    close(rates(opt), [0.05, 0.005]);
    opt.set_group_learning_rate(1, 0.5);
    close(rates(opt), [0.05, 0.5]);
    assert_eq!(opt.learning_rate(), 0.05);
    assert_eq!(
        (opt.base_learning_rate(0), opt.base_learning_rate(1)),
        (0.1, 0.01)
    );

    // A single-group optimiser under a schedule: the rate as before.
    let (a, _, _) = two_parameters();
    let mut sgd = Sgd::new(vec![a], 0.2);
    Schedule::Constant.apply(&mut sgd, 3);
    assert_eq!(sgd.learning_rate(), 0.2);
    sgd.set_learning_rate(0.03);
    assert_eq!((sgd.num_groups(), sgd.group_learning_rate(0)), (1, 0.03));
}
