//! Reductions on the wgpu device compared with the reference executor: sum, mean, max, min,
//! argmax, argmin and var over every set of axes of random shapes, with and without keepdim;
//! over all axes; over size-1 and empty axes; of every dtype; with ties and NaN; with fused
//! prologues and epilogues; over both kernel shapes (one invocation per output, one workgroup
//! per output); and over tensors large enough to need more than 65,535 workgroups.
//!
//! Sums are compared with an absolute tolerance that grows with the square root of the number
//! of elements summed (the device sums in f32 in its own fixed order, the reference in f64);
//! max, min and the arg reductions are exact.

mod common;
mod ops_support;

use common::{fresh_gpu, gpu, pair};
use half::f16;
use kiln::nn::parameter;
use kiln::prelude::*;
use ops_support::*;

/// Every subset of `0..rank`, the empty one included.
fn subsets(rank: usize) -> Vec<Vec<usize>> {
    (0..1usize << rank)
        .map(|m| (0..rank).filter(|d| m >> d & 1 == 1).collect())
        .collect()
}

/// A reduction in the form a test case asks for: `keepdim` (axes kept as size 1) if `keep`,
/// else `drop` (axes dropped).
type Reduction = fn(&Tensor, &[usize]) -> Tensor;
fn form(keep: bool, keepdim: Reduction, drop: Reduction) -> Reduction {
    if keep {
        keepdim
    } else {
        drop
    }
}

/// Number of elements in each group of a reduction of `shape` over `axes`.
fn group_len(shape: &[usize], axes: &[usize]) -> usize {
    axes.iter().map(|&a| shape[a]).product()
}

#[test]
fn every_reduction_over_every_set_of_axes() {
    let shapes: [&[usize]; 6] = [
        &[5],
        &[4, 7],
        &[3, 5, 6],
        &[2, 3, 4, 5],
        &[1, 6, 1],
        &[33, 3],
    ];
    for (s, shape) in shapes.iter().enumerate() {
        let x = pair(shape, 100 + s as u64);
        // A coarse grid makes ties common: argmax and argmin must pick the first.
        let ties = pair_map(shape, 200 + s as u64, |v| (v * 3.0).round());
        for (k, axes) in subsets(shape.len()).into_iter().enumerate() {
            let keep = k % 2 == 0;
            let n = group_len(shape, &axes);
            let what = |op: &str| format!("{op} of {shape:?} over {axes:?} (keepdim {keep})");
            let sum = form(keep, Tensor::sum_axes_keepdim, Tensor::sum_axes);
            let mean = form(keep, Tensor::mean_axes_keepdim, Tensor::mean_axes);
            let max = form(keep, Tensor::max_axes_keepdim, Tensor::max_axes);
            let max_other = form(!keep, Tensor::max_axes_keepdim, Tensor::max_axes);
            let min = form(keep, Tensor::min_axes_keepdim, Tensor::min_axes);
            let argmax = form(keep, Tensor::argmax_axes_keepdim, Tensor::argmax_axes);
            let argmin = form(!keep, Tensor::argmin_axes_keepdim, Tensor::argmin_axes);
            let var = form(keep, Tensor::var_axes_keepdim, Tensor::var_axes);
            check1(&what("sum"), &x, dot_tol(n), |x| sum(x, &axes));
            check1(&what("mean"), &x, ARITH, |x| mean(x, &axes));
            check1(&what("max"), &x, EXACT, |x| max_other(x, &axes));
            check1(&what("min"), &x, EXACT, |x| min(x, &axes));
            check1(&what("argmax with ties"), &ties, EXACT, |x| {
                argmax(x, &axes)
            });
            check1(&what("argmin with ties"), &ties, EXACT, |x| {
                argmin(x, &axes)
            });
            check1(&what("max with ties"), &ties, EXACT, |x| max(x, &axes));
            if n > 1 {
                check1(&what("var"), &x, dot_tol(n), |x| var(x, &axes));
            }
        }
    }
}

