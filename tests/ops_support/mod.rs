//! Helpers shared by the `ops_*` tests: random shapes and data, the same data on both devices,
//! and comparisons of a graph built on the wgpu device with the same graph on the reference.
#![allow(dead_code)]

use crate::common::{gpu, values};
use kiln::prelude::*;

// Tolerances (absolute, relative) by kind of op.

/// Views, integer ops, comparisons, casts, min/max, uniform random numbers: the same values.
pub const EXACT: (f64, f64) = (0.0, 0.0);
/// `+ - * /`, min/max, abs...: a few rounding errors of f32.
pub const ARITH: (f64, f64) = (1e-6, 1e-5);
/// exp, log, sin, cos, tanh, sigmoid, pow, sqrt, rsqrt: the device's transcendental functions.
pub const TRANSC: (f64, f64) = (1e-5, 1e-4);

/// The reference device.
pub fn cpu() -> Device {
    Device::cpu()
}

/// A small xorshift generator for shapes and integer data.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1)
    }
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    /// A shape of rank `min_rank..=max_rank` with dimensions `1..=max_dim`.
    pub fn shape(&mut self, min_rank: usize, max_rank: usize, max_dim: usize) -> Vec<usize> {
        let rank = self.range(min_rank as i64, max_rank as i64) as usize;
        (0..rank)
            .map(|_| self.range(1, max_dim as i64) as usize)
            .collect()
    }
    /// `n` integers in `lo..=hi`.
    pub fn ints(&mut self, n: usize, lo: i64, hi: i64) -> Vec<i64> {
        (0..n).map(|_| self.range(lo, hi)).collect()
    }
}

/// The same host data on the GPU and on the reference device.
pub fn pair_of<T: kiln::Element>(data: &[T], shape: &[usize]) -> (Tensor, Tensor) {
    (
        Tensor::from_slice(data, shape, &gpu()).unwrap(),
        Tensor::from_slice(data, shape, &cpu()).unwrap(),
    )
}

/// Random f32 values in [-1, 1) mapped by `f`, on both devices.
pub fn pair_map(shape: &[usize], seed: u64, f: impl Fn(f32) -> f32) -> (Tensor, Tensor) {
    let n = shape.iter().product();
    let v: Vec<f32> = values(n, seed).into_iter().map(f).collect();
    pair_of(&v, shape)
}

/// Random i32 values in `lo..=hi` on both devices.
pub fn pair_i32(shape: &[usize], seed: u64, lo: i32, hi: i32) -> (Tensor, Tensor) {
    let n = shape.iter().product();
    let v: Vec<i32> = Rng::new(seed)
        .ints(n, lo as i64, hi as i64)
        .into_iter()
        .map(|x| x as i32)
        .collect();
    pair_of(&v, shape)
}

/// Compares a GPU result with the reference elementwise within `atol + rtol * |expected|` (as
/// `common::assert_close`, NaN equal to NaN), naming the case on failure.
#[track_caller]
pub fn close(what: &str, got: &Tensor, expected: &Tensor, (atol, rtol): (f64, f64)) {
    assert!(
        got.device().kind() != kiln::DeviceKind::Cpu
            && expected.device().kind() == kiln::DeviceKind::Cpu,
        "{what}: compare a GPU tensor with a reference one"
    );
    assert_eq!(got.dims(), expected.dims(), "{what}: shapes differ");
    assert_eq!(got.dtype(), expected.dtype(), "{what}: dtypes differ");
    let g = got.to_f64_vec().unwrap_or_else(|e| panic!("{what}: {e}"));
    let e = expected
        .to_f64_vec()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(g.len(), e.len(), "{what}: lengths differ");
    for (i, (a, b)) in g.iter().zip(&e).enumerate() {
        let ok = (a - b).abs() <= atol + rtol * b.abs() || (a.is_nan() && b.is_nan()) || a == b;
        assert!(
            ok,
            "{what}: element {i} of {:?} ({}): got {a}, expected {b}",
            got.dims(),
            got.dtype()
        );
    }
}

/// Builds `f` on one input on both devices and compares.
#[track_caller]
pub fn check1(what: &str, x: &(Tensor, Tensor), tol: (f64, f64), f: impl Fn(&Tensor) -> Tensor) {
    close(what, &f(&x.0), &f(&x.1), tol);
}

/// Builds `f` on two inputs on both devices and compares.
#[track_caller]
pub fn check2(
    what: &str,
    x: &(Tensor, Tensor),
    y: &(Tensor, Tensor),
    tol: (f64, f64),
    f: impl Fn(&Tensor, &Tensor) -> Tensor,
) {
    close(what, &f(&x.0, &y.0), &f(&x.1, &y.1), tol);
}

/// Asserts that both tensors hold the same bits (f32 compared by bit pattern).
#[track_caller]
pub fn bit_identical(what: &str, got: &Tensor, expected: &Tensor) {
    assert_eq!(got.dims(), expected.dims(), "{what}: shapes differ");
    assert_eq!(got.dtype(), expected.dtype(), "{what}: dtypes differ");
    let (g, e) = (got.to_bytes().unwrap(), expected.to_bytes().unwrap());
    if let Some(i) = g.iter().zip(&e).position(|(a, b)| a != b) {
        let size = got.dtype().size_bytes();
        panic!(
            "{what}: element {} differs: got {:?}, expected {:?}",
            i / size,
            got.to_f64_vec().unwrap()[i / size],
            expected.to_f64_vec().unwrap()[i / size]
        );
    }
    assert_eq!(g.len(), e.len(), "{what}: lengths differ");
}

/// Tolerance of a dot product of length `k` of values of magnitude ~1: atol grows with sqrt(k).
pub fn dot_tol(k: usize) -> (f64, f64) {
    (1e-6 * (k.max(1) as f64).sqrt() * 4.0, 1e-5)
}
