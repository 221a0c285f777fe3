//! Data-parallel scaling, projected: `cargo bench --bench scaling` prints docs/DISTRIBUTED.md's
//! cost-model tables (step time and efficiency at 2–64 GPUs on 10, 25 and 100 Gb/s networks) for
//! ResNet-20, ResNet-50 and AlexNet, from the models' own gradient sizes and batch-norm counts.
//!
//! The per-GPU compute time of a step comes from `target/kiln-bench/models.json` when
//! `cargo bench --bench models` has timed that model's training on this machine (its `resnet20`
//! row, and `resnet50` with `-- --resnet50`; scaled linearly to the table's batch), and is
//! otherwise an assumption that the table names as such (always for AlexNet, which the models
//! bench runs only in its small form). The model, per step with B bytes of f32 gradients and N ranks:
//!
//! ```text
//! t_step = t_compute + 2 B / P + 2 (N - 1) / N x B / W + 2 (N - 1) α
//! with SyncBatchNorm, + 2 L (t_stage + ceil(log2 N) α)   (L batch norms)
//! ```
//!
//! `KILN_ALPHA_US` (latency α, default 20 µs), `KILN_HOST_GBPS` (host copies P, default 12 GB/s)
//! and `KILN_STAGE_US` (a host-call stage's round trip, default 50 µs) change the assumptions.

mod common;

use common::write_json;
use kiln::models::{AlexNet, ResNet};
use kiln::nn::{batch_norm_layers, Module, ParamBuilder};
use kiln::prelude::*;

/// One model of the tables.
struct Row {
    name: &'static str,
    /// The models bench's row name whose training speed gives the compute time.
    bench_row: &'static str,
    what: &'static str,
    batch: usize,
    /// Compute ms per step assumed when the models bench has no measurement.
    assumed_ms: f64,
    model: Box<dyn Module>,
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Compute ms per step at `batch` from the models bench's JSON, if it measured `row`.
fn measured_ms(row: &str, batch: usize) -> Option<f64> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/kiln-bench/models.json");
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let r = rows.as_array()?.iter().find(|r| r["model"] == row)?;
    let images_per_s = r["train_images_per_s"].as_f64().filter(|v| *v > 0.0)?;
    Some(batch as f64 / images_per_s * 1e3)
}

fn main() {
    let alpha = env_f64("KILN_ALPHA_US", 20.0) * 1e-6;
    let host = env_f64("KILN_HOST_GBPS", 12.0) * 1e9;
    let stage = env_f64("KILN_STAGE_US", 50.0) * 1e-6;
    // Built on the CPU reference device: only their sizes are used.
    let pb = ParamBuilder::new(&Device::cpu(), 0);
    let rows = [
        Row {
            name: "ResNet-20",
            bench_row: "resnet20",
            what: "CIFAR, batch 128 / GPU",
            batch: 128,
            assumed_ms: 30.0,
            model: Box::new(ResNet::resnet20(3, 10, &pb).expect("resnet20")),
        },
        Row {
            name: "ResNet-50",
            bench_row: "resnet50",
            what: "224x224, batch 32 / GPU",
            batch: 32,
            assumed_ms: 150.0,
            model: Box::new(ResNet::resnet50(3, 1000, &pb).expect("resnet50")),
        },
        Row {
            name: "AlexNet",
            bench_row: "alexnet",
            what: "224x224, batch 128 / GPU",
            batch: 128,
            assumed_ms: 100.0,
            model: Box::new(AlexNet::new(3, 1000, &pb).expect("alexnet")),
        },
    ];
    println!(
        "assumptions: latency {:.0} µs, host copies {:.0} GB/s, host-call stage {:.0} µs, the \
         network at line rate, the ring all-reduce",
        alpha * 1e6,
        host / 1e9,
        stage * 1e6
    );
    let mut json = vec![];
    for row in &rows {
        let bytes = row.model.num_parameters() as f64 * 4.0;
        let layers = batch_norm_layers(&*row.model).len() as f64;
        let (compute, source) = match measured_ms(row.bench_row, row.batch) {
            Some(ms) => (ms * 1e-3, "measured by the models bench"),
            None => (row.assumed_ms * 1e-3, "assumed"),
        };
        let copies = 2.0 * bytes / host;
        println!(
            "\n**{} ({})**: {:.1} MB of f32 gradients, compute {:.0} ms/step ({source}), \
             readback + upload {:.1} ms, {} batch norms\n",
            row.name,
            row.what,
            bytes / 1e6,
            compute * 1e3,
            copies * 1e3,
            layers
        );
        println!("| GPUs | 10 Gb/s | 25 Gb/s | 100 Gb/s | SyncBatchNorm adds |");
        println!("| --- | --- | --- | --- | --- |");
        for n in [2.0f64, 4.0, 8.0, 16.0, 32.0, 64.0] {
            let mut cells = vec![];
            for gbit in [10.0, 25.0, 100.0] {
                let wire = gbit * 1e9 / 8.0;
                let t =
                    compute + copies + 2.0 * (n - 1.0) / n * bytes / wire + 2.0 * (n - 1.0) * alpha;
                cells.push(format!("{:.0} ms, {:.0}%", t * 1e3, compute / t * 100.0));
                json.push(serde_json::json!({
                    "model": row.name, "gpus": n, "gbit": gbit, "step_ms": t * 1e3,
                    "efficiency": compute / t, "compute_source": source,
                }));
            }
            let sync = 2.0 * layers * (stage + n.log2().ceil() * alpha);
            println!("| {n} | {} | {:.0} ms |", cells.join(" | "), sync * 1e3);
        }
    }
    println!(
        "\nwrote {}",
        write_json("scaling", &serde_json::Value::Array(json)).display()
    );
}
