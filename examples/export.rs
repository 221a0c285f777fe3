//! Exports a model to an ONNX file, for onnxruntime and the other runtimes that read ONNX:
//!
//! ```text
//! cargo run --release --example export -- --weights runs/mnist/lenet5.safetensors --out lenet5.onnx
//! cargo run --release --example export -- --model resnet20 --weights resnet20.safetensors \
//!     --image-size 32 --channels 3 --out resnet20.onnx
//! cargo run --release --example export -- --model resnet20 --channels 3 --out untrained.onnx
//! ```
//!
//! The weights are a checkpoint of `examples/mnist.rs` or a PyTorch `state_dict` saved with
//! `safetensors.torch.save_file`, loaded as `examples/classify.rs` loads them (name the model
//! with `--model` when the file does not record it); without `--weights` the model is freshly
//! initialised (`--channels`, `--classes`). The file holds the inference graph for
//! `[batch, channels, size, size]` images (the batch size is left open) with input `input` and
//! output `logits`; the normalisation the model was trained with is not part of it.

use clap::Parser;
use kiln::classify::{load_classifier, MAX_INPUT_SIDE};
use kiln::models::{by_name, MODEL_NAMES};
use kiln::nn::{Module, ParamBuilder};
use kiln::prelude::*;
use std::path::PathBuf;

/// Export a kiln model to ONNX.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The model (default: the one the checkpoint records; required without --weights).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(MODEL_NAMES))]
    model: Option<String>,
    /// The checkpoint (safetensors): from examples/mnist.rs or a PyTorch state_dict. Without
    /// it, the model is exported with fresh weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// The ONNX file to write.
    #[arg(long, default_value = "model.onnx")]
    out: PathBuf,
    /// Height and width of the input images (default: the checkpoint's, else 28).
    #[arg(long)]
    image_size: Option<usize>,
    /// Input channels (default: the checkpoint's, else 1). With --weights it must agree with
    /// the checkpoint.
    #[arg(long)]
    channels: Option<usize>,
    /// Classes of a model with fresh weights (a checkpoint says its own).
    #[arg(long, default_value_t = 10)]
    classes: usize,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> kiln::Result<()> {
    // Exporting only reads the weights: the CPU device does, without starting a GPU.
    let dev = Device::cpu();
    let (model, name, channels, size): (Box<dyn Module>, String, usize, Option<[usize; 2]>) =
        match &args.weights {
            Some(path) => {
                let net = load_classifier(args.model.as_deref(), path, &dev)?;
                if let Some(c) = args.channels.filter(|&c| c != net.in_channels) {
                    return Err(KilnError::InvalidArgument(format!(
                        "--channels {c}, but the model in {} takes {} channels",
                        path.display(),
                        net.in_channels
                    )));
                }
                (net.model, net.name, net.in_channels, net.input_size)
            }
            None => {
                let Some(name) = args.model.clone() else {
                    return Err(KilnError::InvalidArgument(
                        "give --weights FILE, or --model to export a freshly initialised model"
                            .into(),
                    ));
                };
                let channels = args.channels.unwrap_or(1);
                let model = by_name(&name, channels, args.classes, &ParamBuilder::new(&dev, 0))?;
                model.set_training(false);
                (model, name, channels, None)
            }
        };
    let [h, w] = match args.image_size {
        Some(s) if (1..=MAX_INPUT_SIDE).contains(&s) => [s, s],
        Some(s) => {
            return Err(KilnError::InvalidArgument(format!(
                "--image-size {s}: give 1 to {MAX_INPUT_SIDE} pixels"
            )))
        }
        None => size.unwrap_or([28, 28]),
    };
    kiln::onnx::export(model.as_ref(), &[1, channels, h, w], &args.out)?;
    println!(
        "wrote {} ({name}, input [batch, {channels}, {h}, {w}], {} parameters)",
        args.out.display(),
        model.num_parameters()
    );
    Ok(())
}
