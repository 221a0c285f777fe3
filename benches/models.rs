//! Model-zoo benchmark: `cargo bench --bench models`.
//!
//! For LeNet-5 (28x28x1), the small AlexNet (32x32x3), ResNet-20 (32x32x3, and 28x28x1 at
//! batch 128, the Fashion-MNIST shape) and ResNet-18 (224x224x3) it reports forward images/s
//! (evaluation mode, no gradients), training images/s (forward, cross-entropy, backward and an
//! SGD-with-momentum step, one plan), dispatches and submissions per training step, the device's
//! peak bytes, and the first forward's and first training step's times (plan and shader
//! compiles included). Each model runs on a fresh device, so its counters and peak are its own.
//! Prints a table and writes `target/kiln-bench/models.json`. A last row (`--only data`) times
//! data loading: JPEG photos decoded and resized per second per core by an image folder, and
//! how long training steps fed from one waited for data.
//!
//! Arguments after `--`: `--quick` (or `KILN_BENCH_QUICK=1`) for smaller batches and fewer
//! steps; `--resnet50` adds ResNet-50 at batch 32 on 224x224x3 (three training steps, one of
//! them timed: slow on a software driver) to check that it fits in the device's memory and
//! bindings and to give `benches/scaling.rs` its compute time; `--only NAME` runs the rows whose name contains NAME; `--profile` times one more
//! training step per model kernel by kernel (GPU timestamp queries) and prints where its time
//! goes.

mod common;
#[path = "models/data_loading.rs"]
mod data_loading;

use common::{median, open_device, quick, write_json, KernelProfile};
use kiln::models::{AlexNet, LeNet5, ResNet};
use kiln::nn::{Module, ParamBuilder};
use kiln::optim::{Optimizer, Sgd};
use kiln::prelude::*;
use std::time::Instant;

/// Builds a model for `in_channels` and `classes` on a device.
type MakeModel = fn(usize, usize, &Device) -> Box<dyn Module>;

/// One row of the benchmark.
struct Case {
    name: &'static str,
    make: MakeModel,
    /// `[C, H, W]` of one image.
    input: [usize; 3],
    classes: usize,
    batch: usize,
    /// Timed forward passes after the first (0: only the first is timed).
    forward_iters: usize,
    /// Timed training steps after the first and one warm-up step (0: only the first).
    train_iters: usize,
}

/// What one row measured.
struct Measured {
    first_forward_s: f64,
    forward_images_per_s: Option<f64>,
    first_step_s: f64,
    train_images_per_s: Option<f64>,
    dispatches_per_step: f64,
    submissions_per_step: f64,
    plans_per_step: f64,
    peak_bytes: u64,
    loss: f32,
    /// One training step kernel by kernel, if asked for and the adapter can time kernels.
    profile: Option<KernelProfile>,
}

fn lenet5(c: usize, k: usize, dev: &Device) -> Box<dyn Module> {
    Box::new(LeNet5::with_channels(c, k, &ParamBuilder::new(dev, 1)).unwrap())
}
fn small_alexnet(c: usize, k: usize, dev: &Device) -> Box<dyn Module> {
    Box::new(AlexNet::small(c, k, false, &ParamBuilder::new(dev, 1)).unwrap())
}
fn resnet20(c: usize, k: usize, dev: &Device) -> Box<dyn Module> {
    Box::new(ResNet::resnet20(c, k, &ParamBuilder::new(dev, 1)).unwrap())
}
fn resnet18(c: usize, k: usize, dev: &Device) -> Box<dyn Module> {
    Box::new(ResNet::resnet18(c, k, &ParamBuilder::new(dev, 1)).unwrap())
}
fn resnet50(c: usize, k: usize, dev: &Device) -> Box<dyn Module> {
    Box::new(ResNet::resnet50(c, k, &ParamBuilder::new(dev, 1)).unwrap())
}

