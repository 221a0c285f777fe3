//! Matmul on the wgpu device compared with the reference executor: 2-D sizes from 1x1x1 to
//! 257x129x513 (none of them multiples of a tile), batched with broadcast batch dimensions,
//! transposed and other non-contiguous operands read in place, 1-D operands, f16, and the fused
//! prologue (`a.exp().matmul(&b)`) and epilogue (`(a.matmul(&b) + &bias).relu()`).
//!
//! The device accumulates in f32, the reference in f64: the absolute tolerance grows with the
//! square root of the inner dimension K.

mod common;
mod ops_support;

use common::pair;
use half::f16;
use kiln::prelude::*;
use ops_support::*;

/// (M, N, K) of the 2-D cases. Every distinct matmul kernel costs a JIT compile of a few
/// hundred milliseconds on lavapipe, so the other tests use a few of these sizes.
const SIZES: [(usize, usize, usize); 7] = [
    (1, 1, 1),
    (3, 5, 7),
    (17, 33, 65),
    (64, 64, 64),
    (100, 1, 37),
    (1, 100, 37),
    (257, 129, 513),
];

/// Sizes for the variations (transposes, epilogues, f16): a scalar, odd sizes, a vector.
const SOME: [(usize, usize, usize); 3] = [(3, 5, 7), (17, 33, 65), (100, 1, 37)];

#[test]
fn two_d_sizes_from_1x1x1_to_257x129x513() {
    for (i, &(m, n, k)) in SIZES.iter().enumerate() {
        let a = pair(&[m, k], 10 + i as u64);
        let b = pair(&[k, n], 20 + i as u64);
        check2(&format!("{m}x{n}x{k}"), &a, &b, dot_tol(k), |a, b| {
            let c = a.matmul(b);
            assert_eq!(c.dims(), &[m, n]);
            c
        });
    }
}

#[test]
fn operands_read_four_values_at_a_time() {
    // The software kernel reads a plain operand with 4 | K (A) or 4 | N (B) as vec4: sizes that
    // are multiples of 4 but not of the tiles, batched, one side only, and an operand that the
    // epilogue reads too (which stays scalar).
    for (i, &(batch, m, n, k)) in [
        (1, 36, 44, 20),
        (3, 12, 20, 8),
        (2, 5, 12, 7),
        (1, 9, 6, 16),
    ]
    .iter()
    .enumerate()
    {
        let a = pair(&[batch, m, k], 60 + i as u64);
        let b = pair(&[batch, k, n], 70 + i as u64);
        check2(
            &format!("{batch}x {m}x{n}x{k}"),
            &a,
            &b,
            dot_tol(k),
            |a, b| a.matmul(b),
        );
    }
    let a = pair(&[8, 8], 80);
    let b = pair(&[8, 8], 81);
    check2("a.matmul(b) + a", &a, &b, dot_tol(8), |a, b| {
        a.matmul(b) + a
    });
}

#[test]
fn transposed_operands_are_read_in_place() {
    for (i, &(m, n, k)) in SOME.iter().enumerate() {
        let a = pair(&[m, k], 30 + i as u64);
        let bt = pair(&[n, k], 40 + i as u64);
        let at = pair(&[k, m], 50 + i as u64);
        check2(
            &format!("a.matmul(b.t()) {m}x{n}x{k}"),
            &a,
            &bt,
            dot_tol(k),
            |a, bt| a.matmul(&bt.t()),
        );
        check2(
            &format!("a.t().matmul(b.t()) {m}x{n}x{k}"),
            &at,
            &bt,
            dot_tol(k),
            |at, bt| at.t().matmul(&bt.t()),
        );
    }
    // Batched, with the transpose of the last two dimensions.
    let a = pair(&[3, 9, 11], 60);
    let b = pair(&[3, 13, 11], 61);
    check2("batched a.matmul(b.t())", &a, &b, dot_tol(11), |a, b| {
        a.matmul(&b.t())
    });
}

