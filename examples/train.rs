//! The general trainer: any data set kiln reads, any model of the zoo, on the GPU.
//!
//! ```text
//! # photos/train/<class>/*.jpg, photos/val/<class>/*.jpg (or photos/<class>/*.jpg and --val-split 0.1)
//! cargo run --release --example train -- --data photos --model resnet18 --image-size 64 --epochs 10
//! cargo run --release --example train -- --data photos --model resnet18 --weights resnet18.safetensors --freeze-backbone
//! cargo run --release --example classify -- --weights runs/train/resnet18.safetensors some.jpg
//! ```
//!
//! `--data DIR` is an IDX directory (MNIST, Fashion-MNIST), a CIFAR-10/100 binary directory or
//! a folder of pictures with one sub-folder per class (`kiln::data::DataFormat::detect` tells
//! which); pictures are decoded and resized to `--image-size` on `--workers` CPU threads ahead
//! of the GPU, and files that do not decode are skipped with a warning and counted. Images are
//! normalised with the training set's own per-channel mean and std unless `--mean`/`--std` say
//! otherwise. `--weights FILE` starts from a PyTorch or kiln `state_dict` (safetensors): every
//! tensor but the head's is loaded, the head is new for the data's class count, and
//! `--freeze-backbone` trains the head alone.
//!
//! Everything `examples/mnist.rs` does, with the same code (`examples/trainer/`): the model's
//! summary, a progress bar with ETA, the checks before the first step, the test (validation)
//! loss and accuracy after each epoch, `metrics.csv`, the pictures (curves, filters, feature
//! maps, the confusion matrix with the class names, the plan), the cosine schedule (the
//! default here), `--resume`, and a clear stop when the loss is not finite. Into `--out`
//! (default `runs/train/`) it writes `last.safetensors` after every epoch (for `--resume`) and
//! keeps the checkpoint of the epoch with the lowest validation loss as `<model>.safetensors`,
//! with the class list beside it (`<model>.classes.txt`, which `classify` reads);
//! `--patience N` stops when the validation loss has not improved for N epochs.

use clap::Parser;
use kiln::checkpoint as ckpt;
use kiln::data::{Cifar, DataFormat, FolderOptions, ImageFolder, Mnist, Split};
use kiln::models::{by_name, FineTune, MODEL_NAMES};
use kiln::nn::{load_state_dict_with, LoadOptions, Module, ParamBuilder};
use kiln::prelude::*;
use kiln::{preflight, viz};
use std::path::{Path, PathBuf};

// The training loop, shared with examples/mnist.rs (a path, so that cargo does not take it for
// an example of its own).
#[path = "trainer/mod.rs"]
mod trainer;

use trainer::checkpoint::{recorded_test_loss, resume};
use trainer::data::{Data, Source};
use trainer::fit::{fit, Settings};
use trainer::{DeviceKind, Norm, OnNan, OptimizerKind, ScheduleKind};

/// Train a model of the zoo on an IDX, CIFAR or image-folder data set.
#[derive(Parser, Debug)]
#[command(version, about)]
pub(crate) struct Args {
    /// The data: an IDX (MNIST-format) directory, a CIFAR-10/100 binary directory, or a folder
    /// of pictures with one sub-folder per class (under train/ and val/, or split by
    /// --val-split).
    #[arg(long)]
    data: PathBuf,
    /// The model.
    #[arg(long, default_value = "resnet18", value_parser = clap::builder::PossibleValuesParser::new(MODEL_NAMES))]
    model: String,
    /// Side of the square images a folder's pictures are resized to.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    image_size: u64,
    /// Channels of a folder's images: 3 (RGB) or 1 (grey). IDX and CIFAR data keep their own.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=3))]
    channels: u64,
    /// The fraction of each class held out for validation (seeded by --seed) when a folder has
    /// no val/.
    #[arg(long, default_value_t = 0.1)]
    val_split: f64,
    /// Passes over the training set.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Learning rate (default: 1e-3 for Adam and AdamW, 0.05 for SGD with momentum 0.9).
    #[arg(long)]
    lr: Option<f64>,
    /// The optimiser.
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptimizerKind,
    /// Learning-rate schedule, step by step.
    #[arg(long, value_enum, default_value = "cosine")]
    schedule: ScheduleKind,
    /// Threads that decode and resize a folder's pictures (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    workers: Option<u64>,
    /// Seed of the initial weights, the validation split and the shuffles.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Start from these weights (safetensors: a PyTorch state_dict or a kiln checkpoint), all
    /// but the head's; the head is new, for the data's class count.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Train the head alone: every other parameter is frozen.
    #[arg(long)]
    freeze_backbone: bool,
    /// Stop when the validation loss has not improved for this many epochs.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    patience: Option<u64>,
    /// Directory for the checkpoints, class list, metrics and pictures of this run.
    #[arg(long, default_value = "runs/train")]
    out: PathBuf,
    /// Continue from this checkpoint (weights, optimiser state and epoch), e.g.
    /// runs/train/last.safetensors.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Augment the training batches on the device: random crop (padding 2), rotation (up to 10
    /// degrees) and scaling (0.9 to 1.1), seeded by --seed.
    #[arg(long)]
    augment: bool,
    /// Per-channel means of the normalisation, comma-separated (default: the training images').
    #[arg(long, value_delimiter = ',')]
    mean: Option<Vec<f32>>,
    /// Per-channel standard deviations, comma-separated (default: the training images').
    #[arg(long, value_delimiter = ',')]
    std: Option<Vec<f32>>,
    /// A picture that does not decode is an error instead of being skipped.
    #[arg(long)]
    strict: bool,
    /// Write no pictures (metrics.csv and the checkpoints are still written).
    #[arg(long)]
    no_pictures: bool,
    /// Stop after this many training steps in all: for smoke runs.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_steps: Option<u64>,
    /// Validate on N validation images only (the first N of IDX or CIFAR data, a seeded sample
    /// of a folder): for smoke runs.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    test_images: Option<u64>,
    /// What a step whose loss or gradient is NaN or infinite does.
    #[arg(long, value_enum, default_value = "stop")]
    on_nan: OnNan,
    /// Where to train.
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceKind,
}

