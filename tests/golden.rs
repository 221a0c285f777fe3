//! Golden tests against PyTorch: `tests/fixtures/golden.safetensors`, written by
//! `tests/fixtures/make_golden.py` (torch 2.15, CPU, fixed seeds; see `tests/fixtures/README.md`),
//! holds PyTorch's weights, inputs and outputs. Kiln loads the weights with its own loaders
//! (`checkpoint::load`, `nn::load_state_dict`), runs the same inputs on the CPU reference executor
//! and on wgpu, and must reproduce:
//!
//! - LeNet-5's logits (`lenet5.*`, batch 4);
//! - the CIFAR ResNet-20's logits (option A shortcuts, 1 input channel, evaluation mode with
//!   non-trivial running statistics; `resnet20.*`, batch 2);
//! - one BatchNorm2d(3) step in training mode (`bn.*`): its output, the gradients of
//!   `sum(output * bn.output_weights)` with respect to the input, weight and bias, and the
//!   running mean and variance after the step.
//!
//! The measure is [`rel_err`]: the largest elementwise difference over the largest magnitude of
//! PyTorch's values, `max_i |kiln_i - torch_i| / max(max_i |torch_i|, 1e-30)` (a norm-wise,
//! infinity-norm relative error), which must stay below 1e-4.

mod common;
use common::*;
use kiln::checkpoint::{self, Checkpoint};
use kiln::models::{LeNet5, ResNet};
use kiln::nn::{load_state_dict, realize_pending_updates, BatchNorm2d, Module, ParamBuilder};
use kiln::prelude::*;

/// Largest accepted [`rel_err`].
const TOL: f64 = 1e-4;

/// The fixture, its tensors as host data on the CPU.
fn golden() -> Checkpoint {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/golden.safetensors"
    );
    let ck = checkpoint::load(path, &Device::cpu()).unwrap_or_else(|e| {
        panic!("{e}\nregenerate it with: python tests/fixtures/make_golden.py (see tests/fixtures/README.md)")
    });
    let made_by = ck.meta("made_by").unwrap_or_default();
    assert!(
        made_by.starts_with("tests/fixtures/make_golden.py"),
        "{made_by:?}"
    );
    ck
}

/// The fixture tensor `name`.
fn get(ck: &Checkpoint, name: &str) -> Tensor {
    ck.get(name)
        .unwrap_or_else(|| panic!("{name} missing from the golden fixture"))
        .clone()
}

/// The fixture tensor `name` on `dev`.
fn get_on(ck: &Checkpoint, name: &str, dev: &Device) -> Tensor {
    get(ck, name).to_device(dev).unwrap()
}

/// The fixture's tensors named `prefix.*` (without the inputs and outputs), renamed without the
/// prefix: the `state_dict` PyTorch saved.
fn state_dict_of(ck: &Checkpoint, prefix: &str) -> Vec<(String, Tensor)> {
    ck.tensors
        .iter()
        .filter_map(|(n, t)| Some((n.strip_prefix(prefix)?.strip_prefix('.')?, t)))
        .filter(|(n, _)| !matches!(*n, "input" | "logits"))
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect()
}

/// `max_i |got_i - want_i| / max(max_i |want_i|, 1e-30)`; the shapes must agree.
#[track_caller]
fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.dims(), want.dims(), "shapes differ");
    let g = got.to_f64_vec().unwrap();
    let w = want.to_f64_vec().unwrap();
    let diff = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let scale = w.iter().map(|b| b.abs()).fold(0.0, f64::max);
    diff / scale.max(1e-30)
}

/// Asserts [`rel_err`] `< TOL`, printing it either way.
#[track_caller]
fn assert_golden(what: &str, dev: &Device, got: &Tensor, want: &Tensor) {
    let e = rel_err(got, want);
    println!("{what} on {}: relative error {e:.2e}", dev.name());
    assert!(
        e < TOL,
        "{what} on {}: relative error {e:.3e} >= {TOL:e}",
        dev.name()
    );
    assert!(
        got.to_f64_vec().unwrap().iter().all(|v| v.is_finite()),
        "{what}: not finite"
    );
}

fn lenet5_matches_pytorch(dev: &Device) {
    let ck = golden();
    let net = LeNet5::new(&ParamBuilder::new(dev, 12345));
    let sd = state_dict_of(&ck, "lenet5");
    assert_eq!(sd.len(), 10, "conv1, conv2, fc1..fc3, weight and bias each");
    load_state_dict(&net, &sd).unwrap();
    let logits = net.forward(&get_on(&ck, "lenet5.input", dev));
    assert_golden("LeNet-5 logits", dev, &logits, &get(&ck, "lenet5.logits"));
}

