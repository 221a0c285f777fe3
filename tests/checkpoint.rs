//! Checkpoints in safetensors files: round trips on the CPU and the GPU, files laid out as
//! Python's safetensors writes them, broken files, and atomic replacement.

mod common;
use common::temp_dir;

use half::f16;
use kiln::checkpoint::{self, write_atomic, Checkpoint};
use kiln::prelude::*;
use std::io::Write;
use std::path::Path;

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Tensors of every dtype and a few shapes (scalar, empty, odd sizes), made on `dev`.
fn sample(dev: &Device) -> Vec<(String, Tensor)> {
    let f32s = vec![1.5f32, -0.0, f32::INFINITY, f32::NAN, 1e-40, -3.25];
    let f16s: Vec<f16> = [0.5f32, -2.0, 65504.0, 1e-7]
        .iter()
        .map(|&v| f16::from_f32(v))
        .collect();
    vec![
        (
            "layer1.weight".into(),
            Tensor::from_vec(f32s, [2, 3], dev).unwrap(),
        ),
        (
            "layer1.half".into(),
            Tensor::from_vec(f16s, [4], dev).unwrap(),
        ),
        (
            "ids".into(),
            Tensor::from_vec(vec![i32::MIN, -1, 0, 7, i32::MAX, 3], [3, 1, 2], dev).unwrap(),
        ),
        (
            "counts".into(),
            Tensor::from_vec(vec![0u32, 1, u32::MAX, 12345, 9], [5], dev).unwrap(),
        ),
        (
            "mask".into(),
            Tensor::from_vec(vec![true, false, false, true, true], [5, 1], dev).unwrap(),
        ),
        (
            "scale".into(),
            Tensor::from_vec(vec![0.125f32], (), dev).unwrap(),
        ),
        ("empty".into(), Tensor::zeros([0, 3], dev)),
        (
            "computed".into(),
            Tensor::arange(0.0, 6.0, 1.0, dev)
                .reshape([2, 3])
                .mul_scalar(0.5),
        ),
    ]
}

/// Same names, dtypes, shapes and bits.
#[track_caller]
fn assert_same(got: &Checkpoint, expected: &[(String, Tensor)], dev: &Device) {
    let mut expected: Vec<&(String, Tensor)> = expected.iter().collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = got.tensors.iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, want, "names (sorted)");
    for ((name, g), (_, e)) in got.tensors.iter().zip(expected) {
        assert_eq!(g.dtype(), e.dtype(), "{name}");
        assert_eq!(g.dims(), e.dims(), "{name}");
        assert!(g.device().same(dev), "{name} is on {}", g.device().name());
        assert_eq!(g.to_bytes().unwrap(), e.to_bytes().unwrap(), "{name}");
    }
}

#[test]
fn tensors_and_metadata_round_trip_on_the_cpu() {
    let dev = Device::cpu();
    let d = temp_dir("cpu");
    let path = d.join("model.safetensors");
    let tensors = sample(&dev);
    let meta = vec![
        ("epoch".to_string(), "3".to_string()),
        ("arch".to_string(), "lenet5 {\"json\": ok}".to_string()),
    ];
    checkpoint::save(&path, &tensors, &meta).unwrap();
    assert_eq!(listing(&d), ["model.safetensors"], "no temporary file left");
    let ck = checkpoint::load(&path, &dev).unwrap();
    assert_same(&ck, &tensors, &dev);
    assert_eq!(
        ck.metadata,
        vec![
            ("arch".to_string(), "lenet5 {\"json\": ok}".to_string()),
            ("epoch".to_string(), "3".to_string()),
        ]
    );
    assert_eq!(ck.meta("epoch"), Some("3"));
    assert_eq!(ck.meta("nope"), None);
    assert_eq!(
        ck.get("layer1.weight").unwrap().to_vec::<f32>().unwrap()[0],
        1.5
    );
    assert!(ck.get("missing").is_none());
    assert_eq!(
        ck.get("mask").unwrap().to_vec::<bool>().unwrap(),
        vec![true, false, false, true, true]
    );

    // No metadata and no tensors are fine too.
    checkpoint::save(&path, &[], &[]).unwrap();
    let ck = checkpoint::load(&path, &dev).unwrap();
    assert!(ck.tensors.is_empty() && ck.metadata.is_empty());
}