#[test]
fn transposed_operands_read_four_values_at_a_time() {
    // The software kernel also reads an operand with stride 1 along its other dimension (a
    // transpose, a permuted batch, a broadcast weight read as W^T) 4 values at a time: 4 rows
    // of A at one k, or 4 k-steps of a column of B.
    let at = pair(&[20, 36], 90);
    let b = pair(&[20, 44], 91);
    check2("a.t().matmul(b) 36x44x20", &at, &b, dot_tol(20), |at, b| {
        at.t().matmul(b)
    });
    let a = pair(&[3, 12, 8], 92);
    let bt = pair(&[3, 20, 8], 93);
    check2(
        "batched a.matmul(b.t()) 12x20x8",
        &a,
        &bt,
        dot_tol(8),
        |a, bt| a.matmul(&bt.t()),
    );
    let at = pair(&[16, 8], 94);
    let bt = pair(&[12, 16], 95);
    check2(
        "a.t().matmul(b.t()) 8x12x16",
        &at,
        &bt,
        dot_tol(16),
        |at, bt| (at.t().matmul(&bt.t()) * 2.0).relu(),
    );
    let w = pair(&[4, 16], 96);
    let x = pair(&[3, 4, 12], 97);
    check2(
        "w.t() broadcast x batch 16x12x4",
        &w,
        &x,
        dot_tol(4),
        |w, x| w.t().matmul(x),
    );
    let x = pair(&[3, 8, 20], 98);
    let b = pair(&[8, 7], 99);
    check2("permuted batch 20x7x8", &x, &b, dot_tol(8), |x, b| {
        x.permute(&[0, 2, 1]).matmul(b)
    });
    // An operand whose buffer the other operand also reads (through a slice) stays scalar.
    let x = pair(&[32, 24], 102);
    let y = pair(&[1], 103);
    check2("x.matmul(x.narrow(..))", &x, &y, dot_tol(24), |x, _| {
        x.matmul(&x.narrow(0, 8, 24))
    });
    check2("x.matmul(x.t())", &x, &y, dot_tol(24), |x, _| {
        x.matmul(&x.t())
    });
    let at = pair(&[7, 12], 100);
    let b = pair(&[7, 16], 101);
    check2(
        "a.t().matmul(b) with odd k 12x16x7",
        &at,
        &b,
        dot_tol(7),
        |at, b| at.t().matmul(b),
    );
}

#[test]
fn operands_that_no_strides_describe() {
    // [B, M, N] seen as [M, B N] and [B, N, K] as [B N, K] (a weight gradient with the batch
    // folded into the contraction): written out first on software adapters.
    let g = pair(&[4, 8, 12], 150);
    let x = pair(&[4, 16, 12], 151);
    check2("merged batch", &g, &x, dot_tol(48), |g, x| {
        let a = g.permute(&[1, 0, 2]).reshape([8, 48]);
        let b = x.permute(&[0, 2, 1]).reshape([48, 16]);
        a.matmul(&b)
    });
}

#[test]
fn batched_with_broadcast_batch_dimensions() {
    let cases: [(&[usize], &[usize]); 4] = [
        (&[2, 3, 5, 7], &[7, 4]),
        (&[1, 6, 8], &[4, 8, 3]),
        (&[4, 8], &[2, 3, 8, 5]),
        (&[2, 3, 1, 65], &[2, 3, 65, 1]),
    ];
    for (i, (sa, sb)) in cases.iter().enumerate() {
        let a = pair(sa, 70 + i as u64);
        let b = pair(sb, 80 + i as u64);
        let k = sa[sa.len() - 1];
        check2(&format!("{sa:?} x {sb:?}"), &a, &b, dot_tol(k), |a, b| {
            a.matmul(b)
        });
    }
}

#[test]
fn one_dimensional_operands() {
    let v = pair(&[37], 90);
    let m = pair(&[37, 12], 91);
    let mt = pair(&[12, 37], 92);
    let batch = pair(&[3, 37, 5], 93);
    check2("vector x matrix", &v, &m, dot_tol(37), |v, m| {
        let r = v.matmul(m);
        assert_eq!(r.dims(), &[12]);
        r
    });
    check2("matrix x vector", &mt, &v, dot_tol(37), |m, v| {
        let r = m.matmul(v);
        assert_eq!(r.dims(), &[12]);
        r
    });
    check2("vector x vector", &v, &v, dot_tol(37), |a, b| {
        let r = a.matmul(&b.flip(&[0]));
        assert_eq!(r.dims(), &[] as &[usize]);
        r
    });
    check2("vector x batch", &v, &batch, dot_tol(37), |v, b| {
        v.matmul(b)
    });
    check2("batch.t() x vector", &batch, &v, dot_tol(37), |b, v| {
        let r = b.t().matmul(v) + b.matmul(&v.narrow(0, 0, 5)).narrow(1, 0, 5);
        assert_eq!(r.dims(), &[3, 5]);
        r
    });
}

#[test]
fn fused_bias_and_activation_epilogue() {
    for &(m, n, k) in &SOME[1..] {
        let a = pair(&[m, k], 100);
        let b = pair(&[k, n], 101);
        let bias = pair(&[n], 102);
        let what = format!("(a.matmul(b) + bias).relu() {m}x{n}x{k}");
        let tol = dot_tol(k);
        close(
            &what,
            &(a.0.matmul(&b.0) + &bias.0).relu(),
            &(a.1.matmul(&b.1) + &bias.1).relu(),
            tol,
        );
        close(
            &format!("sigmoid(a.matmul(b) * 0.5 - bias) {m}x{n}x{k}"),
            &(a.0.matmul(&b.0) * 0.5 - &bias.0).sigmoid(),
            &(a.1.matmul(&b.1) * 0.5 - &bias.1).sigmoid(),
            tol,
        );
    }
    // A column bias, a reshape after the matmul, and a batched epilogue.
    let a = pair(&[2, 9, 14], 103);
    let b = pair(&[14, 6], 104);
    let col = pair(&[9, 1], 105);
    close(
        "batched matmul + column bias, reshaped, tanh",
        &(a.0.matmul(&b.0) + &col.0).reshape([18, 6]).tanh(),
        &(a.1.matmul(&b.1) + &col.1).reshape([18, 6]).tanh(),
        dot_tol(14),
    );
}

