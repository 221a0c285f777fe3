//! Trains a model of the zoo (`--model lenet5|alexnet|resnet20`, default LeNet-5) on MNIST
//! digits on the GPU: mini-batches and epochs, cross-entropy, Adam (or SGD / AdamW), a progress
//! bar, the test accuracy after each epoch, and a checkpoint that `--resume` continues exactly.
//! Each training step (forward, backward, update) is one graph, one plan and one submission,
//! which the next step replays from the plan cache.
//!
//! `cargo run --release --example mnist` uses the real digits shipped in `data/mnist-10k`
//! (8,000 training and 2,000 test images); `--data DIR` takes any directory of MNIST-format
//! files, raw or gzipped (full MNIST; Fashion-MNIST, e.g. `--data
//! /usr/share/datasets/fashion-mnist` from Debian's `dataset-fashion-mnist`). Images are
//! normalised with the training set's own mean and standard deviation unless `--mean`/`--std`
//! say otherwise; `--max-steps N` and `--test-images N` make short smoke runs. `--help` lists
//! the options.
//!
//! It prints the model's summary (layers, output shapes, parameters, multiply-adds, receptive
//! fields) first, and writes into its run directory (`--run-dir`, default `runs/mnist/`):
//! `metrics.csv` (loss, accuracy and images/s per step, train and test per epoch), the
//! checkpoint (`<model>.safetensors`: the model's `state_dict`, the optimiser's state, and the
//! model name, input size and normalisation that `examples/classify.rs` reads), and unless
//! `--no-pictures`: `curves.png`, `<layer>_filters.png` for the model's first two convolutions
//! (`conv1_filters.png`, `conv2_filters.png` for LeNet-5), `feature_maps.png` (one test digit
//! through its first two convolutions), `confusion.png` (the test set after the last epoch) and
//! `plan.dot` (the training step's kernels; `plan.svg` too where Graphviz is installed). With
//! `KILN_PROFILE=1` it prints a table of the GPU kernels at the end and writes it as
//! `profile.json`.
//!
//! Everything that can be checked is checked before the first step (the directories it writes,
//! the data, the image size against the model). A step whose loss or gradient is not finite
//! stops the run with an error naming the step and the likely causes (`--on-nan skip` skips
//! such steps instead and counts them); a checkpoint is never written from non-finite values.
//!
//! `--distributed` trains data-parallel on the ranks of `mpirun` (build with `--features mpi`;
//! without it the run is one process): each rank reads its shard of every epoch at
//! `--batch-size` images per step (the global batch is that times the ranks), the gradients are
//! averaged over the ranks, and rank 0 alone prints, draws and writes files; an error on any rank
//! ends every rank. `mpirun -np 2 target/release/examples/mnist --distributed --epochs 3`.

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use kiln::data::Split;
use kiln::data::{Augment, Mnist};
use kiln::distributed::{DistributedOptimizer, World};
use kiln::models::MODEL_NAMES;
use kiln::nn::{Module, ParamBuilder};
use kiln::optim::{Adam, NonFinitePolicy, Optimizer, Schedule, Sgd, StepReport};
use kiln::preflight;
use kiln::prelude::*;
use kiln::viz::{self, Metrics};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

// Parts of this example, in examples/mnist/ (paths, so that cargo does not take them for
// examples of their own).
#[path = "mnist/checkpoint.rs"]
mod checkpoint;
#[path = "mnist/divergence.rs"]
mod divergence;
#[path = "mnist/pictures.rs"]
mod pictures;

use checkpoint::{resume, save, CheckpointInfo};
use divergence::{save_metrics, Divergence, SkippedStep};
use pictures::pictures;

/// False on the ranks other than 0 of a `--distributed` run: they print nothing (their errors
/// still reach the terminal, through stderr).
static SPEAKS: AtomicBool = AtomicBool::new(true);

