//! The GPU kernel family, forced on whatever adapter is present (lavapipe in CI), compared with
//! the reference executor: the tiled matmul of `shaders/matmul.wgsl` on edge shapes (sizes that
//! are not multiples of its 64 x 64 x 16 tile, K = 1, broadcast batches, transposed and windowed
//! operands, vec4 and scalar staging, f16, fused epilogues), and the choice of family itself.
//! The whole suite also runs on the GPU family in CI's second pass (`KILN_KERNELS=gpu`).

mod common;
mod ops_support;

use common::values;
use kiln::prelude::*;
use kiln::wgpu_backend::{wgpu_device_with, WgpuOptions};
use kiln::KernelFamily;
use ops_support::{close, cpu, dot_tol};
use std::sync::OnceLock;

/// The default adapter with the GPU kernel family.
fn gpu_family() -> Device {
    static DEV: OnceLock<Device> = OnceLock::new();
    DEV.get_or_init(|| {
        common::gpu();
        wgpu_device_with(&WgpuOptions {
            kernels: Some(KernelFamily::Gpu),
            ..WgpuOptions::default()
        })
        .expect("a wgpu adapter")
    })
    .clone()
}

/// The same seeded values on the GPU-family device and on the reference.
fn pair(shape: &[usize], seed: u64) -> (Tensor, Tensor) {
    let v = values(shape.iter().product(), seed);
    (
        Tensor::from_slice(&v, shape, &gpu_family()).unwrap(),
        Tensor::from_slice(&v, shape, &cpu()).unwrap(),
    )
}

/// Builds `f` on both devices and compares.
#[track_caller]
fn check(what: &str, x: &[&(Tensor, Tensor)], tol: (f64, f64), f: impl Fn(&[&Tensor]) -> Tensor) {
    let gpu: Vec<&Tensor> = x.iter().map(|p| &p.0).collect();
    let reference: Vec<&Tensor> = x.iter().map(|p| &p.1).collect();
    close(what, &f(&gpu), &f(&reference), tol);
}

#[test]
fn the_options_choose_the_family_and_the_device_reports_it() {
    assert_eq!(gpu_family().kernel_family(), Some(KernelFamily::Gpu));
    assert!(
        gpu_family().name().contains("gpu kernels"),
        "{}",
        gpu_family().name()
    );
    let software = wgpu_device_with(&WgpuOptions {
        kernels: Some(KernelFamily::Software),
        ..WgpuOptions::default()
    })
    .unwrap();
    assert_eq!(software.kernel_family(), Some(KernelFamily::Software));
    // Without an override the adapter's type decides.
    let default = wgpu_device_with(&WgpuOptions::default()).unwrap();
    assert_eq!(
        default.kernel_family(),
        Some(KernelFamily::for_kind(default.kind()))
    );
    assert_eq!(Device::cpu().kernel_family(), None);
}

