//! Classifies image files with a trained model and prints each image's top-5 classes:
//!
//! ```text
//! cargo run --release --example classify -- --weights runs/mnist/lenet5.safetensors digit.png
//! ```
//!
//! The weights are a checkpoint of `examples/mnist.rs` (which records the model, the input size
//! and the normalisation it trained with) or a PyTorch `state_dict` saved with
//! `safetensors.torch.save_file` (then name the model with `--model` and give `--mean`/`--std`
//! if the training did not use MNIST's). Each image (PNG or JPEG) is resized to the model's
//! input, converted to gray or RGB as the model's first convolution takes, normalised, and all
//! of them go through the model in one batch, in evaluation mode. Class names are one per line
//! from `--labels FILE`, else the class list beside the weights (`<name>.classes.txt`, written
//! by `examples/train.rs`), else the digits for a 10-class model, else numbers.

use clap::Parser;
use kiln::classify::{load_classifier, read_labels, top_k, ImageInput, MAX_INPUT_SIDE};
use kiln::data::{class_list_path, read_class_list, MNIST_MEAN, MNIST_STD};
use kiln::prelude::*;
use std::path::PathBuf;

/// Classify images with a trained kiln model.
#[derive(Parser, Debug)]
#[command(version, about)]
pub(crate) struct Args {
    /// The model (default: the one the checkpoint records).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(kiln::models::MODEL_NAMES))]
    model: Option<String>,
    /// The checkpoint (safetensors): from examples/mnist.rs or a PyTorch state_dict.
    #[arg(long)]
    weights: PathBuf,
    /// Image files (PNG or JPEG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Per-channel means of the normalisation, comma-separated (default: the checkpoint's,
    /// else MNIST's 0.1307).
    #[arg(long, value_delimiter = ',')]
    mean: Option<Vec<f32>>,
    /// Per-channel standard deviations, comma-separated (default: the checkpoint's, else
    /// MNIST's 0.3081).
    #[arg(long, value_delimiter = ',')]
    std: Option<Vec<f32>>,
    /// Input size HxW the images are resized to (default: the checkpoint's, else 28x28; at most
    /// 4096 a side).
    #[arg(long, value_parser = parse_size)]
    size: Option<[usize; 2]>,
    /// Class names, one per line (default: the class list beside the weights,
    /// `<name>.classes.txt`, when there is one; else 0..9 for 10 classes, else the class numbers).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Invert gray levels first (for dark digits on a light background; MNIST is light on dark).
    #[arg(long)]
    invert: bool,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

/// `HxW`, each side 1 to [`MAX_INPUT_SIDE`]: checked here, before anything of that size exists.
fn parse_size(s: &str) -> std::result::Result<[usize; 2], String> {
    let parsed = s
        .split_once('x')
        .and_then(|(h, w)| Some([h.parse::<usize>().ok()?, w.parse::<usize>().ok()?]));
    match parsed {
        Some([h, w]) if h > MAX_INPUT_SIDE || w > MAX_INPUT_SIDE => Err(format!(
            "{s:?} is larger than the largest input size, {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE}"
        )),
        Some([h, w]) if h > 0 && w > 0 => Ok([h, w]),
        _ => Err(format!("{s:?} is not a size HxW such as 28x28")),
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

pub(crate) fn run(args: Args) -> kiln::Result<()> {
    let dev = Device::default()?;
    let net = load_classifier(args.model.as_deref(), &args.weights, &dev)?;
    if net.in_channels != 1 && net.in_channels != 3 {
        return Err(KilnError::InvalidArgument(format!(
            "{}: the model takes {} channels; images give 1 (gray) or 3 (RGB)",
            args.weights.display(),
            net.in_channels
        )));
    }
    let (ck_mean, ck_std) = net
        .normalization
        .clone()
        .unwrap_or_else(|| (vec![MNIST_MEAN], vec![MNIST_STD]));
    let mean = args.mean.unwrap_or(ck_mean);
    let std = args.std.unwrap_or(ck_std);
    let size = args.size.or(net.input_size).unwrap_or([28, 28]);
    let beside = class_list_path(&args.weights);
    let names: Vec<String> = match &args.labels {
        None if beside.is_file() => {
            let names = read_class_list(&args.weights)?;
            if names.len() != net.classes {
                return Err(KilnError::Data(format!(
                    "{}: {} class names for a model with {} classes (--labels FILE gives others)",
                    beside.display(),
                    names.len(),
                    net.classes
                )));
            }
            names
        }
        Some(path) => {
            let names = read_labels(path)?;
            if names.len() != net.classes {
                return Err(KilnError::Data(format!(
                    "{}: {} class names for a model with {} classes",
                    path.display(),
                    names.len(),
                    net.classes
                )));
            }
            names
        }
        None => (0..net.classes).map(|c| c.to_string()).collect(),
    };
    let input = ImageInput::new(net.in_channels, size)
        .normalize(&mean, &std)?
        .invert(args.invert);
    input.check(args.images.len(), &dev)?;
    println!(
        "{} ({} classes) from {}; images as {}x{}x{}, mean {:?}, std {:?}",
        net.name,
        net.classes,
        args.weights.display(),
        size[0],
        size[1],
        net.in_channels,
        input.mean,
        input.std
    );
    let x = input.load(&args.images, &dev)?;
    let logits = kiln::no_grad(|| net.model.forward(&x));
    for (path, ranked) in args.images.iter().zip(top_k(&logits, args.top)?) {
        println!("{}:", path.display());
        for (class, p) in ranked {
            println!("  {:>6.2}%  {}", p * 100.0, names[class]);
        }
    }
    Ok(())
}
