//! Creation functions, dtypes and casts on the wgpu device, compared with the reference executor
//! (`Device::cpu()`) on the same host data: `from_vec` of every dtype, `full`/`zeros`/`ones`,
//! `arange`, `arange_i32`, `linspace`, `eye`, `rand` (bit-identical), `randn` and `uniform`;
//! casts between every pair of dtypes; the f16 path (arithmetic, transcendental functions,
//! reductions and matmul in f16, and f32 <-> f16 casts); and cached plans replayed with new
//! runtime scalars.
//!
//! Tolerances: exact for uploads, constants, integer ranges, casts and uniform random numbers;
//! a few roundings for the rest (f16 keeps 11 significant bits).

mod common;
mod ops_support;

use common::{gpu, pair, values};
use half::f16;
use kiln::prelude::*;
use ops_support::*;

// ---- creation ----

#[test]
fn from_vec_uploads_every_dtype_unchanged() {
    let f = values(37, 1);
    let (g, c) = pair_of(&f, &[37]);
    bit_identical("f32", &g, &c);
    let i: Vec<i32> = vec![i32::MIN, -7, 0, 3, i32::MAX];
    let (g, c) = pair_of(&i, &[5]);
    bit_identical("i32", &g, &c);
    let u: Vec<u32> = vec![0, 1, 7, u32::MAX, 1 << 31];
    let (g, c) = pair_of(&u, &[5]);
    bit_identical("u32", &g, &c);
    let b = vec![true, false, false, true, true];
    let (g, c) = pair_of(&b, &[5]);
    bit_identical("bool", &g, &c);
    // An odd number of f16 values is not a whole number of 32-bit words.
    let h: Vec<f16> = [0.5f32, -1.25, 65504.0, 1e-3, 3.0]
        .iter()
        .map(|&x| f16::from_f32(x))
        .collect();
    let (g, c) = pair_of(&h, &[5]);
    bit_identical("f16", &g, &c);
    assert_eq!(g.to_vec::<f16>().unwrap(), h);
    // The same data read through a kernel (a view target is computed, not uploaded).
    bit_identical(
        "f16 through a kernel",
        &g.reshape([5, 1]),
        &c.reshape([5, 1]),
    );
    let (g, c) = pair_of(&b, &[5]);
    bit_identical("bool through a kernel", &g.flip(&[0]), &c.flip(&[0]));
}

#[test]
fn full_zeros_ones_of_every_dtype() {
    for dev in [gpu(), cpu()] {
        assert_eq!(
            Tensor::zeros([2, 3], &dev).to_vec::<f32>().unwrap(),
            [0.0; 6]
        );
        assert_eq!(Tensor::ones([4], &dev).to_vec::<f32>().unwrap(), [1.0; 4]);
        assert_eq!(Tensor::full([], -2.5, &dev).item::<f32>().unwrap(), -2.5);
    }
    let cases = [
        (DType::F32, 1.0 / 3.0),
        (DType::F16, 1.0 / 3.0),
        (DType::I32, -7.9),
        (DType::U32, 4e9),
        (DType::Bool, 0.5),
        (DType::Bool, 0.0),
    ];
    for (dtype, v) in cases {
        let g = Tensor::full_dtype([3, 5], v, dtype, &gpu());
        let c = Tensor::full_dtype([3, 5], v, dtype, &cpu());
        bit_identical(&format!("full {dtype} {v}"), &g, &c);
        // Folded into a consumer instead of being a target.
        let (g2, c2) = (g.reshape([15]), c.reshape([15]));
        bit_identical(&format!("full {dtype} {v} in a kernel"), &g2, &c2);
    }
    let (g, c) = pair(&[3, 5], 2);
    check2(
        "zeros_like + ones_like",
        &(g.clone(), c.clone()),
        &(g, c),
        EXACT,
        |a, b| a.zeros_like() + b.ones_like() * 3.0,
    );
}

