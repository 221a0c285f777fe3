//! Tensors larger than one storage binding (issue 13, point 5). Such a tensor lives in one buffer
//! (up to the adapter's `max_buffer_size`) and each kernel binds it as several windows of at
//! most `max_storage_buffer_binding_size` bytes. On devices opened with a binding limit of a few
//! KiB (`WgpuOptions::max_storage_binding_bytes`) small tensors take that path: elementwise
//! chains (vec4 and scalar), reductions, matmul with plain and transposed operands, views that
//! read across windows, f16 (native and packed), a training step; each compared with the reference. On the
//! default device (lavapipe: 128 MiB per binding) a 151 MB matrix is multiplied, transformed
//! elementwise and summed.

mod common;

use common::{assert_close, gpu, values};
use kiln::prelude::*;
use kiln::wgpu_backend::{wgpu_device_with, WgpuOptions};
use std::sync::OnceLock;

/// Bytes per binding on the capped device.
const CAP: u64 = 4096;

/// The default adapter with at most [`CAP`] bytes per storage binding.
fn capped() -> Device {
    capped_with(true)
}

/// [`capped`], with native f16 (where offered) or f16 stored as packed halves.
fn capped_with(shader_f16: bool) -> Device {
    static DEVS: [OnceLock<Device>; 2] = [OnceLock::new(), OnceLock::new()];
    DEVS[shader_f16 as usize]
        .get_or_init(|| {
            gpu();
            wgpu_device_with(&WgpuOptions {
                max_storage_binding_bytes: Some(CAP),
                shader_f16,
                ..WgpuOptions::default()
            })
            .expect("a wgpu adapter")
        })
        .clone()
}

/// Random f32 data of `shape` on `dev` and on the reference.
fn pair_on(dev: &Device, shape: &[usize], seed: u64) -> (Tensor, Tensor) {
    let v = values(shape.iter().product(), seed);
    (
        Tensor::from_slice(&v, shape, dev).unwrap(),
        Tensor::from_slice(&v, shape, &Device::cpu()).unwrap(),
    )
}

#[test]
fn elementwise_chains_read_and_write_across_windows() {
    let dev = capped();
    // 4,100 elements (16.4 KB, 5 windows): vec4 kernels; 4,099: scalar ones.
    for n in [4100, 4099] {
        let (a, ca) = pair_on(&dev, &[n], 1);
        let (b, cb) = pair_on(&dev, &[n], 2);
        let f = |a: &Tensor, b: &Tensor| (a.mul(b).add_scalar(0.5).relu() - b.exp()).tanh();
        assert_close(&f(&a, &b), &f(&ca, &cb), 1e-5, 1e-5);
        // Reversed and broadcast reads reach every window from every invocation.
        let g = |a: &Tensor, b: &Tensor| a.flip(&[0]).add(&b.narrow(0, 0, 1).expand([n]));
        assert_close(&g(&a, &b), &g(&ca, &cb), 1e-6, 1e-6);
    }
}

#[test]
fn reductions_and_matmuls_read_across_windows() {
    let dev = capped();
    let (a, ca) = pair_on(&dev, &[40, 70], 3); // 11.2 KB
    let (b, cb) = pair_on(&dev, &[70, 30], 4); // 8.4 KB
    assert_close(&a.sum_axes(&[0]), &ca.sum_axes(&[0]), 1e-5, 1e-5);
    assert_close(&a.max_axes(&[1]), &ca.max_axes(&[1]), 0.0, 0.0);
    assert_close(&a.matmul(&b), &ca.matmul(&cb), 1e-4, 1e-4);
    // Transposed operands and an output over one binding (50 x 40 x 4 = 8 KB).
    let (c, cc) = pair_on(&dev, &[70, 50], 5);
    let f = |c: &Tensor, a: &Tensor| c.t().matmul(&a.t()).relu();
    assert_close(&f(&c, &a), &f(&cc, &ca), 1e-4, 1e-4);
}

#[test]
fn f16_tensors_over_one_binding() {
    for dev in [capped_with(true), capped_with(false)] {
        f16_chains_on(&dev);
    }
}

/// An f16 elementwise chain and an f16 reduction (without native f16: a pack kernel whose f32
/// scratch input is windowed too) on `dev`.
fn f16_chains_on(dev: &Device) {
    let dev = dev.clone();
    let (a, ca) = pair_on(&dev, &[3000], 6); // f16: 6 KB
    let f = |a: &Tensor| a.cast(DType::F16).mul_scalar(3.0).cast(DType::F32);
    assert_close(&f(&a), &f(&ca), 0.0, 0.0);
    let (m, cm) = pair_on(&dev, &[60, 50], 7);
    let g = |m: &Tensor| m.cast(DType::F16).sum_axes(&[1]).cast(DType::F32);
    assert_close(&g(&m), &g(&cm), 1e-2, 1e-2);
    // An f16 matmul output of 40 x 60 (4.8 KB; its f32 scratch, without native f16, 9.6 KB),
    // stored as f16 before it is read.
    let (b, cb) = pair_on(&dev, &[50, 40], 8);
    let h = |m: &Tensor, b: &Tensor| {
        let y = b.t().cast(DType::F16).matmul(&m.t().cast(DType::F16));
        y.realize().unwrap();
        y.cast(DType::F32)
    };
    assert_close(&h(&m, &b), &h(&cm, &cb), 1e-2, 1e-2);
}

