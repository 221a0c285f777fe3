//! f16 on a device without native f16: a wgpu device opened with `shader_f16: false` (and the
//! OpenGL adapter, which has no SHADER_F16, where present) stores f16 tensors as packed halves
//! and computes them in f32. Compared with the reference executor: uploads and readbacks of odd
//! lengths, every f16 <-> f32 conversion against the `half` crate bit for bit (all 65,536 halves,
//! rounding ties, overflow, subnormals, NaN), elementwise chains, reductions, matmul,
//! convolution and pooling with f16 inputs and outputs, and bit-identical repeated runs.

mod common;
mod ops_support;

use common::values;
use half::f16;
use kiln::prelude::*;
use kiln::wgpu_backend::{wgpu_device_with, WgpuOptions};
use ops_support::{bit_identical, close, cpu, EXACT};
use std::sync::OnceLock;

/// The default adapter with native f16 turned off.
fn no_f16() -> Device {
    static DEV: OnceLock<Device> = OnceLock::new();
    DEV.get_or_init(|| {
        common::gpu();
        wgpu_device_with(&WgpuOptions {
            shader_f16: false,
            ..common::env_options()
        })
        .expect("a wgpu adapter")
    })
    .clone()
}

/// A device without SHADER_F16 of its own, for counting dispatches: the shared one also counts
/// those of the tests running beside the counting one.
fn fresh_no_f16() -> Device {
    common::gpu();
    wgpu_device_with(&WgpuOptions {
        shader_f16: false,
        ..common::env_options()
    })
    .expect("a wgpu adapter")
}

/// f16 keeps 11 significant bits; the device rounds each op's f32 result, the reference its f64.
const F16_TOL: (f64, f64) = (2e-3, 2e-3);
/// Dot products of ~10 to 30 f16 terms, rounded once at the end.
const DOT_TOL: (f64, f64) = (1e-2, 4e-3);

/// The same f16 data (random in [-1, 1) mapped by `f`) on `dev` and on the reference.
fn pair_on(dev: &Device, shape: &[usize], seed: u64, f: impl Fn(f32) -> f32) -> (Tensor, Tensor) {
    let n = shape.iter().product();
    let v: Vec<f16> = values(n, seed)
        .into_iter()
        .map(|x| f16::from_f32(f(x)))
        .collect();
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
fn the_device_packs_f16_outputs_of_matmuls_in_a_second_dispatch() {
    // Proof that the fallback is in use: a matmul with an f16 output is one dispatch with native
    // f16 (where the default adapter offers it), two without (the kernel writes f32 scratch, a
    // pack kernel converts it).
    let dispatches = |dev: &Device| {
        let a = pair_on(dev, &[4, 6], 1, |x| x).0;
        let y = a.matmul(&a.t());
        y.realize().unwrap();
        let before = dev.stats().dispatches;
        let y = a.matmul(&a.t());
        y.realize().unwrap();
        dev.stats().dispatches - before
    };
    assert_eq!(dispatches(&fresh_no_f16()), 2);
    let native = common::fresh_gpu();
    let offers_f16 = kiln::wgpu_backend::list_adapters().iter().any(|a| {
        a.shader_f16
            && native
                .name()
                .starts_with(&format!("{} ({}, {:?}, ", a.name, a.backend, a.kind))
    });
    assert_eq!(dispatches(&native), if offers_f16 { 1 } else { 2 });
}

#[test]
fn uploads_readbacks_and_views_of_odd_lengths_are_unchanged() {
    let dev = no_f16();
    for n in [1usize, 2, 3, 257] {
        let (g, c) = pair_on(&dev, &[n], n as u64, |x| x * 300.0);
        bit_identical(&format!("upload of {n}"), &g, &c);
        // Through a kernel: a flip moves every element to the other half of its word.
        bit_identical(
            &format!("flip of {n}"),
            &g.flip(&[0]).reshape([n, 1]),
            &c.flip(&[0]).reshape([n, 1]),
        );
        bit_identical(
            &format!("odd slice of {n}"),
            &g.slice(0, n / 2, n, 1),
            &c.slice(0, n / 2, n, 1),
        );
    }
}

/// Every f16 bit pattern.
fn all_halves() -> Vec<f16> {
    (0..=u16::MAX).map(f16::from_bits).collect()
}

#[test]
fn every_f16_converts_to_f32_exactly() {
    let h = all_halves();
    let got = Tensor::from_slice(&h, [h.len()], &no_f16())
        .unwrap()
        .cast(DType::F32)
        .to_vec::<f32>()
        .unwrap();
    for (x, g) in h.iter().zip(&got) {
        assert_eq!(
            g.to_bits(),
            x.to_f32().to_bits(),
            "f16 {:#06x}: got {g:e}, expected {:e}",
            x.to_bits(),
            x.to_f32()
        );
    }
}

/// f32 values at the edges of f16's rounding: ties, overflow, subnormals, signed zeros, NaN.
fn rounding_cases() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0 + f32::powi(2.0, -11),       // tie: stays 1 (even)
        1.0 + 3.0 * f32::powi(2.0, -11), // tie: rounds up to even
        1.0 + f32::powi(2.0, -11) + f32::powi(2.0, -20),
        65504.0,
        65519.99, // rounds down to the largest f16
        65520.0,  // tie at the top: infinity
        1e6,
        -1e6,
        f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7f80_0001), // signalling NaN: quiet, payload dropped
        f32::from_bits(0x7fbf_e000), // NaN with top payload bits
        f32::powi(2.0, -14),         // smallest normal f16
        f32::powi(2.0, -14) - f32::powi(2.0, -25),
        f32::powi(2.0, -24),        // smallest subnormal
        f32::powi(2.0, -25),        // tie: 0
        1.5 * f32::powi(2.0, -25),  // rounds up to 2^-24
        3.0 * f32::powi(2.0, -25),  // tie: 2 * 2^-24
        -5.0 * f32::powi(2.0, -25), // tie: -2 * 2^-24
        f32::powi(2.0, -26),        // rounds to 0
        f32::from_bits(1),          // f32 subnormal
        -f32::MIN_POSITIVE,
    ];
    // Random bit patterns cover every exponent.
    let mut s = 0x1234_5678_9abc_def1u64;
    v.extend((0..100_000).map(|_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        f32::from_bits((s >> 16) as u32)
    }));
    // And values near f16's range, with random low bits.
    v.extend(values(20_000, 9).iter().map(|x| x * 70_000.0));
    v.extend(values(20_000, 10).iter().map(|x| x * 1e-4));
    v
}

