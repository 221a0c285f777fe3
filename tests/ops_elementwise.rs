//! Elementwise ops on the wgpu device, compared with the reference executor (`Device::cpu()`) on
//! the same host data: every unary and binary op on random shapes, NumPy broadcasting, scalar
//! ops and the operators `+ - * /` and unary `-`, comparisons, `where_cond`, `logical_not`,
//! integer and bool arithmetic (integer division by zero gives 0), rounding ties to even, NaN
//! handling, and fusion: a twenty-op chain in one kernel and a node read by two consumers.
//!
//! Tolerances: exact for integer ops, comparisons, min/max and rounding; a few f32 roundings for
//! arithmetic; looser for transcendental functions (exp, log, sin, cos, tanh, sigmoid, pow, sqrt,
//! rsqrt).

mod common;
mod ops_support;

use common::{fresh_gpu, gpu, pair, values};
use kiln::prelude::*;
use ops_support::*;

// ---- elementwise ----

#[test]
fn broadcasting_follows_numpy() {
    let a = pair(&[2, 3], 1);
    let b = pair(&[3], 2);
    check2("[2,3] + [3]", &a, &b, ARITH, |a, b| a + b);
    check2("[3] - [2,3]", &a, &b, ARITH, |a, b| b - a);
    let x = pair(&[4, 1, 5], 3);
    let y = pair(&[3, 1], 4);
    check2("[4,1,5] * [3,1]", &x, &y, ARITH, |x, y| {
        let r = x * y;
        assert_eq!(r.dims(), &[4, 3, 5]);
        r
    });
    let s = pair(&[], 5);
    check2("[4,1,5] / scalar tensor", &x, &s, ARITH, |x, s| {
        x / (s.abs() + 0.5)
    });
    check1("broadcast_to", &b, EXACT, |b| b.broadcast_to([4, 2, 3]));
    // Random shapes broadcast against each other: drop leading dims, set others to 1.
    let mut rng = Rng::new(6);
    for case in 0..12 {
        let shape = rng.shape(1, 4, 5);
        let other: Vec<usize> = shape[rng.range(0, shape.len() as i64 - 1) as usize..]
            .iter()
            .map(|&d| if rng.next().is_multiple_of(2) { 1 } else { d })
            .collect();
        let x = pair(&shape, 100 + case);
        let y = pair(&other, 200 + case);
        let what = format!("{shape:?} op {other:?}");
        check2(&format!("{what} add"), &x, &y, ARITH, |a, b| a + b);
        check2(&format!("{what} sub"), &y, &x, ARITH, |a, b| a - b);
        check2(&format!("{what} maximum"), &x, &y, EXACT, |a, b| {
            a.maximum(b)
        });
        check2(&format!("{what} lt"), &y, &x, EXACT, |a, b| a.lt(b));
    }
}

#[test]
fn scalar_ops_and_operators() {
    let x = pair(&[5, 6], 7);
    let y = pair(&[6], 8);
    check1("x + 2", &x, ARITH, |x| x + 2.0);
    check1("x - 0.5", &x, ARITH, |x| x - 0.5);
    check1("x * -3", &x, ARITH, |x| x * -3.0);
    check1("x / 7", &x, ARITH, |x| x / 7.0);
    check1("-x", &x, EXACT, |x| -x);
    check1("-(owned x)", &x, EXACT, |x| -(x.clone()));
    check2("owned and borrowed operators", &x, &y, ARITH, |x, y| {
        (x.clone() + y) * (x - y.clone()) / (y.clone() * y.clone() + 1.0) - x.clone()
    });
    check1("add/sub/mul/div_scalar", &x, ARITH, |x| {
        x.add_scalar(1.5)
            .mul_scalar(2.0)
            .sub_scalar(0.25)
            .div_scalar(3.0)
    });
    check1(
        "pow_scalar, maximum/minimum_scalar, square",
        &x,
        TRANSC,
        |x| x.abs().pow_scalar(1.5) + x.maximum_scalar(0.1) + x.minimum_scalar(-0.2) + x.square(),
    );
}