#[test]
fn argmax_and_argmin_pick_the_first_of_equal_values() {
    let v: Vec<f32> = vec![1.0, 3.0, 3.0, 0.0, 3.0, -1.0, -1.0, 2.0];
    let x = pair_of(&v, &[2, 4]);
    assert_eq!(x.0.argmax(1).to_vec::<i32>().unwrap(), [1, 0]);
    assert_eq!(x.0.argmin(1).to_vec::<i32>().unwrap(), [3, 1]);
    assert_eq!(x.0.argmax_axes(&[0, 1]).item::<i32>().unwrap(), 1);
    check1("argmax over 0", &x, EXACT, |x| x.argmax_keepdim(0));
    check1("argmin over both", &x, EXACT, |x| x.argmin_axes(&[0, 1]));
    // All equal, in groups large enough for the workgroup tree: the first index wins.
    let flat = pair_map(&[3, 5000], 1, |_| 2.0);
    check1("argmax of a constant row (tree)", &flat, EXACT, |x| {
        x.argmax(1)
    });
    check1("argmin of a constant row (tree)", &flat, EXACT, |x| {
        x.argmin(1)
    });
    let few = pair_map(&[5, 3000], 2, |v| (v * 2.0).floor());
    check1("argmax with ties (tree)", &few, EXACT, |x| x.argmax(1));
    check1("argmin with ties (tree)", &few, EXACT, |x| x.argmin(1));
    check1("argmax over all (tree)", &few, EXACT, |x| {
        x.argmax_axes(&[0, 1])
    });
    // Integer values.
    let i = pair_i32(&[6, 300], 3, -2, 2);
    check1("i32 argmax with ties", &i, EXACT, |x| x.argmax(1));
    check1("i32 argmin with ties", &i, EXACT, |x| x.argmin(0));
}

#[test]
fn full_reductions_sum_mean_max_min() {
    let mut rng = Rng::new(4);
    for case in 0..6 {
        let shape = rng.shape(0, 4, 9);
        let n: usize = shape.iter().product();
        let x = pair(&shape, 300 + case);
        let what = format!("{shape:?}");
        check1(&format!("sum() of {what}"), &x, dot_tol(n), |x| x.sum());
        check1(&format!("mean() of {what}"), &x, ARITH, |x| x.mean());
        check1(&format!("max() of {what}"), &x, EXACT, |x| x.max());
        check1(&format!("min() of {what}"), &x, EXACT, |x| x.min());
    }
}

#[test]
fn reductions_over_size_one_axes() {
    let x = pair(&[4, 1, 5, 1], 5);
    check1("sum over the size-1 axes", &x, EXACT, |x| {
        x.sum_axes(&[1, 3])
    });
    check1("max over a size-1 axis", &x, EXACT, |x| {
        x.max_axes_keepdim(&[1])
    });
    check1("argmax over a size-1 axis is 0", &x, EXACT, |x| x.argmax(3));
    check1("mean over a size-1 axis", &x, EXACT, |x| x.mean_axes(&[1]));
    let one = pair(&[1, 1], 6);
    check1("sum of [1,1]", &one, EXACT, |x| x.sum());
    check1("argmin of [1,1]", &one, EXACT, |x| {
        x.argmin_axes_keepdim(&[0, 1])
    });
    let s = pair(&[], 7);
    check1("sum of a scalar", &s, EXACT, |x| x.sum());
    check1("max of a scalar", &s, EXACT, |x| x.max());
}

#[test]
fn empty_reductions_give_the_identity() {
    let e = pair(&[0, 3], 8);
    check1("[0,3] sum over 0 is 0", &e, EXACT, |x| x.sum_axes(&[0]));
    check1("[0,3] sum() is 0", &e, EXACT, |x| x.sum());
    check1("[0,3] sum over 1 is empty", &e, EXACT, |x| {
        x.sum_axes_keepdim(&[1])
    });
    check1("[0,3] max over 1 is empty", &e, EXACT, |x| x.max_axes(&[1]));
    let z = pair(&[3, 0], 9);
    check1("[3,0] sum over 1 is 0", &z, EXACT, |x| x.sum_axes(&[1]));
    check1("[3,0] sum of exp over 1 is 0", &z, EXACT, |x| {
        x.exp().sum_axes_keepdim(&[1])
    });
    check1("[3,0] sum over both is 0", &z, EXACT, |x| {
        x.sum_axes(&[0, 1])
    });
    let i = pair_i32(&[3, 0], 10, 0, 1);
    check1("i32 [3,0] sum is 0", &i, EXACT, |x| x.sum_axes(&[1]));
}