#[test]
fn f32_to_f16_rounds_like_half_bit_for_bit() {
    let x = rounding_cases();
    let n = x.len();
    for (what, t) in [
        (
            "elementwise cast",
            Tensor::from_slice(&x, [n], &no_f16())
                .unwrap()
                .cast(DType::F16),
        ),
        (
            "f32 matmul by 1, cast to f16 (f32 scratch, then the pack kernel)",
            Tensor::from_slice(&x, [n, 1], &no_f16())
                .unwrap()
                .matmul(&Tensor::ones([1, 1], &no_f16()))
                .cast(DType::F16),
        ),
    ] {
        let got = t.to_vec::<f16>().unwrap();
        for (v, g) in x.iter().zip(&got) {
            let e = f16::from_f32(*v);
            // The matmul's 0 + x * 1 keeps a NaN a NaN but may change its payload, and makes
            // -0 +0.
            let same = g.to_bits() == e.to_bits()
                || (what != "elementwise cast" && (g == &e || (g.is_nan() && e.is_nan())));
            assert!(
                same,
                "{what}: f32 {v:e} ({:#010x}): got f16 {:#06x}, expected {:#06x}",
                v.to_bits(),
                g.to_bits(),
                e.to_bits()
            );
        }
    }
    // The reference (which rounds from f64) agrees on every number.
    let reference = Tensor::from_slice(&x, [n], &cpu())
        .unwrap()
        .cast(DType::F16);
    let device = Tensor::from_slice(&x, [n], &no_f16())
        .unwrap()
        .cast(DType::F16);
    close("cast against the reference", &device, &reference, EXACT);
}