#[test]
fn binary_ops_on_random_shapes() {
    let mut rng = Rng::new(11);
    for case in 0..6 {
        let shape = rng.shape(1, 4, 7);
        let a = pair(&shape, 300 + case);
        let b = pair(&shape, 400 + case);
        let pos = pair_map(&shape, 500 + case, |v| v.abs() * 3.0 + 0.05);
        let s = format!("{shape:?}");
        check2(&format!("add {s}"), &a, &b, ARITH, |a, b| a.add(b));
        check2(&format!("sub {s}"), &a, &b, ARITH, |a, b| a.sub(b));
        check2(&format!("mul {s}"), &a, &b, ARITH, |a, b| a.mul(b));
        check2(&format!("div {s}"), &a, &pos, ARITH, |a, p| a.div(p));
        check2(&format!("pow {s}"), &pos, &a, TRANSC, |p, a| {
            p.pow(&(a * 3.0))
        });
        check2(&format!("maximum {s}"), &a, &b, EXACT, |a, b| a.maximum(b));
        check2(&format!("minimum {s}"), &a, &b, EXACT, |a, b| a.minimum(b));
    }
}

#[test]
fn pow_edge_cases_follow_c_powf() {
    let base = vec![0.0f32, 0.0, 0.0, -2.0, -2.0, -2.0, 2.0, 4.0, 1.0, -0.5, 3.0];
    let exp = vec![0.0f32, 2.0, -1.0, 3.0, 2.0, 0.5, -1.0, 0.5, 7.5, -3.0, 0.0];
    let b = pair_of(&base, &[base.len()]);
    let e = pair_of(&exp, &[exp.len()]);
    check2("pow edge cases", &b, &e, TRANSC, |b, e| b.pow(e));
}

#[test]
fn unary_ops_on_random_shapes() {
    let mut rng = Rng::new(12);
    for case in 0..4 {
        let shape = rng.shape(1, 4, 8);
        let s = format!("{shape:?}");
        let x = pair_map(&shape, 600 + case, |v| v * 4.0);
        let pos = pair_map(&shape, 700 + case, |v| v.abs() * 10.0 + 0.01);
        check1(&format!("neg {s}"), &x, EXACT, |x| x.neg());
        check1(&format!("abs {s}"), &x, EXACT, |x| x.abs());
        check1(&format!("relu {s}"), &x, EXACT, |x| x.relu());
        check1(&format!("floor {s}"), &x, EXACT, |x| x.floor());
        check1(&format!("ceil {s}"), &x, EXACT, |x| x.ceil());
        check1(&format!("round {s}"), &x, EXACT, |x| x.round());
        check1(&format!("exp {s}"), &x, TRANSC, |x| x.exp());
        check1(&format!("log {s}"), &pos, TRANSC, |x| x.log());
        check1(&format!("sqrt {s}"), &pos, TRANSC, |x| x.sqrt());
        check1(&format!("rsqrt {s}"), &pos, TRANSC, |x| x.rsqrt());
        check1(&format!("recip {s}"), &pos, ARITH, |x| x.recip());
        check1(&format!("sin {s}"), &x, TRANSC, |x| x.sin());
        check1(&format!("cos {s}"), &x, TRANSC, |x| x.cos());
        check1(&format!("tanh {s}"), &x, TRANSC, |x| x.tanh());
        check1(&format!("sigmoid {s}"), &x, TRANSC, |x| x.sigmoid());
    }
    // Saturating arguments.
    let big = vec![-100.0f32, -30.0, -10.0, 0.0, 10.0, 30.0, 100.0];
    let x = pair_of(&big, &[7]);
    check1("tanh of large |x|", &x, TRANSC, |x| x.tanh());
    check1("sigmoid of large |x|", &x, TRANSC, |x| x.sigmoid());
    check1("exp of large |x|", &x, TRANSC, |x| x.exp());
}

#[test]
fn round_is_ties_to_even() {
    let v = vec![
        0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 0.49999997, 2.6, -2.6,
    ];
    let x = pair_of(&v, &[v.len()]);
    assert_eq!(
        x.0.round().to_vec::<f32>().unwrap(),
        [0.0, 2.0, 2.0, -0.0, -2.0, -2.0, 4.0, 0.0, 3.0, -3.0]
    );
    check1("round ties", &x, EXACT, |x| x.round());
}

