//! Deep graphs: long chains of ops (unrolled loops, iterative programs) are built, dropped,
//! differentiated and realized without recursion deep enough to overflow a thread's stack, and a
//! chain too long for one kernel is cut into kernels of bounded size (issue 15).
//!
//! The tests run on threads with a 1 MiB stack, half of a spawned thread's default, so that they
//! fail on any walk whose depth grows with the chain.

mod common;

use common::{fresh_gpu, gpu};
use kiln::prelude::*;

/// Runs `f` on a thread with a small stack and returns its result.
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .expect("the walk overflowed or panicked")
}

/// `x + 1 + 1 + ...` (`n` adds, `2n` nodes with the constants), alternating with `* 1` so that
/// the chain is not one repeated op.
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

#[test]
fn a_million_node_chain_is_built_and_dropped() {
    on_small_stack(|| {
        let x = Tensor::from_slice(&[0.0f32, 1.0], [2], &Device::cpu()).unwrap();
        let y = chain(&x, 500_000);
        assert_eq!(y.dims(), &[2]);
        drop(y);
    });
}

#[test]
fn a_million_node_chain_is_realized_on_the_reference_executor() {
    on_small_stack(|| {
        let x = Tensor::from_slice(&[0.0f32, 1.0], [2], &Device::cpu()).unwrap();
        let y = chain(&x, 500_000);
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![250_000.0, 250_001.0]);
    });
}

#[test]
fn a_long_chain_is_differentiated() {
    on_small_stack(|| {
        let x = Tensor::from_slice(&[2.0f32], [1], &Device::cpu()).unwrap();
        x.set_requires_grad(true);
        let mut y = x.clone();
        for _ in 0..100_000 {
            y = y.mul_scalar(1.0).add_scalar(0.0);
        }
        let g = y.sum().grad_wrt(&[&x]);
        assert_eq!(g[0].to_vec::<f32>().unwrap(), vec![1.0]);
    });
}

#[test]
fn a_million_node_chain_is_realized_on_the_gpu_in_bounded_kernels() {
    // A device of its own: the counters must not count other tests' work.
    let dev = fresh_gpu();
    on_small_stack(move || {
        let x = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0], [4], &dev).unwrap();
        let y = chain(&x, 500_000);
        let before = dev.stats();
        assert_eq!(
            y.to_vec::<f32>().unwrap(),
            vec![250_000.0, 250_001.0, 250_002.0, 250_003.0]
        );
        let after = dev.stats();
        let dispatches = after.dispatches - before.dispatches;
        // A chain of 500k ops (1M nodes with their constants) in pieces of at most
        // MAX_INLINE_DEPTH ops, joined while their depths add up to at most MAX_JOINED_DEPTH.
        let joined = kiln::schedule::multi_output::MAX_JOINED_DEPTH as u64;
        let piece = kiln::schedule::MAX_INLINE_DEPTH as u64 / 2;
        assert!(
            dispatches >= 500_000 / joined && dispatches <= 500_000 / piece + 1,
            "{dispatches} kernels for a chain of 1M ops"
        );
        // The kernels of the chain are the same few sources: a handful of pipelines.
        let pipelines = after.pipelines_created - before.pipelines_created;
        assert!(
            pipelines <= 4,
            "{pipelines} pipelines for one repeated kernel"
        );
    });
}

#[test]
fn chains_of_several_lengths_match_the_reference() {
    let dev = gpu();
    on_small_stack(move || {
        for n in [7_000, 1_000, 129, 64] {
            let v: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
            let g = chain(&Tensor::from_slice(&v, [37], &dev).unwrap(), n);
            let c = chain(&Tensor::from_slice(&v, [37], &Device::cpu()).unwrap(), n);
            assert_eq!(
                g.to_vec::<f32>().unwrap(),
                c.to_vec::<f32>().unwrap(),
                "chain of {n}"
            );
        }
    });
}
