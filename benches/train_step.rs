//! LeNet-5 training-step benchmark: `cargo bench --bench train_step`.
//!
//! For batch 64 and 256 it reports the first step's time (plan compile included), ms per step
//! (median of 50 after 10 warm-up steps), images/s, dispatches and submissions per step, the host
//! time spent building the step's graph and collecting it into a plan key, the share of GPU time
//! per kernel (GPU timestamp queries where the adapter has them), and, in the same run, the CPU
//! reference executor's time for the same step. Writes `target/kiln-bench/train_step.json`.
//! `KILN_BENCH_QUICK=1` takes 12 timed steps instead of 50 and 1 CPU step.

mod common;

use common::{median, open_device, quick, write_json, KernelProfile};
use kiln::data::Mnist;
use kiln::models::LeNet5;
use kiln::nn::{Module, ParamBuilder};
use kiln::optim::{Adam, Optimizer};
use kiln::prelude::*;
use std::time::Instant;

/// One full step; returns (host seconds building forward + backward, host seconds collecting
/// the graph into its plan key).
fn step(model: &LeNet5, opt: &mut Adam, x: &Tensor, y: &Tensor) -> (f64, f64) {
    let t0 = Instant::now();
    let loss = model.forward(x).cross_entropy(y);
    let grads = loss.backward();
    let build = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let params = model.parameters();
    let mut targets: Vec<&Tensor> = params.iter().filter_map(|p| grads.get(p)).collect();
    targets.push(&loss);
    let _key = kiln::Pending::collect(&targets);
    let collect = t1.elapsed().as_secs_f64();
    opt.step(&grads).expect("step");
    loss.item::<f32>().expect("loss"); // waits for the step to finish
    (build, collect)
}

fn main() {
    let quick = quick();
    let (backend, dev) = open_device("train_step");
    println!("kiln train_step bench on {}", dev.name());
    let data = Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k"))
        .expect("the shipped digits");
    let timed = if quick { 12 } else { 50 };
    let mut rows = vec![];
    for batch in [64usize, 256] {
        let model = LeNet5::new(&ParamBuilder::new(&dev, 1));
        let mut opt = Adam::new(model.parameters(), 1e-3);
        let batches: Vec<(Tensor, Tensor)> = data.train().batches(batch).on(&dev).take(8).collect();
        let t = Instant::now();
        step(&model, &mut opt, &batches[0].0, &batches[0].1);
        let first = t.elapsed().as_secs_f64();
        for i in 0..10 {
            let (x, y) = &batches[i % batches.len()];
            step(&model, &mut opt, x, y);
        }
        let before = dev.stats();
        let (mut times, mut builds, mut collects) = (vec![], vec![], vec![]);
        for i in 0..timed {
            let (x, y) = &batches[i % batches.len()];
            let t = Instant::now();
            let (b, c) = step(&model, &mut opt, x, y);
            times.push(t.elapsed().as_secs_f64());
            builds.push(b);
            collects.push(c);
        }
        let after = dev.stats();
        let per_step = |a: u64, b: u64| (a - b) as f64 / timed as f64;
        // Per-kernel GPU time of one profiled step.
        let profiled = backend.set_profiling(true);
        let mut profile = KernelProfile::new(vec![]);
        if profiled {
            step(&model, &mut opt, &batches[0].0, &batches[0].1);
            profile = KernelProfile::new(backend.last_profile());
        }
        backend.set_profiling(false);
        // The reference executor on the same step.
        let cpu = Device::cpu();
        let cpu_model = LeNet5::new(&ParamBuilder::new(&cpu, 1));
        let mut cpu_opt = Adam::new(cpu_model.parameters(), 1e-3);
        let mut cpu_times = vec![];
        let cpu_steps = if quick { 1 } else { 3 };
        let cpu_batches: Vec<(Tensor, Tensor)> =
            data.train().batches(batch).take(cpu_steps).collect();
        for (x, y) in &cpu_batches {
            let t = Instant::now();
            step(&cpu_model, &mut cpu_opt, x, y);
            cpu_times.push(t.elapsed().as_secs_f64());
        }
        let ms = median(&mut times) * 1e3;
        let cpu_ms = median(&mut cpu_times) * 1e3;
        println!("\nLeNet-5, batch {batch}");
        println!(
            "  first step (plan compile included): {:.0} ms",
            first * 1e3
        );
        println!(
            "  step: {ms:.2} ms median of {timed} ({:.0} images/s)",
            batch as f64 / ms * 1e3
        );
        println!(
            "  per step: {:.1} dispatches, {:.1} submissions, {:.1} plans compiled",
            per_step(after.dispatches, before.dispatches),
            per_step(after.submissions, before.submissions),
            per_step(after.plans_compiled, before.plans_compiled)
        );
        println!(
            "  host: {:.2} ms building forward + backward, {:.2} ms collecting the plan key",
            median(&mut builds) * 1e3,
            median(&mut collects) * 1e3
        );
        println!(
            "  reference CPU executor: {cpu_ms:.0} ms per step ({:.1}x the GPU step)",
            cpu_ms / ms
        );
        if profiled {
            profile.print("  ", 8);
        } else {
            println!("  (no timestamp queries on this adapter: no per-kernel times)");
        }
        rows.push(serde_json::json!({
            "batch": batch,
            "device": dev.name(),
            "first_step_ms": first * 1e3,
            "ms_per_step": ms,
            "images_per_s": batch as f64 / ms * 1e3,
            "dispatches_per_step": per_step(after.dispatches, before.dispatches),
            "submissions_per_step": per_step(after.submissions, before.submissions),
            "host_build_ms": median(&mut builds) * 1e3,
            "host_collect_ms": median(&mut collects) * 1e3,
            "gpu_ms_by_kernel": profile.ms_by_kind(),
            "cpu_reference_ms_per_step": cpu_ms,
        }));
    }
    let path = write_json("train_step.json", &serde_json::Value::Array(rows));
    println!("\nwrote {}", path.display());
}
