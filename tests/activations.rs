//! Activations, softmax, log-softmax, logsumexp, maxout and one-hot: values against plain f64
//! math (and PyTorch's numbers) on the GPU and the reference device, and gradients by finite
//! differences and GPU against reference.

mod common;
use common::*;
use kiln::prelude::*;

/// The GPU and the reference CPU device.
fn devices() -> [Device; 2] {
    [gpu(), Device::cpu()]
}

/// f32 tensor from f64 values.
fn t(v: &[f64], shape: &[usize], dev: &Device) -> Tensor {
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_slice(&v, shape, dev).unwrap()
}

/// Asserts `got` holds `want` within `atol + rtol * |want|`.
#[track_caller]
fn expect(what: &str, got: &Tensor, want: &[f64], atol: f64, rtol: f64) {
    let g = got.to_f64_vec().unwrap();
    assert_eq!(g.len(), want.len(), "{what}: wrong number of elements");
    for (i, (a, b)) in g.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= atol + rtol * b.abs(),
            "{what} on {}: element {i} is {a}, expected {b}",
            got.device().name()
        );
    }
}

/// erf by its Taylor series (plenty for |x| <= 3 in f64).
fn erf(x: f64) -> f64 {
    let (mut sum, mut term) = (0.0, x);
    for n in 0..200 {
        sum += term / (2 * n + 1) as f64;
        term *= -x * x / (n + 1) as f64;
        if term.abs() < 1e-18 {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

fn gelu(x: f64) -> f64 {
    x * 0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

fn gelu_tanh(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

fn softmax(v: &[f64]) -> Vec<f64> {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = v.iter().map(|x| (x - m).exp()).sum();
    v.iter().map(|x| (x - m).exp() / s).collect()
}

const XS: [f64; 11] = [-3.0, -2.0, -1.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0, 2.0, 3.0];

#[test]
fn pytorch_reference_numbers() {
    for dev in devices() {
        let one = t(&[1.0, -1.0], &[2], &dev);
        expect(
            "gelu(±1)",
            &one.gelu(),
            &[0.8413447, -0.1586553],
            1e-6,
            1e-6,
        );
        expect(
            "gelu_tanh(±1)",
            &one.gelu_tanh(),
            &[0.8411920, -0.1588080],
            1e-6,
            1e-6,
        );
        expect("elu(-1, 1)", &one.elu(1.0), &[1.0, -0.6321206], 1e-6, 1e-6);
        expect(
            "leaky_relu(±1, 0.01)",
            &one.leaky_relu(0.01),
            &[1.0, -0.01],
            0.0,
            1e-7,
        );
        let s = t(&[1.0, 2.0, 3.0], &[3], &dev).softmax(0);
        expect(
            "softmax([1, 2, 3])",
            &s,
            &[0.09003057, 0.24472847, 0.66524096],
            1e-7,
            1e-6,
        );
    }
}

#[test]
fn activations_match_f64_math() {
    for dev in devices() {
        let x = t(&XS, &[XS.len()], &dev);
        let map =
            |f: &dyn Fn(f64) -> f64| XS.iter().map(|&v| f(v as f32 as f64)).collect::<Vec<_>>();
        expect(
            "leaky_relu 0.1",
            &x.leaky_relu(0.1),
            &map(&|v| if v > 0.0 { v } else { 0.1 * v }),
            1e-7,
            1e-6,
        );
        expect(
            "leaky_relu 0.01",
            &x.leaky_relu(0.01),
            &map(&|v| if v > 0.0 { v } else { 0.01 * v }),
            1e-7,
            1e-6,
        );
        expect(
            "elu 1",
            &x.elu(1.0),
            &map(&|v| if v > 0.0 { v } else { v.exp() - 1.0 }),
            1e-6,
            1e-6,
        );
        expect(
            "elu 0.5",
            &x.elu(0.5),
            &map(&|v| if v > 0.0 { v } else { 0.5 * (v.exp() - 1.0) }),
            1e-6,
            1e-6,
        );
        expect("gelu", &x.gelu(), &map(&gelu), 1e-6, 1e-6);
        expect("gelu_tanh", &x.gelu_tanh(), &map(&gelu_tanh), 1e-6, 1e-6);

        // Random values in [-3, 3) in a 2-D shape.
        let v: Vec<f64> = values(24, 5).iter().map(|&v| 3.0 * v as f64).collect();
        let x = t(&v, &[4, 6], &dev);
        let want: Vec<f64> = v.iter().map(|&a| gelu(a as f32 as f64)).collect();
        expect("gelu of [4, 6]", &x.gelu(), &want, 1e-6, 1e-6);
    }
}

#[test]
fn gelu_keeps_relative_accuracy_in_the_tail_and_saturates() {
    // Φ(-5) = 2.8665157187919e-7, Φ(-8) = 6.2209605742717e-16: erf-based 0.5 * (1 + erf) would
    // lose these to cancellation in f32. What is left is the f32 rounding of the exponent
    // (-x²/2 - 1.27 + ...: half an ulp of 33 is 2e-6 relative after exp).
    for dev in devices() {
        let x = t(&[-5.0, -8.0, 8.0, 30.0, -30.0], &[5], &dev);
        expect(
            "gelu in the tail",
            &x.gelu(),
            &[
                -5.0 * 2.8665157187919e-7,
                -8.0 * 6.2209605742717e-16,
                8.0,
                30.0,
                0.0,
            ],
            0.0,
            1e-5,
        );
    }
}

#[test]
fn softmax_and_log_softmax_match_f64_math() {
    let v: Vec<f64> = values(15, 7).iter().map(|&v| 4.0 * v as f64).collect();
    let v: Vec<f64> = v.iter().map(|&a| a as f32 as f64).collect();
    // Rows (axis 1) and columns (axis 0) of a [3, 5] matrix.
    let rows: Vec<f64> = v.chunks(5).flat_map(softmax).collect();
    let mut cols = vec![0.0; 15];
    for j in 0..5 {
        let c: Vec<f64> = (0..3).map(|i| v[i * 5 + j]).collect();
        for (i, p) in softmax(&c).into_iter().enumerate() {
            cols[i * 5 + j] = p;
        }
    }
    for dev in devices() {
        let x = t(&v, &[3, 5], &dev);
        expect("softmax over 1", &x.softmax(1), &rows, 1e-7, 1e-5);
        expect("softmax over 0", &x.softmax(0), &cols, 1e-7, 1e-5);
        let ln = |p: &Vec<f64>| p.iter().map(|q| q.ln()).collect::<Vec<_>>();
        expect(
            "log_softmax over 1",
            &x.log_softmax(1),
            &ln(&rows),
            2e-6,
            1e-5,
        );
        expect(
            "log_softmax over 0",
            &x.log_softmax(0),
            &ln(&cols),
            2e-6,
            1e-5,
        );
        // Rows sum to one.
        expect(
            "softmax row sums",
            &x.softmax(1).sum_axes(&[1]),
            &[1.0; 3],
            1e-6,
            0.0,
        );
        // A 3-D tensor over its middle axis.
        let y = t(&v[..12], &[2, 3, 2], &dev).softmax(1);
        let mut want = vec![0.0; 12];
        for a in 0..2 {
            for c in 0..2 {
                let col: Vec<f64> = (0..3).map(|b| v[a * 6 + b * 2 + c]).collect();
                for (b, p) in softmax(&col).into_iter().enumerate() {
                    want[a * 6 + b * 2 + c] = p;
                }
            }
        }
        expect("softmax of [2, 3, 2] over 1", &y, &want, 1e-7, 1e-5);
    }
}

#[test]
fn softmax_of_large_inputs_stays_finite() {
    for dev in devices() {
        let x = t(&[1000.0, 1001.0, 1002.0], &[1, 3], &dev);
        expect(
            "softmax([1000, 1001, 1002])",
            &x.softmax(1),
            &[0.09003057, 0.24472847, 0.66524096],
            1e-7,
            1e-6,
        );
        let l = t(&[-1000.0, 0.0], &[2], &dev).log_softmax(0);
        expect("log_softmax([-1000, 0])", &l, &[-1000.0, 0.0], 0.0, 1e-7);
        // logsumexp of each row: ln(e^-1000 + e^0) = 0 and 90 + ln(1 + e^-10).
        let x = t(&[-1000.0, 0.0, 80.0, 90.0], &[2, 2], &dev);
        expect(
            "logsumexp over 1",
            &x.logsumexp(&[1]),
            &[0.0, 90.0 + (1.0 + (-10.0f64).exp()).ln()],
            1e-6,
            1e-7,
        );
        assert!(x
            .softmax(0)
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|v| v.is_finite()));
    }
}

#[test]
fn logsumexp_over_axes() {
    let v = [1.0, 2.0, 3.0, -1.0, 0.5, 0.25];
    let lse = |s: &[f64]| {
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + s.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    };
    for dev in devices() {
        let x = t(&v, &[2, 3], &dev);
        let r = x.logsumexp(&[1]);
        assert_eq!(r.dims(), &[2]);
        expect(
            "logsumexp rows",
            &r,
            &[lse(&v[..3]), lse(&v[3..])],
            1e-6,
            1e-6,
        );
        let c = x.logsumexp_keepdim(&[0]);
        assert_eq!(c.dims(), &[1, 3]);
        let cols: Vec<f64> = (0..3).map(|j| lse(&[v[j], v[3 + j]])).collect();
        expect("logsumexp columns", &c, &cols, 1e-6, 1e-6);
        let all = x.logsumexp(&[0, 1]);
        assert_eq!(all.dims(), &[] as &[usize]);
        expect("logsumexp all", &all, &[lse(&v)], 1e-6, 1e-6);
        expect("logsumexp of no axes", &x.logsumexp(&[]), &v, 0.0, 0.0);
    }
}

#[test]
fn maxout_takes_the_max_of_consecutive_groups() {
    for dev in devices() {
        let x = t(&[1.0, 5.0, 3.0, 2.0, 0.0, 4.0], &[6], &dev);
        let y = x.maxout(2, 0);
        assert_eq!(y.dims(), &[3]);
        expect("maxout 2 of [6]", &y, &[5.0, 3.0, 4.0], 0.0, 0.0);
        expect("maxout 3 of [6]", &x.maxout(3, 0), &[5.0, 4.0], 0.0, 0.0);
        // Along axis 1 of [2, 4] and axis 0 of [4, 2].
        let x = t(&[1.0, -2.0, 7.0, 3.0, -1.0, -5.0, 0.0, 2.0], &[2, 4], &dev);
        let y = x.maxout(2, 1);
        assert_eq!(y.dims(), &[2, 2]);
        expect("maxout over axis 1", &y, &[1.0, 7.0, -1.0, 2.0], 0.0, 0.0);
        let y = x.reshape([4, 2]).maxout(2, 0);
        assert_eq!(y.dims(), &[2, 2]);
        expect("maxout over axis 0", &y, &[7.0, 3.0, 0.0, 2.0], 0.0, 0.0);
    }
}

#[test]
fn one_hot_of_labels() {
    for dev in devices() {
        let labels = Tensor::from_vec(vec![2i32, 0, 5, -1, 1], [5], &dev).unwrap();
        let h = labels.one_hot(3);
        assert_eq!(h.dims(), &[5, 3]);
        assert_eq!(h.dtype(), DType::F32);
        let want = [
            0., 0., 1., //
            1., 0., 0., //
            0., 0., 0., // out of range: zeros
            0., 0., 0., // negative: zeros
            0., 1., 0.,
        ];
        expect("one_hot", &h, &want, 0.0, 0.0);
        let h2 = labels.reshape([5, 1]).one_hot(2);
        assert_eq!(h2.dims(), &[5, 1, 2]);
    }
}

#[test]
fn no_nan_gradients_at_large_inputs_and_pytorch_slopes_at_zero() {
    let v = [100.0, -100.0, 0.0, 0.5, -0.5, 20.0, -20.0];
    for dev in devices() {
        let x = t(&v, &[v.len()], &dev);
        let g = x.elu(1.0).sum().grad_wrt(&[&x]).remove(0);
        let want: Vec<f64> = v
            .iter()
            .map(|&a| if a > 0.0 { 1.0 } else { a.exp() })
            .collect();
        expect("elu gradient", &g, &want, 1e-7, 1e-6);
        let g = x.leaky_relu(0.1).sum().grad_wrt(&[&x]).remove(0);
        let want: Vec<f64> = v.iter().map(|&a| if a > 0.0 { 1.0 } else { 0.1 }).collect();
        expect("leaky_relu gradient", &g, &want, 1e-7, 1e-6);
        // gelu' = Φ(x) + x φ(x).
        let g = x.gelu().sum().grad_wrt(&[&x]).remove(0);
        let want: Vec<f64> = v
            .iter()
            .map(|&a| {
                let phi = (-a * a / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
                let cdf = if a.abs() > 8.0 {
                    (a > 0.0) as i32 as f64
                } else {
                    0.5 * (1.0 + erf(a / std::f64::consts::SQRT_2))
                };
                cdf + a * phi
            })
            .collect();
        expect("gelu gradient", &g, &want, 1e-6, 1e-5);
        let g = x.gelu_tanh().sum().grad_wrt(&[&x]).remove(0);
        assert!(g.to_vec::<f32>().unwrap().iter().all(|v| v.is_finite()));
        let g = x
            .reshape([1, 7])
            .softmax(1)
            .mul(&x)
            .sum()
            .grad_wrt(&[&x])
            .remove(0);
        assert!(g.to_vec::<f32>().unwrap().iter().all(|v| v.is_finite()));
    }
}

fn both(f: impl Fn(&[Tensor]) -> Tensor + Copy, shapes: &[&[usize]], seed: u64) {
    check_gradients(f, shapes, seed);
    check_gpu_gradients(f, shapes, seed);
}

#[test]
fn gradients_of_activations() {
    both(|x| x[0].leaky_relu(0.1), &[&[3, 5]], 101);
    both(|x| x[0].leaky_relu(0.01), &[&[3, 5]], 102);
    both(|x| x[0].elu(1.0), &[&[3, 5]], 103);
    both(|x| x[0].mul_scalar(3.0).elu(0.7), &[&[3, 5]], 104);
    both(|x| x[0].gelu(), &[&[3, 5]], 105);
    both(|x| x[0].mul_scalar(4.0).gelu(), &[&[3, 5]], 106);
    both(|x| x[0].mul_scalar(4.0).gelu_tanh(), &[&[3, 5]], 107);
}

#[test]
fn gradients_of_softmax_family() {
    both(|x| x[0].mul_scalar(3.0).softmax(1), &[&[3, 5]], 111);
    both(|x| x[0].mul_scalar(3.0).softmax(0), &[&[3, 5]], 112);
    both(|x| x[0].mul_scalar(3.0).log_softmax(1), &[&[3, 5]], 113);
    both(|x| x[0].mul_scalar(3.0).log_softmax(0), &[&[3, 5]], 114);
    both(|x| x[0].softmax(1), &[&[2, 3, 4]], 115);
    both(|x| x[0].mul_scalar(3.0).logsumexp(&[1]), &[&[3, 5]], 116);
    both(
        |x| x[0].mul_scalar(3.0).logsumexp_keepdim(&[0, 2]),
        &[&[2, 3, 4]],
        117,
    );
}

#[test]
fn gradients_of_maxout() {
    both(|x| x[0].maxout(2, 1), &[&[3, 6]], 121);
    both(|x| x[0].maxout(3, 0), &[&[6, 4]], 122);
    both(|x| x[0].maxout(2, 1), &[&[2, 4, 3]], 123);
}

#[test]
#[should_panic(
    expected = "maxout: dimension 1 of shape [2, 5] has size 5, not a multiple of 2 pieces"
)]
fn maxout_names_a_bad_split() {
    Tensor::zeros([2, 5], &Device::cpu()).maxout(2, 1);
}

#[test]
#[should_panic(expected = "softmax: axis 2 out of range for shape [2, 5]")]
fn softmax_names_a_bad_axis() {
    Tensor::zeros([2, 5], &Device::cpu()).softmax(2);
}

#[test]
#[should_panic(expected = "one_hot: labels must be I32 class indices")]
fn one_hot_needs_integer_labels() {
    Tensor::zeros([2], &Device::cpu()).one_hot(3);
}