#[test]
fn comparisons_where_and_logical_not() {
    // Values on a coarse grid so that many pairs are equal.
    let grid = |v: f32| (v * 4.0).round() / 4.0;
    let a = pair_map(&[6, 7], 13, grid);
    let b = pair_map(&[7], 14, grid);
    check2("eq", &a, &b, EXACT, |a, b| a.eq(b));
    check2("ne", &a, &b, EXACT, |a, b| a.ne(b));
    check2("lt", &a, &b, EXACT, |a, b| a.lt(b));
    check2("le", &a, &b, EXACT, |a, b| a.le(b));
    check2("gt", &a, &b, EXACT, |a, b| a.gt(b));
    check2("ge", &a, &b, EXACT, |a, b| a.ge(b));
    check2("logical_not", &a, &b, EXACT, |a, b| a.lt(b).logical_not());
    check2("where", &a, &b, EXACT, |a, b| {
        a.gt(b).where_cond(a, &(b * 10.0))
    });
    check2("where with broadcast branches", &a, &b, EXACT, |a, b| {
        let cond = b.ge(&b.scalar_like(0.0));
        cond.where_cond(&a.sum_axes_keepdim(&[1]), b)
    });
    check2(
        "comparisons combined in one kernel",
        &a,
        &b,
        EXACT,
        |a, b| {
            let x = a.le(b).cast(DType::I32) + a.ne(b).cast(DType::I32) * 2.0;
            x.cast(DType::F32)
        },
    );
    // Integer and bool comparisons.
    let i = pair_i32(&[5, 8], 15, -3, 3);
    let j = pair_i32(&[8], 16, -3, 3);
    check2("i32 lt", &i, &j, EXACT, |a, b| a.lt(b));
    check2("i32 eq", &i, &j, EXACT, |a, b| a.eq(b));
    check2("i32 where", &i, &j, EXACT, |a, b| a.ge(b).where_cond(a, b));
    let bi = (i.0.gt(&i.0.scalar_like(0.0)), i.1.gt(&i.1.scalar_like(0.0)));
    let bj = (j.0.lt(&j.0.scalar_like(1.0)), j.1.lt(&j.1.scalar_like(1.0)));
    check2("bool eq", &bi, &bj, EXACT, |a, b| a.eq(b));
    check2("bool ne", &bi, &bj, EXACT, |a, b| a.ne(b));
    check2("bool lt", &bi, &bj, EXACT, |a, b| a.lt(b));
    check2("bool ge", &bi, &bj, EXACT, |a, b| a.ge(b));
    check2("bool where", &bi, &bj, EXACT, |a, b| {
        a.where_cond(b, &a.logical_not())
    });
}

#[test]
fn integer_arithmetic_and_division_by_zero() {
    let a = pair_i32(&[6, 9], 17, -50, 50);
    let b = pair_i32(&[9], 18, -4, 4);
    check2("i32 add", &a, &b, EXACT, |a, b| a + b);
    check2("i32 sub", &a, &b, EXACT, |a, b| a - b);
    check2("i32 mul", &a, &b, EXACT, |a, b| a * b);
    check2("i32 div (truncating, x / 0 = 0)", &a, &b, EXACT, |a, b| {
        a / b
    });
    check2("i32 maximum, minimum", &a, &b, EXACT, |a, b| {
        a.maximum(b) * 100.0 + a.minimum(b)
    });
    check1("i32 neg, abs, relu", &a, EXACT, |a| {
        -a + a.abs() * 3.0 + a.relu() * 7.0
    });
    check1("i32 scalar ops", &a, EXACT, |a| {
        a.add_scalar(5.0).mul_scalar(-2.0).div_scalar(3.0)
    });
    check1("i32 / 0", &a, EXACT, |a| a / &a.zeros_like());
    let zero = (
        Tensor::full_dtype([], 0.0, DType::I32, &gpu()),
        Tensor::full_dtype([], 0.0, DType::I32, &cpu()),
    );
    check2("i32 0 / 0", &zero, &zero, EXACT, |a, b| a / b);
    let n: Vec<i32> = vec![7, -7, 7, -7, 5, -5, 0, 100];
    let d: Vec<i32> = vec![2, 2, -2, -2, 0, 0, 0, -7];
    let (n, d) = (pair_of(&n, &[8]), pair_of(&d, &[8]));
    assert_eq!(
        (&n.0 / &d.0).to_vec::<i32>().unwrap(),
        [3, -3, -3, 3, 0, 0, 0, -14]
    );
    check2("i32 signed division table", &n, &d, EXACT, |a, b| a / b);

    let u: Vec<u32> = Rng::new(19)
        .ints(40, 0, 1000)
        .iter()
        .map(|&x| x as u32)
        .collect();
    let v: Vec<u32> = Rng::new(20)
        .ints(40, 0, 5)
        .iter()
        .map(|&x| x as u32)
        .collect();
    let (u, v) = (pair_of(&u, &[5, 8]), pair_of(&v, &[5, 8]));
    check2("u32 add, mul", &u, &v, EXACT, |a, b| a + &(a * b));
    check2("u32 div (x / 0 = 0)", &u, &v, EXACT, |a, b| a / b);
    check2("u32 sub (no wrap)", &u, &v, EXACT, |a, b| a - &a.minimum(b));
    check2("u32 maximum, minimum", &u, &v, EXACT, |a, b| {
        a.maximum(b) + a.minimum(b)
    });
    check1("u32 abs, relu", &u, EXACT, |a| a.abs() + a.relu());
}

