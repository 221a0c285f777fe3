//! ONNX export (issue 16, part 6): LeNet-5, ResNet-20, a ResNet with projection shortcuts, the
//! small AlexNet (with LRN) and a chain of kiln-core's other layers, after a training step (so
//! that batch-norm scales, shifts and running statistics are not the identity), exported with
//! `kiln::onnx` and run by onnxruntime give kiln's logits (1e-4), and the file passes the ONNX
//! checker. onnxruntime runs in Python (`tests/onnx/run_onnx.py`); where python3, `onnx` or
//! `onnxruntime` is missing the comparison is skipped with one line saying so, and the checks in
//! Rust still run: the file decoded back with prost has the expected nodes, every parameter and
//! running statistic as an initializer with its `state_dict` name, shape and values, and a
//! symbolic batch dimension.

mod common;
use common::*;
use kiln::models::{AlexNet, LeNet5, ResNet, ShortcutKind};
use kiln::nn::{
    Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, BatchNormOptions, Conv2d,
    ConvTranspose2d, Flatten, Linear, LocalResponseNorm, MaxPool2d, Maxout, Module, ParamBuilder,
    Sequential,
};
use kiln::onnx::proto::{tensor_shape_proto::dimension::Value as Dim, type_proto, ModelProto};
use kiln::optim::{Adam, Optimizer};
use kiln::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Largest difference allowed between kiln's logits and onnxruntime's.
const TOLERANCE: f32 = 1e-4;

/// Batch size of the comparison; the file is exported for batch 1, so this also checks that the
/// batch dimension is dynamic.
const BATCH: usize = 3;

/// One small Adam step on random images and labels in training mode (every parameter moves,
/// and the batch norms' running statistics are updated from the batch), then batch-norm scales
/// and shifts set to random values (the step moves them by only 1e-3 from 1 and 0), then
/// evaluation mode.
fn train_one_step(model: &dyn Module, sample: &[usize], classes: usize, dev: &Device) {
    let shape = [&[8], sample].concat();
    let x = Tensor::from_vec(values(shape.iter().product(), 11), shape, dev).unwrap();
    let labels: Vec<i32> = (0..8).map(|i| (i * 7 % classes) as i32).collect();
    let y = Tensor::from_vec(labels, [8], dev).unwrap();
    model.set_training(true);
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let loss = model.forward(&x).cross_entropy(&y);
    opt.step(&loss.backward()).unwrap();
    model.set_training(false);

    let state = model.state_dict();
    let is_bn = |name: &str| {
        let prefix = name.rsplit_once('.').map_or("", |(p, _)| p);
        state
            .iter()
            .any(|(n, _)| *n == format!("{prefix}.running_mean"))
    };
    let perturbed: Vec<(String, Tensor)> = state
        .iter()
        .enumerate()
        .map(|(i, (name, t))| {
            let t = match name.rsplit('.').next() {
                Some("weight") if is_bn(name) => random_like(t, 1.0, i),
                Some("bias") if is_bn(name) => random_like(t, 0.0, i),
                _ => t.clone(),
            };
            (name.clone(), t)
        })
        .collect();
    kiln::nn::load_state_dict(model, &perturbed).unwrap();
}

/// Values `centre + [-0.5, 0.5)` of `t`'s shape on its device.
fn random_like(t: &Tensor, centre: f32, seed: usize) -> Tensor {
    let v = values(t.numel(), 100 + seed as u64);
    let v = v.iter().map(|x| centre + x / 2.0).collect();
    Tensor::from_vec(v, t.dims().to_vec(), t.device()).unwrap()
}

/// Node counts by operator.
fn op_counts(m: &ModelProto) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for n in &m.graph.as_ref().unwrap().node {
        *counts.entry(n.op_type().to_string()).or_insert(0) += 1;
    }
    counts
}

/// The dimensions of a graph input or output: `None` for a symbolic one.
fn dims(v: &kiln::onnx::proto::ValueInfoProto) -> Vec<Option<i64>> {
    let Some(type_proto::Value::TensorType(t)) = &v.r#type.as_ref().unwrap().value else {
        panic!("{} is not a tensor", v.name());
    };
    let shape = t.shape.as_ref().unwrap();
    shape
        .dim
        .iter()
        .map(|d| match d.value.as_ref().unwrap() {
            Dim::DimValue(v) => Some(*v),
            Dim::DimParam(_) => None,
        })
        .collect()
}

