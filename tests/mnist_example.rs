//! `examples/mnist.rs` under misuse (issue 15, points 2 and 5): everything that can be checked is
//! checked before the first step, and a diverging run stops with an error, exits non-zero and
//! keeps the last good checkpoint bit for bit.
//!
//! The example's source is compiled into this test (its `run` is called with parsed
//! arguments). The end-to-end cases run it in a child process: this test binary again, asked
//! through `KILN_MNIST_EXAMPLE_ARGS` to run the example's `main` path instead of the test, so
//! that its exit status and output are those of the example.

#[allow(dead_code)]
#[path = "../examples/mnist.rs"]
mod mnist_example;

mod common;
use clap::Parser;
use common::*;
use kiln::nn::ParamBuilder;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The environment variable that turns this test binary into the example (one argument a line).
const CHILD_ARGS: &str = "KILN_MNIST_EXAMPLE_ARGS";

/// Runs the example in this process; the error's message on failure.
fn run(args: &[&str]) -> Result<(), String> {
    let mut argv = vec!["mnist"];
    argv.extend(args);
    mnist_example::run(mnist_example::Args::parse_from(argv)).map_err(|e| e.to_string())
}

/// In the child process (see the module comment): runs the example with the arguments in
/// `KILN_MNIST_EXAMPLE_ARGS` and exits with its status. Does nothing in the parent.
fn be_the_example_if_asked() {
    if let Ok(lines) = std::env::var(CHILD_ARGS) {
        let mut argv = vec!["mnist".to_string()];
        argv.extend(lines.lines().map(str::to_string));
        let status = mnist_example::run_and_report(mnist_example::Args::parse_from(argv));
        std::process::exit(status);
    }
}

/// Runs the example with `args` in a child process (through the test named `test`).
fn run_child(test: &str, args: &[&str]) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ARGS, args.join("\n"))
        .env("KILN_LOG", "quiet")
        .output()
        .unwrap()
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