/// The rows: batch sizes and step counts chosen so that the default run takes a few minutes on
/// the software Vulkan driver.
fn cases(quick: bool, with_resnet50: bool) -> Vec<Case> {
    let q = |full: usize, short: usize| if quick { short } else { full };
    let mut v = vec![
        Case {
            name: "lenet5",
            make: lenet5,
            input: [1, 28, 28],
            classes: 10,
            batch: 64,
            forward_iters: q(10, 3),
            train_iters: q(10, 3),
        },
        Case {
            name: "small-alexnet",
            make: small_alexnet,
            input: [3, 32, 32],
            classes: 10,
            batch: 64,
            forward_iters: q(3, 1),
            train_iters: q(3, 1),
        },
        Case {
            name: "resnet20",
            make: resnet20,
            input: [3, 32, 32],
            classes: 10,
            batch: q(64, 32),
            forward_iters: q(2, 1),
            train_iters: q(2, 1),
        },
        Case {
            name: "resnet20-fashion",
            make: resnet20,
            input: [1, 28, 28],
            classes: 10,
            batch: q(128, 32),
            forward_iters: q(2, 1),
            train_iters: q(2, 1),
        },
        Case {
            name: "resnet18",
            make: resnet18,
            input: [3, 224, 224],
            classes: 1000,
            batch: 2,
            forward_iters: 1,
            train_iters: q(1, 0),
        },
    ];
    if with_resnet50 {
        v.push(Case {
            name: "resnet50",
            make: resnet50,
            input: [3, 224, 224],
            classes: 1000,
            batch: 32,
            forward_iters: 0,
            // One timed step after the warm-up: the compute time `benches/scaling.rs` projects
            // data-parallel ResNet-50 with.
            train_iters: 1,
        });
    }
    v
}

/// Forward pass in evaluation mode without gradients; waits for the logits.
fn forward(model: &dyn Module, x: &Tensor) -> Result<()> {
    let logits = kiln::no_grad(|| model.forward(x));
    logits.to_vec::<f32>()?;
    Ok(())
}

/// One training step (one plan); waits for it and returns the loss.
fn train_step(model: &dyn Module, opt: &mut dyn Optimizer, x: &Tensor, y: &Tensor) -> Result<f32> {
    let loss = model.forward(x).cross_entropy(y);
    opt.step(&loss.backward())?;
    loss.item::<f32>()
}

/// Seconds taken by `f`, with its result.
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let t = Instant::now();
    let r = f()?;
    Ok((t.elapsed().as_secs_f64(), r))
}

fn measure(case: &Case, profile: bool) -> Result<Measured> {
    let (backend, dev) = open_device("models");
    let [c, h, w] = case.input;
    let b = case.batch;
    let model = (case.make)(c, case.classes, &dev);
    let x = Tensor::randn([b, c, h, w], 7, &dev);
    let labels: Vec<i32> = (0..b).map(|i| (i * 7 % case.classes) as i32).collect();
    let y = Tensor::from_vec(labels, [b], &dev)?;
    Tensor::realize_all(&[&x, &y])?;

    model.set_training(false);
    let (first_forward_s, ()) = timed(|| forward(model.as_ref(), &x))?;
    let mut times = vec![];
    for _ in 0..case.forward_iters {
        times.push(timed(|| forward(model.as_ref(), &x))?.0);
    }
    let forward_images_per_s = (!times.is_empty()).then(|| b as f64 / median(&mut times));
    model.set_training(true);

    let mut opt = Sgd::new(model.parameters(), 0.01).with_momentum(0.9, false);
    let (first_step_s, mut loss) = timed(|| train_step(model.as_ref(), &mut opt, &x, &y))?;
    let mut train_images_per_s = None;
    let (mut dispatches, mut submissions, mut plans) = (0.0, 0.0, 0.0);
    if case.train_iters > 0 {
        train_step(model.as_ref(), &mut opt, &x, &y)?; // warm-up: momentum buffers exist now
        let before = dev.stats();
        let mut times = vec![];
        for _ in 0..case.train_iters {
            let (s, l) = timed(|| train_step(model.as_ref(), &mut opt, &x, &y))?;
            times.push(s);
            loss = l;
        }
        let after = dev.stats();
        let per_step = |a: u64, b: u64| (a - b) as f64 / case.train_iters as f64;
        dispatches = per_step(after.dispatches, before.dispatches);
        submissions = per_step(after.submissions, before.submissions);
        plans = per_step(after.plans_compiled, before.plans_compiled);
        train_images_per_s = Some(b as f64 / median(&mut times));
    }
    let mut kernels = None;
    if profile && backend.set_profiling(true) {
        train_step(model.as_ref(), &mut opt, &x, &y)?;
        kernels = Some(KernelProfile::new(backend.last_profile()));
        backend.set_profiling(false);
    }
    Ok(Measured {
        first_forward_s,
        forward_images_per_s,
        first_step_s,
        train_images_per_s,
        dispatches_per_step: dispatches,
        submissions_per_step: submissions,
        plans_per_step: plans,
        peak_bytes: dev.stats().peak_bytes,
        loss,
        profile: kernels,
    })
}