#[test]
fn nan_propagates_like_the_reference() {
    let nan = f32::NAN;
    let a = vec![nan, 1.0, -1.0, nan, 0.0, f32::INFINITY, f32::NEG_INFINITY];
    let b = vec![0.0, nan, nan, nan, 1.0, nan, 1.0];
    let (a, b) = (pair_of(&a, &[7]), pair_of(&b, &[7]));
    check1("relu(NaN)", &a, EXACT, |a| a.relu());
    check2("maximum with NaN", &a, &b, EXACT, |a, b| a.maximum(b));
    check2("minimum with NaN", &a, &b, EXACT, |a, b| a.minimum(b));
    check2("comparisons with NaN", &a, &b, EXACT, |a, b| {
        let t = |x: Tensor| x.cast(DType::I32);
        t(a.eq(b))
            + t(a.ne(b)) * 2.0
            + t(a.lt(b)) * 4.0
            + t(a.le(b)) * 8.0
            + t(a.gt(b)) * 16.0
            + t(a.ge(b)) * 32.0
    });
    check1("NaN casts", &a, EXACT, |a| {
        a.cast(DType::I32).cast(DType::F32) + a.cast(DType::Bool).cast(DType::F32)
    });
    check1("abs, neg, floor of NaN and inf", &a, EXACT, |a| {
        a.abs() - a.neg().floor()
    });
    check1("exp, log, sqrt, tanh of NaN and inf", &a, TRANSC, |a| {
        a.exp() + a.abs().log() + a.sqrt() + a.tanh()
    });
}

// ---- fusion ----

#[test]
fn a_twenty_op_chain_is_one_kernel_and_matches() {
    // Every intermediate has one user (a node with two users gets its own buffer); the realized
    // inputs x and y may be read any number of times.
    let chain = |x: &Tensor, y: &Tensor| -> Tensor {
        let h = (x * 0.5 + y).sin() * 2.0 - 0.25; // 4
        let h = (h.abs().sqrt() + x).tanh() * y; // 8
        let h = (h - x.exp() / 3.0).maximum(&x.neg()).sigmoid(); // 14
        let h = (h.square() + y).minimum_scalar(1.5).floor(); // 18
        (h + x.cos()).relu() // 21
    };
    let x = pair(&[33, 17], 21);
    let y = pair(&[17], 22);
    check2("20-op chain", &x, &y, TRANSC, chain);

    let dev = fresh_gpu();
    let xd = Tensor::from_vec(values(33 * 17, 21), [33, 17], &dev).unwrap();
    let yd = Tensor::from_vec(values(17, 22), [17], &dev).unwrap();
    xd.realize().unwrap();
    yd.realize().unwrap();
    let before = dev.stats();
    chain(&xd, &yd).realize().unwrap();
    let after = dev.stats();
    assert_eq!(after.submissions - before.submissions, 1);
    assert_eq!(
        after.dispatches - before.dispatches,
        1,
        "a chain of elementwise ops over realized inputs is one kernel"
    );
}

#[test]
fn a_node_used_by_two_consumers() {
    let x = pair(&[40, 9], 23);
    let (g, c) = (x.0.exp() - 1.0, x.1.exp() - 1.0);
    // Two consumers of `h` in one graph, and both consumers as targets of one realize.
    let gu = (g.sin() + g.cos() * &g, g.sum_axes(&[0]));
    let cu = (c.sin() + c.cos() * &c, c.sum_axes(&[0]));
    Tensor::realize_all(&[&gu.0, &gu.1]).unwrap();
    close("first consumer", &gu.0, &cu.0, TRANSC);
    close("second consumer", &gu.1, &cu.1, dot_tol(40));
    // The shared node itself is now a further target.
    close("the shared node", &g, &c, TRANSC);
    // A node read twice by the same op.
    check1("x * x + x", &x, ARITH, |x| {
        let h = x + 1.0;
        &h * &h + &h
    });
}

