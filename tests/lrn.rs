//! Local response normalisation: PyTorch's numbers, a plain loop over the formula, the GPU
//! against the reference, and gradients by finite differences.

mod common;
use common::*;
use kiln::nn::{LocalResponseNorm, Module};
use kiln::prelude::*;

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// PyTorch's formula with plain loops: `b_c = a_c / (k + alpha/n sum a_{c'}^2)^beta` over
/// channels `c - n/2 ..= c + (n-1)/2` inside `0..C`.
fn lrn_loops(x: &[f32], dims: [usize; 4], n: usize, alpha: f64, beta: f64, k: f64) -> Vec<f32> {
    let [b, c, h, w] = dims;
    let at = |bi: usize, ci: usize, p: usize| x[(bi * c + ci) * h * w + p] as f64;
    let mut out = vec![0.0; x.len()];
    for bi in 0..b {
        for ci in 0..c {
            for p in 0..h * w {
                let lo = ci as isize - (n / 2) as isize;
                let hi = ci as isize + ((n - 1) / 2) as isize;
                let sum: f64 = (lo..=hi)
                    .filter(|&j| j >= 0 && (j as usize) < c)
                    .map(|j| at(bi, j as usize, p).powi(2))
                    .sum();
                let div = (k + alpha / n as f64 * sum).powf(beta);
                out[(bi * c + ci) * h * w + p] = (at(bi, ci, p) / div) as f32;
            }
        }
    }
    out
}

#[test]
fn local_response_norm_matches_pytorch_and_a_direct_loop_on_cpu_and_gpu() {
    // PyTorch: LocalResponseNorm(4, alpha=0.3, beta=0.75, k=1.5) of arange(24).reshape(2, 6, 1,
    // 2) * 0.25 - 1 (an even size: the window is c-2 ..= c+1).
    #[rustfmt::skip]
    let torch = [
        -0.70499307, -0.54071677, -0.35249653, -0.17983037, 0.0, 0.17624827, 0.34941795, 0.5108199,
        0.6537371, 0.77431566, 0.98060566, 1.0860587, 1.0819072, 1.1500684, 1.1124085, 1.1389855,
        1.0888546, 1.0895717, 1.085655, 1.0783272, 1.0685326, 1.0569931, 1.318708, 1.304553,
    ];
    let z: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 1.0).collect();
    let lrn = LocalResponseNorm::with(4, 0.3, 0.75, 1.5);
    let got = f32s(&lrn.forward(&Tensor::from_slice(&z, [2, 6, 1, 2], &Device::cpu()).unwrap()));
    assert_slices_close(&got, &torch, 1e-6, "kiln against PyTorch");
    assert_slices_close(
        &lrn_loops(&z, [2, 6, 1, 2], 4, 0.3, 0.75, 1.5),
        &torch,
        1e-6,
        "loops against PyTorch",
    );

    for (size, dims) in [
        (5, [2, 7, 3, 4]),
        (3, [1, 2, 2, 2]),
        (1, [2, 3, 2, 1]),
        (8, [1, 5, 2, 3]),
    ] {
        let lrn = LocalResponseNorm::with(size, 0.2, 0.75, 2.0);
        let (g, c) = pair(&dims, size as u64);
        let x = f32s(&c).iter().map(|v| v * 3.0).collect::<Vec<_>>();
        let want = lrn_loops(&x, dims, size, 0.2, 0.75, 2.0);
        assert_slices_close(
            &f32s(&lrn.forward(&c.mul_scalar(3.0))),
            &want,
            1e-6,
            "scaled input",
        );
        assert_close(
            &lrn.forward(&g.mul_scalar(3.0)),
            &lrn.forward(&c.mul_scalar(3.0)),
            1e-5,
            1e-5,
        );
    }
    let f = |xs: &[Tensor]| LocalResponseNorm::with(3, 0.5, 0.75, 1.0).forward(&xs[0]);
    check_gradients(f, &[&[2, 4, 2, 1]], 5);
    check_gpu_gradients(f, &[&[2, 5, 3, 2]], 6);
}
