//! `examples/train.rs`, the general trainer (issue 16 part 5), on a folder of the shipped digits
//! written as PNG: it reaches the accuracy `examples/mnist.rs` reaches on the same digits with
//! the same settings, writes the class list and the best checkpoint, stops early, fine-tunes a
//! head with the backbone frozen bit for bit, and refuses bad data with errors that name it.
//!
//! Both examples' sources are compiled into this test (their `run` is called with parsed
//! arguments), as in tests/mnist_example.rs.

// mnist.rs and train.rs each include examples/trainer/ as their own module.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../examples/mnist.rs"]
mod mnist_example;
#[allow(dead_code)]
#[path = "../examples/train.rs"]
mod train_example;

#[allow(dead_code)]
#[path = "../examples/classify.rs"]
mod classify_example;

mod common;
use clap::Parser;
use common::*;
use image::GrayImage;
use kiln::data::{read_class_list, Mnist};
use kiln::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The environment variable that turns this test binary into `examples/classify.rs` (one
/// argument a line), so that a test can read what it prints.
const CLASSIFY_ARGS: &str = "KILN_CLASSIFY_EXAMPLE_ARGS";

/// In the child process: runs `examples/classify.rs` with the arguments in
/// `KILN_CLASSIFY_EXAMPLE_ARGS` and exits with its status. Does nothing in the parent.
fn be_classify_if_asked() {
    if let Ok(lines) = std::env::var(CLASSIFY_ARGS) {
        let mut argv = vec!["classify".to_string()];
        argv.extend(lines.lines().map(str::to_string));
        let args = classify_example::Args::parse_from(argv);
        let status = match classify_example::run(args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        };
        std::process::exit(status);
    }
}

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k");
/// Training and validation digits in the folders (the first of MNIST-10k's splits).
const TRAIN: usize = 2000;
const VAL: usize = 500;

/// Runs `examples/train.rs` in this process; the error's message on failure.
fn train(args: &[&str]) -> std::result::Result<(), String> {
    let mut argv = vec!["train"];
    argv.extend(args);
    train_example::run(train_example::Args::parse_from(argv)).map_err(|e| e.to_string())
}

/// Runs `examples/mnist.rs` in this process.
fn mnist(args: &[&str]) -> std::result::Result<(), String> {
    let mut argv = vec!["mnist"];
    argv.extend(args);
    mnist_example::run(mnist_example::Args::parse_from(argv)).map_err(|e| e.to_string())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A raw IDX file of u8 with these dimensions and data.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    b
}

/// The data every test reads, written once: `folder/{train,val}/d<digit>/<index>.png` (grey
/// PNGs) and `idx/`, the same digits as IDX files in the folder's order (class by class, each
/// by file name), so that a seed shuffles both alike.
struct Digits {
    root: PathBuf,
    folder: PathBuf,
    idx: PathBuf,
}

fn digits() -> &'static Digits {
    static DIGITS: OnceLock<Digits> = OnceLock::new();
    DIGITS.get_or_init(|| {
        // Not a TempDir (a static is never dropped): cargo's directory for test files, emptied
        // at each run.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("train-example-digits");
        let _ = std::fs::remove_dir_all(&root);
        let (folder, idx_dir) = (root.join("folder"), root.join("idx"));
        std::fs::create_dir_all(&idx_dir).unwrap();
        let mnist = Mnist::from_dir(MNIST).unwrap();
        for (split, stem, n) in [(mnist.train(), "train", TRAIN), (mnist.test(), "t10k", VAL)] {
            let sub = if stem == "train" { "train" } else { "val" };
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&i| split.label(i));
            let (mut pixels, mut labels) = (vec![], vec![]);
            for &i in &order {
                let (label, image) = (split.label(i), split.image(i));
                let dir = folder.join(sub).join(format!("d{label}"));
                std::fs::create_dir_all(&dir).unwrap();
                let img = GrayImage::from_raw(28, 28, image.to_vec()).unwrap();
                img.save(dir.join(format!("{i:05}.png"))).unwrap();
                pixels.extend_from_slice(image);
                labels.push(label);
            }
            let images = idx(&[n as u32, 28, 28], &pixels);
            std::fs::write(idx_dir.join(format!("{stem}-images-idx3-ubyte")), images).unwrap();
            let labels = idx(&[n as u32], &labels);
            std::fs::write(idx_dir.join(format!("{stem}-labels-idx1-ubyte")), labels).unwrap();
        }
        Digits {
            root,
            folder,
            idx: idx_dir,
        }
    })
}