#[test]
fn elementwise_chains_match_the_reference() {
    let dev = no_f16();
    for shape in [&[1usize][..], &[3], &[257], &[7, 9]] {
        let a = pair_on(&dev, shape, 1, |x| x);
        let b = pair_on(&dev, shape, 2, |x| x);
        let s = format!("{shape:?}");
        check(&format!("add, mul {s}"), &[&a, &b], F16_TOL, |t| {
            (t[0] + t[1]) * t[1]
        });
        check(&format!("sub, div {s}"), &[&a, &b], F16_TOL, |t| {
            (t[0] - t[1]) / (t[1].abs() + 1.0)
        });
        check(&format!("relu, neg, abs, max {s}"), &[&a, &b], EXACT, |t| {
            (-t[0].abs()).maximum(&t[1].relu())
        });
        check(&format!("exp, tanh, sigmoid {s}"), &[&a], F16_TOL, |t| {
            t[0].exp() + t[0].tanh() + t[0].sigmoid()
        });
        check(&format!("pow, sqrt, log {s}"), &[&a], F16_TOL, |t| {
            let p = t[0].abs() + 0.5;
            p.pow(t[0]) + p.sqrt() + p.log()
        });
        check(&format!("comparison {s}"), &[&a], EXACT, |t| {
            t[0].gt(&t[0].scalar_like(0.25))
        });
        check(&format!("f16 -> f32 -> f16 {s}"), &[&a], F16_TOL, |t| {
            (t[0].cast(DType::F32) * 3.0).cast(DType::F16) + 1.0
        });
        check(&format!("f16 -> i32 {s}"), &[&a], EXACT, |t| {
            (t[0] * 100.0).cast(DType::I32)
        });
    }
    // Each op rounds to f16, as in the reference: 1 + 2^-11 is 1, and exp(12) and exp(11.9)
    // overflow to infinity before the subtraction makes them NaN (in f32 they would differ by
    // 15,488). Not `x - x`: drivers may simplify that to 0.
    let one = pair_on(&dev, &[3], 1, |_| 1.0);
    check("per-op rounding", &[&one], EXACT, |t| {
        (t[0] + f32::powi(2.0, -11)) - t[0]
    });
    check("per-op overflow", &[&one], EXACT, |t| {
        (t[0] * 12.0).exp() - (t[0] * 11.9).exp()
    });
}

#[test]
fn reductions_match_the_reference() {
    let dev = no_f16();
    // Small groups (one invocation per output) and long ones (a workgroup per output).
    for shape in [[7usize, 9], [3, 1000], [1, 257]] {
        let a = pair_on(&dev, &shape, 3, |x| x);
        let s = format!("{shape:?}");
        check(&format!("sum {s}"), &[&a], (1e-2, 4e-3), |t| {
            t[0].sum_axes(&[1])
        });
        check(&format!("max {s}"), &[&a], EXACT, |t| {
            t[0].max_axes_keepdim(&[1])
        });
        check(&format!("min over rows {s}"), &[&a], EXACT, |t| {
            t[0].min_axes(&[0])
        });
        check(&format!("argmax {s}"), &[&a], EXACT, |t| t[0].argmax(1));
        check(&format!("mean {s}"), &[&a], (2e-3, 4e-3), |t| {
            t[0].mean_axes(&[1])
        });
        check(&format!("full sum {s}"), &[&a], (3e-2, 4e-3), |t| {
            t[0].sum()
        });
        check(&format!("sum to f32 {s}"), &[&a], (1e-2, 4e-3), |t| {
            t[0].sum_axes(&[1]).cast(DType::F32)
        });
    }
}

