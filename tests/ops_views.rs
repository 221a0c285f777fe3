//! Views on the wgpu device compared with the reference executor: reshape, permute, transpose,
//! expand, slice (with steps and negative steps), flip, narrow, squeeze, unsqueeze, flatten, pad,
//! cat and stack — alone (a view as the target of a realize), composed, and folded into the
//! kernels that read them (elementwise, reductions, matmul), on random shapes and every dtype.
//! Views move elements without arithmetic, so every comparison is exact.

mod common;
mod ops_support;

use common::pair;
use half::f16;
use kiln::prelude::*;
use ops_support::*;

/// A random permutation of `0..n`.
fn permutation(rng: &mut Rng, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, rng.range(0, i as i64) as usize);
    }
    p
}

#[test]
fn reshape_squeeze_unsqueeze_flatten() {
    let x = pair(&[2, 3, 4], 1);
    check1("reshape [6,4]", &x, EXACT, |x| x.reshape([6, 4]));
    check1("reshape [4,3,2] then + 1", &x, ARITH, |x| {
        x.reshape([4, 3, 2]) + 1.0
    });
    check1("reshape to a scalar-like [24,1,1]", &x, EXACT, |x| {
        x.reshape([24, 1, 1])
    });
    check1("unsqueeze 0, 2, 3", &x, EXACT, |x| {
        x.unsqueeze(0).unsqueeze(2).unsqueeze(5)
    });
    check1("squeeze", &x, EXACT, |x| {
        x.unsqueeze(1).squeeze(1).reshape([3, 8])
    });
    check1("flatten 0..=1", &x, EXACT, |x| x.flatten(0, 1));
    check1("flatten 1..=2", &x, EXACT, |x| x.flatten(1, 2));
    check1("flatten all", &x, EXACT, |x| x.flatten(0, 2));
    let s = pair(&[], 2);
    check1("flatten a scalar", &s, EXACT, |s| s.flatten(0, 0));
    check1("reshape of a transpose", &x, EXACT, |x| {
        x.t().reshape([2, 12])
    });
    check1("reshape of a transpose in a kernel", &x, ARITH, |x| {
        x.t().reshape([6, 4]).exp().reshape([24])
    });
}

#[test]
fn permute_and_transpose_on_random_shapes() {
    let mut rng = Rng::new(3);
    for case in 0..10 {
        let shape = rng.shape(2, 5, 5);
        let perm = permutation(&mut rng, shape.len());
        let x = pair(&shape, 10 + case);
        let what = format!("{shape:?}.permute({perm:?})");
        check1(&what, &x, EXACT, |x| x.permute(&perm));
        check1(&format!("{what} then exp"), &x, TRANSC, |x| {
            x.permute(&perm).exp()
        });
        check1(&format!("{what} twice"), &x, EXACT, |x| {
            x.permute(&perm).permute(&perm)
        });
        let (d0, d1) = (rng.range(0, shape.len() as i64 - 1) as usize, 0);
        check1(
            &format!("{shape:?}.transpose({d0}, {d1})"),
            &x,
            EXACT,
            |x| x.transpose(d0, d1),
        );
        check1(&format!("{shape:?}.t()"), &x, EXACT, |x| x.t());
    }
    // The classic: a transposed operand folded into a binary op.
    let a = pair(&[5, 7], 20);
    let b = pair(&[7, 5], 21);
    check2("a.t() + b", &a, &b, ARITH, |a, b| a.t() + b);
    check2("a * b.t() - a.t().t()", &a, &b, ARITH, |a, b| {
        a * &b.t() - a.t().t()
    });
}

#[test]
fn expand_and_broadcast_to() {
    let x = pair(&[3, 1], 4);
    check1("expand [3,1] -> [2,3,4]", &x, EXACT, |x| {
        x.expand([2, 3, 4])
    });
    check1("broadcast_to [5,3,1]", &x, EXACT, |x| {
        x.broadcast_to([5, 3, 1])
    });
    let s = pair(&[], 5);
    check1("expand a scalar", &s, EXACT, |s| s.expand([4, 2]));
    let y = pair(&[1, 4, 1], 6);
    check1("expand then transpose then relu", &y, EXACT, |y| {
        y.expand([3, 4, 2]).transpose(0, 2).relu()
    });
    check1("expand then slice", &y, EXACT, |y| {
        y.expand([3, 4, 5]).slice(2, 1, 5, 2)
    });
}

