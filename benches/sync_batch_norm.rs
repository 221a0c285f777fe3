//! What SyncBatchNorm's stages cost on one device: `cargo bench --bench sync_batch_norm`.
//!
//! A ResNet-20 training step (SGD, 28x28 inputs, batch 32) with plain batch norm, against the
//! same step with every batch norm's statistics going through a gather of one process (an
//! identity host call, whose gradient is one too): the same arithmetic, but the step runs as
//! `2 x 19 + 1` stage plans, each reading its calls' inputs back and uploading their results,
//! instead of one plan. The ratio is the price of the stages
//! alone on this device, before any network: what `World::sync_batch_norm` adds to a step on top
//! of its all-gathers. Reports ms per step (median), submissions and dispatches per step and the
//! ratio; writes
//! `target/kiln-bench/sync_batch_norm.json`. `KILN_BENCH_QUICK=1` times 4 steps instead of 12.

mod common;

use common::{median, open_device, quick, write_json};
use kiln::host_call::HostFunction;
use kiln::models::ResNet;
use kiln::nn::{batch_norm_layers, Module, ParamBuilder};
use kiln::optim::{Optimizer, Sgd};
use kiln::prelude::*;
use std::sync::Arc;
use std::time::Instant;

/// `[K] -> [1, K]`: the gather of a group of one process.
struct GatherOfOne;

impl HostFunction for GatherOfOne {
    fn name(&self) -> String {
        "gather_of_one".into()
    }
    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        vec![1, input.iter().product()]
    }
    fn compute(&self, input: &[f32]) -> kiln::Result<Vec<f32>> {
        Ok(input.to_vec())
    }
    fn vjp(&self, input: &Tensor, grad: &Tensor) -> Tensor {
        grad.host_call(Arc::new(SumOwnRowOfOne))
            .reshape(input.dims())
    }
}

/// `[1, K] -> [K]`: the reduce-scatter of a group of one (the gather's transpose), so that the
/// backward pass runs in stages too, as with several processes.
struct SumOwnRowOfOne;

impl HostFunction for SumOwnRowOfOne {
    fn name(&self) -> String {
        "sum_own_row_of_one".into()
    }
    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        vec![input.iter().product()]
    }
    fn compute(&self, input: &[f32]) -> kiln::Result<Vec<f32>> {
        Ok(input.to_vec())
    }
    fn vjp(&self, input: &Tensor, grad: &Tensor) -> Tensor {
        grad.host_call(Arc::new(GatherOfOne)).reshape(input.dims())
    }
}

/// (ms per step, submissions per step, dispatches per step) of `steps` timed steps after 2
/// warm-up steps.
fn time_steps(dev: &Device, synced: bool, steps: usize) -> (f64, f64, f64) {
    let model = ResNet::resnet20(1, 10, &ParamBuilder::new(dev, 7)).expect("resnet20");
    if synced {
        for (_, bn) in batch_norm_layers(&model) {
            bn.sync_statistics(Some(Arc::new(GatherOfOne)));
        }
    }
    let mut opt = Sgd::new(model.parameters(), 0.05).with_momentum(0.9, false);
    let x = Tensor::randn([32, 1, 28, 28], 3, dev);
    let labels: Vec<i32> = (0..32).map(|i| i % 10).collect();
    let y = Tensor::from_vec(labels, [32], dev).expect("labels");
    let mut step = || {
        let loss = model.forward(&x).cross_entropy(&y);
        opt.step(&loss.backward()).expect("step");
        loss.item::<f32>().expect("loss");
    };
    step();
    step();
    let before = dev.stats();
    let mut times = vec![];
    for _ in 0..steps {
        let t = Instant::now();
        step();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let after = dev.stats();
    let per_step = |a: u64, b: u64| (a - b) as f64 / steps as f64;
    (
        median(&mut times),
        per_step(after.submissions, before.submissions),
        per_step(after.dispatches, before.dispatches),
    )
}

fn main() {
    let (_backend, dev) = open_device("sync_batch_norm");
    println!("kiln sync_batch_norm bench on {}", dev.name());
    let steps = if quick() { 4 } else { 12 };
    // Alternate the two, twice, so that a noisy neighbour hits both alike.
    let mut rows = vec![];
    for round in 0..2 {
        for synced in [false, true] {
            let (ms, submissions, dispatches) = time_steps(&dev, synced, steps);
            let name = if synced {
                "synced (1 process)"
            } else {
                "plain"
            };
            println!(
                "  round {round}: {name:20} {ms:8.1} ms/step  {submissions:5.1} submissions/step  \
                 {dispatches:6.1} dispatches/step"
            );
            rows.push((synced, ms, submissions, dispatches));
        }
    }
    let best = |s: bool| {
        rows.iter()
            .filter(|r| r.0 == s)
            .map(|r| r.1)
            .fold(f64::INFINITY, f64::min)
    };
    let ratio = best(true) / best(false);
    println!("  synced / plain step time (best of each): {ratio:.2}");
    let json = serde_json::json!({
        "device": dev.name(),
        "model": "resnet20 28x28 batch 32, SGD momentum",
        "plain_ms": best(false),
        "synced_ms": best(true),
        "ratio": ratio,
        "rows": rows.iter().map(|r| serde_json::json!({"synced": r.0, "ms": r.1, "submissions": r.2, "dispatches": r.3})).collect::<Vec<_>>(),
    });
    println!("wrote {}", write_json("sync_batch_norm", &json).display());
}
