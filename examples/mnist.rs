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
//! `--sync-bn` computes the batch-norm statistics over the global batch (SyncBatchNorm).

use clap::Parser;
use kiln::data::Mnist;
use kiln::distributed::{DistributedOptimizer, World};
use kiln::models::MODEL_NAMES;
use kiln::nn::ParamBuilder;
use kiln::preflight;
use kiln::viz;
use std::path::PathBuf;

// The training loop, shared with examples/train.rs (a path, so that cargo does not take it for
// an example of its own).
// Its `println!` (used here too) prints on rank 0 only.
#[path = "trainer/mod.rs"]
#[macro_use]
mod trainer;

use std::sync::atomic::Ordering;
use trainer::checkpoint::resume;
use trainer::data::{Data, Source};
use trainer::fit::{fit, Settings};
use trainer::{DeviceKind, Norm, OnNan, OptimizerKind, ScheduleKind, SPEAKS};

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
    /// With --distributed: batch-norm statistics over the global batch, gathered from every
    /// rank (SyncBatchNorm), rather than each rank's own; for small per-rank batches.
    #[arg(long)]
    sync_bn: bool,
}

fn main() {
    std::process::exit(run_and_report(Args::parse()));
}

/// Runs the example; prints an error and returns the exit status (0 or 1).
pub(crate) fn run_and_report(args: Args) -> i32 {
    trainer::exit_status(run(args))
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
        device => device.device()?,
    };
    let run_dir = args.run_dir.clone();
    let checkpoint = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| run_dir.join(format!("{}.safetensors", args.model)));
    trainer::prepare_run_dir(&run_dir, &checkpoint)?;
    // KILN_PROFILE=1: kernel times from here on, reported when `profile` is dropped.
    let profile = kiln::profile::from_env(&dev, &run_dir);
    // Checks that both splits hold images of one non-empty size and test labels in range.
    let mnist = Mnist::from_dir(&args.data)?;
    println!(
        "{} training and {} test images from {}",
        mnist.train().len(),
        mnist.test().len(),
        args.data.display()
    );
    let [rows, cols] = mnist.train().image_dims();
    let classes = mnist.classes();
    let (data_mean, data_std) = mnist.train().pixel_mean_std();
    let (mean, std) = (args.mean.map(|m| [m]), args.std.map(|s| [s]));
    let given = (mean.as_ref().map(|m| &m[..]), std.as_ref().map(|s| &s[..]));
    let norm = Norm::choose(given, (&[data_mean], &[data_std]))?;
    println!(
        "{classes} classes, {rows}x{cols} images, normalised with mean {:.4} std {:.4}",
        norm.mean[0], norm.std[0]
    );
    let source = Source::Splits {
        train: mnist.train(),
        test: mnist.test(),
    };
    let names = (0..classes.max(10)).map(|d| d.to_string()).collect();
    let mut data = Data::new(source, names, 1, [rows, cols], norm, vec![data_std]);
    data.test_images = args.test_images.map_or(usize::MAX, |n| n as usize);
    data.shard = (world.rank(), world.size());
    if args.augment {
        data = data.with_augment(args.seed.wrapping_add(world.rank() as u64));
    }
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
    if args.sync_bn {
        let layers = world.sync_batch_norm(model);
        println!(
            "--sync-bn: {} batch-norm layers with statistics over {} ranks",
            layers.len(),
            world.size()
        );
    }
    let mut opt = trainer::optimizer(args.optimizer, model.parameters(), args.lr, args.on_nan);
    if world.size() > 1 {
        let params = model.named_parameters();
        opt = Box::new(DistributedOptimizer::new(world.clone(), params, opt));
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
    let settings = Settings {
        model: &args.model,
        epochs: args.epochs,
        first_epoch,
        batch_size: args.batch_size as usize,
        seed: args.seed,
        schedule: args.schedule,
        on_nan: args.on_nan,
        max_steps: args.max_steps.map(|m| m as usize),
        run_dir: &run_dir,
        checkpoint: &checkpoint,
        best: None,
        best_so_far: None,
        patience: None,
        class_list: false,
        pictures: !args.no_pictures,
        main_rank: world.is_main(),
    };
    fit(model, opt.as_mut(), &data, &settings)?;
    profile.finish()?;
    println!("run directory: {}", run_dir.display());
    Ok(())
}
