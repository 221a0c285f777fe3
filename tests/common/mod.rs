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

/// The environment's device options (`KILN_KERNELS`, `KILN_ADAPTER`, ...), for tests that open
/// devices of their own with [`kiln::wgpu_backend::wgpu_device_with`]: CI's second pass
/// (`KILN_KERNELS=gpu`) then runs them on the GPU kernel family as well.
pub fn env_options() -> kiln::wgpu_backend::WgpuOptions {
    kiln::wgpu_backend::WgpuOptions::from_env().expect("KILN_KERNELS names a kernel family")
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

/// Asserts `got` and `want` have the same length and agree within `tol x (1 + |want|)`
/// elementwise; `what` names them in the message.
#[track_caller]
pub fn assert_slices_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what} element {i}: got {g}, want {w}"
        );
    }
}

/// The inputs of a gradient check: f32 values in [-1, 1) of each shape, seeded.
pub fn check_inputs(shapes: &[&[usize]], seed: u64, dev: &Device) -> Vec<Tensor> {
    shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let n = s.iter().product();
            Tensor::from_slice(&values(n, seed + 7 * k as u64), *s, dev).unwrap()
        })
        .collect()
}

/// A scalar of `y` that depends on every element: `sum(y * w)` with fixed pseudo-random weights,
/// so that a gradient check sees each output's gradient, not only their sum.
pub fn weighted_sum(y: &Tensor, seed: u64) -> Tensor {
    let w = Tensor::from_slice(&values(y.numel(), seed ^ 0xabc), y.dims(), y.device()).unwrap();
    y.mul(&w.cast(y.dtype())).sum()
}

/// Central finite-difference check of `f`'s gradients, in f64 on the exact reference device:
/// for every element of every input, `(L(x + e) - L(x - e)) / 2e` with `e = 1e-6` must match the
/// gradient that `grad_wrt` builds, where `L = weighted_sum(f(inputs))`.
#[track_caller]
pub fn check_gradients(f: impl Fn(&[Tensor]) -> Tensor, shapes: &[&[usize]], seed: u64) {
    let dev = Device::cpu_exact();
    let xs = check_inputs(shapes, seed, &dev);
    let loss = |xs: &[Tensor]| weighted_sum(&f(xs), seed);
    let refs: Vec<&Tensor> = xs.iter().collect();
    let grads = loss(&xs).grad_wrt(&refs);
    // The perturbation as the f32 that `mul_scalar` makes of it, so the quotient is exact.
    let eps = 1e-6f32 as f64;
    for (k, x) in xs.iter().enumerate() {
        let analytic = kiln::reference::exact_values(&grads[k]).unwrap();
        assert_eq!(
            grads[k].dims(),
            x.dims(),
            "gradient {k} has the wrong shape"
        );
        for (i, &a) in analytic.iter().enumerate() {
            let onehot = Tensor::arange_i32(0, x.numel() as i32, 1, &dev)
                .eq(&Tensor::full_dtype((), i as f64, DType::I32, &dev))
                .cast(DType::F32)
                .reshape(x.dims());
            let at = |e: f64| {
                let mut moved = xs.clone();
                moved[k] = x.add(&onehot.mul_scalar(e));
                kiln::reference::exact_values(&loss(&moved)).unwrap()[0]
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (a - numeric).abs() <= 1e-6 + 1e-5 * numeric.abs(),
                "input {k} element {i} of {:?}: backward gives {a}, finite differences {numeric}",
                x.dims()
            );
        }
    }
}

/// `f`'s gradients computed on the GPU match those of the reference device (f32 on both).
#[track_caller]
pub fn check_gpu_gradients(f: impl Fn(&[Tensor]) -> Tensor, shapes: &[&[usize]], seed: u64) {
    check_gradients_on(&gpu(), f, shapes, seed);
}