#[test]
fn tensors_round_trip_on_the_gpu_and_across_devices() {
    let gpu = common::gpu();
    let d = temp_dir("gpu");
    let path = d.join("gpu.safetensors");
    let tensors = sample(&gpu);
    checkpoint::save(&path, &tensors, &[("device".into(), gpu.name())]).unwrap();
    let ck = checkpoint::load(&path, &gpu).unwrap();
    assert_same(&ck, &tensors, &gpu);
    assert_eq!(ck.meta("device"), Some(gpu.name().as_str()));
    // Saved from the GPU, loaded on the CPU (and the other way): the same bits.
    let on_cpu = checkpoint::load(&path, &Device::cpu()).unwrap();
    assert_same(&on_cpu, &sample(&Device::cpu()), &Device::cpu());
    let path2 = d.join("cpu.safetensors");
    checkpoint::save(&path2, &on_cpu.tensors, &[]).unwrap();
    let back = checkpoint::load(&path2, &gpu).unwrap();
    assert_same(&back, &tensors, &gpu);
    // Loaded tensors compute like any other.
    let w = back.get("layer1.weight").unwrap();
    let y = w.mul_scalar(2.0).to_vec::<f32>().unwrap();
    assert_eq!(y[0], 3.0);
}

/// A file laid out as Python's `safetensors.torch.save_file` writes it: an 8-byte little-endian
/// header length, a JSON header padded with spaces to a multiple of 8, then the data.
fn python_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

#[test]
fn a_file_in_pythons_layout_loads() {
    let d = temp_dir("python");
    let path = d.join("torch.safetensors");
    // As torch writes a small state dict: F32 bias, F16 weight, a BOOL mask, an I64 counter (as
    // BatchNorm's num_batches_tracked) and a BF16 tensor, in dtype-alignment order.
    let mut data = vec![];
    data.extend(7i64.to_le_bytes()); // step: I64 []        [0, 8)
    for v in [1.0f32, -2.5] {
        data.extend(v.to_le_bytes()); // bias: F32 [2]      [8, 16)
    }
    data.extend(3u32.to_le_bytes()); // count: U32 [1]      [16, 20)
    data.extend((-4i32).to_le_bytes()); // label: I32 [1]   [20, 24)
    for v in [0.5f32, 1.0, -1.0, 2.0] {
        data.extend(f16::from_f32(v).to_bits().to_le_bytes()); // weight: F16 [2, 2] [24, 32)
    }
    for v in [1.5f32, -3.0] {
        data.extend(((v.to_bits() >> 16) as u16).to_le_bytes()); // bf: BF16 [2] [32, 36)
    }
    data.extend([1u8, 0, 1]); // mask: BOOL [3]             [36, 39)
    let header = r#"{"__metadata__":{"format":"pt"},"step":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"count":{"dtype":"U32","shape":[1],"data_offsets":[16,20]},"label":{"dtype":"I32","shape":[1],"data_offsets":[20,24]},"weight":{"dtype":"F16","shape":[2,2],"data_offsets":[24,32]},"bf":{"dtype":"BF16","shape":[2],"data_offsets":[32,36]},"mask":{"dtype":"BOOL","shape":[3],"data_offsets":[36,39]}}"#;
    std::fs::write(&path, python_file(header, &data)).unwrap();
    let dev = Device::cpu();
    let ck = checkpoint::load(&path, &dev).unwrap();
    let names: Vec<&str> = ck.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["bf", "bias", "count", "label", "mask", "step", "weight"]
    );
    assert_eq!(ck.metadata, vec![("format".into(), "pt".into())]);
    let t = |n: &str| ck.get(n).unwrap().clone();
    assert_eq!(t("bias").to_vec::<f32>().unwrap(), vec![1.0, -2.5]);
    assert_eq!(t("weight").dims(), &[2, 2]);
    assert_eq!(
        t("weight").to_vec::<f16>().unwrap(),
        [0.5f32, 1.0, -1.0, 2.0].map(f16::from_f32).to_vec()
    );
    assert_eq!(t("mask").to_vec::<bool>().unwrap(), vec![true, false, true]);
    assert_eq!(t("step").dtype(), DType::I32);
    assert_eq!(t("step").dims(), &[] as &[usize]);
    assert_eq!(t("step").item::<i32>().unwrap(), 7);
    assert_eq!(t("count").to_vec::<u32>().unwrap(), vec![3]);
    assert_eq!(t("label").to_vec::<i32>().unwrap(), vec![-4]);
    assert_eq!(t("bf").dtype(), DType::F32);
    assert_eq!(t("bf").to_vec::<f32>().unwrap(), vec![1.5, -3.0]);

    // What kiln writes is what Python reads: the same header fields, BOOL as one byte each.
    let out = d.join("kiln.safetensors");
    let mask = Tensor::from_vec(vec![true, false, true], [3], &dev).unwrap();
    checkpoint::save(
        &out,
        &[("mask".into(), mask)],
        &[("format".into(), "pt".into())],
    )
    .unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let json: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(json["mask"]["dtype"], "BOOL");
    assert_eq!(json["mask"]["shape"], serde_json::json!([3]));
    assert_eq!(json["mask"]["data_offsets"], serde_json::json!([0, 3]));
    assert_eq!(json["__metadata__"]["format"], "pt");
    assert_eq!(&bytes[8 + n..], &[1, 0, 1]);
}