/// Writes an MNIST directory: `n` images of `size` per split (pixels `k`, labels `k % 10`), and
/// the test split's labels replaced by `test_labels` when given.
fn write_data(dir: &Path, n: [u32; 2], size: [[u32; 2]; 2], test_labels: Option<&[u8]>) {
    for (k, stem) in ["train", "t10k"].into_iter().enumerate() {
        let [r, c] = size[k];
        let pixels: Vec<u8> = (0..n[k] * r * c).map(|i| (i % 251) as u8).collect();
        let mut labels: Vec<u8> = (0..n[k]).map(|i| (i % 10) as u8).collect();
        if let (1, Some(l)) = (k, test_labels) {
            labels = l.to_vec();
        }
        let images = idx(&[n[k], r, c], &pixels);
        std::fs::write(dir.join(format!("{stem}-images-idx3-ubyte")), images).unwrap();
        let labels = idx(&[labels.len() as u32], &labels);
        std::fs::write(dir.join(format!("{stem}-labels-idx1-ubyte")), labels).unwrap();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Arguments for a run of `steps` steps into `dir`.
fn short_run(dir: &Path, steps: usize) -> Vec<String> {
    let steps = steps.to_string();
    let args = [
        "--run-dir",
        path_str(dir),
        "--no-pictures",
        "--test-images",
        "50",
    ];
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend(["--max-steps".to_string(), steps]);
    args
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(|s| s.as_str()).collect()
}

#[test]
fn a_checkpoint_into_a_missing_directory_is_refused_before_the_first_step() {
    let dir = temp_dir("missing-dir");
    let ckpt = dir.join("no/such/dir/lenet5.safetensors");
    let mut args = short_run(&dir, 2);
    args.extend(["--checkpoint".into(), path_str(&ckpt).into()]);
    let msg = run(&strs(&args)).unwrap_err();
    assert!(
        msg.contains("the checkpoint's directory does not exist") && msg.contains("no/such/dir"),
        "{msg}"
    );
    assert!(
        !dir.join("metrics.csv").exists(),
        "a step ran before the check"
    );
    // A checkpoint path that is a directory.
    let mut args = short_run(&dir, 2);
    args.extend(["--checkpoint".into(), path_str(&dir).into()]);
    let msg = run(&strs(&args)).unwrap_err();
    assert!(msg.contains("is a directory"), "{msg}");
}

#[test]
fn test_images_of_another_size_are_refused_before_the_first_step() {
    let dir = temp_dir("sizes");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_data(&data, [64, 16], [[28, 28], [14, 14]], None);
    let mut args = short_run(&dir, 2);
    args.extend(["--data".into(), path_str(&data).into()]);
    let msg = run(&strs(&args)).unwrap_err();
    assert!(
        msg.contains("test images are 14x14") && msg.contains("training images 28x28"),
        "{msg}"
    );
}

#[test]
fn a_label_outside_the_class_range_is_refused_with_its_index() {
    let dir = temp_dir("labels");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut labels = vec![3u8; 16];
    labels[11] = 200;
    write_data(&data, [64, 16], [[28, 28], [28, 28]], Some(&labels));
    let mut args = short_run(&dir, 2);
    args.extend(["--data".into(), path_str(&data).into()]);
    let msg = run(&strs(&args)).unwrap_err();
    assert!(
        msg.contains("label 200 at index 11") && msg.contains("t10k-labels-idx1-ubyte"),
        "{msg}"
    );
}

#[test]
fn empty_data_sets_and_images_too_small_for_the_model_are_refused() {
    let dir = temp_dir("tiny");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_data(&data, [0, 4], [[28, 28], [28, 28]], None);
    let mut args = short_run(&dir, 2);
    args.extend(["--data".into(), path_str(&data).into()]);
    let msg = run(&strs(&args)).unwrap_err();
    assert!(msg.contains("holds no images"), "{msg}");

    write_data(&data, [8, 4], [[1, 1], [1, 1]], None);
    let msg = run(&strs(&args)).unwrap_err();
    assert!(
        msg.contains("1x1") && msg.contains("smallest images the model takes are 28x28"),
        "{msg}"
    );
    let dev = kiln::Device::cpu();
    let lenet = kiln::models::by_name("lenet5", 1, 10, &ParamBuilder::new(&dev, 1)).unwrap();
    assert_eq!(
        kiln::preflight::input_sizes(lenet.as_ref(), 1),
        Some((28, 31))
    );
}

#[test]
fn epochs_0_says_nothing_will_be_trained_and_names_no_checkpoint() {
    be_the_example_if_asked();
    let dir = temp_dir("epochs0");
    let mut args = short_run(&dir, 2);
    args.extend(["--epochs".into(), "0".into()]);
    let out = run_child(
        "epochs_0_says_nothing_will_be_trained_and_names_no_checkpoint",
        &strs(&args),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("nothing to train"), "{stdout}");
    assert!(!stdout.contains("checkpoint:"), "{stdout}");
    assert!(!dir.join("lenet5.safetensors").exists());
}

/// The checkpoint a short healthy run writes, and its bytes.
fn good_checkpoint(dir: &Path) -> (PathBuf, Vec<u8>) {
    run(&strs(&short_run(dir, 2))).unwrap();
    let ckpt = dir.join("lenet5.safetensors");
    let bytes = std::fs::read(&ckpt).unwrap();
    (ckpt, bytes)
}

#[test]
fn a_diverging_run_exits_non_zero_naming_the_step_and_keeps_the_last_checkpoint() {
    be_the_example_if_asked();
    let dir = temp_dir("diverge");
    let (ckpt, good) = good_checkpoint(&dir);
    let mut args = short_run(&dir, 3);
    args.extend(["--lr".into(), "1e9".into()]);
    let out = run_child(
        "a_diverging_run_exits_non_zero_naming_the_step_and_keeps_the_last_checkpoint",
        &strs(&args),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("training diverged")
            && stderr.contains("of epoch 1")
            && stderr.contains("learning rate 1e9")
            && stderr.contains("--std"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&ckpt).unwrap(),
        good,
        "the good checkpoint changed"
    );
}

#[test]
fn on_nan_skip_counts_the_skipped_steps_and_saves_finite_weights() {
    let dir = temp_dir("skip");
    let mut args = short_run(&dir, 4);
    args.extend([
        "--lr".into(),
        "1e9".into(),
        "--on-nan".into(),
        "skip".into(),
    ]);
    run(&strs(&args)).unwrap();
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let skipped = csv.lines().filter(|l| l.contains(",skipped_step,")).count();
    assert!(skipped >= 1, "{csv}");
    let trained = csv.lines().filter(|l| l.contains(",train_step,")).count();
    assert_eq!(skipped + trained, 4, "{csv}");
    // The checkpoint holds the finite weights of the steps that were not skipped.
    let ckpt =
        kiln::checkpoint::load(dir.join("lenet5.safetensors"), &kiln::Device::cpu()).unwrap();
    kiln::debug::check_finite(&ckpt.tensors).unwrap();
}
