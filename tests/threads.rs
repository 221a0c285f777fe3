//! Threads sharing one device: any number of threads may record and realize on clones of one
//! `Device` at once, and each gets exactly what it would get running alone (issue 15).
//!
//! Each thread trains a small model of its own (forward, backward, SGD update) whose inputs and
//! runtime scalars (the learning rate, a scale) depend on the thread and the iteration, so that
//! every replay of the shared cached plan needs its own scalars. The expected values come from
//! the same work run one thread at a time on the same device; the concurrent results must match
//! them bit for bit.

mod common;

use common::{gpu, values};
use kiln::nn::{Linear, Module, ParamBuilder};
use kiln::optim::{Optimizer, Sgd};
use kiln::prelude::*;

const THREADS: usize = 4;
const ITERATIONS: usize = 60;

/// One thread's whole run: its losses, its forward sums and its final parameters, as bits.
fn run(dev: &Device, thread: usize) -> Vec<u32> {
    let seed = 1000 + thread as u64;
    let model = Linear::new(16, 8, &ParamBuilder::new(dev, seed));
    let mut opt = Sgd::new(model.parameters(), 0.01 * (thread + 1) as f64);
    let mut out = vec![];
    for it in 0..ITERATIONS {
        let x =
            Tensor::from_slice(&values(32 * 16, seed * 7919 + it as u64), [32, 16], dev).unwrap();
        // A runtime scalar that differs between threads and iterations.
        let scale = 1.0 + (thread * ITERATIONS + it) as f64;
        let y = model.forward(&x).relu().mul_scalar(scale);
        let loss = y.square().mean();
        opt.step(&loss.backward()).unwrap();
        out.push(loss.item::<f32>().unwrap().to_bits());
        // A forward-only realize with a matmul, a scalar and a sum, as in the report.
        let s = x.matmul(&x.t()).relu().mul_scalar(scale).sum();
        out.push(s.item::<f32>().unwrap().to_bits());
    }
    for p in model.parameters() {
        out.extend(p.to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()));
    }
    out
}

/// Runs every thread's work alone, then all at once, `rounds` times, and compares.
fn check(dev: &Device, rounds: usize) {
    let expected: Vec<Vec<u32>> = (0..THREADS).map(|t| run(dev, t)).collect();
    for round in 0..rounds {
        let got: Vec<Vec<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let dev = dev.clone();
                    s.spawn(move || run(&dev, t))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for t in 0..THREADS {
            let first = got[t].iter().zip(&expected[t]).position(|(a, b)| a != b);
            assert!(
                first.is_none(),
                "round {round}, thread {t}: value {} differs from the run alone ({} vs {})",
                first.unwrap(),
                f32::from_bits(got[t][first.unwrap()]),
                f32::from_bits(expected[t][first.unwrap()])
            );
        }
    }
}

#[test]
fn threads_sharing_a_gpu_device_get_their_own_results() {
    check(&gpu(), 5);
}

#[test]
fn threads_sharing_the_reference_executor_get_their_own_results() {
    check(&Device::cpu(), 1);
}