#[test]
fn long_batch_norm_like_epilogue() {
    // The software kernel applies epilogues in a second, rolled pass; this one is long.
    for &(m, n, k) in &SOME[1..] {
        let a = pair(&[2, m, k], 106);
        let b = pair(&[k, n], 107);
        let mean = pair(&[n], 108);
        let var = pair(&[n], 109);
        let w = pair(&[n], 112);
        let f = |a: &Tensor, b: &Tensor, mean: &Tensor, var: &Tensor, w: &Tensor| {
            ((a.matmul(b) - mean) * (var.abs() + 0.1).rsqrt() * w + mean).relu()
        };
        close(
            &format!("((a.matmul(b) - mean) * rsqrt(|var| + 0.1) * w + mean).relu() 2x{m}x{n}x{k}"),
            &f(&a.0, &b.0, &mean.0, &var.0, &w.0),
            &f(&a.1, &b.1, &mean.1, &var.1, &w.1),
            (4.0 * dot_tol(k).0, 4.0 * dot_tol(k).1),
        );
    }
}

#[test]
fn fused_elementwise_prologue() {
    let a = pair(&[33, 65], 110);
    let b = pair(&[65, 17], 111);
    check2(
        "a.exp().matmul(b)",
        &a,
        &b,
        (dot_tol(65).0 * 3.0, 1e-4),
        |a, b| a.exp().matmul(b),
    );
    check2(
        "(a * 2 - 1).relu().matmul(b.t().t() * b.t().t())",
        &a,
        &b,
        dot_tol(65),
        |a, b| (a * 2.0 - 1.0).relu().matmul(&(b * b)),
    );
    check2(
        "prologue and epilogue together",
        &a,
        &b,
        dot_tol(65),
        |a, b| (a.abs().sqrt().matmul(&b.sin()) + 1.0).relu(),
    );
}

#[test]
fn chained_and_shared_matmuls() {
    let a = pair(&[20, 30], 120);
    let b = pair(&[30, 40], 121);
    let c = pair(&[40, 10], 122);
    close(
        "(a b) c",
        &a.0.matmul(&b.0).matmul(&c.0),
        &a.1.matmul(&b.1).matmul(&c.1),
        dot_tol(30 * 40),
    );
    // One matmul read by two consumers and a reduction.
    check2("a matmul used twice", &a, &b, dot_tol(30), |a, b| {
        let h = a.matmul(b);
        h.relu() - h.sum_axes_keepdim(&[1]) / 40.0
    });
    check2(
        "a matmul of a reduction",
        &a,
        &b,
        dot_tol(30 * 40),
        |a, b| a.unsqueeze(2).expand([20, 30, 3]).sum_axes(&[2]).matmul(b),
    );
    check2(
        "matmul then reductions",
        &a,
        &b,
        dot_tol(30 * 40),
        |a, b| {
            let h = a.matmul(b);
            h.max_axes(&[0]).sum() + h.argmax(1).cast(DType::F32).sum() + h.sum_axes(&[1]).sum()
        },
    );
}

#[test]
fn f16_matmul() {
    let f16s = |shape: &[usize], seed: u64| {
        let v: Vec<f16> = common::values(shape.iter().product(), seed)
            .into_iter()
            .map(f16::from_f32)
            .collect();
        pair_of(&v, shape)
    };
    for &(m, n, k) in &[(1, 1, 1), (17, 33, 65)] {
        let a = f16s(&[m, k], 130);
        let b = f16s(&[k, n], 131);
        // The product is accumulated in f32 and rounded to f16 once, like the reference.
        check2(
            &format!("f16 {m}x{n}x{k}"),
            &a,
            &b,
            (dot_tol(k).0, 1e-3),
            |a, b| a.matmul(b),
        );
        check2(
            &format!("f16 {m}x{n}x{k} via f32"),
            &a,
            &b,
            dot_tol(k),
            |a, b| a.cast(DType::F32).matmul(&b.cast(DType::F32)),
        );
    }
}

#[test]
fn empty_matmuls() {
    for (m, n, k) in [(4, 3, 0), (0, 3, 4), (4, 0, 3)] {
        let a = pair(&[m, k], 140);
        let b = pair(&[k, n], 141);
        check2(&format!("{m}x{n}x{k}"), &a, &b, EXACT, |a, b| a.matmul(b));
        check2(&format!("{m}x{n}x{k} + 1"), &a, &b, EXACT, |a, b| {
            a.matmul(b) + 1.0
        });
    }
}