fn main() {
    std::process::exit(run_and_report(Args::parse()));
}

/// Runs the example; prints an error and returns the exit status (0 or 1).
pub(crate) fn run_and_report(args: Args) -> i32 {
    trainer::exit_status(run(args))
}

/// The data set as read, which the batches borrow.
enum Loaded {
    Idx(Mnist),
    Cifar(Cifar),
    Folder(ImageFolder),
}

pub(crate) fn run(args: Args) -> kiln::Result<()> {
    if !(0.0..1.0).contains(&args.val_split) {
        return Err(KilnError::InvalidArgument(format!(
            "--val-split: a fraction in [0, 1), got {}",
            args.val_split
        )));
    }
    let dev = args.device.device()?;
    let best = args.out.join(format!("{}.safetensors", args.model));
    let last = args.out.join("last.safetensors");
    trainer::prepare_run_dir(&args.out, &best)?;
    let profile = kiln::profile::from_env(&dev, &args.out);
    let loaded = load(&args)?;
    let data = data_of(&loaded, &args)?;
    let (c, [h, w]) = (data.channels, data.dims);
    let classes = data.classes.len();
    println!(
        "{} training and {} validation images, {classes} classes, {c}x{h}x{w}, normalised with \
         mean {} std {}",
        data.train_len(),
        data.test_len(),
        rounded(&data.norm.mean),
        rounded(&data.norm.std)
    );
    let pb = ParamBuilder::new(&dev, args.seed);
    let model = by_name(&args.model, c, classes, &pb)?;
    preflight::check_input_size(model.as_ref(), &args.model, c, [h, w])?;
    if let Some(path) = &args.weights {
        load_backbone(model.as_ref(), &args.model, path, &dev)?;
    }
    if args.freeze_backbone {
        let frozen = model.freeze_backbone()?;
        println!(
            "froze {} parameter tensors; training the head {}* alone",
            frozen.len(),
            model.head_prefix()
        );
    }
    let model: &dyn Module = model.as_ref();
    println!("{}:\n{}", args.model, viz::summary(model, &[1, c, h, w])?);
    let mut opt = trainer::optimizer(args.optimizer, model.parameters(), args.lr, args.on_nan);
    let mut first_epoch = 0;
    let mut best_so_far = None;
    if let Some(path) = &args.resume {
        first_epoch = resume(path, &args.model, model, opt.as_mut(), &dev)?;
        best_so_far = recorded_test_loss(&best);
        println!("resumed from {} after epoch {first_epoch}", path.display());
    }
    if first_epoch >= args.epochs {
        println!(
            "nothing to train: {} epochs asked for (--epochs) and {first_epoch} done",
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
        run_dir: &args.out,
        checkpoint: &last,
        best: Some(&best),
        best_so_far,
        patience: args.patience.map(|p| p as usize),
        class_list: true,
        pictures: !args.no_pictures,
        main_rank: true,
    };
    fit(model, opt.as_mut(), &data, &settings)?;
    if let Loaded::Folder(folder) = &loaded {
        println!("{} files skipped (not decodable)", folder.skipped());
    }
    profile.finish()?;
    println!("run directory: {}", args.out.display());
    Ok(())
}

/// Reads the data set of `--data`, whichever format it is.
fn load(args: &Args) -> kiln::Result<Loaded> {
    let format = DataFormat::detect(&args.data)?;
    Ok(match format {
        DataFormat::Idx => Loaded::Idx(Mnist::from_dir(&args.data)?),
        DataFormat::Cifar => Loaded::Cifar(Cifar::from_dir(&args.data)?),
        DataFormat::ImageFolder => {
            let size = args.image_size as usize;
            let channels = args.channels as usize;
            if channels == 2 {
                return Err(KilnError::InvalidArgument(
                    "--channels: 1 (grey) or 3 (RGB), not 2".into(),
                ));
            }
            let mut options = FolderOptions::new()
                .image_size(size, size)
                .channels(channels)
                .val_split(args.val_split)
                .seed(args.seed)
                .strict(args.strict);
            if let Some(n) = args.workers {
                options = options.threads(n as usize);
            }
            Loaded::Folder(ImageFolder::open_with(&args.data, options)?)
        }
    })
}

/// The batches, class names and normalisation of the data as read.
fn data_of<'a>(loaded: &'a Loaded, args: &Args) -> kiln::Result<Data<'a>> {
    let given = (args.mean.as_deref(), args.std.as_deref());
    let numbers = |n: usize| (0..n).map(|c| c.to_string()).collect::<Vec<_>>();
    let splits = |train: Split<'a>, test: Split<'a>, names: Vec<String>| {
        let (mean, std) = train.channel_mean_std();
        let norm = Norm::choose(given, (&mean, &std))?;
        let (channels, dims) = (train.channels(), train.image_dims());
        let source = Source::Splits { train, test };
        Ok::<_, KilnError>(Data::new(source, names, channels, dims, norm, std))
    };
    let mut data = match loaded {
        Loaded::Idx(m) => splits(m.train(), m.test(), numbers(m.classes()))?,
        Loaded::Cifar(cifar) => {
            let names = cifar
                .class_names()
                .map_or_else(|| numbers(cifar.classes()), <[String]>::to_vec);
            splits(cifar.train(), cifar.test(), names)?
        }
        Loaded::Folder(folder) => {
            let (train, val) = (folder.train(), folder.val());
            if val.is_empty() {
                return Err(KilnError::Data(format!(
                    "{}: no validation images: add a val/ folder beside train/, or hold some \
                     out with --val-split (e.g. 0.1)",
                    folder.root().display()
                )));
            }
            let channels = args.channels as usize;
            let (mean, std) = match given {
                (Some(m), Some(s)) => (m.to_vec(), s.to_vec()),
                _ => {
                    println!(
                        "measuring the training images' mean and std (--mean/--std skip this)"
                    );
                    train.mean_std()
                }
            };
            let norm = Norm::choose(
                given,
                (
                    &fit_channels(&mean, channels),
                    &fit_channels(&std, channels),
                ),
            )?;
            let size = args.image_size as usize;
            let source = Source::Folder { train, val };
            let data_std = norm.std.clone();
            Data::new(
                source,
                folder.classes().to_vec(),
                channels,
                [size, size],
                norm,
                data_std,
            )
        }
    };
    data.test_images = args.test_images.map_or(usize::MAX, |n| n as usize);
    if args.augment {
        data = data.with_augment(args.seed);
    }
    Ok(data)
}