#[test]
fn slice_with_steps_flip_and_narrow() {
    let x = pair(&[7, 9, 4], 7);
    for (dim, start, end, step) in [
        (0, 1, 7, 2),
        (1, 0, 9, 3),
        (1, 8, 9, 1),
        (2, 1, 3, 1),
        (0, 2, 100, 4),
    ] {
        check1(
            &format!("slice({dim}, {start}, {end}, {step})"),
            &x,
            EXACT,
            |x| x.slice(dim, start, end, step),
        );
    }
    check1("slice then slice", &x, EXACT, |x| {
        x.slice(1, 1, 9, 2).slice(1, 1, 4, 2)
    });
    for dims in [vec![0], vec![1], vec![2], vec![0, 2], vec![0, 1, 2]] {
        check1(&format!("flip({dims:?})"), &x, EXACT, |x| x.flip(&dims));
    }
    check1(
        "flip then slice with a step (a negative-step slice)",
        &x,
        EXACT,
        |x| x.flip(&[1]).slice(1, 1, 9, 3),
    );
    check1("flip twice", &x, EXACT, |x| x.flip(&[0]).flip(&[0]));
    check1("narrow", &x, EXACT, |x| x.narrow(1, 2, 5).narrow(0, 6, 1));
    check1("narrow to nothing", &x, EXACT, |x| x.narrow(1, 3, 0));
    check1("a.permute(..).slice(..).exp()", &x, TRANSC, |x| {
        x.permute(&[2, 0, 1]).slice(2, 1, 8, 2).exp()
    });
}

#[test]
fn pad_with_a_constant() {
    let x = pair(&[3, 4, 2], 8);
    check1("pad leading dim", &x, EXACT, |x| x.pad(&[(1, 2)], -5.0));
    check1("pad every dim", &x, EXACT, |x| {
        x.pad(&[(0, 1), (2, 0), (1, 1)], 0.5)
    });
    check1("pad of a transpose, then exp", &x, TRANSC, |x| {
        x.t().pad(&[(1, 1), (0, 2)], 1.0).exp()
    });
    check1("pad of a pad", &x, EXACT, |x| {
        x.pad(&[(1, 0)], 7.0).pad(&[(0, 0), (1, 1)], -7.0)
    });
    check1("pad then slice back", &x, EXACT, |x| {
        x.pad(&[(2, 2), (2, 2)], 3.0)
            .slice(0, 1, 6, 2)
            .slice(1, 1, 8, 3)
    });
    check1("pad then sum", &x, dot_tol(30), |x| {
        x.pad(&[(2, 3), (0, 1)], 0.25).sum_axes(&[0])
    });
    let i = pair_i32(&[2, 3], 9, -9, 9);
    check1("pad i32 with -1", &i, EXACT, |i| {
        i.pad(&[(1, 1), (1, 0)], -1.0)
    });
    let b = (i.0.gt(&i.0.scalar_like(0.0)), i.1.gt(&i.1.scalar_like(0.0)));
    check1("pad bool with true", &b, EXACT, |b| {
        b.pad(&[(0, 2), (1, 1)], 1.0)
    });
}

