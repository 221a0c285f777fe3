//! Deep-graph benchmark: `cargo bench --bench deep_graphs`.
//!
//! For elementwise chains of 1k, 10k and 100k ops (`x + 1`, `* 1`, alternating) on a fresh
//! device it reports the time to build the graph, the first realize (scheduling, code generation,
//! pipeline compiles: the scheduler cuts the chain every `MAX_INLINE_DEPTH` ops, so this grows
//! linearly), the kernels and pipelines that took, and a second realize of the same graph shape
//! (a plan-cache hit). Writes `target/kiln-bench/deep_graphs.json`. `KILN_BENCH_QUICK=1` stops at
//! 10k ops.

mod common;

use common::{open_device, quick, write_json};
use kiln::prelude::*;
use std::time::Instant;

fn chain(x: &Tensor, n: usize) -> Tensor {
    let mut y = x.clone();
    for i in 0..n {
        y = if i % 2 == 0 {
            y.add_scalar(1.0)
        } else {
            y.mul_scalar(1.0)
        };
    }
    y
}

fn main() {
    let (_backend, dev) = open_device("deep_graphs");
    println!("deep_graphs on {}", dev.name());
    let lengths: &[usize] = if quick() {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let v: Vec<f32> = (0..4096).map(|i| i as f32).collect();
    let mut rows = vec![];
    for &n in lengths {
        let before = dev.stats();
        let t0 = Instant::now();
        let x = Tensor::from_slice(&v, [4096], &dev).unwrap();
        let y = chain(&x, n);
        let build = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let got = y.to_vec::<f32>().unwrap();
        let first = t1.elapsed().as_secs_f64();
        let after = dev.stats();
        assert_eq!(got[1], 1.0 + n.div_ceil(2) as f32, "chain of {n}");
        let y2 = chain(&Tensor::from_slice(&v, [4096], &dev).unwrap(), n);
        let t2 = Instant::now();
        y2.to_vec::<f32>().unwrap();
        let second = t2.elapsed().as_secs_f64();
        let kernels = after.dispatches - before.dispatches;
        let pipelines = after.pipelines_created - before.pipelines_created;
        println!(
            "  {n:>7} ops: build {:7.1} ms, first realize {:8.1} ms ({kernels} kernels, {pipelines} pipelines), cached realize {:7.1} ms",
            build * 1e3,
            first * 1e3,
            second * 1e3
        );
        rows.push(serde_json::json!({
            "ops": n, "build_ms": build * 1e3, "first_realize_ms": first * 1e3,
            "kernels": kernels, "pipelines": pipelines, "cached_realize_ms": second * 1e3,
        }));
    }
    let path = write_json(
        "deep_graphs.json",
        &serde_json::json!({ "device": dev.name(), "chains": rows }),
    );
    println!("wrote {}", path.display());
}