#[test]
fn reductions_of_integer_bool_and_f16_tensors() {
    let i = pair_i32(&[7, 40], 11, -1000, 1000);
    for axes in [vec![0], vec![1], vec![0, 1]] {
        check1(&format!("i32 sum over {axes:?}"), &i, EXACT, |x| {
            x.sum_axes(&axes)
        });
        check1(&format!("i32 max over {axes:?}"), &i, EXACT, |x| {
            x.max_axes_keepdim(&axes)
        });
        check1(&format!("i32 min over {axes:?}"), &i, EXACT, |x| {
            x.min_axes(&axes)
        });
        check1(&format!("i32 argmax over {axes:?}"), &i, EXACT, |x| {
            x.argmax_axes(&axes)
        });
    }
    check1(
        "i32 full sum (tree)",
        &pair_i32(&[5000], 12, -9, 9),
        EXACT,
        |x| x.sum(),
    );
    check1(
        "i32 min of a large group (tree)",
        &pair_i32(&[2, 5000], 13, -99, 99),
        EXACT,
        |x| x.min_axes(&[1]),
    );
    let u: Vec<u32> = Rng::new(14)
        .ints(600, 0, 100_000)
        .iter()
        .map(|&v| v as u32)
        .collect();
    let u = pair_of(&u, &[6, 100]);
    check1("u32 sum", &u, EXACT, |x| x.sum_axes(&[1]));
    check1("u32 max, min", &u, EXACT, |x| {
        x.max_axes(&[0]) - x.min_axes(&[0])
    });
    check1("u32 argmin", &u, EXACT, |x| x.argmin(1));
    let b = (i.0.gt(&i.0.scalar_like(0.0)), i.1.gt(&i.1.scalar_like(0.0)));
    check1("bool sum counts (i32)", &b, EXACT, |x| x.sum_axes(&[1]));
    check1("bool full sum", &b, EXACT, |x| x.sum());
    check1("bool max", &b, EXACT, |x| x.max_axes(&[0]));
    check1("bool argmax", &b, EXACT, |x| x.argmax(1));
    let h: Vec<f16> = common::values(800, 15)
        .iter()
        .map(|&v| f16::from_f32(v))
        .collect();
    let h = pair_of(&h, &[8, 100]);
    check1("f16 sum (accumulated in f32)", &h, (2e-2, 2e-3), |x| {
        x.sum_axes(&[1])
    });
    check1("f16 max", &h, EXACT, |x| x.max_axes(&[1]));
    check1("f16 argmin", &h, EXACT, |x| x.argmin(0));
    check1("f16 mean", &h, (1e-3, 2e-3), |x| x.mean_axes_keepdim(&[0]));
}

#[test]
fn nan_in_reductions_follows_the_reference() {
    let nan = f32::NAN;
    let v = vec![1.0, nan, 3.0, nan, 0.0, 2.0, -1.0, 5.0, 4.0];
    let x = pair_of(&v, &[3, 3]);
    check1("max with NaN", &x, EXACT, |x| x.max_axes(&[1]));
    check1("min with NaN", &x, EXACT, |x| x.min_axes(&[0]));
    check1("argmax is the first NaN", &x, EXACT, |x| x.argmax(1));
    check1("argmin is the first NaN", &x, EXACT, |x| x.argmin(0));
    check1("sum with NaN", &x, EXACT, |x| x.sum_axes(&[1]));
    // The workgroup tree, with NaN in different invocations' strides.
    let mut w = common::values(2 * 5000, 16);
    w[1234] = nan;
    w[4321] = nan;
    w[5000 + 4999] = nan;
    let y = pair_of(&w, &[2, 5000]);
    check1("max with NaN (tree)", &y, EXACT, |x| x.max_axes(&[1]));
    check1("min with NaN (tree)", &y, EXACT, |x| x.min_axes(&[1]));
    check1("argmax is the first NaN (tree)", &y, EXACT, |x| x.argmax(1));
    check1("argmin is the first NaN (tree)", &y, EXACT, |x| x.argmin(1));
}

