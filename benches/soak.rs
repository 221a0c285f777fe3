//! Long-run (soak) benchmark: `cargo bench --bench soak`.
//!
//! Trains LeNet-5 with Adam on the shipped digits for `KILN_SOAK_STEPS` steps (default 20,000)
//! with batch sizes that change every epoch (64, 96, 50, 128: each epoch ends in a partial batch
//! of another size), evaluating on the test digits after every epoch, and records the device's
//! live and peak bytes and the process's resident memory (host RSS, from `/proc/self/statm`)
//! after each epoch. It prints the series and the growth per epoch after the first
//! `WARMUP_EPOCHS` (least squares), and writes `target/kiln-bench/soak.json`. Both should be flat:
//! anything that grows with the number of epochs is a leak. `KILN_BENCH_QUICK=1`: 1,500 steps.

mod common;

use common::{open_device, quick, write_json};
use kiln::data::Mnist;
use kiln::models::LeNet5;
use kiln::nn::{evaluate, Module, ParamBuilder};
use kiln::optim::{Adam, Optimizer};
use std::time::Instant;

/// Epochs after which memory is expected to be flat (every batch size's plans compiled).
const WARMUP_EPOCHS: usize = 4;

/// Resident set size of this process in bytes (0 where `/proc` is not available).
fn host_rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Least-squares slope of `ys` over their indices.
fn slope(ys: &[f64]) -> f64 {
    let n = ys.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        num += (i as f64 - mx) * (y - my);
        den += (i as f64 - mx).powi(2);
    }
    num / den
}

fn main() {
    let steps: usize = std::env::var("KILN_SOAK_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick() { 1_500 } else { 20_000 });
    let (_backend, dev) = open_device("soak");
    println!("soak: {steps} LeNet-5 steps on {}", dev.name());
    let data = Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k"))
        .expect("the shipped digits");
    let model = LeNet5::new(&ParamBuilder::new(&dev, 1));
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let started = Instant::now();
    let (mut done, mut epoch) = (0usize, 0usize);
    let mut rows = vec![];
    println!("epoch  steps  batch  device live MB  device peak MB  host RSS MB  accuracy  seconds");
    while done < steps {
        let batch = [64, 96, 50, 128][epoch % 4];
        for (x, y) in data.train().shuffled(epoch as u64).batches(batch).on(&dev) {
            let loss = model.forward(&x).cross_entropy(&y);
            opt.step(&loss.backward()).expect("step");
            done += 1;
            if done == steps {
                break;
            }
        }
        let accuracy = evaluate(&model, data.test()).expect("evaluate");
        let s = dev.stats();
        let rss = host_rss();
        println!(
            "{:5}  {done:5}  {batch:5}  {:14.2}  {:14.2}  {:11.2}  {:7.2}%  {:7.1}",
            epoch + 1,
            s.bytes_live as f64 / 1e6,
            s.peak_bytes as f64 / 1e6,
            rss as f64 / 1e6,
            accuracy * 100.0,
            started.elapsed().as_secs_f64()
        );
        rows.push((
            s.bytes_live as f64,
            s.peak_bytes as f64,
            rss as f64,
            accuracy,
        ));
        epoch += 1;
    }
    let after: Vec<_> = rows.iter().skip(WARMUP_EPOCHS).collect();
    let live = slope(&after.iter().map(|r| r.0).collect::<Vec<_>>());
    let rss = slope(&after.iter().map(|r| r.2).collect::<Vec<_>>());
    println!(
        "after epoch {WARMUP_EPOCHS}: device bytes {live:+.0} per epoch, host RSS {rss:+.0} bytes per epoch"
    );
    let json = serde_json::json!({
        "device": dev.name(), "steps": steps,
        "device_live_bytes_per_epoch": live, "host_rss_bytes_per_epoch": rss,
        "epochs": rows.iter().map(|r| serde_json::json!({
            "device_live_bytes": r.0, "device_peak_bytes": r.1, "host_rss_bytes": r.2, "accuracy": r.3,
        })).collect::<Vec<_>>(),
    });
    println!("wrote {}", write_json("soak.json", &json).display());
}
