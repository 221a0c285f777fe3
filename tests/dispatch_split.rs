//! Dispatches past the per-dimension workgroup limit are spread over x, y and z, for every kind
//! of kernel. On devices opened with a limit of 7 workgroups per dimension, problems of 8 to 343
//! workgroups take two and three dimensions: elementwise kernels (f32 and packed f16), both
//! shapes of reduction, matmul (batched, and many row and column tiles), convolution and
//! pooling (their window-copy, matmul and reduction kernels), affine sampling and the f16 pack
//! kernel, each compared with the reference; past 7^3 the error says so. On the default device:
//! a batched matmul and a convolution with 70,000 batches, an elementwise kernel and a
//! reduction with more than 65,535 workgroups.

mod common;
mod ops_support;

use common::{gpu, values};
use kiln::prelude::*;
use kiln::wgpu_backend::{wgpu_device_with, WgpuOptions};
use ops_support::{close, cpu, dot_tol, ARITH, EXACT};
use std::sync::OnceLock;

/// Workgroups per dimension on the capped devices.
const CAP: u32 = 7;

/// The default adapter capped at [`CAP`] workgroups per dimension, with native f16 or without.
fn capped(shader_f16: bool) -> Device {
    static DEVS: [OnceLock<Device>; 2] = [OnceLock::new(), OnceLock::new()];
    DEVS[shader_f16 as usize]
        .get_or_init(|| {
            gpu();
            wgpu_device_with(&WgpuOptions {
                shader_f16,
                max_workgroups_per_dimension: Some(CAP),
                ..common::env_options()
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
        Tensor::from_slice(&v, shape, &cpu()).unwrap(),
    )
}

/// Builds `f` on the device and on the reference and compares.
#[track_caller]
fn check(what: &str, x: &[&(Tensor, Tensor)], tol: (f64, f64), f: impl Fn(&[&Tensor]) -> Tensor) {
    let dev: Vec<&Tensor> = x.iter().map(|p| &p.0).collect();
    let reference: Vec<&Tensor> = x.iter().map(|p| &p.1).collect();
    close(what, &f(&dev), &f(&reference), tol);
}

#[test]
fn elementwise_and_reduction_kernels_split_over_three_dimensions() {
    let dev = capped(true);
    // 60 and 300 workgroups of 256 invocations: 7 x 7 x 2 and 7 x 7 x 7.
    for n in [256 * 60 + 5, 256 * 300] {
        let x = pair_on(&dev, &[n], 1);
        check(&format!("elementwise {n}"), &[&x], ARITH, |t| {
            (t[0] * 2.0 + 1.0).relu()
        });
    }
    // One invocation per output (64 per workgroup): 60 workgroups.
    let x = pair_on(&dev, &[64 * 60, 5], 2);
    check("small groups", &[&x], ARITH, |t| t[0].sum_axes(&[1]));
    check("argmax", &[&x], EXACT, |t| t[0].argmax(1));
    // One workgroup per output: 100 workgroups.
    let x = pair_on(&dev, &[100, 300], 3);
    check("long groups", &[&x], (1e-5, 1e-4), |t| t[0].sum_axes(&[1]));
    check("long max", &[&x], EXACT, |t| t[0].max_axes_keepdim(&[1]));
}

#[test]
fn matmul_kernels_split_over_three_dimensions() {
    let dev = capped(true);
    // 100 batches of one tile.
    let a = pair_on(&dev, &[100, 3, 5], 4);
    let b = pair_on(&dev, &[100, 5, 2], 5);
    check("100 batches", &[&a, &b], dot_tol(5), |t| t[0].matmul(t[1]));
    // Many row tiles, and rows times column tiles.
    let a = pair_on(&dev, &[3000, 4], 6);
    let b = pair_on(&dev, &[4, 3], 7);
    check("3000 rows", &[&a, &b], dot_tol(4), |t| t[0].matmul(t[1]));
    let b = pair_on(&dev, &[4, 300], 8);
    check("3000 x 300", &[&a, &b], dot_tol(4), |t| {
        (t[0].matmul(t[1]) + 1.0).relu()
    });
}

#[test]
fn convolution_pooling_and_affine_sampling_split_over_three_dimensions() {
    let dev = capped(true);
    let x = pair_on(&dev, &[60, 2, 5, 5], 9);
    let w = pair_on(&dev, &[3, 2, 3, 3], 10);
    check("conv2d of 60 images", &[&x, &w], dot_tol(18), |t| {
        t[0].conv2d(t[1], None, &Conv2dOptions::default().padding(1))
    });
    let x = pair_on(&dev, &[60, 2, 8, 8], 11);
    check("max pool", &[&x], EXACT, |t| {
        t[0].max_pool2d(&Pool2dOptions::new(2))
    });
    check("avg pool", &[&x], ARITH, |t| {
        t[0].avg_pool2d(&Pool2dOptions::new(3).stride(1))
    });
    // 4 x 30 x 30 positions of 64 per workgroup: 57 workgroups.
    let img = pair_on(&dev, &[4, 3, 30, 30], 12);
    let theta: Vec<f32> = [1.0f32, 0.1, 0.5, -0.1, 0.9, 1.5].repeat(4);
    let th = (
        Tensor::from_slice(&theta, [4, 2, 3], &dev).unwrap(),
        Tensor::from_slice(&theta, [4, 2, 3], &cpu()).unwrap(),
    );
    check("affine sample", &[&img, &th], (1e-5, 1e-5), |t| {
        t[0].affine_sample(t[1], [30, 30]).unwrap()
    });
}

#[test]
fn packed_f16_kernels_split_over_three_dimensions() {
    let dev = capped(false);
    let x = pair_on(&dev, &[512 * 60 + 3], 13);
    check("packed elementwise", &[&x], (2e-3, 2e-3), |t| {
        t[0].cast(DType::F16).exp()
    });
    // 6400 f16 outputs through scratch: 13 pack workgroups, and 100 matmul tiles.
    let a = pair_on(&dev, &[100, 8, 5], 14);
    let b = pair_on(&dev, &[100, 5, 8], 15);
    check("f16 matmul", &[&a, &b], (1e-2, 4e-3), |t| {
        t[0].cast(DType::F16).matmul(&t[1].cast(DType::F16))
    });
}

#[test]
fn past_the_cap_cubed_the_error_says_how_many_workgroups() {
    let dev = capped(true);
    let n = 256 * (CAP as usize).pow(3) + 1;
    let e = Tensor::zeros([n], &dev)
        .add_scalar(1.0)
        .to_vec::<f32>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("344 workgroups, more than 7^3"), "{e}");
}

#[test]
fn batched_matmul_and_convolution_with_70000_batches() {
    let dev = gpu();
    let a = pair_on(&dev, &[70_000, 2, 3], 16);
    let b = pair_on(&dev, &[70_000, 3, 2], 17);
    check("batched matmul", &[&a, &b], dot_tol(3), |t| {
        t[0].matmul(t[1])
    });
    let x = pair_on(&dev, &[70_000, 1, 3, 3], 18);
    let w = pair_on(&dev, &[2, 1, 2, 2], 19);
    check("conv2d", &[&x, &w], dot_tol(4), |t| {
        t[0].conv2d(t[1], None, &Conv2dOptions::default())
    });
}

#[test]
fn elementwise_and_reduction_past_65535_workgroups() {
    let dev = gpu();
    // 65,540 workgroups of 256 invocations.
    let n = 256 * 65_540;
    let x = Tensor::arange_i32(0, n as i32, 1, &dev);
    let got = (&x + &x).to_vec::<i32>().unwrap();
    assert_eq!(got.len(), n);
    if let Some(i) = (0..n).find(|&i| got[i] != 2 * i as i32) {
        panic!("element {i}: got {}, expected {}", got[i], 2 * i);
    }
    // 65,540 workgroups of 64 outputs, each the sum of a pair.
    let rows = 64 * 65_540;
    let got = Tensor::arange_i32(0, 2 * rows as i32, 1, &dev)
        .reshape([rows, 2])
        .sum_axes(&[1])
        .to_vec::<i32>()
        .unwrap();
    if let Some(i) = (0..rows).find(|&i| got[i] != 4 * i as i32 + 1) {
        panic!("row {i}: got {}, expected {}", got[i], 4 * i + 1);
    }
}