#[test]
fn arange_arange_i32_and_linspace() {
    let aranges = [
        (0.0f32, 10.0f32, 1.0f32),
        (-3.0, 3.0, 0.5),
        (0.0, 1.0, 0.125),
        (5.0, -5.0, -1.5),
        (0.0, 1000.0, 7.0),
    ];
    for (s, e, st) in aranges {
        let g = Tensor::arange(s, e, st, &gpu());
        let c = Tensor::arange(s, e, st, &cpu());
        close(&format!("arange({s}, {e}, {st})"), &g, &c, EXACT);
    }
    for (s, e, st) in [
        (0, 10, 1),
        (5, -4, -3),
        (-100, 100, 7),
        (3, 3, 1),
        (0, 70_000, 1),
    ] {
        let g = Tensor::arange_i32(s, e, st, &gpu());
        let c = Tensor::arange_i32(s, e, st, &cpu());
        close(&format!("arange_i32({s}, {e}, {st})"), &g, &c, EXACT);
    }
    for (s, e, n) in [
        (0.0f32, 1.0f32, 5usize),
        (-1.0, 1.0, 9),
        (2.0, 3.0, 1),
        (0.0, 4.0, 0),
    ] {
        let g = Tensor::linspace(s, e, n, &gpu());
        let c = Tensor::linspace(s, e, n, &cpu());
        close(&format!("linspace({s}, {e}, {n})"), &g, &c, EXACT);
    }
    // Non-dyadic steps: the device computes `start + step * i` in f32 from f32 start and step
    // (op.rs: "computed in the node's dtype"), the reference in f64 rounded once. They agree to
    // a few f32 roundings of the largest term.
    for (s, e, n) in [(0.0f32, 1.0f32, 11usize), (-3.3, 7.7, 101)] {
        let scale = s.abs().max(e.abs()) as f64;
        let tol = (4.0 * f32::EPSILON as f64 * scale, 0.0);
        let g = Tensor::linspace(s, e, n, &gpu());
        let c = Tensor::linspace(s, e, n, &cpu());
        close(&format!("linspace({s}, {e}, {n})"), &g, &c, tol);
        let g = Tensor::arange(s, e, 0.1, &gpu());
        let c = Tensor::arange(s, e, 0.1, &cpu());
        close(&format!("arange({s}, {e}, 0.1)"), &g, &c, tol);
    }
}

#[test]
fn eye_of_several_sizes() {
    for n in [1, 2, 5, 17] {
        close(
            &format!("eye({n})"),
            &Tensor::eye(n, &gpu()),
            &Tensor::eye(n, &cpu()),
            EXACT,
        );
    }
    let (g, c) = pair(&[6, 6], 3);
    close(
        "x * eye(6) summed",
        &(&g * &Tensor::eye(6, &gpu())).sum_axes(&[1]),
        &(&c * &Tensor::eye(6, &cpu())).sum_axes(&[1]),
        ARITH,
    );
}

#[test]
fn rand_is_bit_identical_to_the_reference() {
    let cases: [(&[usize], u64); 5] = [
        (&[1], 0),
        (&[7, 13], 42),
        (&[1000, 7], 7),
        (&[3, 4, 5], u64::MAX),
        (&[257], 0x1234_5678_9abc_def0),
    ];
    for (shape, seed) in cases {
        let g = Tensor::rand(shape, seed, &gpu());
        let c = Tensor::rand(shape, seed, &cpu());
        bit_identical(&format!("rand {shape:?} seed {seed}"), &g, &c);
        // Folded into a consumer, through a view.
        bit_identical(
            &format!("rand {shape:?} seed {seed} flipped"),
            &g.flip(&[0]).mul_scalar(1.0),
            &c.flip(&[0]).mul_scalar(1.0),
        );
    }
    // Broadcast: every row reads the same draws.
    let g = Tensor::rand([1, 7], 5, &gpu()).expand([3, 7]);
    let c = Tensor::rand([1, 7], 5, &cpu()).expand([3, 7]);
    bit_identical("rand expanded", &g, &c);
}