/// Like [`check_gpu_gradients`], on the device `dev`.
pub fn check_gradients_on(
    dev: &Device,
    f: impl Fn(&[Tensor]) -> Tensor,
    shapes: &[&[usize]],
    seed: u64,
) {
    let run = |dev: &Device| -> Vec<Tensor> {
        let xs = check_inputs(shapes, seed, dev);
        let refs: Vec<&Tensor> = xs.iter().collect();
        weighted_sum(&f(&xs), seed).grad_wrt(&refs)
    };
    let (got, expected) = (run(dev), run(&Device::cpu()));
    for (g, e) in got.iter().zip(&expected) {
        assert_close(g, e, 1e-4, 1e-3);
    }
}

/// A fresh, empty directory of its own for one test, removed when dropped.
pub struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new empty directory under the system's temp dir, unique to this test binary, process and
/// `name`.
pub fn temp_dir(name: &str) -> TempDir {
    let binary = module_path!().split("::").next().unwrap_or("kiln");
    let d = std::env::temp_dir().join(format!("kiln-{binary}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// Runs the rewrite pass ([`kiln::rewrite`]) with `limits` on the graph `build` makes, on the
/// reference device, and checks that the rewritten graph computes the values of the recorded one
/// (within `tol`, relative to the largest value). Returns the rules that fired, by name.
/// `build` is called twice (once per graph) and must make the same graph each time.
pub fn check_rewrite(
    build: impl Fn(&Device) -> Vec<Tensor>,
    limits: kiln::schedule::ScheduleLimits,
    tol: f64,
) -> Vec<(&'static str, usize)> {
    let dev = Device::cpu();
    let expected = build(&dev);
    let refs: Vec<&Tensor> = expected.iter().collect();
    Tensor::realize_all(&refs).unwrap();
    let rewritten_targets = build(&dev);
    let refs: Vec<&Tensor> = rewritten_targets.iter().collect();
    let p = kiln::Pending::collect(&refs);
    let r = kiln::rewrite::rewrite(&p, &limits);
    let q = r.pending();
    dev.backend().realize(q, &[]).unwrap();
    r.hand_back();
    for (got, e) in rewritten_targets.iter().zip(&expected) {
        assert!(
            got.is_realized(),
            "a target was not handed its replacement's values"
        );
        let scale = e
            .to_f64_vec()
            .unwrap()
            .iter()
            .fold(1.0f64, |m, v| m.max(v.abs()));
        assert_close(got, e, tol * scale, 0.0);
    }
    r.fired.clone()
}

/// The plan the scheduler makes of the graph behind `targets` (no rewrite pass) when a kernel
/// may bind `max_storage_buffers` buffers.
pub fn scheduled(targets: &[&Tensor], max_storage_buffers: usize) -> kiln::schedule::Plan {
    let p = kiln::Pending::collect(targets);
    kiln::schedule::schedule(
        &p,
        kiln::schedule::ScheduleLimits {
            max_storage_buffers,
            window_operand_bytes: 0,
            col2im_product_limit: kiln::schedule::COL2IM_PRODUCT_LIMIT,
            disabled_rules: 0,
        },
    )
}

/// A tensor of `dims` with seeded values in [-1, 1) on `dev`.
pub fn seeded(dims: &[usize], seed: u64, dev: &Device) -> Tensor {
    Tensor::from_slice(&values(dims.iter().product(), seed), dims, dev).unwrap()
}

/// A PNG whose header declares `width` x `height` pixels of PNG colour type `color` and
/// `depth` bits, with almost no pixel data.
pub fn png_declaring(width: u32, height: u32, color: u8, depth: u8) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend(kind);
        c.extend(data);
        c.extend(crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([depth, color, 0, 0, 0]);
    let mut idat = flate2::write::ZlibEncoder::new(vec![], flate2::Compression::default());
    std::io::Write::write_all(&mut idat, &[0; 64]).unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &idat.finish().unwrap()));
    png.extend(chunk(b"IEND", &[]));
    png
}
