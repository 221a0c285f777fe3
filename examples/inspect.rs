//! Looks inside a trained model (LeNet-5 by default; any model of the zoo the `mnist` example
//! trains): loads a checkpoint written by the `mnist` example, classifies one digit (a PNG file,
//! or a test digit by index), prints the prediction, and writes the feature maps of every
//! convolution and the saliency map of the predicted class.
//!
//! ```text
//! cargo run --release --example inspect -- [--checkpoint FILE] [--image PNG | --index N] [--out DIR]
//! ```
//!
//! The checkpoint defaults to `runs/mnist/lenet5.safetensors` (what `cargo run --release
//! --example mnist` writes). A PNG is read as grayscale, scaled to 28x28 if it has another size,
//! and inverted when it is mostly light (MNIST digits are light on dark); then normalised as the
//! training digits were (the checkpoint records how; [`kiln::classify::ImageInput`]). Pictures
//! go to DIR (default `runs/inspect/`): `<conv>_feature_maps.png`
//! for each convolution found in the model's graph, and `saliency.png`.

use clap::Parser;
use kiln::classify::{load_classifier, ImageInput};
use kiln::data::{Mnist, MNIST_MEAN, MNIST_STD};
use kiln::prelude::*;
use kiln::viz::{self, LayerKind};
use std::path::{Path, PathBuf};

/// Classify one digit with a trained model and draw what its layers see.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Checkpoint written by the mnist example.
    #[arg(long, default_value = "runs/mnist/lenet5.safetensors")]
    checkpoint: PathBuf,
    /// A PNG image of a digit (any size; light digit on dark, or dark on light).
    #[arg(long, conflicts_with = "index")]
    image: Option<PathBuf>,
    /// Index of a test digit in --data (used when no --image is given).
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// Directory of MNIST-format files for --index.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k"))]
    data: PathBuf,
    /// Where the pictures go.
    #[arg(long, default_value = "runs/inspect")]
    out: PathBuf,
    /// Run on the CPU reference executor instead of the best GPU.
    #[arg(long)]
    cpu: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("inspect: {e}");
        std::process::exit(1);
    }
}

/// A PNG as `input` takes it, inverted when it is mostly light (see the module docs).
fn read_png(input: &ImageInput, path: &Path) -> kiln::Result<(Vec<u8>, bool)> {
    let mut v = input.read(path)?;
    let inverted = v.iter().map(|&p| p as f64).sum::<f64>() / v.len() as f64 > 127.5;
    if inverted {
        v.iter_mut().for_each(|p| *p = 255 - *p);
    }
    Ok((v, inverted))
}

fn run(args: &Args) -> kiln::Result<()> {
    let dev = if args.cpu {
        Device::cpu()
    } else {
        Device::default()?
    };
    let net = load_classifier(None, &args.checkpoint, &dev)?;
    let model = net.model.as_ref();
    println!("loaded {} ({})", args.checkpoint.display(), net.name);
    let (mean, std) = net
        .normalization
        .clone()
        .unwrap_or_else(|| (vec![MNIST_MEAN], vec![MNIST_STD]));
    let input = ImageInput::new(net.in_channels, net.input_size.unwrap_or([28, 28]))
        .normalize(&mean, &std)?;

    let (pixels, label, what) = match &args.image {
        Some(path) => {
            let (v, inverted) = read_png(&input, path)?;
            let note = if inverted { " (inverted)" } else { "" };
            (v, None, format!("{}{note}", path.display()))
        }
        None => {
            let data = Mnist::from_dir(&args.data)?;
            let test = data.test();
            if args.index >= test.len() {
                return Err(KilnError::Data(format!(
                    "--index {} is out of range: {} has {} test digits",
                    args.index,
                    args.data.display(),
                    test.len()
                )));
            }
            let v = test.image(args.index).to_vec();
            let label = test.label(args.index);
            (v, Some(label), format!("test digit {}", args.index))
        }
    };
    let x = input.tensor(&[pixels], &dev)?;

    // The prediction and the outputs of every convolution, from one graph.
    let (layers, logits) = viz::layer_outputs(model, &x)?;
    let probs = kiln::no_grad(|| logits.softmax(1));
    let convs: Vec<(String, Tensor)> = layers
        .into_iter()
        .filter(|l| l.kind == LayerKind::Conv2d)
        .filter_map(|l| l.output.map(|t| (l.name, t)))
        .collect();
    let mut targets: Vec<&Tensor> = convs.iter().map(|(_, t)| t).collect();
    targets.push(&probs);
    Tensor::realize_all(&targets)?;
    let p = probs.to_vec::<f32>()?;
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let class = order[0];
    match label {
        Some(l) => println!("{what}: predicted {class} (label {l})"),
        None => println!("{what}: predicted {class}"),
    }
    for &c in order.iter().take(3) {
        println!("  {c}: {:6.2}%", 100.0 * p[c]);
    }

    let mut written = vec![];
    for (name, t) in &convs {
        let path = args.out.join(format!("{name}_feature_maps.png"));
        let caption = format!("{name} output {} for {what}", t.shape());
        viz::feature_maps(&[(&caption, t)])?.save(&path)?;
        written.push(path);
    }
    let map = viz::saliency(model, &x, class)?;
    let path = args.out.join("saliency.png");
    let title = format!(
        "saliency of class {class} ({:.1}%) for {what}",
        100.0 * p[class]
    );
    viz::save_saliency(&x, &map, &title, &path)?;
    written.push(path);
    for w in written {
        println!("wrote {}", w.display());
    }
    Ok(())
}