/// `values` with one value per channel (one value repeated).
fn fit_channels(values: &[f32], channels: usize) -> Vec<f32> {
    match values {
        [v] => vec![*v; channels],
        v => v.to_vec(),
    }
}

/// `values` with four decimals, comma-separated.
fn rounded(values: &[f32]) -> String {
    let v: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
    v.join(",")
}

/// Loads every tensor of the state dict in `path` but the head's into `model` (a kiln
/// checkpoint's optimiser state is left out); errors name the file and the head's parameters.
fn load_backbone(model: &dyn FineTune, name: &str, path: &Path, dev: &Device) -> kiln::Result<()> {
    let file = ckpt::load(path, dev)?;
    let values: Vec<(String, Tensor)> = file
        .tensors
        .into_iter()
        .filter(|(n, _)| !n.starts_with("optimizer."))
        .collect();
    let head = model.head_prefix();
    let head_params: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with(&head))
        .collect();
    let options = LoadOptions::new().skip(&[&head]);
    let report = load_state_dict_with(model, &values, &options).map_err(|e| {
        KilnError::Data(format!(
            "{}: cannot load these weights into a {name} for {} classes (everything but the \
             head, {}, which is new): {e}",
            path.display(),
            model.classes(),
            head_params.join(", ")
        ))
    })?;
    println!(
        "loaded {} tensors from {}; the head ({}) is new, for {} classes",
        report.loaded.len(),
        path.display(),
        head_params.join(", "),
        model.classes()
    );
    Ok(())
}
