//! Losses and accuracy: values against hand-computed formulas in f64 (and PyTorch's numbers) on
//! the GPU and the reference device, and gradients by finite differences and GPU against
//! reference.

mod common;
use common::*;
use kiln::prelude::*;

fn devices() -> [Device; 2] {
    [gpu(), Device::cpu()]
}

fn t(v: &[f64], shape: &[usize], dev: &Device) -> Tensor {
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_slice(&v, shape, dev).unwrap()
}

fn labels(v: &[i32], dev: &Device) -> Tensor {
    Tensor::from_slice(v, [v.len()], dev).unwrap()
}

/// Asserts the scalar `got` is `want` within `atol + rtol * |want|`.
#[track_caller]
fn expect_scalar(what: &str, got: &Tensor, want: f64, atol: f64, rtol: f64) {
    assert_eq!(got.dims(), &[] as &[usize], "{what}: not a scalar");
    let g = got.to_f64_vec().unwrap()[0];
    assert!(
        (g - want).abs() <= atol + rtol * want.abs(),
        "{what} on {}: got {g}, expected {want}",
        got.device().name()
    );
}

/// Row-wise log-softmax in f64.
fn log_softmax_rows(v: &[f64], c: usize) -> Vec<f64> {
    v.chunks(c)
        .flat_map(|r| {
            let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + r.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            r.iter().map(move |x| x - lse)
        })
        .collect()
}

/// Random f64 values (exactly representable in f32) scaled to [-s, s).
fn rand(n: usize, seed: u64, s: f64) -> Vec<f64> {
    values(n, seed)
        .iter()
        .map(|&v| (s * v as f64) as f32 as f64)
        .collect()
}