#[test]
fn large_groups_use_the_workgroup_tree() {
    // Few outputs with long groups: one workgroup per output, 64 or 256 invocations.
    for shape in [[3usize, 100], [4, 1000], [2, 4097], [1, 20_000]] {
        let x = pair(&shape, 17);
        let n = shape[1];
        let what = format!("{shape:?}");
        check1(&format!("sum of {what}"), &x, dot_tol(n), |x| {
            x.sum_axes(&[1])
        });
        check1(&format!("max of {what}"), &x, EXACT, |x| {
            x.max_axes_keepdim(&[1])
        });
        check1(&format!("argmin of {what}"), &x, EXACT, |x| x.argmin(1));
        check1(&format!("sum over 0 of {what}.t()"), &x, dot_tol(n), |x| {
            x.t().sum_axes(&[0])
        });
    }
    // Many outputs with medium groups: one invocation per output.
    let x = pair(&[9000, 70], 18);
    check1("sum of [9000, 70] over 1", &x, dot_tol(70), |x| {
        x.sum_axes(&[1])
    });
    check1("argmax of [9000, 70] over 1", &x, EXACT, |x| {
        x.argmax_keepdim(1)
    });
}

#[test]
fn prologues_and_epilogues_fuse_into_reductions() {
    let x = pair(&[12, 33], 19);
    let b = pair(&[12, 1], 20);
    check1("sum of exp", &x, TRANSC, |x| x.exp().sum_axes(&[1]));
    check2("max of x * b + 1", &x, &b, ARITH, |x, b| {
        (x * b + 1.0).max_axes_keepdim(&[1])
    });
    check2("sum then * b then relu", &x, &b, dot_tol(33), |x, b| {
        (x.sum_axes_keepdim(&[1]) * b).relu()
    });
    check1("softmax", &x, TRANSC, |x| {
        let e = (x - x.max_axes_keepdim(&[1])).exp();
        &e / &e.sum_axes_keepdim(&[1])
    });
    check1("log-sum-exp over 0", &x, TRANSC, |x| {
        let m = x.max_axes_keepdim(&[0]);
        (x - &m).exp().sum_axes_keepdim(&[0]).log() + m
    });
    check1("argmax of a transposed prologue", &x, EXACT, |x| {
        (x.t() * -1.0).argmax(0)
    });
    check1("mean then var of the same input", &x, dot_tol(33), |x| {
        x.mean_axes(&[1]) + x.var_axes(&[1])
    });
    check1("reduction of a reduction", &x, dot_tol(33 * 12), |x| {
        x.sum_axes(&[1]).max_axes(&[0]) + x.sum_axes_keepdim(&[0]).sum()
    });
}

#[test]
fn sum_over_axis_1_of_a_70000_by_300_tensor() {
    // 21 million elements; the values come from a generator folded into the reduction.
    let g = Tensor::rand([70_000, 300], 21, &gpu()).sum_axes(&[1]);
    let c = Tensor::rand([70_000, 300], 21, &cpu()).sum_axes(&[1]);
    close("row sums of rand [70000, 300]", &g, &c, dot_tol(300));
    // The same as columns: 300 outputs of 70,000 each, one workgroup per output.
    let g = Tensor::rand([70_000, 300], 22, &gpu()).max_axes(&[0]);
    let c = Tensor::rand([70_000, 300], 22, &cpu()).max_axes(&[0]);
    close("column maxima of rand [70000, 300]", &g, &c, EXACT);
}