#[test]
fn bool_arithmetic_rounds_to_bool_like_the_reference() {
    // The reference computes on 0 and 1 and rounds to bool (`!= 0`): + is or, * and / are and,
    // - is xor, maximum is or, minimum is and.
    let a = vec![false, false, true, true];
    let b = vec![false, true, false, true];
    let (a, b) = (pair_of(&a, &[4, 1]), pair_of(&b, &[4]));
    check2("bool add", &a, &b, EXACT, |a, b| a + b);
    check2("bool sub", &a, &b, EXACT, |a, b| a - b);
    check2("bool mul", &a, &b, EXACT, |a, b| a * b);
    check2("bool div", &a, &b, EXACT, |a, b| a / b);
    check2("bool maximum", &a, &b, EXACT, |a, b| a.maximum(b));
    check2("bool minimum", &a, &b, EXACT, |a, b| a.minimum(b));
    check2("bool le, gt", &a, &b, EXACT, |a, b| a.le(b).eq(&b.gt(a)));
    check1("bool sum counts", &a, EXACT, |a| a.sum_axes(&[0]));
}

#[test]
fn more_inputs_than_one_kernel_can_bind() {
    // 40 uploaded tensors in one expression: more storage buffers than a kernel may bind (32 on
    // lavapipe, 8 by wgpu's default), so the scheduler splits the expression into kernels.
    let xs: Vec<(Tensor, Tensor)> = (0..40).map(|i| pair(&[3, 5], 900 + i)).collect();
    let sum_of = |pick: &dyn Fn(&(Tensor, Tensor)) -> Tensor| -> Tensor {
        xs.iter()
            .enumerate()
            .map(|(i, x)| pick(x) * (i as f32 + 1.0))
            .reduce(|a, b| a + b)
            .unwrap()
    };
    let (g, c) = (sum_of(&|x| x.0.clone()), sum_of(&|x| x.1.clone()));
    close("sum of 40 inputs", &g, &c, (1e-4, 1e-5));
    close(
        "a reduction of 40 inputs",
        &g.sum_axes(&[1]),
        &c.sum_axes(&[1]),
        (1e-3, 1e-5),
    );
    // The same 40 inputs in the epilogue of a matmul and of a reduction, as one subtree and as
    // a chain `((core + x0) + x1) + ...` whose every step reads one more buffer.
    let a = pair(&[3, 4], 1);
    let b = pair(&[4, 5], 2);
    let chain = |core: Tensor, k: usize| -> Tensor {
        xs.iter()
            .map(|x| if k == 0 { &x.0 } else { &x.1 })
            .fold(core, |acc, x| (acc + x) * 0.5)
    };
    close(
        "a matmul with an epilogue subtree reading 40 inputs",
        &(a.0.matmul(&b.0) + &g).relu(),
        &(a.1.matmul(&b.1) + &c).relu(),
        (1e-4, 1e-5),
    );
    close(
        "a matmul with an epilogue chain reading 40 inputs",
        &chain(a.0.matmul(&b.0), 0),
        &chain(a.1.matmul(&b.1), 1),
        ARITH,
    );
    close(
        "a reduction with an epilogue chain reading 40 inputs",
        &chain(a.0.sum_axes_keepdim(&[1]), 0),
        &chain(a.1.sum_axes_keepdim(&[1]), 1),
        ARITH,
    );
    let refs = |k: usize| -> Vec<&Tensor> {
        xs.iter()
            .map(|x| if k == 0 { &x.0 } else { &x.1 })
            .collect()
    };
    close(
        "cat of 40 inputs",
        &Tensor::cat(&refs(0), 1),
        &Tensor::cat(&refs(1), 1),
        EXACT,
    );
}

#[test]
fn four_elements_per_invocation_with_mixed_reads() {
    // On software adapters an f32 elementwise kernel computes 4 elements per invocation and reads
    // same-shape inputs as vec4; the same buffer may also be read through a view (transposed,
    // shifted) and others broadcast.
    let x = pair(&[6, 8], 140);
    let y = pair(&[6, 8], 141);
    check2("x + y.relu() * x.t()-ish", &x, &y, ARITH, |x, y| {
        (x + &y.relu()) * x.reshape([8, 6]).t().reshape([6, 8]) - x.sum_axes_keepdim(&[1])
    });
    check2("x * flip(x) + y", &x, &y, ARITH, |x, y| {
        x * &x.flip(&[1]) + y
    });
    let z = pair(&[2, 3, 4], 142);
    let w = pair(&[4], 143);
    check2("[2,3,4] * [4] + 1", &z, &w, ARITH, |z, w| {
        (z * w + 1.0).tanh()
    });
}