#[test]
fn cross_entropy_pytorch_number() {
    for dev in devices() {
        let x = t(&[2.0, 1.0, 0.1], &[1, 3], &dev);
        let y = labels(&[0], &dev);
        expect_scalar("cross_entropy", &x.cross_entropy(&y), 0.4170300, 1e-6, 1e-6);
        // With smoothing 0.1: (1 - e) * nll + e * mean(-logp).
        let lp = log_softmax_rows(&[2.0, 1.0, 0.1f32 as f64], 3);
        let want = 0.9 * -lp[0] + 0.1 * -(lp.iter().sum::<f64>()) / 3.0;
        expect_scalar(
            "cross_entropy smoothing 0.1",
            &x.cross_entropy_with(&y, 0.1),
            want,
            1e-6,
            1e-6,
        );
        // The same number written out: 0.9 * 0.4170300 + 0.1 * (0.4170300 + 1.4170300 +
        // 2.3170300) / 3.
        expect_scalar(
            "cross_entropy smoothing 0.1 (by hand)",
            &x.cross_entropy_with(&y, 0.1),
            0.5136967,
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn cross_entropy_and_nll_of_a_batch() {
    let (n, c) = (6, 4);
    let v = rand(n * c, 3, 3.0);
    let y = [3, 0, 1, 3, 2, 1];
    let lp = log_softmax_rows(&v, c);
    let nll = |e: f64| {
        (0..n)
            .map(|i| {
                let row = &lp[i * c..(i + 1) * c];
                (1.0 - e) * -row[y[i] as usize] + e * -row.iter().sum::<f64>() / c as f64
            })
            .sum::<f64>()
            / n as f64
    };
    for dev in devices() {
        let x = t(&v, &[n, c], &dev);
        let l = labels(&y, &dev);
        expect_scalar("cross_entropy", &x.cross_entropy(&l), nll(0.0), 1e-6, 1e-5);
        for e in [0.0, 0.1, 0.25, 1.0] {
            expect_scalar(
                &format!("cross_entropy_with {e}"),
                &x.cross_entropy_with(&l, e),
                nll(e),
                1e-6,
                1e-5,
            );
        }
        // nll_loss of log-probabilities is the cross-entropy of their logits.
        expect_scalar(
            "nll_loss",
            &x.log_softmax(1).nll_loss(&l),
            nll(0.0),
            1e-6,
            1e-5,
        );
        // nll_loss of arbitrary values: -mean(x[i, y_i]).
        let want = -(0..n).map(|i| v[i * c + y[i] as usize]).sum::<f64>() / n as f64;
        expect_scalar("nll_loss of raw values", &x.nll_loss(&l), want, 1e-6, 1e-6);
    }
}

#[test]
fn labels_out_of_range_contribute_zero() {
    let v = [0.5, -1.0, 2.0, 1.0, 0.0, -0.5];
    let lp = log_softmax_rows(&v, 3);
    for dev in devices() {
        let x = t(&v, &[2, 3], &dev);
        let y = labels(&[1, 7], &dev);
        expect_scalar(
            "cross_entropy",
            &x.cross_entropy(&y),
            -lp[1] / 2.0,
            1e-6,
            1e-6,
        );
        let y = labels(&[-1, 2], &dev);
        expect_scalar("nll_loss", &x.nll_loss(&y), -v[5] / 2.0, 1e-6, 1e-6);
        let want = (0.8 * -lp[5] + 0.2 * -(lp[3] + lp[4] + lp[5]) / 3.0) / 2.0;
        expect_scalar(
            "cross_entropy_with smoothing",
            &x.cross_entropy_with(&y, 0.2),
            want,
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn labels_made_on_the_host_follow_the_logits() {
    // A batch built on the CPU device meets logits on the GPU (host data not yet uploaded).
    let x = t(&[2.0, 1.0, 0.1, 0.0, 3.0, 1.0], &[2, 3], &gpu());
    let y = labels(&[0, 1], &Device::cpu());
    let lp = log_softmax_rows(&[2.0, 1.0, 0.1f32 as f64, 0.0, 3.0, 1.0], 3);
    let want = -(lp[0] + lp[4]) / 2.0;
    expect_scalar("cross_entropy", &x.cross_entropy(&y), want, 1e-6, 1e-6);
    expect_scalar("nll_loss", &x.log_softmax(1).nll_loss(&y), want, 1e-6, 1e-6);
    let want = 0.9 * -(lp[0] + lp[4]) / 2.0 + 0.1 * -lp.iter().sum::<f64>() / 6.0;
    expect_scalar("smoothed", &x.cross_entropy_with(&y, 0.1), want, 1e-6, 1e-6);
    expect_scalar("accuracy", &x.accuracy(&y), 1.0, 0.0, 0.0);
}

#[test]
fn cross_entropy_of_large_logits_is_finite() {
    for dev in devices() {
        let x = t(&[1000.0, -1000.0, 0.0, 500.0], &[2, 2], &dev);
        let y = labels(&[1, 1], &dev);
        // Row 0: -logp[1] = 2000; row 1: -logp[1] = 0 (to f32).
        expect_scalar("cross_entropy", &x.cross_entropy(&y), 1000.0, 0.0, 1e-6);
    }
}

#[test]
fn mse_loss_matches_the_formula() {
    let a = rand(12, 4, 2.0);
    let b = rand(12, 5, 2.0);
    let want = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / 12.0;
    for dev in devices() {
        let x = t(&a, &[3, 4], &dev);
        let y = t(&b, &[3, 4], &dev);
        expect_scalar("mse_loss", &x.mse_loss(&y), want, 1e-6, 1e-6);
        expect_scalar("mse_loss of itself", &x.mse_loss(&x), 0.0, 0.0, 0.0);
    }
}

#[test]
fn binary_cross_entropy_with_logits_matches_the_formula() {
    let xs: [f64; 8] = [-3.0, -0.5, 0.0, 0.25, 1.0, 4.0, 100.0, -100.0];
    let ts: [f64; 8] = [0.0, 1.0, 0.5, 0.0, 1.0, 0.3, 0.0, 1.0];
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let want = xs
        .iter()
        .zip(&ts)
        .map(|(&x, &t)| {
            if x.abs() > 50.0 {
                // The exact value without overflow: softplus(x) - x t.
                x.max(0.0) - x * t
            } else {
                -(t * sig(x).ln() + (1.0 - t) * (1.0 - sig(x)).ln())
            }
        })
        .sum::<f64>()
        / xs.len() as f64;
    for dev in devices() {
        let x = t(&xs, &[2, 4], &dev);
        let y = t(&ts, &[2, 4], &dev);
        let loss = x.binary_cross_entropy_with_logits(&y);
        expect_scalar("bce with logits", &loss, want, 1e-6, 1e-6);
        // PyTorch: F.binary_cross_entropy_with_logits(tensor([0.]), tensor([1.])) = ln 2.
        let z = t(&[0.0], &[1], &dev);
        let one = t(&[1.0], &[1], &dev);
        expect_scalar(
            "bce(0, 1)",
            &z.binary_cross_entropy_with_logits(&one),
            2f64.ln(),
            1e-7,
            1e-6,
        );
        // The gradient is (σ(x) - t) / numel everywhere, x = 0 included.
        let g = loss.grad_wrt(&[&x]).remove(0).to_f64_vec().unwrap();
        for (i, (&xv, &tv)) in xs.iter().zip(&ts).enumerate() {
            let w = (sig(xv) - tv) / xs.len() as f64;
            assert!(
                (g[i] - w).abs() < 1e-7,
                "bce gradient {i} at x = {xv}: {} vs {w}",
                g[i]
            );
        }
    }
}

#[test]
fn accuracy_counts_argmax_hits() {
    for dev in devices() {
        let x = t(
            &[0.1, 0.9, 0.8, 0.2, 0.3, 0.7, 0.5, 0.5, 0.0, 1.0],
            &[5, 2],
            &dev,
        );
        // argmax: 1, 0, 1, 0 (first of a tie), 1.
        let y = labels(&[1, 0, 0, 0, 0], &dev);
        let a = x.accuracy(&y);
        assert_eq!(a.dtype(), DType::F32);
        expect_scalar("accuracy", &a, 0.6, 0.0, 1e-7);
    }
}

fn both(f: impl Fn(&[Tensor]) -> Tensor + Copy, shapes: &[&[usize]], seed: u64) {
    check_gradients(f, shapes, seed);
    check_gpu_gradients(f, shapes, seed);
}

fn ys(x: &Tensor, v: &[i32]) -> Tensor {
    Tensor::from_slice(v, [v.len()], x.device()).unwrap()
}

#[test]
fn gradients_of_class_losses() {
    both(
        |x| {
            x[0].mul_scalar(3.0)
                .cross_entropy(&ys(&x[0], &[2, 0, 4, 1]))
        },
        &[&[4, 5]],
        201,
    );
    both(
        |x| {
            x[0].mul_scalar(3.0)
                .cross_entropy_with(&ys(&x[0], &[2, 0, 4, 1]), 0.1)
        },
        &[&[4, 5]],
        202,
    );
    // An out-of-range label in the batch.
    both(
        |x| x[0].cross_entropy_with(&ys(&x[0], &[2, 9, 0]), 0.3),
        &[&[3, 4]],
        203,
    );
    both(
        |x| x[0].log_softmax(1).nll_loss(&ys(&x[0], &[1, 1, 0])),
        &[&[3, 4]],
        204,
    );
    both(|x| x[0].nll_loss(&ys(&x[0], &[3, 0, 2])), &[&[3, 4]], 205);
}

#[test]
fn gradients_of_regression_losses() {
    both(|x| x[0].mse_loss(&x[1]), &[&[3, 4], &[3, 4]], 211);
    both(
        |x| {
            x[0].mul_scalar(4.0)
                .binary_cross_entropy_with_logits(&x[1].sigmoid())
        },
        &[&[3, 4], &[3, 4]],
        212,
    );
}

#[test]
#[should_panic(expected = "cross_entropy: 3 scores but 2 labels (shapes [3, 4] and [2])")]
fn cross_entropy_names_mismatched_batches() {
    let dev = Device::cpu();
    Tensor::zeros([3, 4], &dev).cross_entropy(&labels(&[0, 1], &dev));
}

#[test]
#[should_panic(expected = "cross_entropy: expects I32 [N] class indices, got f32 [3]")]
fn cross_entropy_needs_integer_labels() {
    let dev = Device::cpu();
    Tensor::zeros([3, 4], &dev).cross_entropy(&Tensor::zeros([3], &dev));
}

#[test]
#[should_panic(expected = "mse_loss: input [3, 4] and target [4, 3] differ in shape")]
fn mse_loss_names_mismatched_shapes() {
    let dev = Device::cpu();
    Tensor::zeros([3, 4], &dev).mse_loss(&Tensor::zeros([4, 3], &dev));
}