/// The checks that need no Python: the header, the input and output, the operators, and every
/// `state_dict` tensor (but `num_batches_tracked`) as an initializer with its values.
fn check_file(m: &ModelProto, model: &dyn Module, sample: &[usize], classes: usize) {
    assert_eq!(m.ir_version(), 7);
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(m.opset_import[0].version(), 13);
    let g = m.graph.as_ref().unwrap();
    let sample: Vec<Option<i64>> = sample.iter().map(|&d| Some(d as i64)).collect();
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.input[0].name(), "input");
    assert_eq!(dims(&g.input[0]), [&[None], &sample[..]].concat());
    assert_eq!(g.output[0].name(), "logits");
    assert_eq!(dims(&g.output[0]), [None, Some(classes as i64)]);
    let inits: BTreeMap<&str, _> = g.initializer.iter().map(|t| (t.name(), t)).collect();
    let mut checked = 0;
    for (name, tensor) in model.state_dict() {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let init = inits
            .get(name.as_str())
            .unwrap_or_else(|| panic!("no initializer {name}"));
        let want: Vec<i64> = tensor.dims().iter().map(|&d| d as i64).collect();
        assert_eq!(init.dims, want, "{name}");
        assert_eq!(init.float_data, tensor.to_vec::<f32>().unwrap(), "{name}");
        checked += 1;
    }
    assert!(checked > 0);
}