#[test]
fn an_unknown_family_name_is_an_error_listing_the_accepted_ones() {
    assert_eq!(KernelFamily::from_name("gpu").unwrap(), KernelFamily::Gpu);
    assert_eq!(
        KernelFamily::from_name(" Software ").unwrap(),
        KernelFamily::Software
    );
    let err = KernelFamily::from_name("cuda").unwrap_err();
    assert!(matches!(err, KilnError::InvalidArgument(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("\"cuda\"") && msg.contains("gpu, software"),
        "{msg}"
    );
}

#[test]
fn matmul_on_sizes_around_the_tile() {
    // Interior and edge tiles (64 x 64 x 16), K = 1, a single row or column, vec4-staged
    // operands (4 | K, 4 | N) and scalar-staged ones.
    for (i, &(m, n, k)) in [
        (1, 1, 1),
        (64, 64, 16),
        (65, 63, 17),
        (128, 192, 48),
        (130, 70, 1),
        (7, 200, 33),
        (200, 3, 20),
        (96, 132, 100),
    ]
    .iter()
    .enumerate()
    {
        let a = pair(&[m, k], 10 + i as u64);
        let b = pair(&[k, n], 20 + i as u64);
        check(&format!("{m}x{n}x{k}"), &[&a, &b], dot_tol(k), |x| {
            x[0].matmul(x[1])
        });
    }
}

#[test]
fn matmul_of_transposed_and_broadcast_operands() {
    // A^T (stride 1 along rows: staged 4 rows at a time) and B^T (4 k-steps of a column).
    let a = pair(&[40, 68], 31);
    let b = pair(&[72, 40], 32);
    check("a^T b^T", &[&a, &b], dot_tol(40), |x| {
        x[0].t().matmul(&x[1].t())
    });
    // Odd sizes: the same views, staged one value at a time.
    let a = pair(&[37, 65], 33);
    let b = pair(&[66, 37], 34);
    check("odd a^T b^T", &[&a, &b], dot_tol(37), |x| {
        x[0].t().matmul(&x[1].t())
    });
    // A batch of 3 against one broadcast B, and a broadcast A against a batch of B.
    let a = pair(&[3, 70, 24], 35);
    let b = pair(&[24, 68], 36);
    check("batch x broadcast", &[&a, &b], dot_tol(24), |x| {
        x[0].matmul(x[1])
    });
    let a = pair(&[1, 70, 24], 37);
    let b = pair(&[2, 3, 24, 20], 38);
    check("broadcast x batch", &[&a, &b], dot_tol(24), |x| {
        x[0].matmul(x[1])
    });
}

#[test]
fn matmul_with_a_prologue_and_fused_epilogues() {
    let a = pair(&[70, 36], 41);
    let b = pair(&[36, 130], 42);
    let bias = pair(&[130], 43);
    let (mean, var) = (pair(&[130], 44), pair(&[130], 45));
    check("exp prologue", &[&a, &b], dot_tol(36), |x| {
        x[0].exp().matmul(x[1])
    });
    check("bias + relu", &[&a, &b, &bias], dot_tol(36), |x| {
        (x[0].matmul(x[1]) + x[2]).relu()
    });
    check(
        "batch norm + relu",
        &[&a, &b, &mean, &var],
        (1e-3, 1e-3),
        |x| ((x[0].matmul(x[1]) - x[2]) * (x[3].abs() + 0.5).rsqrt()).relu(),
    );
}

#[test]
fn convolutions_read_their_windows_inside_the_matmul() {
    // On the GPU family the im2col window folds into the matmul's loads (implicit GEMM).
    let x = pair(&[2, 3, 11, 9], 51);
    let w = pair(&[5, 3, 3, 3], 52);
    let bias = pair(&[5], 53);
    check("conv2d", &[&x, &w, &bias], (1e-4, 1e-4), |t| {
        t[0].conv2d(
            t[1],
            Some(t[2]),
            &Conv2dOptions::default().padding(1).stride(2),
        )
        .relu()
    });
    // And its gradients (the input gradient and the weight gradient are matmuls too).
    let run = |dev: &Device| {
        let x = Tensor::from_slice(&values(2 * 3 * 11 * 9, 54), [2, 3, 11, 9], dev).unwrap();
        let w = Tensor::from_slice(&values(5 * 3 * 3 * 3, 55), [5, 3, 3, 3], dev).unwrap();
        let y = x.conv2d(&w, None, &Conv2dOptions::default().padding(1));
        common::weighted_sum(&y, 56).grad_wrt(&[&x, &w])
    };
    let (got, expected) = (run(&gpu_family()), run(&cpu()));
    for (g, e) in got.iter().zip(&expected) {
        close("conv2d gradient", g, e, (1e-4, 1e-3));
    }
}

#[test]
fn matmul_of_f16_operands() {
    let a = pair(&[66, 20], 61);
    let b = pair(&[20, 70], 62);
    check("f16", &[&a, &b], (2e-2, 1e-2), |x| {
        x[0].cast(DType::F16).matmul(&x[1].cast(DType::F16))
    });
}