/// The test accuracy of each epoch in a run's metrics.csv.
fn test_accuracies(run_dir: &Path) -> Vec<f64> {
    let csv = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    csv.lines()
        .filter(|l| l.contains(",test_epoch,"))
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect()
}

/// LeNet-5's arguments for the digit folders: 28x28 grey images.
const LENET: [&str; 8] = [
    "--model",
    "lenet5",
    "--image-size",
    "28",
    "--channels",
    "1",
    "--seed",
    "42",
];

#[test]
fn train_on_png_digits_reaches_mnists_accuracy_and_keeps_the_best_checkpoint() {
    be_classify_if_asked();
    let d = digits();
    let dir = temp_dir("parity");
    let (mnist_dir, train_dir) = (dir.join("mnist"), dir.join("train"));
    let common = ["--epochs", "3", "--batch-size", "32", "--lr", "0.001"];
    let mut args = vec![
        "--data",
        s(&d.idx),
        "--run-dir",
        s(&mnist_dir),
        "--no-pictures",
    ];
    args.extend(common);
    mnist(&args).unwrap();
    let mut args = vec!["--data", s(&d.folder), "--out", s(&train_dir)];
    args.extend(LENET);
    args.extend(common);
    args.extend(["--schedule", "constant", "--workers", "2"]);
    train(&args).unwrap();

    let (m, t) = (test_accuracies(&mnist_dir), test_accuracies(&train_dir));
    eprintln!("test accuracy per epoch: mnist {m:?}, train {t:?}");
    assert_eq!((m.len(), t.len()), (3, 3));
    assert!(m[2] > 0.85, "mnist reached only {}", m[2]);
    assert!(
        (m[2] - t[2]).abs() <= 0.01,
        "train reached {} and mnist {} on the same digits",
        t[2],
        m[2]
    );

    // The best checkpoint, its class list (beside it, for classify) and the pictures.
    let best = train_dir.join("lenet5.safetensors");
    let names: Vec<String> = (0..10).map(|d| format!("d{d}")).collect();
    assert_eq!(read_class_list(&best).unwrap(), names);
    let ckpt = kiln::checkpoint::load(&best, &Device::cpu()).unwrap();
    assert_eq!(ckpt.meta("model"), Some("lenet5"));
    assert_eq!(ckpt.meta("input_size"), Some("28x28"));
    assert_eq!(ckpt.get("fc3.weight").unwrap().dims(), &[10, 84]);
    assert!(train_dir.join("last.safetensors").is_file());
    for picture in ["curves.png", "confusion.png", "conv1_filters.png"] {
        assert!(train_dir.join(picture).is_file(), "no {picture}");
    }
    let classifier = kiln::classify::load_classifier(None, &best, &Device::cpu()).unwrap();
    assert_eq!((classifier.in_channels, classifier.classes), (1, 10));

    // examples/classify.rs names the classes from the class list beside the weights.
    let seven = std::fs::read_dir(d.folder.join("val/d7"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "train_on_png_digits_reaches_mnists_accuracy_and_keeps_the_best_checkpoint",
            "--exact",
            "--nocapture",
        ])
        .env(CLASSIFY_ARGS, ["--weights", s(&best), s(&seven)].join("\n"))
        .env("KILN_LOG", "quiet")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ranked: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.ends_with(".png:"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(ranked.len(), 5, "{stdout}");
    assert!(ranked.iter().all(|n| n.starts_with('d')), "{stdout}");
    assert!(ranked.contains(&"d7"), "{stdout}");
}

#[test]
fn patience_stops_a_run_whose_validation_loss_does_not_improve() {
    let d = digits();
    let dir = temp_dir("patience");
    // A learning rate of 0: the validation loss never improves on the first epoch's.
    let mut args = vec!["--data", s(&d.folder), "--out", s(&dir), "--no-pictures"];
    args.extend(LENET);
    args.extend(["--optimizer", "sgd", "--lr", "0", "--epochs", "10"]);
    args.extend([
        "--patience",
        "2",
        "--batch-size",
        "64",
        "--test-images",
        "100",
    ]);
    train(&args).unwrap();
    let accuracies = test_accuracies(&dir);
    assert_eq!(accuracies.len(), 3, "{accuracies:?}");
    let best = kiln::checkpoint::load(dir.join("lenet5.safetensors"), &Device::cpu()).unwrap();
    assert_eq!(best.meta("epochs"), Some("1"));
    let last = kiln::checkpoint::load(dir.join("last.safetensors"), &Device::cpu()).unwrap();
    assert_eq!(last.meta("epochs"), Some("3"));
}

/// A copy of the digit folders with the classes `digits` only.
fn subset(d: &Digits, name: &str, digits: std::ops::Range<u8>) -> PathBuf {
    let out = d.root.join(name);
    for split in ["train", "val"] {
        for digit in digits.clone() {
            let from = d.folder.join(split).join(format!("d{digit}"));
            let to = out.join(split).join(format!("d{digit}"));
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(&from).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    out
}

#[test]
fn fine_tuning_with_a_frozen_backbone_changes_the_head_alone() {
    let d = digits();
    let dir = temp_dir("fine-tune");
    let (first, second) = (subset(d, "d0-4", 0..5), subset(d, "d5-9", 5..10));
    let (pre, tuned) = (dir.join("pre"), dir.join("tuned"));
    let mut args = vec!["--data", s(&first), "--out", s(&pre), "--no-pictures"];
    args.extend(LENET);
    args.extend(["--epochs", "1"]);
    train(&args).unwrap();
    let weights = pre.join("lenet5.safetensors");

    let mut args = vec!["--data", s(&second), "--out", s(&tuned), "--no-pictures"];
    args.extend(LENET);
    args.extend(["--epochs", "2", "--lr", "0.01", "--weights", s(&weights)]);
    args.push("--freeze-backbone");
    train(&args).unwrap();

    let before = kiln::checkpoint::load(&weights, &Device::cpu()).unwrap();
    let after = kiln::checkpoint::load(tuned.join("lenet5.safetensors"), &Device::cpu()).unwrap();
    let mut backbone = 0;
    for (name, t) in after
        .tensors
        .iter()
        .filter(|(n, _)| !n.starts_with("optimizer."))
    {
        let old = before.get(name).unwrap();
        if name.starts_with("fc3.") {
            assert_ne!(old.to_vec::<f32>().unwrap(), t.to_vec::<f32>().unwrap());
            continue;
        }
        assert_eq!(
            old.to_vec::<f32>().unwrap(),
            t.to_vec::<f32>().unwrap(),
            "{name} changed"
        );
        backbone += 1;
    }
    assert_eq!(backbone, 8, "conv1, conv2, fc1, fc2: weights and biases");
    assert_eq!(after.get("fc3.weight").unwrap().dims(), &[5, 84]);
    let names: Vec<String> = (5..10).map(|d| format!("d{d}")).collect();
    assert_eq!(
        read_class_list(tuned.join("lenet5.safetensors")).unwrap(),
        names
    );
    let accuracy = *test_accuracies(&tuned).last().unwrap();
    eprintln!("fine-tuned head on d5-d9: validation accuracy {accuracy}");
    assert!(accuracy > 0.5, "the head learnt little: {accuracy}");

    // Weights of another model: the error names the file and the new head's parameters.
    let mut args = vec!["--data", s(&second), "--out", s(&tuned), "--no-pictures"];
    args.extend([
        "--model",
        "resnet20",
        "--image-size",
        "28",
        "--channels",
        "1",
    ]);
    args.extend(["--weights", s(&weights)]);
    let msg = train(&args).unwrap_err();
    assert!(
        msg.contains("lenet5.safetensors")
            && msg.contains("fc.weight, fc.bias")
            && msg.contains("a resnet20 for 5 classes"),
        "{msg}"
    );
}

#[test]
fn bad_data_directories_are_refused_with_errors_that_name_them() {
    let dir = temp_dir("bad-data");
    let out = dir.join("out");
    let missing = dir.join("no-such-photos");
    let msg = train(&["--data", s(&missing), "--out", s(&out)]).unwrap_err();
    assert!(
        msg.contains("no-such-photos") && msg.contains("no such data directory"),
        "{msg}"
    );
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let msg = train(&["--data", s(&empty), "--out", s(&out)]).unwrap_err();
    assert!(
        msg.contains("empty") && msg.contains("no class folders"),
        "{msg}"
    );
    // Two classes of one picture each, no val/ and no split: nothing to validate on.
    for class in ["cat", "dog"] {
        let d = dir.join("pets").join(class);
        std::fs::create_dir_all(&d).unwrap();
        GrayImage::new(8, 8).save(d.join("a.png")).unwrap();
    }
    let pets = dir.join("pets");
    let msg = train(&["--data", s(&pets), "--out", s(&out), "--val-split", "0"]).unwrap_err();
    assert!(
        msg.contains("pets") && msg.contains("no validation images"),
        "{msg}"
    );
    let msg = train(&["--data", s(&pets), "--out", s(&out), "--val-split", "1.5"]).unwrap_err();
    assert!(msg.contains("--val-split"), "{msg}");
    assert!(
        !out.join("metrics.csv").exists(),
        "a step ran before the checks"
    );
}

#[test]
fn a_cifar_directory_trains_a_resnet20_with_its_class_names() {
    let dir = temp_dir("cifar");
    let data = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&data).unwrap();
    // CIFAR-10 records: a label byte, then 32x32 pixels of red, green and blue.
    let records = |n: usize, seed: usize| -> Vec<u8> {
        let mut b = vec![];
        for i in 0..n {
            let label = (i % 3) as u8;
            b.push(label);
            b.extend((0..3072).map(|k| ((k * 7 + i * 13 + seed) % 256) as u8 / (label + 1)));
        }
        b
    };
    std::fs::write(data.join("data_batch_1.bin"), records(48, 0)).unwrap();
    std::fs::write(data.join("test_batch.bin"), records(12, 5)).unwrap();
    std::fs::write(data.join("batches.meta.txt"), "cat\ndog\nfrog\n").unwrap();
    let out = dir.join("out");
    let args = ["--data", s(&dir), "--out", s(&out), "--model", "resnet20"];
    let mut args = args.to_vec();
    args.extend(["--epochs", "1", "--batch-size", "16", "--no-pictures"]);
    train(&args).unwrap();
    let best = out.join("resnet20.safetensors");
    assert_eq!(read_class_list(&best).unwrap(), ["cat", "dog", "frog"]);
    let ckpt = kiln::checkpoint::load(&best, &Device::cpu()).unwrap();
    assert_eq!(ckpt.meta("input_size"), Some("32x32"));
    assert_eq!(ckpt.meta("mean").unwrap().split(',').count(), 3);
    assert_eq!(ckpt.get("conv1.weight").unwrap().dims(), &[16, 3, 3, 3]);
    assert_eq!(ckpt.get("fc.weight").unwrap().dims(), &[3, 64]);
    assert_eq!(test_accuracies(&out).len(), 1);
}
