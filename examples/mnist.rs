//! Trains a classifier on MNIST digits on the GPU: softmax regression (one dense layer and
//! cross-entropy), mini-batches and epochs, with the gradient written out by hand in the graph
//! API, so that a whole step (forward, backward, update) is one graph, one plan and one
//! submission that the next step replays from the plan cache.
//!
//! `cargo run --release --example mnist` uses the real digits shipped in `data/mnist-10k`;
//! `--data DIR` takes any directory of MNIST-format files (full MNIST, Fashion-MNIST).
//! Options: `--epochs N` (3), `--batch-size N` (64), `--lr X` (0.1), `--device gpu|cpu` (gpu).

use kiln::data::read_idx;
use kiln::prelude::*;
use std::time::Instant;

struct Args {
    data: String,
    epochs: usize,
    batch: usize,
    lr: f64,
    device: String,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut a = Args {
        data: concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k").into(),
        epochs: 3,
        batch: 64,
        lr: 0.1,
        device: "gpu".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => a.data = value()?,
            "--epochs" => a.epochs = value()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--batch-size" => a.batch = value()?.parse().map_err(|e| format!("--batch-size: {e}"))?,
            "--lr" => a.lr = value()?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--device" => a.device = value()?,
            "--help" | "-h" => return Err("usage: mnist [--data DIR] [--epochs N] [--batch-size N] [--lr X] [--device gpu|cpu]".into()),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if a.batch == 0 || a.epochs == 0 {
        return Err("--batch-size and --epochs must be at least 1".into());
    }
    Ok(a)
}

/// Images as normalised f32 rows of 784 pixels, and labels.
fn load(dir: &str, split: &str) -> kiln::Result<(Vec<f32>, Vec<i32>)> {
    let images = read_idx(format!("{dir}/{split}-images-idx3-ubyte.gz"))
        .or_else(|_| read_idx(format!("{dir}/{split}-images-idx3-ubyte")))?;
    let labels = read_idx(format!("{dir}/{split}-labels-idx1-ubyte.gz"))
        .or_else(|_| read_idx(format!("{dir}/{split}-labels-idx1-ubyte")))?;
    let x = images
        .data
        .iter()
        .map(|&p| (p as f32 / 255.0 - 0.1307) / 0.3081)
        .collect();
    Ok((x, labels.data.iter().map(|&l| l as i32).collect()))
}

fn run(args: Args) -> kiln::Result<()> {
    let dev = if args.device == "cpu" {
        Device::cpu()
    } else {
        Device::default()?
    };
    let (train_x, train_y) = load(&args.data, "train")?;
    let (test_x, test_y) = load(&args.data, "t10k")?;
    let (n, d, classes) = (train_y.len(), 784, 10);
    println!(
        "{} training and {} test images from {}",
        n,
        test_y.len(),
        args.data
    );
    let mut w = Tensor::zeros([d, classes], &dev).detach()?;
    let mut b = Tensor::zeros([classes], &dev).detach()?;
    let class_ids = Tensor::arange_i32(0, classes as i32, 1, &dev).unsqueeze(0);
    for epoch in 1..=args.epochs {
        // A seeded shuffle: the same order for the same epoch on every run.
        let mut order: Vec<usize> = (0..n).collect();
        let mut s = 0x2545_F491_4F6C_DD1Du64 ^ epoch as u64;
        for i in (1..n).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let start = Instant::now();
        let mut loss_sum = 0.0;
        let steps = n / args.batch;
        for step in 0..steps {
            let idx = &order[step * args.batch..(step + 1) * args.batch];
            let xb: Vec<f32> = idx
                .iter()
                .flat_map(|&i| train_x[i * d..(i + 1) * d].iter().copied())
                .collect();
            let yb: Vec<i32> = idx.iter().map(|&i| train_y[i]).collect();
            let x = Tensor::from_vec(xb, [args.batch, d], &dev)?;
            let y = Tensor::from_vec(yb, [args.batch], &dev)?;
            // Forward: logits, a numerically stable softmax, the mean cross-entropy.
            let logits = x.matmul(&w) + &b;
            let shifted = &logits - &logits.max_axes(&[1], true);
            let e = shifted.exp();
            let sum = e.sum_axes(&[1], true);
            let probs = &e / &sum;
            let onehot = y.unsqueeze(1).eq(&class_ids).cast(DType::F32);
            let loss = (sum.log() - (&shifted * &onehot).sum_axes(&[1], true)).mean();
            // Backward by hand: d loss / d logits = (probs - onehot) / batch.
            let dlogits = (&probs - &onehot) / args.batch as f32;
            let new_w = &w - &(x.t().matmul(&dlogits) * args.lr as f32);
            let new_b = &b - &(dlogits.sum_axes(&[0], false) * args.lr as f32);
            Tensor::realize_all(&[&new_w, &new_b, &loss])?;
            (w, b) = (new_w.detach()?, new_b.detach()?);
            if step % 25 == 0 || step + 1 == steps {
                loss_sum = loss.item::<f32>()? as f64;
                let rate = ((step + 1) * args.batch) as f64 / start.elapsed().as_secs_f64();
                print!(
                    "\repoch {epoch}: step {}/{steps} loss {loss_sum:.4} ({rate:.0} images/s)   ",
                    step + 1
                );
                use std::io::Write;
                let _ = std::io::stdout().flush();
            }
        }
        println!();
        let mut correct = 0i64;
        for chunk in 0..test_y.len().div_ceil(1000) {
            let (lo, hi) = (chunk * 1000, ((chunk + 1) * 1000).min(test_y.len()));
            let x = Tensor::from_slice(&test_x[lo * d..hi * d], [hi - lo, d], &dev)?;
            let y = Tensor::from_slice(&test_y[lo..hi], [hi - lo], &dev)?;
            let pred = (x.matmul(&w) + &b).argmax(1, false);
            correct += pred.eq(&y).sum().item::<i32>()? as i64;
        }
        println!(
            "epoch {epoch}: test accuracy {:.2}% (last loss {loss_sum:.4})",
            100.0 * correct as f64 / test_y.len() as f64
        );
    }
    println!("{}", dev.stats());
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("mnist: {msg}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("mnist: {e}");
        std::process::exit(1);
    }
}