#[test]
fn long_sums_into_few_outputs_run_in_two_stages() {
    // At least 2^16 elements per output into fewer than 64 outputs: partial sums over chunks
    // of 4,096 (the last one zero-padded), then their sum. Non-contiguous axes, a fused
    // prologue, keepdim, integers, and the gradient (ones) through the chunked views.
    let x = pair(&[3, 70_001, 2], 23);
    check1("sum over 1 of [3, 70001, 2]", &x, dot_tol(70_001), |x| {
        x.sum_axes(&[1])
    });
    check1("mean of squares over 0 and 2", &x, dot_tol(70_001), |x| {
        (x * x).mean_axes_keepdim(&[0, 2])
    });
    check1("sum of everything", &x, dot_tol(210_003), |x| x.sum());
    let i = pair_i32(&[131_075], 24, -5, 6);
    check1("integer sum", &i, EXACT, |i| i.sum());
    let dev = fresh_gpu();
    let x = Tensor::rand([300_000], 25, &dev);
    x.realize().unwrap();
    let before = dev.stats().dispatches;
    let total = x.sum().item::<f32>().unwrap();
    assert_eq!(
        dev.stats().dispatches - before,
        2,
        "partial sums, then their sum"
    );
    let expected: f64 = x.to_vec::<f32>().unwrap().iter().map(|&v| v as f64).sum();
    assert!(
        (total as f64 - expected).abs() < 1e-3 * expected,
        "{total} vs {expected}"
    );
    let w = parameter(Tensor::rand([70_000], 26, &dev));
    let grads = (&w * 2.0).sum().backward();
    let g = grads.get(&w).unwrap().to_vec::<f32>().unwrap();
    assert!(g.iter().all(|&v| v == 2.0), "d(sum(2w))/dw = 2 everywhere");
}

#[test]
fn more_than_65535_workgroups_are_split_over_dimensions() {
    // 4.2 million outputs, one invocation each, 64 per workgroup: 65,625 workgroups.
    let g = Tensor::rand([4_200_000, 4], 23, &gpu()).sum_axes(&[1]);
    let c = Tensor::rand([4_200_000, 4], 23, &cpu()).sum_axes(&[1]);
    close("sum over 1 of rand [4200000, 4]", &g, &c, ARITH);
    // 17 million elements written by an elementwise kernel: 66,407 workgroups of 256.
    let g = Tensor::rand([17_000_000], 24, &gpu());
    let c = Tensor::rand([17_000_000], 24, &cpu());
    g.realize().unwrap();
    c.realize().unwrap();
    bit_identical("rand [17000000] realized", &g, &c);
    // A full sum of it: the orders of summation differ, so compare relatively.
    let (gs, cs) = (g.sum(), c.sum());
    close("sum() of 17 million uniform values", &gs, &cs, (0.0, 1e-4));
    // The largest of 17 million draws of 2^24 levels is likely drawn more than once: the first
    // index must win, in a loop long enough to take several positions per iteration.
    close("argmax of 17 million", &g.argmax(0), &c.argmax(0), EXACT);
    close("min of 17 million", &g.min(), &c.min(), EXACT);
    let expected = 8.5e6;
    let got = gs.item::<f32>().unwrap() as f64;
    assert!(
        (got - expected).abs() < 1e-2 * expected,
        "sum {got} is far from {expected}"
    );
    // And straight from the generator, without the intermediate buffer.
    let g = Tensor::rand([17_000_000], 25, &gpu()).sum();
    let c = Tensor::rand([17_000_000], 25, &cpu()).sum();
    close("sum() of rand [17000000] fused", &g, &c, (0.0, 1e-4));
}

#[test]
fn two_reductions_meeting_in_one_epilogue() {
    // Both reductions have an epilogue chain up to the same add: one kernel takes the chain,
    // the other stops below it.
    let x = pair(&[6, 40], 26);
    check1("(sum + max) * 2", &x, dot_tol(6), |x| {
        (x.sum_axes(&[0]) + x.max_axes(&[0])) * 2.0
    });
    check1("sum() + max() + argmax()", &x, dot_tol(240), |x| {
        x.sum() + x.max().exp() + x.argmax_axes(&[0, 1]).cast(DType::F32)
    });
    check1(
        "mean - min over different axes, broadcast",
        &x,
        dot_tol(40),
        |x| {
            (x.mean_axes_keepdim(&[1]) - x.min_axes_keepdim(&[1])).sqrt() / x.sum_axes_keepdim(&[1])
        },
    );
    let w = pair(&[40, 5], 27);
    check2(
        "matmul + reduction in one epilogue",
        &x,
        &w,
        dot_tol(40),
        |x, w| (x.matmul(w) + x.sum_axes_keepdim(&[1])).relu() * 0.5,
    );
    check2("two matmuls added", &x, &w, dot_tol(40), |x, w| {
        x.matmul(w) + x.exp().matmul(&w.flip(&[0])) - 1.0
    });
}