/// Runs the exported file in onnxruntime on `x` (through `tests/onnx/run_onnx.py`) and returns
/// its logits, or `None` (with one line saying why) where python3, onnx or onnxruntime is
/// missing. Any other failure of the script, the ONNX checker's included, fails the test.
fn onnxruntime(dir: &Path, model: &Path, x: &[f32], shape: &[usize]) -> Option<Vec<f32>> {
    let (input, output) = (dir.join("input.f32"), dir.join("ort_logits.f32"));
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onnx/run_onnx.py");
    let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let run = Command::new("python3")
        .arg(script)
        .arg(model)
        .arg(&input)
        .arg(shape.join(","))
        .arg(&output)
        .output();
    let out = match run {
        Ok(out) => out,
        Err(e) => {
            println!("onnx_export: skipped the onnxruntime comparison: cannot run python3 ({e})");
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(3) {
        println!(
            "onnx_export: skipped the onnxruntime comparison: {} \
             (python3 -m pip install onnxruntime onnx)",
            stdout.trim()
        );
        return None;
    }
    assert!(
        out.status.success(),
        "run_onnx.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{stdout}");
    let raw = std::fs::read(&output).unwrap();
    Some(
        raw.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
    )
}

/// Exports `model` (trained one step, in evaluation mode) for inputs `[1, sample..]`, checks the
/// file in Rust, and compares kiln's logits `[BATCH, classes]` for a batch of [`BATCH`] with
/// onnxruntime's.
fn export_and_compare(
    name: &str,
    model: &dyn Module,
    sample: &[usize],
    classes: usize,
    ops: &[(&str, usize)],
) {
    let dev = gpu();
    train_one_step(model, sample, classes, &dev);
    if let Some(bn) = model
        .named_buffers()
        .iter()
        .find(|(n, _)| n.ends_with("running_var"))
    {
        let var = bn.1.to_vec::<f32>().unwrap();
        assert!(var.iter().all(|v| *v != 1.0), "{}: {var:?}", bn.0);
    }
    let dir = temp_dir(name);
    let path = dir.join(format!("{name}.onnx"));
    kiln::onnx::export(model, &[&[1], sample].concat(), &path).unwrap();
    let file = kiln::onnx::decode(&std::fs::read(&path).unwrap()).unwrap();
    check_file(&file, model, sample, classes);
    let want: BTreeMap<String, usize> = ops.iter().map(|&(o, n)| (o.to_string(), n)).collect();
    assert_eq!(op_counts(&file), want, "{name}");

    let shape = [&[BATCH], sample].concat();
    let x = values(shape.iter().product(), 5);
    let input = Tensor::from_vec(x.clone(), shape.clone(), &dev).unwrap();
    let logits = kiln::no_grad(|| model.forward(&input))
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(logits.len(), BATCH * classes);
    let Some(ort) = onnxruntime(&dir, &path, &x, &shape) else {
        return;
    };
    assert_eq!(ort.len(), logits.len(), "{name}: onnxruntime's logits");
    let diff = logits
        .iter()
        .zip(&ort)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = logits.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    println!(
        "onnx_export: {name}: max |kiln - onnxruntime| = {diff:.3e} (logits up to {scale:.3})"
    );
    assert!(
        diff <= TOLERANCE,
        "{name}: kiln and onnxruntime differ by {diff} (kiln {logits:?}, onnxruntime {ort:?})"
    );
}

#[test]
fn lenet5_gives_kilns_logits_in_onnxruntime() {
    let model = LeNet5::new(&ParamBuilder::new(&gpu(), 3));
    let ops = [
        ("Conv", 2),
        ("Relu", 4),
        ("MaxPool", 2),
        ("Flatten", 1),
        ("Gemm", 3),
    ];
    export_and_compare("lenet5", &model, &[1, 28, 28], 10, &ops);
}

#[test]
fn resnet20_gives_kilns_logits_in_onnxruntime() {
    let model = ResNet::resnet20(3, 10, &ParamBuilder::new(&gpu(), 4)).unwrap();
    // 19 convolutions, each with a batch norm; a ReLU after the stem and two per block; the two
    // option-A shortcuts as a strided slice and a channel pad.
    let ops = [
        ("Conv", 19),
        ("BatchNormalization", 19),
        ("Relu", 19),
        ("Add", 9),
        ("Slice", 2),
        ("Pad", 2),
        ("GlobalAveragePool", 1),
        ("Flatten", 1),
        ("Gemm", 1),
    ];
    export_and_compare("resnet20", &model, &[3, 32, 32], 10, &ops);
}

#[test]
fn a_resnet_with_projection_shortcuts_gives_kilns_logits_in_onnxruntime() {
    let pb = ParamBuilder::new(&gpu(), 7);
    let model = ResNet::cifar(1, 3, 10, ShortcutKind::Projection, &pb).unwrap();
    // One block per stage; the last two stages' shortcuts are a 1x1 convolution and a batch norm
    // (`layer2.0.downsample.0`, `.1`).
    let ops = [
        ("Conv", 9),
        ("BatchNormalization", 9),
        ("Relu", 7),
        ("Add", 3),
        ("GlobalAveragePool", 1),
        ("Flatten", 1),
        ("Gemm", 1),
    ];
    export_and_compare("resnet8_projection", &model, &[3, 16, 16], 10, &ops);
}

#[test]
fn alexnet_with_local_response_norm_gives_kilns_logits_in_onnxruntime() {
    let model = AlexNet::small(1, 10, true, &ParamBuilder::new(&gpu(), 5)).unwrap();
    // Dropout is the identity at inference and adds no node.
    let ops = [
        ("Conv", 5),
        ("Relu", 7),
        ("LRN", 2),
        ("MaxPool", 2),
        ("AveragePool", 1),
        ("Flatten", 1),
        ("Gemm", 3),
    ];
    export_and_compare("alexnet_small", &model, &[1, 28, 28], 10, &ops);
}

#[test]
fn kiln_cores_other_layers_give_kilns_values_in_onnxruntime() {
    let pb = ParamBuilder::new(&gpu(), 6);
    let dilated_same = Conv2dOptions::default().dilation(2).same();
    let grouped = Conv2dOptions::default().groups(2).stride(2).padding(1);
    let up = ConvTranspose2dOptions::default()
        .stride(2)
        .padding(1)
        .output_padding(1);
    let mut avg = Pool2dOptions::new(3).stride(2).padding(1);
    avg.count_include_pad = false;
    let model = Sequential::new()
        .push(Conv2d::new(2, 4, 3, dilated_same, &pb.pp(0))) // [4, 9, 9]
        .push(BatchNorm2d::new(4, &pb.pp(1)))
        .push(Activation::LeakyRelu(0.1))
        .push(Conv2d::new(4, 4, 3, grouped, &pb.pp(3))) // [4, 5, 5]
        .push(Activation::Elu(1.0))
        .push(ConvTranspose2d::new(4, 3, 3, up, &pb.pp(5))) // [3, 10, 10]
        .push(Activation::Gelu)
        .push(AvgPool2d::with(avg)) // [3, 5, 5]
        .push(MaxPool2d::with(Pool2dOptions::new(2).stride(1).dilation(2))) // [3, 3, 3]
        .push(Activation::Softmax) // over the channels
        .push(Activation::Tanh)
        .push(Flatten)
        .push(Linear::new(27, 16, &pb.pp(12)))
        .push(Activation::Sigmoid)
        .push(BatchNorm1d::new(16, &pb.pp(14)))
        .push(Maxout::new(16, 6, 2, &pb.pp(15)));
    let ops = [
        ("Conv", 2),
        ("BatchNormalization", 2),
        ("LeakyRelu", 1),
        ("Elu", 1),
        ("ConvTranspose", 1),
        // GELU: x (1 + erf(x / sqrt 2)) / 2
        ("Div", 1),
        ("Erf", 1),
        ("Add", 1),
        ("Mul", 2),
        ("AveragePool", 1),
        ("MaxPool", 1),
        ("Tanh", 1),
        ("Flatten", 1),
        ("Gemm", 2),
        ("Sigmoid", 1),
        ("Reshape", 1),
        ("ReduceMax", 1),
        ("Softmax", 1),
    ];
    export_and_compare("layers", &model, &[2, 9, 9], 6, &ops);
}

/// A layer kiln-onnx knows nothing about.
struct Doubler;

impl Module for Doubler {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.mul_scalar(2.0)
    }
}

#[test]
fn a_layer_without_an_export_is_an_error_naming_it_and_its_place() {
    let pb = ParamBuilder::new(&Device::cpu(), 0);
    let inner = Sequential::new().named("double", Doubler);
    let model = Sequential::new()
        .push(Linear::new(4, 3, &pb.pp(0)))
        .named("head", inner);
    let err = kiln::onnx::to_bytes(&model, &[1, 4])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Doubler"), "{err}");
    assert!(err.contains("`head.double`"), "{err}");
    assert!(err.contains("no ONNX export"), "{err}");
}

#[test]
fn what_onnx_cannot_express_is_an_error_that_says_why() {
    let pb = ParamBuilder::new(&Device::cpu(), 0);
    // Windows of different sizes: 7 rows pooled to 2.
    let pool = Sequential::new().push(AdaptiveAvgPool2d::new([2, 2]));
    let err = kiln::onnx::to_bytes(&pool, &[1, 1, 7, 7])
        .unwrap_err()
        .to_string();
    assert!(err.contains("AdaptiveAvgPool2d at `0`"), "{err}");
    assert!(err.contains("7x7 to 2x2"), "{err}");
    // A batch norm without running statistics normalises with each batch's own.
    let opts = BatchNormOptions::default().track_running_stats(false);
    let bn = Sequential::new()
        .push(Conv2d::new(1, 2, 3, Default::default(), &pb.pp(0)))
        .push(BatchNorm2d::with(2, opts, &pb.pp(1)));
    let err = kiln::onnx::to_bytes(&bn, &[1, 1, 5, 5])
        .unwrap_err()
        .to_string();
    assert!(err.contains("running statistics"), "{err}");
    // Inputs that kiln's forward would reject too: channels, and images smaller than a window.
    let lenet = LeNet5::new(&pb);
    let err = kiln::onnx::to_bytes(&lenet, &[1, 3, 28, 28])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Conv2d at `conv1`: expects 1 input channels"),
        "{err}"
    );
    let err = kiln::onnx::to_bytes(&lenet, &[1, 1, 8, 8])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Conv2d at `conv2`"), "{err}");
    assert!(err.contains("does not fit the input [1, 6, 4, 4]"), "{err}");
    // ONNX's LRN centres an even window one channel off PyTorch's.
    let lrn = Sequential::new().push(LocalResponseNorm::new(4));
    let err = kiln::onnx::to_bytes(&lrn, &[1, 6, 2, 2])
        .unwrap_err()
        .to_string();
    assert!(err.contains("size 4 is even"), "{err}");
    // No input dimensions.
    assert!(kiln::onnx::to_bytes(&bn, &[]).is_err());
    // A file that cannot be written names itself.
    let dir = temp_dir("unwritable");
    let target = dir.join("no-such-dir").join("model.onnx");
    let lin = Linear::new(4, 3, &pb);
    let err = kiln::onnx::export(&lin, &[1, 4], &target)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-dir"), "{err}");
}