fn resnet20_matches_pytorch(dev: &Device) {
    let ck = golden();
    let net = ResNet::resnet20(1, 10, &ParamBuilder::new(dev, 12345)).unwrap();
    let sd = state_dict_of(&ck, "resnet20");
    // Every name of the state dict loads, i64 counters included (as i32); nothing is left over.
    assert_eq!(sd.len(), net.state_dict().len());
    load_state_dict(&net, &sd).unwrap();
    let nbt = &net.bn1.num_batches_tracked;
    assert_eq!(nbt.as_ref().unwrap().to_vec::<i32>().unwrap(), vec![7]);
    net.set_training(false);
    let logits = net.forward(&get_on(&ck, "resnet20.input", dev));
    assert_golden(
        "ResNet-20 logits",
        dev,
        &logits,
        &get(&ck, "resnet20.logits"),
    );
}

fn batchnorm_training_step_matches_pytorch(dev: &Device) {
    let ck = golden();
    let bn = BatchNorm2d::new(3, &ParamBuilder::new(dev, 0));
    let values = vec![
        ("weight".to_string(), get(&ck, "bn.weight")),
        ("bias".to_string(), get(&ck, "bn.bias")),
        ("running_mean".into(), get(&ck, "bn.running_mean_before")),
        ("running_var".into(), get(&ck, "bn.running_var_before")),
        (
            "num_batches_tracked".into(),
            Tensor::full_dtype((), 0.0, DType::I32, dev),
        ),
    ];
    load_state_dict(&bn, &values).unwrap();
    assert_eq!(bn.is_training(), Some(true));
    let x = get_on(&ck, "bn.input", dev);
    let y = bn.forward(&x);
    // The script's loss: sum(y * w) with fixed weights w.
    let loss = y.mul(&get_on(&ck, "bn.output_weights", dev)).sum();
    let (w, b) = (bn.weight.clone().unwrap(), bn.bias.clone().unwrap());
    let grads = loss.grad_wrt(&[&x, &w, &b]);
    assert_golden("BatchNorm2d output", dev, &y, &get(&ck, "bn.output"));
    assert_golden(
        "BatchNorm2d grad input",
        dev,
        &grads[0],
        &get(&ck, "bn.grad_input"),
    );
    assert_golden(
        "BatchNorm2d grad weight",
        dev,
        &grads[1],
        &get(&ck, "bn.grad_weight"),
    );
    assert_golden(
        "BatchNorm2d grad bias",
        dev,
        &grads[2],
        &get(&ck, "bn.grad_bias"),
    );
    realize_pending_updates().unwrap();
    let (mean, var) = bn.running_stats().unwrap();
    assert_golden(
        "BatchNorm2d running mean",
        dev,
        &mean,
        &get(&ck, "bn.running_mean"),
    );
    assert_golden(
        "BatchNorm2d running var",
        dev,
        &var,
        &get(&ck, "bn.running_var"),
    );
    let nbt = bn.num_batches_tracked.as_ref().unwrap();
    assert_eq!(nbt.to_vec::<i32>().unwrap(), vec![1]);
}

#[test]
fn lenet5_logits_match_pytorch_on_cpu() {
    lenet5_matches_pytorch(&Device::cpu());
}

#[test]
fn lenet5_logits_match_pytorch_on_gpu() {
    lenet5_matches_pytorch(&gpu());
}

#[test]
fn resnet20_logits_match_pytorch_on_cpu() {
    resnet20_matches_pytorch(&Device::cpu());
}

#[test]
fn resnet20_logits_match_pytorch_on_gpu() {
    resnet20_matches_pytorch(&gpu());
}

#[test]
fn batchnorm_training_step_matches_pytorch_on_cpu() {
    batchnorm_training_step_matches_pytorch(&Device::cpu());
}

#[test]
fn batchnorm_training_step_matches_pytorch_on_gpu() {
    batchnorm_training_step_matches_pytorch(&gpu());
}

#[test]
fn the_measure_sees_a_wrong_value() {
    // The comparison is not vacuous: one element off by 2e-4 of the largest magnitude fails it.
    let dev = Device::cpu();
    let want = Tensor::from_slice(&[1.0f32, -2.0, 0.5], [3], &dev).unwrap();
    let got = Tensor::from_slice(&[1.0f32, -2.0, 0.5004], [3], &dev).unwrap();
    assert!(rel_err(&want, &want) == 0.0);
    assert!((rel_err(&got, &want) - 2e-4).abs() < 1e-6);
    assert!(rel_err(&got, &want) > TOL);
}
