//! Trains LeNet-5 on MNIST digits on the GPU: mini-batches and epochs, cross-entropy, Adam (or
//! SGD / AdamW), a progress bar, the test accuracy after each epoch, and a checkpoint that
//! `--resume` continues exactly. Each training step (forward, backward, update) is one graph, one
//! plan and one submission, which the next step replays from the plan cache.
//!
//! `cargo run --release --example mnist` uses the real digits shipped in `data/mnist-10k`
//! (8,000 training and 2,000 test images); `--data DIR` takes any directory of MNIST-format
//! files (full MNIST, Fashion-MNIST). `--help` lists the options.

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use kiln::checkpoint;
use kiln::data::Mnist;
use kiln::models::LeNet5;
use kiln::nn::{evaluate, load_parameters, Module};
use kiln::optim::{Adam, Optimizer, Sgd};
use kiln::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum OptimizerKind {
    Adam,
    Adamw,
    Sgd,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum DeviceKind {
    /// The best wgpu adapter (a GPU, else the software Vulkan driver).
    Gpu,
    /// The plain-Rust reference executor (slow; for checking).
    Cpu,
}

/// Train LeNet-5 on MNIST-format digits.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
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
    /// Seed of the initial weights and of the shuffles.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where to train.
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceKind,
    /// Checkpoint written after every epoch (safetensors, PyTorch state_dict names).
    #[arg(long, default_value = "lenet5.safetensors")]
    checkpoint: PathBuf,
    /// Continue from this checkpoint (weights, optimiser state and epoch).
    #[arg(long)]
    resume: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> kiln::Result<()> {
    let dev = match args.device {
        DeviceKind::Gpu => Device::default()?,
        DeviceKind::Cpu => Device::cpu(),
    };
    let data = Mnist::from_dir(&args.data)?;
    println!(
        "{} training and {} test images from {}",
        data.train().len(),
        data.test().len(),
        args.data.display()
    );
    let model = LeNet5::new(&dev, args.seed);
    println!("LeNet-5: {} parameters", model.num_parameters());
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
    let mut first_epoch = 0;
    if let Some(path) = &args.resume {
        first_epoch = resume(path, &model, opt.as_mut(), &dev)?;
        println!("resumed from {} after epoch {first_epoch}", path.display());
    }

    let batch = args.batch_size as usize;
    let steps_per_epoch = data.train().len().div_ceil(batch);
    for epoch in first_epoch..args.epochs {
        let bar = ProgressBar::new(steps_per_epoch as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}", epoch + 1));
        let start = Instant::now();
        let mut seen = 0;
        let train = data.train();
        let shuffled = train.shuffled(args.seed.wrapping_add(epoch as u64));
        for (step, (images, labels)) in shuffled.batches(batch).enumerate() {
            let n = labels.numel();
            let logits = model.forward(&images);
            let loss = logits.cross_entropy(&labels);
            let mut grads = loss.backward();
            let accuracy = kiln::no_grad(|| logits.accuracy(&labels));
            grads.compute_with_step(&accuracy);
            opt.step(&grads)?;
            seen += n;
            // Reading values waits for the GPU; every 10 steps is enough for the bar.
            if step % 10 == 0 || step + 1 == steps_per_epoch {
                let rate = seen as f64 / start.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.4} acc {:5.1}% {rate:.0} img/s",
                    loss.item::<f32>()?,
                    accuracy.item::<f32>()? * 100.0
                ));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();
        let test_accuracy = evaluate(&model, data.test())?;
        println!(
            "epoch {}: test accuracy {:.2}% ({:.1} s, {:.0} images/s)",
            epoch + 1,
            test_accuracy * 100.0,
            seconds,
            seen as f64 / seconds
        );
        save(&args.checkpoint, &model, opt.as_ref(), epoch + 1)?;
    }
    println!("checkpoint: {}", args.checkpoint.display());
    Ok(())
}

/// Writes the model's parameters (PyTorch names) and the optimiser's state (`optimizer.` names)
/// with the number of epochs done.
fn save(path: &PathBuf, model: &LeNet5, opt: &dyn Optimizer, epochs: usize) -> kiln::Result<()> {
    let mut tensors = model.named_parameters();
    for (name, t) in opt.state() {
        tensors.push((format!("optimizer.{name}"), t));
    }
    let metadata = vec![
        ("model".to_string(), "LeNet5".to_string()),
        ("epochs".to_string(), epochs.to_string()),
    ];
    checkpoint::save(path, &tensors, &metadata)
}

/// Loads a checkpoint written by [`save`]; returns the number of epochs it had done.
fn resume(
    path: &PathBuf,
    model: &LeNet5,
    opt: &mut dyn Optimizer,
    dev: &Device,
) -> kiln::Result<usize> {
    let ckpt = checkpoint::load(path, dev)?;
    let (optim, params): (Vec<_>, Vec<_>) = ckpt
        .tensors
        .into_iter()
        .partition(|(n, _)| n.starts_with("optimizer."));
    load_parameters(model, &params)?;
    let optim: Vec<(String, Tensor)> = optim
        .into_iter()
        .map(|(n, t)| (n["optimizer.".len()..].to_string(), t))
        .collect();
    opt.load_state(&optim)?;
    let epochs = ckpt
        .metadata
        .iter()
        .find(|(k, _)| k == "epochs")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| {
            KilnError::Data(format!(
                "{}: no epoch count in the metadata",
                path.display()
            ))
        })?;
    Ok(epochs)
}
