//! Shared helpers of the integration tests.
#![allow(dead_code)]

use kiln::prelude::*;
use std::sync::OnceLock;

/// The wgpu device the tests run on. Tests that need one never pass silently without it: with no
/// adapter they fail and say how to install a driver.
pub fn gpu() -> Device {
    static DEV: OnceLock<Device> = OnceLock::new();
    DEV.get_or_init(|| match Device::wgpu() {
        Ok(d) => d,
        Err(e) => panic!(
            "these tests need a wgpu adapter: {e}\n\
             On a machine without a GPU: sudo apt-get install mesa-vulkan-drivers (the lavapipe software driver)"
        ),
    })
    .clone()
}

/// A fresh wgpu device of its own, for tests that read the counters.
pub fn fresh_gpu() -> Device {
    gpu();
    Device::wgpu().expect("a wgpu adapter")
}

/// Deterministic pseudo-random values in [-1, 1) for test inputs.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The same f32 data on the GPU and on the reference CPU device.
pub fn pair(shape: &[usize], seed: u64) -> (Tensor, Tensor) {
    let n = shape.iter().product();
    let v = values(n, seed);
    (
        Tensor::from_slice(&v, shape, &gpu()).unwrap(),
        Tensor::from_slice(&v, shape, &Device::cpu()).unwrap(),
    )
}

/// Asserts two tensors hold the same values within `atol + rtol * |expected|` elementwise.
#[track_caller]
pub fn assert_close(got: &Tensor, expected: &Tensor, atol: f64, rtol: f64) {
    assert_eq!(got.dims(), expected.dims(), "shapes differ");
    assert_eq!(got.dtype(), expected.dtype(), "dtypes differ");
    let g = got.to_f64_vec().unwrap();
    let e = expected.to_f64_vec().unwrap();
    for (i, (a, b)) in g.iter().zip(&e).enumerate() {
        let ok = (a - b).abs() <= atol + rtol * b.abs() || (a.is_nan() && b.is_nan()) || a == b;
        assert!(ok, "element {i} of {:?}: got {a}, expected {b}", got.dims());
    }
}
