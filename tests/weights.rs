//! Weights in and out of models: a model's `state_dict` (parameters and buffers) saved to a
//! safetensors file and loaded back, files laid out as PyTorch writes them (bf16, f16, f64, i64
//! counters) converted on load, and a file that does not fit the model refused with one error
//! naming every problem.

mod common;
use common::*;
use kiln::models::{ResNet, ShortcutKind};
use kiln::nn::{
    load_state_dict, load_weights, realize_pending_updates, save_weights, BatchNorm2d, Conv2d,
    Module, ParamBuilder, Sequential,
};
use kiln::prelude::*;

/// Every value of a state dict, as f64, by name.
fn values_of(model: &dyn Module) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    model
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.dims().to_vec(), t.to_f64_vec().unwrap()))
        .collect()
}

/// A ResNet-20 with projection shortcuts whose parameters and running statistics are not the
/// initial ones: two training-mode passes and a perturbation of every parameter.
fn trained_resnet(dev: &Device, seed: u64) -> ResNet {
    let net = ResNet::cifar(
        3,
        1,
        10,
        ShortcutKind::Projection,
        &ParamBuilder::new(dev, seed),
    )
    .unwrap();
    for s in 0..2 {
        let x = Tensor::from_slice(&values(2 * 28 * 28, s), [2, 1, 28, 28], dev).unwrap();
        net.forward(&x);
    }
    realize_pending_updates().unwrap();
    let moved: Vec<(String, Tensor)> = net
        .named_parameters()
        .into_iter()
        .map(|(n, p)| {
            let noise = Tensor::from_slice(&values(p.numel(), 7), p.dims(), dev).unwrap();
            (n, no_grad(|| p.add(&noise.mul_scalar(0.01))))
        })
        .collect();
    kiln::nn::load_parameters(&net, &moved).unwrap();
    net
}

#[test]
fn a_saved_state_dict_loads_back_into_a_fresh_model_on_either_device() {
    let cpu = Device::cpu();
    let d = temp_dir("roundtrip");
    let path = d.join("resnet20.safetensors");
    let net = trained_resnet(&cpu, 1);
    save_weights(&net, &path).unwrap();

    // The file holds the state dict: PyTorch's names, shapes and dtypes, and `format: pt`.
    let ck = kiln::checkpoint::load(&path, &cpu).unwrap();
    assert_eq!(ck.meta("format"), Some("pt"));
    let mut want: Vec<(String, Vec<usize>, DType)> = net
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.dims().to_vec(), t.dtype()))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<(String, Vec<usize>, DType)> = ck
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.dims().to_vec(), t.dtype()))
        .collect();
    assert_eq!(got, want);
    let nbt = ck.get("layer2.0.downsample.1.num_batches_tracked").unwrap();
    assert_eq!(
        (nbt.dims(), nbt.to_vec::<i32>().unwrap()),
        (&[][..], vec![2])
    );

    for dev in [cpu.clone(), gpu()] {
        let fresh = ResNet::cifar(
            3,
            1,
            10,
            ShortcutKind::Projection,
            &ParamBuilder::new(&dev, 99),
        )
        .unwrap();
        assert_ne!(values_of(&fresh), values_of(&net));
        load_weights(&fresh, &path).unwrap();
        assert_eq!(values_of(&fresh), values_of(&net));
    }
    // The loaded model computes what the saved one did.
    let fresh = ResNet::cifar(
        3,
        1,
        10,
        ShortcutKind::Projection,
        &ParamBuilder::new(&cpu, 5),
    )
    .unwrap();
    load_weights(&fresh, &path).unwrap();
    net.set_training(false);
    fresh.set_training(false);
    let x = Tensor::from_slice(&values(2 * 28 * 28, 3), [2, 1, 28, 28], &cpu).unwrap();
    assert_eq!(
        fresh.forward(&x).to_vec::<f32>().unwrap(),
        net.forward(&x).to_vec::<f32>().unwrap()
    );
}

#[test]
fn a_file_that_does_not_fit_is_refused_naming_every_problem_and_nothing_changes() {
    let dev = Device::cpu();
    let d = temp_dir("misfit");
    let net = trained_resnet(&dev, 2);
    let mut sd = net.state_dict();
    // One missing, one unexpected, one mis-shaped, one of a dtype that cannot convert.
    sd.retain(|(n, _)| n != "layer1.1.bn2.running_var");
    sd.push(("layer4.0.conv1.weight".into(), Tensor::zeros([3, 3], &dev)));
    for (n, t) in sd.iter_mut() {
        if n == "fc.weight" {
            *t = Tensor::zeros([10, 63], &dev);
        }
        if n == "bn1.running_mean" {
            *t = Tensor::full_dtype([16], 1.0, DType::I32, &dev);
        }
    }
    let path = d.join("misfit.safetensors");
    kiln::checkpoint::save(&path, &sd, &[]).unwrap();
    let target = ResNet::cifar(
        3,
        1,
        10,
        ShortcutKind::Projection,
        &ParamBuilder::new(&dev, 3),
    )
    .unwrap();
    let before = values_of(&target);
    let e = load_weights(&target, &path).unwrap_err().to_string();
    for part in [
        "misfit.safetensors",
        "1 missing",
        "\"layer1.1.bn2.running_var\"",
        "1 unexpected",
        "\"layer4.0.conv1.weight\"",
        "2 mismatched",
        "\"fc.weight\" is f32 [10, 64] in the model but f32 [10, 63]",
        "\"bn1.running_mean\" is f32 [16] in the model but i32 [16]",
    ] {
        assert!(e.contains(part), "{part:?} not in: {e}");
    }
    assert_eq!(values_of(&target), before, "nothing was loaded");
}

