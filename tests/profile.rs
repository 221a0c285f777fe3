//! Kernel profiles (`Device::set_profiling`, `take_profile`, `kiln::profile`): on lavapipe,
//! which has timestamp queries, the kernels' times add up to the submissions' GPU time, every
//! dispatch is counted once, and the table and JSON say the same as the numbers.

mod common;
use common::*;
use kiln::models::LeNet5;
use kiln::nn::{Module, ParamBuilder};
use kiln::optim::{Adam, Optimizer};
use kiln::prelude::*;

/// The tests of this file run one at a time: on lavapipe the GPU is the CPU, and a second test's
/// kernels would stretch the gaps between this one's.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn kernel_times_add_up_to_the_steps_gpu_time() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dev = fresh_gpu();
    assert!(
        dev.set_profiling(true),
        "{} has no timestamp queries",
        dev.name()
    );
    let model = LeNet5::new(&ParamBuilder::new(&dev, 1));
    let mut opt = Adam::new(model.parameters(), 1e-3);
    // Batch 64, as the examples train: each of lavapipe's ~0.1 ms gaps between dispatches is then
    // small beside the kernels.
    let x = Tensor::from_vec(values(64 * 784, 2), [64, 1, 28, 28], &dev).unwrap();
    let y = Tensor::from_vec((0..64).map(|i| i % 10).collect::<Vec<i32>>(), [64], &dev).unwrap();
    let steps = 3;
    // The gaps between kernels are CPU scheduling on lavapipe, which other processes on a shared
    // machine stretch: measure up to three times and keep the tightest profile.
    let mut best = None;
    for _ in 0..3 {
        // Creating the parameters ran kernels too: start counting from here.
        dev.take_profile().unwrap();
        let before = dev.stats();
        for _ in 0..steps {
            let loss = model.forward(&x).cross_entropy(&y);
            opt.step(&loss.backward()).unwrap();
        }
        let after = dev.stats();
        let p = dev.take_profile().expect("a profile");
        let gap = (p.gpu_seconds - p.kernel_seconds()) / p.gpu_seconds;
        if best.as_ref().is_none_or(|b: &(f64, _, _, _)| gap < b.0) {
            best = Some((gap, p, before, after));
        }
        if gap < 0.05 {
            break;
        }
    }
    let (_, p, before, after) = best.unwrap();
    println!("{p}");
    // Every dispatch of the steps was timed, once. (Submissions that run no kernel, such as
    // reads of realized values, have nothing to time.)
    assert!(p.submissions >= steps && p.submissions <= after.submissions - before.submissions);
    let calls: u64 = p.kernels.iter().map(|k| k.calls).sum();
    assert_eq!(calls, after.dispatches - before.dispatches);
    assert!(p.kernels.iter().any(|k| k.name.starts_with("matmul")));
    // Each submission's span (first kernel's start to last kernel's end) holds its kernels and
    // the gaps between them; on lavapipe the gaps are small.
    let (kernels, gpu) = (p.kernel_seconds(), p.gpu_seconds);
    println!(
        "kernels {:.3} ms, submissions {:.3} ms",
        kernels * 1e3,
        gpu * 1e3
    );
    assert!(kernels > 0.0 && kernels <= gpu * 1.000_001);
    assert!(
        (gpu - kernels) / gpu < 0.05,
        "kernels {kernels} s vs GPU time {gpu} s"
    );
    // Slowest first; shares add up to 1; derived numbers follow from the totals.
    assert!(p.kernels.windows(2).all(|w| w[0].seconds >= w[1].seconds));
    let shares: f64 = p.kernels.iter().map(|k| p.share(k)).sum();
    assert!((shares - 1.0).abs() < 1e-9);
    for k in &p.kernels {
        assert!((k.mean_seconds() * k.calls as f64 - k.seconds).abs() < 1e-12);
        assert!((k.gflops() - k.flops as f64 / k.seconds / 1e9).abs() < 1e-9);
    }
    // The JSON says the same.
    let json: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
    assert_eq!(json["submissions"].as_u64(), Some(p.submissions));
    let rows = json["kernels"].as_array().unwrap();
    assert_eq!(rows.len(), p.kernels.len());
    assert_eq!(rows[0]["name"].as_str(), Some(p.kernels[0].name.as_str()));
    assert_eq!(rows[0]["calls"].as_u64(), Some(p.kernels[0].calls));
    let total_ms: f64 = rows.iter().map(|r| r["total_ms"].as_f64().unwrap()).sum();
    assert!((total_ms - kernels * 1e3).abs() < 1e-6);
    // The table has a row per kernel; taking the profile starts the count again.
    let table = p.to_string();
    assert_eq!(table.lines().count(), 2 + p.kernels.len());
    let again = dev.take_profile().unwrap();
    assert!(again.kernels.is_empty() && again.submissions == 0);
    // Off: nothing is recorded.
    dev.set_profiling(false);
    let loss = model.forward(&x).cross_entropy(&y);
    opt.step(&loss.backward()).unwrap();
    assert!(dev.take_profile().unwrap().kernels.is_empty());
}

#[test]
fn report_writes_profile_json_and_the_cpu_has_no_profile() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dev = fresh_gpu();
    assert!(dev.set_profiling(true));
    let a = Tensor::from_vec(values(64 * 64, 1), [64, 64], &dev).unwrap();
    a.matmul(&a).relu().sum().item::<f32>().unwrap();
    let dir = temp_dir("profile");
    let p = kiln::profile::report(&dev, Some(&dir)).unwrap().unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("profile.json")).unwrap()).unwrap();
    assert_eq!(json["kernels"].as_array().unwrap().len(), p.kernels.len());
    assert!(p.kernels[0].flops > 0 && p.kernels[0].bytes > 0);
    // The reference executor cannot time kernels.
    let cpu = Device::cpu();
    assert!(!cpu.set_profiling(true));
    assert!(cpu.take_profile().is_none());
    assert!(kiln::profile::report(&cpu, None).unwrap().is_none());
}