#[test]
fn matmul_convolution_and_pooling_match_the_reference() {
    let dev = no_f16();
    let a = pair_on(&dev, &[7, 9], 4, |x| x);
    let b = pair_on(&dev, &[9, 5], 5, |x| x);
    check("matmul", &[&a, &b], DOT_TOL, |t| t[0].matmul(t[1]));
    check("matmul + relu", &[&a, &b], DOT_TOL, |t| {
        (t[0].matmul(t[1]) + 0.5).relu()
    });
    check("transposed operand", &[&a], DOT_TOL, |t| {
        t[0].matmul(&t[0].t())
    });
    let x = pair_on(&dev, &[3, 5, 7], 6, |x| x);
    let y = pair_on(&dev, &[3, 7, 3], 7, |x| x);
    check("batched matmul", &[&x, &y], DOT_TOL, |t| t[0].matmul(t[1]));

    let img = pair_on(&dev, &[2, 3, 9, 9], 8, |x| x);
    let w = pair_on(&dev, &[4, 3, 3, 3], 9, |x| x * 0.5);
    let bias = pair_on(&dev, &[4], 10, |x| x);
    check("conv2d", &[&img, &w, &bias], DOT_TOL, |t| {
        t[0].conv2d(t[1], Some(t[2]), &Conv2dOptions::default().padding(1))
    });
    check("strided conv2d, relu", &[&img, &w], DOT_TOL, |t| {
        t[0].conv2d(t[1], None, &Conv2dOptions::default().stride(2))
            .relu()
    });
    check("max pool", &[&img], EXACT, |t| {
        t[0].max_pool2d(&Pool2dOptions::new(2))
    });
    check("max pool 3/2 padded", &[&img], EXACT, |t| {
        t[0].max_pool2d(&Pool2dOptions::new(3).stride(2).padding(1))
    });
    check("avg pool", &[&img], F16_TOL, |t| {
        t[0].avg_pool2d(&Pool2dOptions::new(3).stride(2))
    });
}

#[test]
fn repeated_runs_are_bit_identical() {
    let dev = no_f16();
    let img = pair_on(&dev, &[2, 3, 9, 9], 11, |x| x).0;
    let w = pair_on(&dev, &[4, 3, 3, 3], 12, |x| x).0;
    let m = pair_on(&dev, &[257, 33], 13, |x| x).0;
    let run = || {
        let y = img
            .conv2d(&w, None, &Conv2dOptions::default().padding(1))
            .relu()
            .max_pool2d(&Pool2dOptions::new(2));
        let z = m.matmul(&m.t()).sum_axes(&[1]) + m.exp().sum_axes(&[1]);
        (y.to_bytes().unwrap(), z.to_bytes().unwrap())
    };
    let first = run();
    for _ in 0..3 {
        assert!(run() == first, "a repeated run differs");
    }
}

#[test]
fn the_opengl_adapter_without_shader_f16_runs_f16_graphs() {
    let Ok(gl) = wgpu_device_with(&WgpuOptions {
        backend: Some(kiln::wgpu_backend::wgpu::Backend::Gl),
        ..common::env_options()
    }) else {
        eprintln!("no OpenGL adapter here: the test of its f16 is skipped");
        return;
    };
    let a = pair_on(&gl, &[7, 9], 14, |x| x);
    let b = pair_on(&gl, &[9, 5], 15, |x| x);
    check("gl elementwise", &[&a], F16_TOL, |t| t[0].exp() * 0.5 + 1.0);
    check("gl sum", &[&a], (1e-2, 4e-3), |t| t[0].sum_axes(&[1]));
    check("gl matmul", &[&a, &b], DOT_TOL, |t| {
        t[0].matmul(t[1]).relu()
    });
}

#[test]
fn sibling_f16_outputs_stay_in_kernels_of_their_own() {
    // Two f16 outputs of one shape from the same input (an optimiser's moments, say) would join
    // one multi-output kernel in f32; packed halves are written by single-output kernels only.
    let x = pair_on(&no_f16(), &[7, 5], 41, |v| v);
    let g = pair_on(&no_f16(), &[7, 5], 42, |v| v);
    let make = |x: &Tensor, g: &Tensor| (x * 0.9 + g * 0.1, x * 0.5 + g * g);
    let (a, b) = make(&x.0, &g.0);
    let (ra, rb) = make(&x.1, &g.1);
    Tensor::realize_all(&[&a, &b]).unwrap();
    close("first sibling", &a, &ra, F16_TOL);
    close("second sibling", &b, &rb, F16_TOL);
    // The f32 version of the same graph does join.
    let dev = fresh_no_f16();
    let x32 = Tensor::from_vec(common::values(35, 41), [7, 5], &dev).unwrap();
    let g32 = Tensor::from_vec(common::values(35, 42), [7, 5], &dev).unwrap();
    Tensor::realize_all(&[&x32, &g32]).unwrap();
    let (a, b) = make(&x32, &g32);
    let before = dev.stats().dispatches;
    Tensor::realize_all(&[&a, &b]).unwrap();
    assert_eq!(
        dev.stats().dispatches - before,
        1,
        "f32 siblings: one kernel"
    );
}