#[test]
fn randn_and_uniform_are_close_to_the_reference() {
    for (shape, seed) in [(vec![5000], 3u64), (vec![13, 17], 1 << 40)] {
        let g = Tensor::randn(&shape, seed, &gpu());
        let c = Tensor::randn(&shape, seed, &cpu());
        close(&format!("randn {shape:?}"), &g, &c, TRANSC);
        let g = Tensor::uniform(&shape, -2.0, 3.0, seed, &gpu());
        let c = Tensor::uniform(&shape, -2.0, 3.0, seed, &cpu());
        close(&format!("uniform {shape:?}"), &g, &c, ARITH);
    }
}

// ---- dtypes and casts ----

/// The same values as each dtype, for casts.
fn cast_sources() -> Vec<(DType, (Tensor, Tensor))> {
    let f: Vec<f32> = vec![
        -3.7, -1.0, -0.5, -0.0, 0.0, 0.25, 0.5, 1.0, 1.5, 2.5, 3.7, 100.25, -100.75, 1e-3, 3e9,
        -3e9, 6e4, 1e5,
    ];
    let h: Vec<f16> = [
        -3.75f32, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5, 100.5, -100.5, 65504.0,
    ]
    .iter()
    .map(|&x| f16::from_f32(x))
    .collect();
    let i: Vec<i32> = vec![
        -70_000,
        -1000,
        -5,
        -1,
        0,
        1,
        7,
        1000,
        2047,
        70_000,
        i32::MIN,
        i32::MAX,
    ];
    let u: Vec<u32> = vec![
        0,
        1,
        7,
        1000,
        65_504,
        70_000,
        1 << 31,
        3_000_000_000,
        u32::MAX,
    ];
    let b: Vec<bool> = vec![true, false, false, true];
    vec![
        (DType::F32, pair_of(&f, &[f.len()])),
        (DType::F16, pair_of(&h, &[h.len()])),
        (DType::I32, pair_of(&i, &[i.len()])),
        (DType::U32, pair_of(&u, &[u.len()])),
        (DType::Bool, pair_of(&b, &[b.len()])),
    ]
}

#[test]
fn casts_between_every_pair_of_dtypes() {
    let all = [DType::F32, DType::F16, DType::I32, DType::U32, DType::Bool];
    for (from, x) in cast_sources() {
        for to in all {
            check1(&format!("cast {from} -> {to}"), &x, EXACT, |t| t.cast(to));
            // A cast inside a fused kernel, read through a view, and cast back.
            check1(&format!("cast {from} -> {to} -> {from}"), &x, EXACT, |t| {
                t.flip(&[0]).cast(to).cast(from)
            });
        }
    }
}

#[test]
fn float_to_int_casts_truncate_toward_zero() {
    let v = vec![-2.9f32, -2.5, -1.1, -0.9, 0.9, 1.1, 2.5, 2.9];
    let (g, c) = pair_of(&v, &[8]);
    assert_eq!(
        g.cast(DType::I32).to_vec::<i32>().unwrap(),
        [-2, -2, -1, 0, 0, 1, 2, 2]
    );
    assert_eq!(
        g.cast(DType::U32).to_vec::<u32>().unwrap(),
        [0, 0, 0, 0, 0, 1, 2, 2]
    );
    check1("f32 -> i32", &(g, c), EXACT, |t| t.cast(DType::I32));
}

// ---- the f16 path ----

/// f16 data on both devices: random values in [-1, 1) mapped by `f`.
fn pair_f16(shape: &[usize], seed: u64, f: impl Fn(f32) -> f32) -> (Tensor, Tensor) {
    let n = shape.iter().product();
    let v: Vec<f16> = values(n, seed)
        .into_iter()
        .map(|x| f16::from_f32(f(x)))
        .collect();
    pair_of(&v, shape)
}

/// f16 keeps 11 significant bits; the device rounds each op, the reference rounds once.
const F16_TOL: (f64, f64) = (2e-3, 2e-3);