/// How many of the slowest kernels `--profile` lists: `KILN_PROFILE_TOP`, 12 by default.
fn profile_top() -> usize {
    std::env::var("KILN_PROFILE_TOP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = quick() || args.iter().any(|a| a == "--quick");
    let with_resnet50 = args.iter().any(|a| a == "--resnet50");
    let profile = args.iter().any(|a| a == "--profile");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let (_, dev) = open_device("models");
    println!("kiln models bench on {}", dev.name());
    drop(dev);
    let mut rows = vec![];
    println!(
        "{:<17} {:>11} {:>5} {:>10} {:>10} {:>9} {:>7} {:>9} {:>9} {:>9} {:>5}",
        "model",
        "input",
        "batch",
        "fwd img/s",
        "train im/s",
        "disp/step",
        "subm",
        "peak MiB",
        "1st fwd s",
        "1st step s",
        "iters"
    );
    for case in cases(quick, with_resnet50) {
        if only
            .as_ref()
            .is_some_and(|o| !case.name.contains(o.as_str()))
        {
            continue;
        }
        let [c, h, w] = case.input;
        let input = format!("{h}x{w}x{c}");
        let iters = format!("{}/{}", case.forward_iters, case.train_iters);
        match measure(&case, profile) {
            Ok(m) => {
                println!(
                    "{:<17} {:>11} {:>5} {:>10} {:>10} {:>9.0} {:>7.1} {:>9.1} {:>9.2} {:>10.2} {:>5}",
                    case.name,
                    input,
                    case.batch,
                    fmt_opt(m.forward_images_per_s),
                    fmt_opt(m.train_images_per_s),
                    m.dispatches_per_step,
                    m.submissions_per_step,
                    m.peak_bytes as f64 / (1 << 20) as f64,
                    m.first_forward_s,
                    m.first_step_s,
                    iters
                );
                if let Some(p) = &m.profile {
                    p.print("  ", profile_top());
                }
                if case.name == "resnet20-fashion" {
                    if let Some(r) = m.train_images_per_s {
                        println!(
                            "  -> 3 epochs of 60,000 Fashion-MNIST images at this rate: {:.0} min",
                            3.0 * 60_000.0 / r / 60.0
                        );
                    }
                }
                rows.push(serde_json::json!({
                    "model": case.name,
                    "input": case.input,
                    "batch": case.batch,
                    "forward_iters": case.forward_iters,
                    "train_iters": case.train_iters,
                    "forward_images_per_s": m.forward_images_per_s,
                    "train_images_per_s": m.train_images_per_s,
                    "dispatches_per_step": m.dispatches_per_step,
                    "submissions_per_step": m.submissions_per_step,
                    "plans_compiled_per_step": m.plans_per_step,
                    "peak_bytes": m.peak_bytes,
                    "first_forward_s": m.first_forward_s,
                    "first_step_s": m.first_step_s,
                    "last_loss": m.loss,
                    "gpu_ms_by_kernel": m.profile.as_ref().map(|p| p.ms_by_kind()),
                }));
            }
            Err(e) => {
                println!(
                    "{:<17} {:>11} {:>5}  failed: {e}",
                    case.name, input, case.batch
                );
                rows.push(serde_json::json!({
                    "model": case.name,
                    "input": case.input,
                    "batch": case.batch,
                    "error": e.to_string(),
                }));
            }
        }
    }
    if only
        .as_ref()
        .is_none_or(|o| "data-loading".contains(o.as_str()))
    {
        let (_, dev) = open_device("models");
        rows.push(data_loading::run(quick, &dev));
    }
    let path = write_json("models.json", &serde_json::Value::Array(rows));
    println!("wrote {}", path.display());
}