#[test]
fn cat_of_two_three_and_nine_inputs() {
    let a = pair(&[2, 3, 4], 11);
    let b = pair(&[2, 1, 4], 12);
    let c = pair(&[2, 5, 4], 13);
    check2("cat 2 along 1", &a, &b, EXACT, |a, b| {
        Tensor::cat(&[a, b], 1)
    });
    close(
        "cat 3 along 1",
        &Tensor::cat(&[&a.0, &b.0, &c.0], 1),
        &Tensor::cat(&[&a.1, &b.1, &c.1], 1),
        EXACT,
    );
    check1("cat along 0 and 2", &a, EXACT, |a| {
        Tensor::cat(&[&Tensor::cat(&[a, a], 0), &a.pad(&[(2, 0)], 9.0)], 2)
    });
    // Nine inputs: a tree of cats (at most four inputs per node), of different lengths and
    // made of views and arithmetic.
    let parts: Vec<(Tensor, Tensor)> = (0..9).map(|i| pair(&[3, i + 1], 20 + i as u64)).collect();
    let build = |xs: Vec<&Tensor>| -> Tensor {
        let mixed: Vec<Tensor> = xs
            .iter()
            .enumerate()
            .map(|(i, x)| match i % 3 {
                0 => (*x).clone(),
                1 => x.flip(&[1]) * 2.0,
                _ => x.exp(),
            })
            .collect();
        let refs: Vec<&Tensor> = mixed.iter().collect();
        Tensor::cat(&refs, 1)
    };
    let g = build(parts.iter().map(|p| &p.0).collect());
    let c9 = build(parts.iter().map(|p| &p.1).collect());
    assert_eq!(g.dims(), &[3, 45]);
    close("cat of 9", &g, &c9, TRANSC);
    close(
        "cat of 9 then transpose and sum",
        &g.t().sum_axes(&[0]),
        &c9.t().sum_axes(&[0]),
        dot_tol(45),
    );
    // Nine plain inputs along axis 0, realized as the target of the realize.
    let rows: Vec<(Tensor, Tensor)> = (0..9)
        .map(|i| pair(&[i % 3 + 1, 4], 40 + i as u64))
        .collect();
    close(
        "cat of 9 along 0",
        &Tensor::cat(&rows.iter().map(|p| &p.0).collect::<Vec<_>>(), 0),
        &Tensor::cat(&rows.iter().map(|p| &p.1).collect::<Vec<_>>(), 0),
        EXACT,
    );
}

#[test]
fn stack_along_each_axis() {
    let a = pair(&[3, 4], 14);
    let b = pair(&[3, 4], 15);
    for dim in 0..=2 {
        check2(&format!("stack along {dim}"), &a, &b, EXACT, |a, b| {
            Tensor::stack(&[a, b, &a.t().t()], dim)
        });
    }
    check2("stack then reduce", &a, &b, dot_tol(3), |a, b| {
        Tensor::stack(&[a, b, &(a * b)], 0).sum_axes(&[0])
    });
}

#[test]
fn views_of_every_dtype() {
    let i = pair_i32(&[4, 5], 16, -100, 100);
    check1("i32 permute, flip, pad, cat", &i, EXACT, |i| {
        Tensor::cat(
            &[
                &i.t().flip(&[0]),
                &i.t().pad(&[(0, 0), (1, 0)], 3.0).narrow(1, 0, 4),
            ],
            1,
        )
    });
    let u: Vec<u32> = (0..20).map(|x| x * 7 + 1).collect();
    let u = pair_of(&u, &[5, 4]);
    check1("u32 transpose and expand", &u, EXACT, |u| {
        u.t().unsqueeze(0).expand([2, 4, 5])
    });
    let b = (
        i.0.lt(&i.0.t().t().scalar_like(0.0)),
        i.1.lt(&i.1.scalar_like(0.0)),
    );
    check1("bool slice and stack", &b, EXACT, |b| {
        Tensor::stack(
            &[
                &b.slice(1, 0, 5, 2),
                &b.slice(1, 1, 5, 2).pad(&[(0, 0), (0, 1)], 1.0),
            ],
            2,
        )
    });
    let h: Vec<f16> = (0..30)
        .map(|x| f16::from_f32(x as f32 * 0.5 - 7.0))
        .collect();
    let h = pair_of(&h, &[5, 6]);
    check1("f16 transpose, flip, pad, cat", &h, EXACT, |h| {
        Tensor::cat(&[&h.t().flip(&[1]), &h.t().pad(&[(0, 0), (0, 1)], -0.5)], 1)
    });
    check1("f16 views into arithmetic", &h, ARITH, |h| {
        h.t().slice(0, 1, 6, 2) * 2.0
    });
}