#[test]
fn f16_arithmetic_matches_the_reference() {
    let a = pair_f16(&[7, 9], 1, |x| x);
    let b = pair_f16(&[9], 2, |x| x);
    check2("f16 add", &a, &b, F16_TOL, |a, b| a + b);
    check2("f16 mul", &a, &b, F16_TOL, |a, b| a * b);
    check2("f16 sub, div", &a, &b, F16_TOL, |a, b| {
        (a - b) / (b.abs() + 1.0)
    });
    check1("f16 relu", &a, EXACT, |a| a.relu());
    check1("f16 neg, abs", &a, EXACT, |a| -a.abs());
    check1("f16 exp", &a, F16_TOL, |a| a.exp());
    check1("f16 tanh, sigmoid", &a, F16_TOL, |a| a.tanh() + a.sigmoid());
    check1("f16 pow, sqrt, log", &a, F16_TOL, |a| {
        let p = a.abs() + 0.5;
        p.pow(a) + p.sqrt() + p.log()
    });
    check1("f16 comparisons", &a, EXACT, |a| a.gt(&a.scalar_like(0.25)));
    check1("f16 sum", &a, (1e-2, 2e-3), |a| a.sum_axes(&[1]));
    check1("f16 max", &a, EXACT, |a| a.max_axes_keepdim(&[0]));
    check1("f16 full sum", &a, (2e-2, 2e-3), |a| a.sum());
    let m = pair_f16(&[9, 5], 3, |x| x);
    check2("f16 matmul", &a, &m, (1e-2, 4e-3), |a, m| a.matmul(m));
    check2("f16 matmul + relu", &a, &m, (1e-2, 4e-3), |a, m| {
        (a.matmul(m) + 0.5).relu()
    });
}

#[test]
fn f32_f16_round_trips() {
    let x = pair(&[300], 4);
    check1("f32 -> f16", &x, EXACT, |t| t.cast(DType::F16));
    check1("f32 -> f16 -> f32", &x, EXACT, |t| {
        t.cast(DType::F16).cast(DType::F32)
    });
    check1("f32 -> f16 exp -> f32", &x, F16_TOL, |t| {
        t.cast(DType::F16).exp().cast(DType::F32)
    });
    let h = pair_f16(&[300], 5, |x| x * 100.0);
    check1("f16 -> f32 * 3", &h, ARITH, |t| t.cast(DType::F32) * 3.0);
}

// ---- cached plans replay with new runtime scalars ----

#[test]
fn a_cached_plan_replays_with_new_scalars_and_data() {
    // Each graph below has the same structure for every value of the loop variable, so the
    // second and later iterations replay a cached plan with new runtime scalars (constants,
    // range starts and steps, pad values, seeds) or new uploaded data.
    for k in 0..4u64 {
        let v = k as f32 * 0.75 - 1.0;
        let build = |dev: &Device| {
            let x = Tensor::from_vec(values(24, 50 + k), [4, 6], dev).unwrap();
            let full = Tensor::full([4, 6], v, dev);
            let range = Tensor::arange(v, v + 6.0, 1.0 + v.abs(), dev);
            let n = range.dims()[0];
            let padded = x.pad(&[(1, 0), (0, 1)], v as f64 * 2.0);
            let r = Tensor::rand([5, 7], 1000 + k, dev);
            (
                (&x * &full + v).sum_axes(&[1]),
                range * (v + 2.0),
                padded.exp(),
                r.narrow(1, 0, 6).narrow(0, 0, n.min(5)),
                Tensor::arange_i32(k as i32 - 3, 10, k as i32 + 1, dev) * (v.round() + 5.0),
            )
        };
        let (g, c) = (build(&gpu()), build(&cpu()));
        close(&format!("x * full + scalar, run {k}"), &g.0, &c.0, ARITH);
        close(&format!("arange * scalar, run {k}"), &g.1, &c.1, ARITH);
        close(&format!("pad value, run {k}"), &g.2, &c.2, TRANSC);
        bit_identical(&format!("rand seed, run {k}"), &g.3, &c.3);
        close(&format!("arange_i32, run {k}"), &g.4, &c.4, EXACT);
    }
}