/// A safetensors file as Python writes one: the 8-byte header length, the JSON header, the data.
fn safetensors_file(entries: &[(&str, &str, &[usize], Vec<u8>)]) -> Vec<u8> {
    let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut data = vec![];
    for (name, dtype, shape, bytes) in entries {
        let start = data.len();
        data.extend_from_slice(bytes);
        header += &format!(
            ",\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{start},{}]}}",
            data.len()
        );
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend(data);
    file
}

#[test]
fn bf16_f16_f64_and_i64_tensors_of_a_pytorch_file_are_converted_on_load() {
    // A conv without bias and a batch norm, as `nn.Sequential(nn.Conv2d(1, 2, 1, bias=False),
    // nn.BatchNorm2d(2))` with its tensors cast to half, bfloat16 and double.
    let weight = [0.5f32, -1.25]; // conv 0.weight [2, 1, 1, 1] as BF16 (exact)
    let bf16: Vec<u8> = weight
        .iter()
        .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
        .collect();
    let gamma = [1.5f32, 0.333]; // 1.weight as F16 (0.333 rounds to 0.33301)
    let f16s: Vec<u8> = gamma
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let beta = [0.1f64, -0.2]; // 1.bias as F64
    let f64s: Vec<u8> = beta.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mean: Vec<u8> = [0.25f32, -0.5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let var: Vec<u8> = [2.0f32, 0.5]
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let file = safetensors_file(&[
        (
            "1.num_batches_tracked",
            "I64",
            &[],
            17i64.to_le_bytes().to_vec(),
        ),
        ("0.weight", "BF16", &[2, 1, 1, 1], bf16),
        ("1.bias", "F64", &[2], f64s),
        ("1.weight", "F16", &[2], f16s),
        ("1.running_mean", "F32", &[2], mean),
        ("1.running_var", "F16", &[2], var),
    ]);
    let d = temp_dir("dtypes");
    let path = d.join("half.safetensors");
    std::fs::write(&path, file).unwrap();
    for dev in [Device::cpu(), gpu()] {
        let pb = ParamBuilder::new(&dev, 0);
        let model = Sequential::new()
            .push(Conv2d::no_bias(
                1,
                2,
                1,
                kiln::Conv2dOptions::default(),
                &pb.pp(0),
            ))
            .push(BatchNorm2d::new(2, &pb.pp(1)));
        load_weights(&model, &path).unwrap();
        let got = values_of(&model);
        let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let want = vec![
            ("0.weight".to_string(), vec![2, 1, 1, 1], f(&weight)),
            (
                "1.weight".into(),
                vec![2],
                vec![1.5, half::f16::from_f32(0.333).to_f64()],
            ),
            ("1.bias".into(), vec![2], f(&[0.1f32, -0.2])),
            ("1.running_mean".into(), vec![2], vec![0.25, -0.5]),
            ("1.running_var".into(), vec![2], vec![2.0, 0.5]),
            ("1.num_batches_tracked".into(), vec![], vec![17.0]),
        ];
        assert_eq!(got, want);
        for (_, t) in model.state_dict() {
            assert!(t.dtype() == DType::F32 || t.dtype() == DType::I32);
        }
        // The loaded statistics are what evaluation uses.
        model.set_training(false);
        let x = Tensor::from_slice(&[1.0f32, 2.0], [1, 1, 1, 2], &dev).unwrap();
        let y = model.forward(&x).to_vec::<f32>().unwrap();
        let bn = |x: f64, ch: usize| {
            let (w, g, b, m, v) = [
                (0.5, 1.5, 0.1f32 as f64, 0.25, 2.0),
                (
                    -1.25,
                    half::f16::from_f32(0.333).to_f64(),
                    -0.2f32 as f64,
                    -0.5,
                    0.5,
                ),
            ][ch];
            ((w * x - m) / (v + 1e-5f64).sqrt() * g + b) as f32
        };
        let want_y = [bn(1.0, 0), bn(2.0, 0), bn(1.0, 1), bn(2.0, 1)];
        for (a, b) in y.iter().zip(want_y) {
            assert!((a - b).abs() < 1e-6, "{y:?} vs {want_y:?}");
        }
    }
}

#[test]
fn loading_replaces_a_pending_statistics_update() {
    let dev = Device::cpu();
    let bn = BatchNorm2d::new(2, &ParamBuilder::new(&dev, 0));
    bn.forward(&Tensor::from_slice(&values(8, 1), [2, 2, 2, 1], &dev).unwrap());
    let sd: Vec<(String, Tensor)> = bn
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.ones_like()))
        .collect();
    load_state_dict(&bn, &sd).unwrap();
    realize_pending_updates().unwrap();
    let (m, v) = bn.running_stats().unwrap();
    assert_eq!(m.to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
    assert_eq!(v.to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
    let n = bn.num_batches_tracked.as_ref().unwrap();
    assert_eq!(n.to_vec::<i32>().unwrap(), vec![1]);
}