#[track_caller]
fn load_err(path: &Path) -> String {
    let msg = checkpoint::load(path, &Device::cpu())
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
    msg
}

#[test]
fn truncated_garbage_and_unsupported_files_are_errors_naming_the_file_and_f64_loads_as_f32() {
    let dev = Device::cpu();
    let d = temp_dir("broken");
    let good = d.join("good.safetensors");
    checkpoint::save(&good, &sample(&dev), &[]).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    for cut in [bytes.len() - 1, bytes.len() / 2, 20, 5, 0] {
        let p = d.join(format!("cut{cut}.safetensors"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let msg = load_err(&p);
        assert!(msg.contains("truncated or corrupt"), "{msg}");
    }
    let p = d.join("garbage.safetensors");
    std::fs::write(&p, b"\x89PNG\r\n\x1a\n this is not a checkpoint at all").unwrap();
    assert!(load_err(&p).contains("not a valid safetensors file"));
    let p = d.join("trailing.safetensors");
    std::fs::write(&p, [&bytes[..], b"extra"].concat()).unwrap();
    load_err(&p);
    let msg = load_err(&d.join("missing.safetensors"));
    assert!(msg.contains("cannot read"), "{msg}");

    let p = d.join("i16.safetensors");
    let header = r#"{"w":{"dtype":"I16","shape":[1],"data_offsets":[0,2]}}"#;
    std::fs::write(&p, python_file(header, &1i16.to_le_bytes())).unwrap();
    let msg = load_err(&p);
    assert!(msg.contains("\"w\"") && msg.contains("I16"), "{msg}");
    // F64 (what torch.float64 state dicts hold) loads as F32, rounded to nearest.
    let p = d.join("f64.safetensors");
    let header = r#"{"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#;
    let data = [0.1f64.to_le_bytes(), (-1e300f64).to_le_bytes()].concat();
    std::fs::write(&p, python_file(header, &data)).unwrap();
    let w = checkpoint::load(&p, &dev).unwrap().tensors.remove(0).1;
    assert_eq!(w.dtype(), DType::F32);
    assert_eq!(w.to_vec::<f32>().unwrap(), vec![0.1f32, f32::NEG_INFINITY]);
    let p = d.join("i64.safetensors");
    let header = r#"{"big":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#;
    std::fs::write(&p, python_file(header, &(1i64 << 40).to_le_bytes())).unwrap();
    let msg = load_err(&p);
    assert!(
        msg.contains("\"big\"") && msg.contains("does not fit"),
        "{msg}"
    );
}

#[test]
fn a_failed_save_leaves_the_previous_file_and_no_temporary_file() {
    let dev = Device::cpu();
    let d = temp_dir("atomic");
    let path = d.join("ck.safetensors");
    let v1 = vec![("w".to_string(), Tensor::full([3], 1.0, &dev))];
    checkpoint::save(&path, &v1, &[("v".into(), "1".into())]).unwrap();
    let before = std::fs::read(&path).unwrap();

    // A write that fails half-way (a full disk, a crash of the writer): the old file stays.
    let e = write_atomic(&path, |f| {
        f.write_all(b"half a checkpoint")?;
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&*path.to_string_lossy()) && e.contains("disk full") && e.contains("unchanged"),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(listing(&d), ["ck.safetensors"]);
    assert_eq!(checkpoint::load(&path, &dev).unwrap().meta("v"), Some("1"));

    // A rename that fails (the target is a directory): no temporary file is left behind.
    let blocked = d.join("blocked");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("inside"), b"x").unwrap();
    let e = checkpoint::save(&blocked, &v1, &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&*blocked.to_string_lossy()) && e.contains("rename"),
        "{e}"
    );
    assert_eq!(listing(&d), ["blocked", "ck.safetensors"]);

    // A directory that does not exist: an error naming the path, nothing created.
    let nowhere = d.join("no/such/dir/ck.safetensors");
    let e = checkpoint::save(&nowhere, &v1, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains(&*nowhere.to_string_lossy()), "{e}");
    assert_eq!(listing(&d), ["blocked", "ck.safetensors"]);

    // Duplicate names are refused before anything is written.
    let dup = vec![v1[0].clone(), v1[0].clone()];
    let e = checkpoint::save(&path, &dup, &[]).unwrap_err().to_string();
    assert!(e.contains("\"w\"") && e.contains("unique"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // A successful save replaces the file in one step.
    let v2 = vec![("w".to_string(), Tensor::full([4], 2.0, &dev))];
    checkpoint::save(&path, &v2, &[("v".into(), "2".into())]).unwrap();
    let ck = checkpoint::load(&path, &dev).unwrap();
    assert_eq!(ck.meta("v"), Some("2"));
    assert_eq!(ck.get("w").unwrap().to_vec::<f32>().unwrap(), vec![2.0; 4]);
    assert_eq!(listing(&d), ["blocked", "ck.safetensors"]);
}

#[test]
fn a_model_saved_on_the_gpu_reloads_into_a_fresh_model() {
    use kiln::nn::{load_parameters, Linear, Module, ParamBuilder};
    let gpu = common::gpu();
    let d = temp_dir("model");
    let path = d.join("linear.safetensors");
    let trained = Linear::new(6, 3, &ParamBuilder::new(&gpu, 1));
    checkpoint::save(&path, &trained.named_parameters(), &[]).unwrap();
    let fresh = Linear::new(6, 3, &ParamBuilder::new(&gpu, 2));
    let x = Tensor::from_vec(common::values(12, 5), [2, 6], &gpu).unwrap();
    let before: Vec<f32> = fresh.forward(&x).to_vec().unwrap();
    let ck = checkpoint::load(&path, &Device::cpu()).unwrap();
    load_parameters(&fresh, &ck.tensors).unwrap();
    let want: Vec<f32> = trained.forward(&x).to_vec().unwrap();
    let got: Vec<f32> = fresh.forward(&x).to_vec().unwrap();
    assert_ne!(before, want);
    assert_eq!(got, want);
}