// Every `println!` of this file (after the modules, which print only on rank 0) goes through
// SPEAKS.
macro_rules! println {
    ($($t:tt)*) => {
        if SPEAKS.load(Ordering::Relaxed) {
            std::println!($($t)*)
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum OptimizerKind {
    Adam,
    Adamw,
    Sgd,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum ScheduleKind {
    /// The same learning rate throughout.
    Constant,
    /// Cosine annealing from the learning rate to 0 over all the run's steps.
    Cosine,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum OnNan {
    /// Stop with an error naming the step (the last good checkpoint is kept).
    Stop,
    /// Skip the step's update (parameters and optimiser state stay as they were) and go on.
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum DeviceKind {
    /// The best wgpu adapter (a GPU, else the software Vulkan driver).
    Gpu,
    /// The plain-Rust reference executor (slow; for checking).
    Cpu,
}

/// Train a model of the zoo on MNIST-format images.
#[derive(Parser, Debug)]
#[command(version, about)]
pub(crate) struct Args {
    /// The model: LeNet-5, the small AlexNet, or the CIFAR ResNet-20 (for 1-channel images).
    #[arg(long, default_value = "lenet5", value_parser = clap::builder::PossibleValuesParser::new(MODEL_NAMES))]
    model: String,
    /// Directory with train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz),
    /// t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k"))]
    data: PathBuf,
    /// Passes over the training set.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Learning rate (default: 1e-3 for Adam and AdamW, 0.05 for SGD with momentum 0.9).
    #[arg(long)]
    lr: Option<f64>,
    /// The optimiser.
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptimizerKind,
    /// Learning-rate schedule, step by step.
    #[arg(long, value_enum, default_value = "constant")]
    schedule: ScheduleKind,
    /// Seed of the initial weights and of the shuffles.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where to train.
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceKind,
    /// Checkpoint written after every epoch (safetensors, PyTorch state_dict names); default:
    /// <model>.safetensors in the run directory.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Directory for the metrics, pictures, checkpoint and profile of this run.
    #[arg(long, default_value = "runs/mnist")]
    run_dir: PathBuf,
    /// Write no pictures (metrics.csv and the checkpoint are still written).
    #[arg(long)]
    no_pictures: bool,
    /// Continue from this checkpoint (weights, optimiser state and epoch).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Augment the training batches on the device: random crop (padding 2), rotation (up to 10
    /// degrees) and scaling (0.9 to 1.1), seeded by --seed.
    #[arg(long)]
    augment: bool,
    /// Stop after this many training steps in all (the epoch ends there, is tested and
    /// checkpointed): for smoke runs.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_steps: Option<u64>,
    /// Test on the first N test images only (default: all of them): for smoke runs.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    test_images: Option<u64>,
    /// Mean of the normalisation (default: the training pixels' mean, scaled to [0, 1]).
    #[arg(long)]
    mean: Option<f32>,
    /// Standard deviation of the normalisation (default: the training pixels').
    #[arg(long)]
    std: Option<f32>,
    /// What a step whose loss or gradient is NaN or infinite does.
    #[arg(long, value_enum, default_value = "stop")]
    on_nan: OnNan,
    /// Data-parallel over the ranks of `mpirun` (needs `--features mpi`): --batch-size images
    /// per rank and step.
    #[arg(long)]
    distributed: bool,
}

fn main() {
    std::process::exit(run_and_report(Args::parse()));
}

/// Runs the example; prints an error and returns the exit status (0 or 1).
pub(crate) fn run_and_report(args: Args) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

pub(crate) fn run(args: Args) -> kiln::Result<()> {
    let world = match args.distributed {
        true => kiln::distributed::init()?,
        false => World::single(),
    };
    if world.size() == 1 {
        if args.distributed {
            eprintln!(
                "note: --distributed with one process (start it with mpirun, from a build with \
                 --features mpi, to use several)"
            );
        }
        return train(args, &world);
    }
    SPEAKS.store(world.is_main(), Ordering::Relaxed);
    // A rank that fails ends every rank (the others would wait for it in the next all-reduce).
    let result = train(args, &world);
    world.abort_on_error(result);
    Ok(())
}

/// The run, as rank `world.rank()` of `world.size()`.
fn train(args: Args, world: &World) -> kiln::Result<()> {
    let dev = match args.device {
        DeviceKind::Gpu if world.size() > 1 => world.device()?,
        DeviceKind::Gpu => Device::default()?,
        DeviceKind::Cpu => Device::cpu(),
    };
    let run_dir = args.run_dir.clone();
    std::fs::create_dir_all(&run_dir).map_err(|e| KilnError::Io {
        msg: format!(
            "{}: cannot create the run directory: {e}",
            run_dir.display()
        ),
        source: e,
    })?;
    preflight::check_writable_dir(&run_dir, "the run directory")?;
    let checkpoint = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| run_dir.join(format!("{}.safetensors", args.model)));
    preflight::check_checkpoint_path(&checkpoint)?;
    // KILN_PROFILE=1: kernel times from here on, reported when `profile` is dropped.
    let profile = kiln::profile::from_env(&dev, &run_dir);
    // Checks that both splits hold images of one non-empty size and test labels in range.
    let data = Mnist::from_dir(&args.data)?;
    println!(
        "{} training and {} test images from {}",
        data.train().len(),
        data.test().len(),
        args.data.display()
    );
    let [rows, cols] = data.train().image_dims();
    let classes = data.classes();
    let (data_mean, data_std) = data.train().pixel_mean_std();
    let norm = Norm {
        mean: args.mean.unwrap_or(data_mean),
        std: args.std.unwrap_or(data_std),
    };
    if !(norm.mean.is_finite() && norm.std.is_finite() && norm.std > 0.0) {
        return Err(KilnError::InvalidArgument(format!(
            "normalisation needs a finite mean and a positive std, got mean {} std {}",
            norm.mean, norm.std
        )));
    }
    println!(
        "{classes} classes, {rows}x{cols} images, normalised with mean {:.4} std {:.4}",
        norm.mean, norm.std
    );
    let pb = ParamBuilder::new(&dev, args.seed);
    let model = kiln::models::by_name(&args.model, 1, classes, &pb)?;
    let model = model.as_ref();
    world.broadcast_model(model)?;
    preflight::check_input_size(model, &args.model, 1, [rows, cols])?;
    println!(
        "{}:\n{}",
        args.model,
        viz::summary(model, &[1, 1, rows, cols])?
    );
    let mut opt: Box<dyn Optimizer> = match args.optimizer {
        OptimizerKind::Adam => Box::new(Adam::new(model.parameters(), args.lr.unwrap_or(1e-3))),
        OptimizerKind::Adamw => Box::new(Adam::adamw(
            model.parameters(),
            args.lr.unwrap_or(1e-3),
            0.01,
        )),
        OptimizerKind::Sgd => Box::new(
            Sgd::new(model.parameters(), args.lr.unwrap_or(0.05)).with_momentum(0.9, false),
        ),
    };
    opt.set_non_finite_policy(match args.on_nan {
        OnNan::Stop => NonFinitePolicy::Apply,
        OnNan::Skip => NonFinitePolicy::Skip,
    });
    if world.size() > 1 {
        opt = Box::new(DistributedOptimizer::new(
            world.clone(),
            model.named_parameters(),
            opt,
        ));
    }
    let mut first_epoch = 0;
    if let Some(path) = &args.resume {
        first_epoch = resume(path, &args.model, model, opt.as_mut(), &dev)?;
        println!("resumed from {} after epoch {first_epoch}", path.display());
    }
    if first_epoch >= args.epochs {
        println!(
            "nothing to train: {} epochs asked for (--epochs) and {first_epoch} done; no step \
             runs and no checkpoint is written",
            args.epochs
        );
        return Ok(());
    }
    let divergence = Divergence {
        lr: opt.learning_rate(),
        std: norm.std,
        data_std,
        checkpoint: &checkpoint,
    };
    // Epochs in the checkpoint this run last wrote, and the steps it skipped (--on-nan skip).
    let mut saved_epochs: Option<usize> = None;
    let mut skipped: Vec<SkippedStep> = vec![];

    let batch = args.batch_size as usize;
    let shard_len = data.train().len().div_ceil(world.size());
    let steps_per_epoch = shard_len.div_ceil(batch);
    let mut metrics = Metrics::new();
    let mut last_test: Option<TestPass> = None;
    let mut plan_dot: Option<String> = None;
    let augment = args.augment.then(|| {
        Augment::new(args.seed.wrapping_add(world.rank() as u64))
            .random_crop(2)
            .rotation(10.0)
            .scale(0.9, 1.1)
            .normalize(&[norm.mean], &[norm.std])
    });
    let max_steps = args.max_steps.map_or(usize::MAX, |m| m as usize);
    let total_steps = (steps_per_epoch * args.epochs).min(max_steps);
    let base_lr = opt.learning_rate();
    let schedule = match args.schedule {
        ScheduleKind::Constant => Schedule::Constant,
        ScheduleKind::Cosine => Schedule::Cosine {
            total: total_steps,
            min_lr: 0.0,
        },
    };
    let mut steps_done = 0;
    for epoch in first_epoch..args.epochs {
        if steps_done >= max_steps {
            break;
        }
        let bar = match world.is_main() {
            true => ProgressBar::new(steps_per_epoch as u64),
            false => ProgressBar::hidden(),
        };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}", epoch + 1));
        let start = Instant::now();
        let mut seen = 0;
        // Losses and accuracies of the steps not read yet: reading waits for the GPU, so they
        // are read every 10 steps.
        let mut unread: Vec<(Tensor, Tensor, StepReport)> = vec![];
        let train = data.train();
        let shuffled = train.shuffled(args.seed.wrapping_add(epoch as u64)).shard(
            world.rank(),
            world.size(),
            true,
        );
        let mut batches = shuffled.batches(batch).normalize(norm.mean, norm.std);
        if let Some(aug) = &augment {
            // Normalised after the warp, so that what a crop or turn brings in is black.
            batches = batches.unnormalized().transform(aug)?;
        }
        let steps = steps_per_epoch.min(max_steps - steps_done);
        let first_loss = metrics.steps.len();
        // The bar draws only on a terminal; into a log file a line goes every ~10% instead.
        let log_lines = !std::io::stderr().is_terminal() && world.is_main();
        let mut next_line = 0;
        for (step, (images, labels)) in batches.take(steps).enumerate() {
            let n = labels.numel();
            let logits = model.forward(&images);
            let loss = logits.cross_entropy(&labels);
            let mut grads = loss.backward();
            let accuracy = kiln::no_grad(|| logits.accuracy(&labels));
            grads.compute_with_step(&accuracy);
            if plan_dot.is_none() && !args.no_pictures {
                let params = model.parameters();
                let mut targets: Vec<&Tensor> =
                    params.iter().filter_map(|p| grads.get(p)).collect();
                targets.push(&loss);
                targets.push(&accuracy);
                plan_dot = Some(viz::plan_dot(&targets, &model.named_parameters()));
            }
            // The optimiser's step count survives --resume, so the schedule does too.
            opt.set_learning_rate(schedule.at(base_lr, opt.steps() as usize));
            let report = opt.step(&grads)?;
            seen += n;
            steps_done += 1;
            unread.push((loss, accuracy, report));
            if step % 10 == 0 || step + 1 == steps {
                let rate = seen as f64 / start.elapsed().as_secs_f64();
                let first = step + 1 - unread.len();
                for (k, (l, a, report)) in unread.drain(..).enumerate() {
                    // The run's step number (from 0) and the step of this epoch (from 1).
                    let (global, in_epoch) = (steps_done - (step - first - k) - 1, first + k + 1);
                    let loss = l.item::<f32>()? as f64;
                    if !report.is_finite()? {
                        if args.on_nan == OnNan::Stop {
                            bar.finish_and_clear();
                            let at = (global, in_epoch, epoch + 1);
                            return Err(divergence.error(at, loss, saved_epochs));
                        }
                        skipped.push(SkippedStep {
                            step: global,
                            epoch: epoch + 1,
                            loss,
                        });
                        continue;
                    }
                    metrics.push_step(epoch + 1, loss, a.item::<f32>()? as f64, rate);
                    metrics.steps.last_mut().expect("pushed").step = global;
                }
                let Some(last) = metrics.steps.last() else {
                    bar.inc(1);
                    continue;
                };
                let message = format!(
                    "loss {:.4} acc {:5.1}% {rate:.0} img/s",
                    last.loss,
                    last.accuracy * 100.0
                );
                if log_lines && step >= next_line {
                    eprintln!("epoch {} step {}/{steps}: {message}", epoch + 1, step + 1);
                    next_line = step + (steps / 10).max(10);
                }
                bar.set_message(message);
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();
        let losses: Vec<f64> = metrics.steps[first_loss..].iter().map(|s| s.loss).collect();
        let test_split = data
            .test()
            .take(args.test_images.map_or(usize::MAX, |n| n as usize));
        let test = test_pass(model, test_split, norm)?;
        metrics.end_epoch(epoch + 1, Some(test.loss), Some(test.accuracy));
        println!(
            "epoch {}: {} steps, train loss {:.4} -> {:.4} (first and last recorded), test \
             accuracy {:.2}%, test loss {:.4} ({:.1} s, {:.0} images/s)",
            epoch + 1,
            steps,
            losses.first().copied().unwrap_or(f64::NAN),
            losses.last().copied().unwrap_or(f64::NAN),
            test.accuracy * 100.0,
            test.loss,
            seconds,
            seen as f64 / seconds
        );
        last_test = Some(test);
        let info = CheckpointInfo {
            model: &args.model,
            epochs: epoch + 1,
            norm,
            size: [rows, cols],
        };
        if world.is_main() {
            save(&checkpoint, model, opt.as_ref(), &info)?;
            save_metrics(&run_dir.join("metrics.csv"), &metrics, &skipped)?;
        }
        saved_epochs = Some(epoch + 1);
    }
    if steps_done >= max_steps {
        println!("stopped after {steps_done} steps (--max-steps)");
    }
    if args.on_nan == OnNan::Skip {
        println!(
            "skipped {} of {steps_done} steps whose loss or gradient was not finite (--on-nan skip)",
            skipped.len()
        );
    }
    println!("checkpoint: {}", checkpoint.display());
    if !args.no_pictures && world.is_main() {
        pictures(
            &run_dir,
            model,
            &data,
            norm,
            &metrics,
            last_test.as_ref(),
            plan_dot.as_deref(),
        )?;
    }
    profile.finish()?;
    println!("run directory: {}", run_dir.display());
    Ok(())
}

/// The normalisation of the pixels after scaling to [0, 1]: `(x - mean) / std`.
#[derive(Clone, Copy, Debug)]
struct Norm {
    mean: f32,
    std: f32,
}

/// The test set's loss, accuracy and every prediction.
struct TestPass {
    loss: f64,
    accuracy: f64,
    preds: Vec<usize>,
    labels: Vec<usize>,
}

/// One pass over `split` in evaluation mode without gradients, 500 images per batch.
fn test_pass(model: &dyn Module, split: Split<'_>, norm: Norm) -> kiln::Result<TestPass> {
    model.set_training(false);
    let result = kiln::no_grad(|| -> kiln::Result<TestPass> {
        let (mut loss_sum, mut preds, mut labels) = (0.0, vec![], vec![]);
        for (images, y) in split.batches(500).normalize(norm.mean, norm.std) {
            let logits = model.forward(&images);
            let loss = logits.cross_entropy(&y).mul_scalar(y.numel() as f64);
            let pred = logits.argmax(1);
            Tensor::realize_all(&[&loss, &pred])?;
            loss_sum += loss.item::<f32>()? as f64;
            preds.extend(pred.to_vec::<i32>()?.into_iter().map(|p| p as usize));
            labels.extend(y.to_vec::<i32>()?.into_iter().map(|l| l as usize));
        }
        let n = labels.len().max(1) as f64;
        let correct = preds.iter().zip(&labels).filter(|(p, l)| p == l).count();
        Ok(TestPass {
            loss: loss_sum / n,
            accuracy: correct as f64 / n,
            preds,
            labels,
        })
    });
    model.set_training(true);
    result
}