#[test]
fn composed_views_on_random_shapes() {
    let mut rng = Rng::new(17);
    for case in 0..10 {
        let shape = rng.shape(2, 4, 6);
        let perm = permutation(&mut rng, shape.len());
        let d = rng.range(0, shape.len() as i64 - 1) as usize;
        let step = rng.range(1, 3) as usize;
        let x = pair(&shape, 60 + case);
        let what =
            format!("{shape:?} permute {perm:?}, flip/slice dim {d} step {step}, pad, reshape");
        let f = |x: &Tensor| -> Tensor {
            let v = x.permute(&perm).flip(&[d]);
            let n = v.dims()[d];
            let v = v.slice(d, n / 3, n, step).pad(&[(1, 0)], -2.0);
            v.reshape([v.numel()])
        };
        check1(&what, &x, EXACT, f);
        check1(&format!("{what}, then sin"), &x, TRANSC, |x| f(x).sin());
        let y = pair(&[1], 80 + case);
        check2(
            &format!("{what}, then + a broadcast"),
            &x,
            &y,
            ARITH,
            |x, y| f(x) + y,
        );
    }
}

#[test]
fn non_contiguous_views_feed_matmul_and_reductions() {
    let x = pair(&[9, 6, 5], 18);
    let w = pair(&[12, 7], 19);
    check2(
        "matmul of permuted and sliced operands",
        &x,
        &w,
        dot_tol(6),
        |x, w| {
            // x.permute -> [5, 9, 6] -> slice to [5, 9, 6] rows 0..9 -> take every second of 12 rows
            let a = x.permute(&[2, 0, 1]).flip(&[1]);
            let b = w.slice(0, 0, 12, 2).narrow(1, 1, 5);
            a.matmul(&b)
        },
    );
    check2(
        "matmul of padded and catted operands",
        &x,
        &w,
        dot_tol(8),
        |x, w| {
            let a = x.narrow(2, 0, 1).squeeze(2).pad(&[(0, 0), (1, 1)], 0.5);
            let b = Tensor::cat(&[&w.narrow(1, 0, 3), &w.narrow(1, 4, 3)], 1).narrow(0, 0, 8);
            a.matmul(&b)
        },
    );
    for axes in [vec![0], vec![1], vec![0, 2], vec![0, 1, 2]] {
        check1(
            &format!("sum over {axes:?} of a permuted, flipped view"),
            &x,
            dot_tol(270),
            |x| x.permute(&[1, 2, 0]).flip(&[0, 2]).sum_axes(&axes),
        );
        check1(
            &format!("argmax over {axes:?} of a strided view"),
            &x,
            EXACT,
            |x| x.slice(0, 1, 9, 2).t().argmax_axes_keepdim(&axes),
        );
        check1(
            &format!("max over {axes:?} of an expanded view"),
            &x,
            TRANSC,
            |x| x.narrow(0, 0, 1).expand([4, 6, 5]).exp().max_axes(&axes),
        );
    }
}

#[test]
fn empty_and_size_one_dimensions() {
    let e = pair(&[0, 3], 20);
    check1("[0,3] transpose", &e, EXACT, |e| e.t());
    check1("[0,3] exp + 1", &e, EXACT, |e| e.exp() + 1.0);
    check1("[0,3] flip", &e, EXACT, |e| e.flip(&[0, 1]));
    check1("[0,3] pad to [2,3]", &e, EXACT, |e| e.pad(&[(1, 1)], 4.0));
    check1("[0,3] flipped, padded, then summed", &e, EXACT, |e| {
        e.flip(&[0]).pad(&[(1, 1)], 4.0).sum_axes(&[0])
    });
    let one = pair(&[1, 3], 21);
    check2("cat [0,3] with [1,3]", &e, &one, EXACT, |e, o| {
        Tensor::cat(&[e, o, e], 0)
    });
    check2("cat [0,3] with [1,3], then * 2", &e, &one, EXACT, |e, o| {
        Tensor::cat(&[o, e], 0) * 2.0
    });
    let z = pair(&[3, 0], 22);
    check1("[3,0] flip then sum over 1", &z, EXACT, |z| {
        z.flip(&[1]).sum_axes(&[1])
    });
    check1("[3,0] expand", &z, EXACT, |z| {
        z.unsqueeze(0).expand([2, 3, 0])
    });
    let s = pair(&[1, 1], 23);
    check1("[1,1] views", &s, EXACT, |s| {
        s.t().reshape([1]).expand([4]).flip(&[0])
    });
    check1("[1,1] pad", &s, EXACT, |s| s.pad(&[(1, 0), (0, 2)], 1.5));
}
