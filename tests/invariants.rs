//! The invariants of DESIGN.md, each proved on the wgpu device: building a graph touches no
//! device; one realize is one submission; a repeated graph shape compiles no plan, creates no
//! pipeline and allocates no buffer; the same seed gives the same numbers on CPU and GPU; the same
//! computation gives the same bits run after run.

mod common;
use common::{fresh_gpu, gpu, values};
use kiln::prelude::*;

/// A small "training step"-like graph: new input data, matmul with fused bias and activation,
/// reductions, and a scalar result.
fn step(dev: &Device, w: &Tensor, seed: u64) -> Tensor {
    let x = Tensor::from_vec(values(32 * 64, seed), [32, 64], dev).unwrap();
    let b = Tensor::from_vec(values(16, 99), [16], dev).unwrap();
    let h = (x.matmul(w) + &b).relu();
    let m = h.max_axes_keepdim(&[1]);
    let p = (&h - &m).exp();
    let s = p.sum_axes_keepdim(&[1]);
    (&p / &s * &h).mean()
}

#[test]
fn building_a_graph_touches_no_device() {
    let dev = fresh_gpu();
    let before = dev.stats();
    let w = Tensor::randn([64, 16], 1, &dev);
    let mut y = step(&dev, &w, 5);
    for _ in 0..50 {
        y = (y.exp() + 1.0).log();
    }
    assert_eq!(
        dev.stats(),
        before,
        "building a graph changed the device counters"
    );
    y.realize().unwrap();
    assert_ne!(dev.stats(), before);
}

#[test]
fn one_realize_is_one_submission() {
    let dev = fresh_gpu();
    let w = Tensor::randn([64, 16], 1, &dev);
    let y = step(&dev, &w, 5);
    let before = dev.stats();
    let v: f32 = y.item().unwrap();
    let after = dev.stats();
    assert!(v.is_finite());
    assert_eq!(
        after.submissions - before.submissions,
        1,
        "one plan, one submission, readback included"
    );
    assert!(
        after.dispatches - before.dispatches >= 4,
        "matmul, max, exp-sum and mean kernels: {after}"
    );
    // Several targets realized together are still one submission.
    let (a, b) = (step(&dev, &w, 6), step(&dev, &w, 7).exp());
    Tensor::realize_all(&[&a, &b]).unwrap();
    assert_eq!(dev.stats().submissions - after.submissions, 1);
}

#[test]
fn a_repeated_graph_compiles_nothing_and_allocates_nothing() {
    let dev = fresh_gpu();
    let w = Tensor::randn([64, 16], 1, &dev);
    w.realize().unwrap();
    let mut losses = vec![];
    let mut snapshots = vec![];
    for i in 0..4 {
        losses.push(step(&dev, &w, 10 + i).item::<f32>().unwrap());
        snapshots.push(dev.stats());
    }
    let (warm, last) = (snapshots[1], snapshots[3]);
    assert_eq!(
        last.plans_compiled, warm.plans_compiled,
        "a repeated step compiled a plan"
    );
    assert_eq!(
        last.pipelines_created, warm.pipelines_created,
        "a repeated step created a pipeline"
    );
    assert_eq!(
        last.buffers_allocated, warm.buffers_allocated,
        "a repeated step allocated a buffer"
    );
    assert_eq!(last.plan_cache_hits - warm.plan_cache_hits, 2);
    assert_eq!(last.submissions - warm.submissions, 2);
    assert!(
        losses.windows(2).all(|w| w[0] != w[1]),
        "each step saw its own data: {losses:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_random_tensor_on_cpu_and_gpu() {
    let gpu = gpu();
    let cpu = Device::cpu();
    let g = Tensor::rand([1000, 3], 1234, &gpu).to_vec::<f32>().unwrap();
    let c = Tensor::rand([1000, 3], 1234, &cpu).to_vec::<f32>().unwrap();
    assert_eq!(g, c, "uniform numbers are bit-identical");
    let other = Tensor::rand([1000, 3], 1235, &gpu).to_vec::<f32>().unwrap();
    assert_ne!(g, other);
    let g = Tensor::randn([4096], 77, &gpu).to_vec::<f32>().unwrap();
    let c = Tensor::randn([4096], 77, &cpu).to_vec::<f32>().unwrap();
    for (a, b) in g.iter().zip(&c) {
        assert!(
            (a - b).abs() <= 2e-5 * (1.0 + b.abs()),
            "normal numbers differ: {a} vs {b}"
        );
    }
}

#[test]
fn the_same_computation_gives_the_same_bits_every_run() {
    let dev = gpu();
    let run = || {
        let a = Tensor::randn([300, 257], 3, &dev);
        let b = Tensor::randn([257, 129], 4, &dev);
        let big = Tensor::rand([2_000_000], 5, &dev);
        let c = a.matmul(&b).tanh().sum_axes(&[0]);
        let s = big.sum().reshape([1]);
        let both = Tensor::cat(&[&c, &s], 0);
        both.to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<u32>>()
    };
    let first = run();
    for _ in 0..3 {
        assert_eq!(run(), first, "results differ between runs");
    }
}
