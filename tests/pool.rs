//! Max, average and adaptive pooling: the course's worked examples, PyTorch's definitions written
//! as plain loops (on the CPU reference device and the GPU), and gradients.

mod common;
use common::*;
use kiln::prelude::*;

fn devices() -> [Device; 2] {
    [Device::cpu(), gpu()]
}

#[track_caller]
fn assert_values(got: &Tensor, expected: &[f32], dims: &[usize], tol: f32) {
    assert_eq!(got.dims(), dims, "shape on {}", got.device().name());
    let g = got.to_vec::<f32>().unwrap();
    for (i, (a, e)) in g.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * (1.0 + e.abs()),
            "element {i} of {dims:?} on {}: got {a}, expected {e}",
            got.device().name()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PyTorch's definitions as loops.

/// PyTorch's pooling output size (with the ceil-mode rule that the last window starts inside the
/// input or the left padding).
fn out_size(n: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> usize {
    let room = n + 2 * p - d * (k - 1) - 1;
    let mut o = if ceil { room.div_ceil(s) } else { room / s } + 1;
    if ceil && (o - 1) * s >= n + p {
        o -= 1;
    }
    o
}

/// max_pool2d / avg_pool2d over `[N, C, H, W]` (`max` picks which), following PyTorch's CPU
/// kernels: windows clipped to the input; the average divides by the window clipped to the
/// padded input (count_include_pad) or to the input.
fn pool_ref(x: &[f32], xd: [usize; 4], o: &Pool2dOptions, max: bool) -> (Vec<f32>, [usize; 4]) {
    let [n, c, h, w] = xd;
    let oh = out_size(
        h,
        o.kernel[0],
        o.stride[0],
        o.padding[0],
        o.dilation[0],
        o.ceil_mode,
    );
    let ow = out_size(
        w,
        o.kernel[1],
        o.stride[1],
        o.padding[1],
        o.dilation[1],
        o.ceil_mode,
    );
    let mut out = vec![];
    for plane in 0..n * c {
        let at = |y: usize, x_: usize| x[(plane * h + y) * w + x_] as f64;
        for oy in 0..oh {
            for ox in 0..ow {
                let y0 = (oy * o.stride[0]) as isize - o.padding[0] as isize;
                let x0 = (ox * o.stride[1]) as isize - o.padding[1] as isize;
                if max {
                    let mut m = f64::NEG_INFINITY;
                    for ky in 0..o.kernel[0] {
                        for kx in 0..o.kernel[1] {
                            let y = y0 + (ky * o.dilation[0]) as isize;
                            let xx = x0 + (kx * o.dilation[1]) as isize;
                            if y >= 0 && xx >= 0 && y < h as isize && xx < w as isize {
                                m = m.max(at(y as usize, xx as usize));
                            }
                        }
                    }
                    out.push(m as f32);
                } else {
                    let y1 = (y0 + o.kernel[0] as isize).min((h + o.padding[0]) as isize);
                    let x1 = (x0 + o.kernel[1] as isize).min((w + o.padding[1]) as isize);
                    let pool_size = (y1 - y0) * (x1 - x0);
                    let (ys, xs) = (y0.max(0), x0.max(0));
                    let (ye, xe) = (y1.min(h as isize), x1.min(w as isize));
                    let mut sum = 0.0;
                    for y in ys..ye {
                        for xx in xs..xe {
                            sum += at(y as usize, xx as usize);
                        }
                    }
                    let count = if o.count_include_pad {
                        pool_size
                    } else {
                        (ye - ys) * (xe - xs)
                    };
                    out.push((sum / count as f64) as f32);
                }
            }
        }
    }
    (out, [n, c, oh, ow])
}

/// adaptive_{avg,max}_pool2d: output (i, j) pools rows floor(i H / OH)..ceil((i + 1) H / OH)
/// and columns likewise.
fn adaptive_ref(x: &[f32], xd: [usize; 4], out: [usize; 2], max: bool) -> (Vec<f32>, [usize; 4]) {
    let [n, c, h, w] = xd;
    let [oh, ow] = out;
    let mut r = vec![];
    for plane in 0..n * c {
        for i in 0..oh {
            for j in 0..ow {
                let (y0, y1) = (i * h / oh, ((i + 1) * h).div_ceil(oh));
                let (x0, x1) = (j * w / ow, ((j + 1) * w).div_ceil(ow));
                let mut acc = if max { f64::NEG_INFINITY } else { 0.0 };
                for y in y0..y1 {
                    for xx in x0..x1 {
                        let v = x[(plane * h + y) * w + xx] as f64;
                        acc = if max { acc.max(v) } else { acc + v };
                    }
                }
                if !max {
                    acc /= ((y1 - y0) * (x1 - x0)) as f64;
                }
                r.push(acc as f32);
            }
        }
    }
    (r, [n, c, oh, ow])
}

// ---------------------------------------------------------------------------------------------
// The course's worked examples.

#[test]
fn course_example_2x2_pools_with_stride_1() {
    for dev in devices() {
        let x = Tensor::arange(0.0, 9.0, 1.0, &dev).reshape([1, 1, 3, 3]);
        let opts = Pool2dOptions::new(2).stride(1);
        assert_values(
            &x.max_pool2d(&opts),
            &[4.0, 5.0, 7.0, 8.0],
            &[1, 1, 2, 2],
            0.0,
        );
        assert_values(
            &x.avg_pool2d(&opts),
            &[2.0, 3.0, 5.0, 6.0],
            &[1, 1, 2, 2],
            0.0,
        );
        // Unbatched [C, H, W] input.
        let x3 = x.reshape([1, 3, 3]);
        assert_values(
            &x3.max_pool2d(&opts),
            &[4.0, 5.0, 7.0, 8.0],
            &[1, 2, 2],
            0.0,
        );
    }
}

#[test]
fn course_example_2x2_pools_with_stride_2() {
    #[rustfmt::skip]
    let image = [
        12.0, 20.0, 30.0, 0.0,
        20.0, 12.0, 2.0, 0.0,
        0.0, 70.0, 5.0, 2.0,
        8.0, 2.0, 90.0, 3.0,
    ];
    for dev in devices() {
        let x = Tensor::from_slice(&image, [1, 1, 4, 4], &dev).unwrap();
        let opts = Pool2dOptions::new(2);
        assert_values(
            &x.avg_pool2d(&opts),
            &[16.0, 8.0, 20.0, 25.0],
            &[1, 1, 2, 2],
            0.0,
        );
        assert_values(
            &x.max_pool2d(&opts),
            &[20.0, 30.0, 70.0, 90.0],
            &[1, 1, 2, 2],
            0.0,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Against the loops, on both devices.

#[track_caller]
fn check_pool(shape: [usize; 4], opts: Pool2dOptions, max: bool, seed: u64) {
    let (xg, xc) = pair(&shape, seed);
    let (expected, dims) = pool_ref(&values(shape.iter().product(), seed), shape, &opts, max);
    for x in [xg, xc] {
        let y = if max {
            x.max_pool2d(&opts)
        } else {
            x.avg_pool2d(&opts)
        };
        assert_values(&y, &expected, &dims, 1e-5);
    }
}

#[test]
fn max_pool2d_matches_reference() {
    let p = Pool2dOptions::new;
    check_pool([2, 3, 7, 7], p(3).stride(2), true, 1); // overlapping windows
    check_pool([1, 2, 6, 5], p(3).stride(2).padding(1), true, 2);
    check_pool([1, 2, 9, 8], p(3).stride(1).padding(1).dilation(2), true, 3);
    check_pool([1, 2, 8, 7], p(3).stride(2).ceil_mode(true), true, 4);
    check_pool([1, 1, 5, 5], p(2).padding(1).ceil_mode(true), true, 5); // last window dropped
    check_pool([1, 2, 7, 8], p(3).ceil_mode(true), true, 6); // partial last window kept
    check_pool(
        [2, 1, 9, 9],
        p(3).stride(2).dilation(2).ceil_mode(true),
        true,
        7,
    );
    let mut asym = p(2);
    asym.kernel = [2, 3];
    asym.stride = [1, 2];
    asym.padding = [1, 1];
    check_pool([1, 2, 5, 8], asym, true, 8);
    // All-negative inputs: the -inf padding, not a zero, must lose.
    let dev = Device::cpu();
    let x = Tensor::full([1, 1, 2, 2], -3.0, &dev);
    let y = x.max_pool2d(&p(2).stride(1).padding(1));
    assert_values(&y, &[-3.0; 9], &[1, 1, 3, 3], 0.0);
    let x = Tensor::full([1, 1, 2, 2], -3.0, &gpu());
    assert_values(
        &x.max_pool2d(&p(2).stride(1).padding(1)),
        &[-3.0; 9],
        &[1, 1, 3, 3],
        0.0,
    );
}

#[test]
fn avg_pool2d_matches_reference() {
    let p = Pool2dOptions::new;
    check_pool([2, 3, 7, 7], p(3).stride(2), false, 11);
    check_pool([1, 2, 6, 5], p(3).stride(2).padding(1), false, 12);
    check_pool(
        [1, 2, 6, 5],
        p(3).stride(2).padding(1).count_include_pad(false),
        false,
        13,
    );
    check_pool([1, 2, 8, 7], p(3).stride(2).ceil_mode(true), false, 14);
    check_pool(
        [1, 2, 8, 7],
        p(3).stride(2).ceil_mode(true).count_include_pad(false),
        false,
        15,
    );
    check_pool([1, 1, 6, 7], p(2).padding(1).ceil_mode(true), false, 16);
    check_pool(
        [1, 1, 7, 6],
        p(3).stride(2)
            .padding(1)
            .ceil_mode(true)
            .count_include_pad(false),
        false,
        17,
    );
    check_pool(
        [1, 1, 7, 6],
        p(3).stride(2).padding(1).ceil_mode(true),
        false,
        18,
    );
}

#[track_caller]
fn check_adaptive(shape: [usize; 4], out: [usize; 2], seed: u64) {
    let (xg, xc) = pair(&shape, seed);
    let v = values(shape.iter().product(), seed);
    let (avg, dims) = adaptive_ref(&v, shape, out, false);
    let (max, _) = adaptive_ref(&v, shape, out, true);
    for x in [xg, xc] {
        assert_values(&x.adaptive_avg_pool2d(out), &avg, &dims, 1e-5);
        assert_values(&x.adaptive_max_pool2d(out), &max, &dims, 1e-5);
    }
}

#[test]
fn adaptive_pools_match_reference() {
    check_adaptive([1, 2, 5, 5], [3, 3], 21); // neither divides
    check_adaptive([2, 2, 5, 7], [3, 4], 22);
    check_adaptive([1, 2, 6, 6], [3, 2], 23); // both divide: a plain pool
    check_adaptive([1, 2, 6, 5], [2, 3], 24); // one divides
    check_adaptive([2, 3, 4, 4], [1, 1], 25); // global pooling
    check_adaptive([1, 1, 3, 3], [5, 4], 26); // more outputs than inputs
                                              // Unbatched.
    let x = Tensor::arange(0.0, 25.0, 1.0, &Device::cpu()).reshape([1, 5, 5]);
    let (avg, _) = adaptive_ref(
        &(0..25).map(|v| v as f32).collect::<Vec<_>>(),
        [1, 1, 5, 5],
        [3, 3],
        false,
    );
    assert_values(&x.adaptive_avg_pool2d([3, 3]), &avg, &[1, 3, 3], 1e-6);
}

// ---------------------------------------------------------------------------------------------
// Misuse.

#[test]
#[should_panic(expected = "avg_pool2d: dilation must be 1")]
fn avg_pool2d_rejects_dilation() {
    let _ =
        Tensor::ones([1, 1, 6, 6], &Device::cpu()).avg_pool2d(&Pool2dOptions::new(2).dilation(2));
}

#[test]
#[should_panic(expected = "max_pool2d: padding [2, 2] must be at most half the kernel [3, 3]")]
fn max_pool2d_rejects_padding_over_half_the_kernel() {
    let _ =
        Tensor::ones([1, 1, 6, 6], &Device::cpu()).max_pool2d(&Pool2dOptions::new(3).padding(2));
}

#[test]
#[should_panic(expected = "max_pool2d: the input must be [N, C, H, W] or [C, H, W], got [6, 6]")]
fn max_pool2d_rejects_a_matrix() {
    let _ = Tensor::ones([6, 6], &Device::cpu()).max_pool2d(&Pool2dOptions::new(2));
}

// ---------------------------------------------------------------------------------------------
// Gradients.

fn both(f: impl Fn(&[Tensor]) -> Tensor + Copy, shapes: &[&[usize]], seed: u64) {
    check_gradients(f, shapes, seed);
    check_gpu_gradients(f, shapes, seed);
}

#[test]
fn gradients_of_max_pool2d() {
    let p = Pool2dOptions::new;
    both(|x| x[0].max_pool2d(&p(3).stride(2)), &[&[1, 2, 5, 5]], 31);
    both(
        |x| x[0].max_pool2d(&p(2).padding(1).ceil_mode(true)),
        &[&[1, 2, 5, 4]],
        32,
    );
    both(
        |x| x[0].max_pool2d(&p(2).stride(1).dilation(2)),
        &[&[1, 1, 5, 6]],
        33,
    );
}

#[test]
fn gradients_of_avg_pool2d() {
    let p = Pool2dOptions::new;
    both(|x| x[0].avg_pool2d(&p(3).stride(2)), &[&[1, 2, 5, 5]], 41);
    both(
        |x| {
            x[0].avg_pool2d(
                &p(3)
                    .stride(2)
                    .padding(1)
                    .ceil_mode(true)
                    .count_include_pad(false),
            )
        },
        &[&[1, 1, 6, 7]],
        42,
    );
}

#[test]
fn gradients_of_adaptive_pools() {
    both(|x| x[0].adaptive_avg_pool2d([3, 2]), &[&[1, 2, 5, 5]], 51);
    both(|x| x[0].adaptive_max_pool2d([3, 3]), &[&[1, 2, 5, 4]], 52);
    both(|x| x[0].adaptive_avg_pool2d([2, 2]), &[&[1, 2, 4, 6]], 53);
}

#[test]
fn the_adaptive_pool_and_identity_modules() {
    use kiln::nn::{AdaptiveAvgPool2d, Identity, Module};
    let f32s = |t: &Tensor| t.to_vec::<f32>().unwrap();
    let (g, c) = pair(&[2, 3, 7, 5], 4);
    let pool = AdaptiveAvgPool2d::new([3, 2]);
    assert_eq!(pool.forward(&c).dims(), &[2, 3, 3, 2]);
    assert_close(
        &pool.forward(&g),
        &c.adaptive_avg_pool2d([3, 2]),
        1e-6,
        1e-6,
    );
    assert_eq!(f32s(&Identity.forward(&c)), f32s(&c));
    assert!(pool.named_parameters().is_empty() && Identity.named_parameters().is_empty());
}