#[test]
fn a_training_step_with_tensors_over_one_binding() {
    let run = |dev: &Device| -> Vec<Vec<f32>> {
        let w1 = Tensor::from_slice(&values(64 * 80, 8), [80, 64], dev).unwrap();
        let w2 = Tensor::from_slice(&values(80 * 10, 9), [10, 80], dev).unwrap();
        let x = Tensor::from_slice(&values(32 * 64, 10), [32, 64], dev).unwrap();
        let h = x.matmul(&w1.t()).relu(); // [32, 80]: 10 KB
        let loss = h.matmul(&w2.t()).square().mean();
        let g = loss.grad_wrt(&[&w1, &w2]);
        let w1 = w1.sub(&g[0].mul_scalar(0.1));
        vec![
            loss.to_vec::<f32>().unwrap(),
            g[0].to_vec::<f32>().unwrap(),
            w1.to_vec::<f32>().unwrap(),
        ]
    };
    let (got, want) = (run(&capped()), run(&Device::cpu()));
    for (g, w) in got.iter().zip(&want) {
        for (x, y) in g.iter().zip(w) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
}

#[test]
fn a_binding_limit_outside_the_adapters_range_is_an_error() {
    gpu();
    let err = wgpu_device_with(&WgpuOptions {
        max_storage_binding_bytes: Some(8),
        ..WgpuOptions::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("max_storage_binding_bytes"),
        "{err}"
    );
}

/// A 4096 x 9216 f32 matrix (151 MB, AlexNet's first classifier weight) on the default device,
/// where one binding holds 128 MiB: a matmul that reads it transposed, one that reads it as the
/// right operand, an elementwise chain over it and its sum, checked with plain loops on the host
/// over its values read back (the reference executor would take a minute here).
#[test]
fn a_matrix_over_128_mib_on_the_default_device() {
    let dev = gpu();
    let (rows, cols) = (4096, 9216);
    let w = Tensor::rand([rows, cols], 11, &dev).add_scalar(-0.5);
    let big = (rows * cols * 4) as u64;
    assert!(big > dev.backend().max_binding_bytes(), "{big}");
    let hw = w.to_vec::<f32>().unwrap();
    // The values past the first binding are Philox's too, not zeros or a copy of the first.
    let boundary = (dev.backend().max_binding_bytes() / 4) as usize;
    let tail = &hw[boundary..boundary + 8];
    assert!(
        tail.iter().all(|v| v.abs() <= 0.5) && tail != &hw[..8],
        "{tail:?}"
    );
    let at = |r: usize, c: usize| hw[r * cols + c] as f64;
    let check = |got: &Tensor, want: &[f64]| {
        let g = got.to_vec::<f32>().unwrap();
        assert_eq!(g.len(), want.len());
        for (i, (&a, &b)) in g.iter().zip(want).enumerate() {
            assert!(
                (a as f64 - b).abs() <= 1e-3 + 1e-4 * b.abs(),
                "{i}: {a} vs {b}"
            );
        }
    };
    // x [2, cols] x W^T -> [2, rows].
    let xv = values(2 * cols, 12);
    let x = Tensor::from_slice(&xv, [2, cols], &dev).unwrap();
    let want: Vec<f64> = (0..2 * rows)
        .map(|o| {
            let (i, r) = (o / rows, o % rows);
            (0..cols).map(|c| xv[i * cols + c] as f64 * at(r, c)).sum()
        })
        .collect();
    check(&x.matmul(&w.t()), &want);
    // v [3, rows] x W -> [3, cols].
    let vv = values(3 * rows, 13);
    let v = Tensor::from_slice(&vv, [3, rows], &dev).unwrap();
    let mut want = vec![0f64; 3 * cols];
    for i in 0..3 {
        for r in 0..rows {
            let a = vv[i * rows + r] as f64;
            for c in 0..cols {
                want[i * cols + c] += a * at(r, c);
            }
        }
    }
    check(&v.matmul(&w), &want);
    // An elementwise chain written across both windows, then its sum.
    let y = w.mul_scalar(2.0).add_scalar(1.0).relu();
    y.realize().unwrap();
    let f = |v: f32| (v * 2.0 + 1.0).max(0.0);
    let hy = y.to_vec::<f32>().unwrap();
    assert!(hy.iter().zip(&hw).all(|(&a, &b)| a == f(b)));
    let sum: f64 = hw.iter().map(|&v| f(v) as f64).sum();
    check(&y.sum().reshape([1]), &[sum]);
}

/// A kernel whose windows outnumber the adapter's storage bindings per stage is an error that
/// says so, not a validation failure: on the capped device, `a + b` over 72 KB operands needs 18
/// windows per buffer, 54 in all.
#[test]
fn a_kernel_needing_more_windows_than_bindings_is_an_error() {
    let dev = capped();
    let n = 18 * CAP as usize / 4;
    let (a, _) = pair_on(&dev, &[n], 1);
    let (b, _) = pair_on(&dev, &[n], 2);
    let err = a.add(&b).realize().unwrap_err();
    assert!(err.to_string().contains("storage bindings"), "{err}");
    // Smaller tensors still work on the same device.
    assert_eq!(
        (Tensor::ones([3], &dev) * 2.0).to_vec::<f32>().unwrap(),
        vec![2.0; 3]
    );
}
