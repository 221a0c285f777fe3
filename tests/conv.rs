//! Convolution and transposed convolution: the course's worked examples, plain-loop references on
//! random shapes (CPU reference device and GPU), the output-size formula, and gradients.

mod common;
use common::*;
use kiln::conv_output_size;
use kiln::prelude::*;
use kiln::wgpu_backend::WgpuOptions;

fn devices() -> [Device; 2] {
    [Device::cpu(), gpu()]
}

fn tensor(v: &[f32], shape: &[usize], dev: &Device) -> Tensor {
    Tensor::from_slice(v, shape, dev).unwrap()
}

// ---------------------------------------------------------------------------------------------
// References, written as plain loops straight from the definitions.

/// The geometry of a reference convolution.
#[derive(Clone, Copy, Debug)]
struct Geo {
    stride: [usize; 2],
    /// top, bottom, left, right
    pad: [usize; 4],
    dilation: [usize; 2],
    groups: usize,
}

/// conv2d as PyTorch defines it: out[n, o, y, x] = b[o] + sum over c in o's group, ky, kx of
/// in[n, c, y s - top + ky d, x s - left + kx d] w[o, c - group start, ky, kx].
fn conv_ref(
    x: &[f32],
    xd: [usize; 4],
    w: &[f32],
    wd: [usize; 4],
    b: Option<&[f32]>,
    g: Geo,
) -> (Vec<f32>, [usize; 4]) {
    let [n, c, h, wi] = xd;
    let [o, cg, kh, kw] = wd;
    assert_eq!(cg * g.groups, c);
    let oh = (h + g.pad[0] + g.pad[1] - g.dilation[0] * (kh - 1) - 1) / g.stride[0] + 1;
    let ow = (wi + g.pad[2] + g.pad[3] - g.dilation[1] * (kw - 1) - 1) / g.stride[1] + 1;
    let og = o / g.groups;
    let mut out = vec![0.0f32; n * o * oh * ow];
    for ni in 0..n {
        for oi in 0..o {
            let grp = oi / og;
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b[oi] as f64);
                    for ci in 0..cg {
                        let cin = grp * cg + ci;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (y * g.stride[0] + ky * g.dilation[0]) as isize
                                    - g.pad[0] as isize;
                                let ix = (xo * g.stride[1] + kx * g.dilation[1]) as isize
                                    - g.pad[2] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wi as isize {
                                    continue;
                                }
                                let xv = x[((ni * c + cin) * h + iy as usize) * wi + ix as usize];
                                let wv = w[((oi * cg + ci) * kh + ky) * kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out[((ni * o + oi) * oh + y) * ow + xo] = acc as f32;
                }
            }
        }
    }
    (out, [n, o, oh, ow])
}

/// conv_transpose2d as a scatter: input (n, ci, ih, iw) adds x w[ci, co, kh, kw] to output
/// (n, group start + co, ih s - p + kh d, iw s - p + kw d).
fn conv_transpose_ref(
    x: &[f32],
    xd: [usize; 4],
    w: &[f32],
    wd: [usize; 4],
    b: Option<&[f32]>,
    o: &ConvTranspose2dOptions,
) -> (Vec<f32>, [usize; 4]) {
    let [n, cin, h, wi] = xd;
    let [wc, cog, kh, kw] = wd;
    assert_eq!(wc, cin);
    let (s, p, op, d, g) = (o.stride, o.padding, o.output_padding, o.dilation, o.groups);
    let oh = (h - 1) * s[0] + d[0] * (kh - 1) + op[0] + 1 - 2 * p[0];
    let ow = (wi - 1) * s[1] + d[1] * (kw - 1) + op[1] + 1 - 2 * p[1];
    let cout = cog * g;
    let mut out = vec![0.0f64; n * cout * oh * ow];
    for ni in 0..n {
        for ci in 0..cin {
            let grp = ci / (cin / g);
            for ih in 0..h {
                for iw in 0..wi {
                    let xv = x[((ni * cin + ci) * h + ih) * wi + iw] as f64;
                    for co in 0..cog {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let oy = (ih * s[0] + ky * d[0]) as isize - p[0] as isize;
                                let ox = (iw * s[1] + kx * d[1]) as isize - p[1] as isize;
                                if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                    continue;
                                }
                                let wv = w[((ci * cog + co) * kh + ky) * kw + kx] as f64;
                                let c = grp * cog + co;
                                out[((ni * cout + c) * oh + oy as usize) * ow + ox as usize] +=
                                    xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(b) = b {
        for (i, v) in out.iter_mut().enumerate() {
            *v += b[(i / (oh * ow)) % cout] as f64;
        }
    }
    (
        out.into_iter().map(|v| v as f32).collect(),
        [n, cout, oh, ow],
    )
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
// The course's worked examples.

#[test]
fn course_example_3x3_input_2x2_kernel() {
    for dev in devices() {
        let x = Tensor::arange(0.0, 9.0, 1.0, &dev).reshape([1, 1, 3, 3]);
        let k = tensor(&[0.0, 1.0, 2.0, 3.0], &[1, 1, 2, 2], &dev);
        let y = x.conv2d(&k, None, &Conv2dOptions::default());
        assert_values(&y, &[19.0, 25.0, 37.0, 43.0], &[1, 1, 2, 2], 0.0);

        let y = x.conv2d(&k, None, &Conv2dOptions::default().padding(1));
        #[rustfmt::skip]
        let expected = [
            0.0, 3.0, 8.0, 4.0,
            9.0, 19.0, 25.0, 10.0,
            21.0, 37.0, 43.0, 16.0,
            6.0, 7.0, 8.0, 0.0,
        ];
        assert_values(&y, &expected, &[1, 1, 4, 4], 0.0);

        // Unbatched [C, H, W] input works too.
        let y = x
            .reshape([1, 3, 3])
            .conv2d(&k, None, &Conv2dOptions::default());
        assert_values(&y, &[19.0, 25.0, 37.0, 43.0], &[1, 2, 2], 0.0);
    }
}

#[test]
fn course_example_7x7_input_3x3_kernel_stride_2() {
    for dev in devices() {
        let x = Tensor::ones([1, 1, 7, 7], &dev);
        let k = Tensor::ones([1, 1, 3, 3], &dev);
        let y = x.conv2d(&k, None, &Conv2dOptions::default().stride(2));
        assert_values(&y, &[9.0; 9], &[1, 1, 3, 3], 0.0);
    }
}

#[test]
fn course_example_vertical_edge_detector() {
    for dev in devices() {
        let rows = 6;
        let image: Vec<f32> = (0..rows)
            .flat_map(|_| [0.0, 255.0, 255.0, 255.0, 0.0])
            .collect();
        let x = tensor(&image, &[1, 1, rows, 5], &dev);
        let k = tensor(
            &[1.0, 0.0, -1.0, 1.0, 0.0, -1.0, 1.0, 0.0, -1.0],
            &[1, 1, 3, 3],
            &dev,
        );
        let y = x.conv2d(&k, None, &Conv2dOptions::default());
        let expected: Vec<f32> = (0..rows - 2).flat_map(|_| [-765.0, 0.0, 765.0]).collect();
        assert_values(&y, &expected, &[1, 1, rows - 2, 3], 0.0);
    }
}

#[test]
fn output_size_formula_matches_the_output_shape() {
    let mut checked = 0;
    for dev in devices() {
        for n in [5, 6, 7, 8] {
            for k in [1, 2, 3] {
                for s in [1, 2, 3] {
                    for p in [0, 1, 2] {
                        for d in [1, 2] {
                            if n + 2 * p < d * (k - 1) + 1 {
                                continue;
                            }
                            let expected = (n + 2 * p - d * (k - 1) - 1) / s + 1;
                            assert_eq!(conv_output_size(n, k, s, 2 * p, d), expected);
                            let x = Tensor::ones([1, 1, n, n + 1], &dev);
                            let w = Tensor::ones([1, 1, k, k], &dev);
                            let opts = Conv2dOptions::default().stride(s).padding(p).dilation(d);
                            let y = x.conv2d(&w, None, &opts);
                            let ow = conv_output_size(n + 1, k, s, 2 * p, d);
                            assert_eq!(y.dims(), [1, 1, expected, ow], "n{n} k{k} s{s} p{p} d{d}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        // One of them computed, to see that the shape is not all there is.
        let x = Tensor::arange(0.0, 64.0, 1.0, &dev).reshape([1, 1, 8, 8]);
        let w = Tensor::ones([1, 1, 3, 3], &dev);
        let y = x.conv2d(&w, None, &Conv2dOptions::default().stride(3).padding(1));
        let (r, _) = conv_ref(
            &(0..64).map(|v| v as f32).collect::<Vec<_>>(),
            [1, 1, 8, 8],
            &[1.0; 9],
            [1, 1, 3, 3],
            None,
            Geo {
                stride: [3, 3],
                pad: [1; 4],
                dilation: [1, 1],
                groups: 1,
            },
        );
        assert_values(&y, &r, &[1, 1, 3, 3], 1e-6);
    }
    assert!(checked > 100);
}

// ---------------------------------------------------------------------------------------------
// Random shapes against the plain-loop reference.

struct Case {
    x: [usize; 4],
    w: [usize; 4],
    opts: Conv2dOptions,
    bias: bool,
}

/// The explicit (top, bottom, left, right) padding PyTorch applies for `opts`.
fn explicit_pad(opts: &Conv2dOptions, w: [usize; 4]) -> [usize; 4] {
    match opts.padding {
        Padding::Valid => [0; 4],
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => [top, bottom, left, right],
        Padding::Same => {
            let th = opts.dilation[0] * (w[2] - 1);
            let tw = opts.dilation[1] * (w[3] - 1);
            [th / 2, th - th / 2, tw / 2, tw - tw / 2]
        }
    }
}

#[test]
fn conv2d_matches_reference_on_random_shapes() {
    let d = Conv2dOptions::default();
    let cases = [
        Case {
            x: [2, 3, 7, 6],
            w: [4, 3, 3, 3],
            opts: d.stride(2).padding(1),
            bias: true,
        },
        Case {
            x: [1, 2, 6, 7],
            w: [3, 2, 3, 2],
            opts: Conv2dOptions {
                padding: Padding::Explicit {
                    top: 2,
                    bottom: 0,
                    left: 1,
                    right: 3,
                },
                ..d
            },
            bias: false,
        },
        Case {
            x: [2, 3, 5, 6],
            w: [2, 3, 3, 4],
            opts: d.same(),
            bias: true,
        },
        Case {
            x: [1, 2, 6, 5],
            w: [2, 2, 2, 3],
            opts: d.same().dilation(2),
            bias: false,
        },
        Case {
            x: [1, 2, 9, 8],
            w: [3, 2, 3, 3],
            opts: d.dilation(2).padding(2),
            bias: true,
        },
        Case {
            x: [2, 4, 6, 6],
            w: [6, 2, 3, 3],
            opts: d.groups(2).padding(1),
            bias: true,
        },
        Case {
            x: [1, 3, 6, 5],
            w: [3, 1, 3, 3],
            opts: d.groups(3).padding(1),
            bias: true,
        },
        Case {
            x: [1, 3, 8, 9],
            w: [6, 1, 3, 3],
            opts: d.groups(3).stride(2),
            bias: false,
        },
        Case {
            x: [2, 2, 9, 10],
            w: [2, 2, 3, 2],
            opts: Conv2dOptions {
                stride: [2, 1],
                dilation: [1, 2],
                padding: Padding::symmetric(1, 2),
                groups: 1,
            },
            bias: true,
        },
        Case {
            x: [1, 8, 5, 5],
            w: [16, 8, 1, 1],
            opts: d,
            bias: true,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let seed = 100 + 3 * i as u64;
        let (xg, xc) = pair(&c.x, seed);
        let (wg, wc) = pair(&c.w, seed + 1);
        let (bg, bc) = pair(&[c.w[0]], seed + 2);
        let xv = values(c.x.iter().product(), seed);
        let wv = values(c.w.iter().product(), seed + 1);
        let bv = values(c.w[0], seed + 2);
        let geo = Geo {
            stride: c.opts.stride,
            pad: explicit_pad(&c.opts, c.w),
            dilation: c.opts.dilation,
            groups: c.opts.groups,
        };
        let (expected, dims) = conv_ref(&xv, c.x, &wv, c.w, c.bias.then_some(&bv[..]), geo);
        for (x, w, b) in [(&xg, &wg, &bg), (&xc, &wc, &bc)] {
            let y = x.conv2d(w, c.bias.then_some(b), &c.opts);
            assert_values(&y, &expected, &dims, 1e-4);
        }
    }
}

#[test]
fn conv2d_with_bias_and_relu_on_the_gpu_matches_the_reference_device() {
    // The bias and activation are fused into the matmul's epilogue on the GPU.
    let (xg, xc) = pair(&[2, 3, 9, 9], 301);
    let (wg, wc) = pair(&[8, 3, 3, 3], 302);
    let (bg, bc) = pair(&[8], 303);
    let opts = Conv2dOptions::default().padding(1).stride(2);
    let yg = xg.conv2d(&wg, Some(&bg), &opts).relu();
    let yc = xc.conv2d(&wc, Some(&bc), &opts).relu();
    assert_close(&yg, &yc, 1e-5, 1e-4);
}

#[test]
fn conv2d_on_larger_shapes_gpu_matches_the_reference_device() {
    // Big enough for the GPU's tiled matmul paths (K and N not multiples of a tile).
    let d = Conv2dOptions::default();
    let cases = [
        ([2, 16, 13, 11], [32, 16, 3, 3], d.padding(1)),
        (
            [3, 32, 17, 17],
            [64, 16, 3, 3],
            d.groups(2).stride(2).padding(1),
        ),
        ([2, 24, 15, 15], [24, 1, 5, 5], d.groups(24).same()),
        ([2, 64, 9, 9], [128, 64, 1, 1], d.stride(2)),
        ([1, 3, 70, 70], [16, 3, 7, 7], d.stride(2).padding(3)),
    ];
    for (i, (xs, ws, opts)) in cases.iter().enumerate() {
        let seed = 500 + 3 * i as u64;
        let (xg, xc) = pair(xs, seed);
        let (wg, wc) = pair(ws, seed + 1);
        let (bg, bc) = pair(&[ws[0]], seed + 2);
        let pool = Pool2dOptions::new(3).stride(2).padding(1);
        let yg = xg.conv2d(&wg, Some(&bg), opts).relu().max_pool2d(&pool);
        let yc = xc.conv2d(&wc, Some(&bc), opts).relu().max_pool2d(&pool);
        assert_close(&yg, &yc, 1e-4, 1e-3);
    }
    // Input and weight gradients (implicit GEMMs over the window view) at that size too.
    check_gpu_gradients(
        |x| {
            x[0].conv2d(&x[1], Some(&x[2]), &d.padding(1).stride(2))
                .relu()
        },
        &[&[2, 8, 9, 9], &[16, 8, 3, 3], &[16]],
        510,
    );
}

#[test]
fn conv_transpose2d_matches_the_scatter_reference() {
    let d = ConvTranspose2dOptions::default();
    let cases: [([usize; 4], [usize; 4], ConvTranspose2dOptions, bool); 7] = [
        ([1, 2, 3, 3], [2, 3, 3, 3], d, true),
        (
            [2, 2, 4, 3],
            [2, 3, 3, 3],
            d.stride(2).padding(1).output_padding(1),
            true,
        ),
        ([1, 3, 4, 4], [3, 2, 2, 2], d.stride(2), false),
        ([1, 2, 3, 4], [2, 2, 3, 2], d.dilation(2).padding(1), true),
        (
            [1, 4, 3, 3],
            [4, 3, 3, 3],
            d.groups(2).stride(2).padding(1),
            true,
        ),
        // Padding larger than d (K - 1): the spread input is cropped, not padded.
        (
            [1, 2, 4, 4],
            [2, 1, 3, 3],
            d.stride(2).padding(3).output_padding(1),
            false,
        ),
        (
            [1, 2, 3, 4],
            [2, 2, 3, 2],
            ConvTranspose2dOptions {
                stride: [2, 3],
                padding: [1, 0],
                output_padding: [0, 2],
                dilation: [1, 2],
                groups: 1,
            },
            true,
        ),
    ];
    for (i, (xs, ws, opts, bias)) in cases.iter().enumerate() {
        let seed = 200 + 3 * i as u64;
        let (xg, xc) = pair(xs, seed);
        let (wg, wc) = pair(ws, seed + 1);
        let cout = ws[1] * opts.groups;
        let (bg, bc) = pair(&[cout], seed + 2);
        let xv = values(xs.iter().product(), seed);
        let wv = values(ws.iter().product(), seed + 1);
        let bv = values(cout, seed + 2);
        let (expected, dims) =
            conv_transpose_ref(&xv, *xs, &wv, *ws, bias.then_some(&bv[..]), opts);
        for (x, w, b) in [(&xg, &wg, &bg), (&xc, &wc, &bc)] {
            let y = x.conv_transpose2d(w, bias.then_some(b), opts);
            assert_values(&y, &expected, &dims, 1e-4);
        }
    }
}

#[test]
fn conv_transpose2d_undoes_the_shape_of_a_strided_conv2d() {
    // A stride-2 conv maps 7 and 8 to 4; output padding chooses which comes back.
    let dev = Device::cpu();
    for (n, op) in [(7, 0), (8, 1)] {
        let x = Tensor::ones([1, 2, n, n], &dev);
        let w = Tensor::ones([3, 2, 3, 3], &dev);
        let y = x.conv2d(&w, None, &Conv2dOptions::default().stride(2).padding(1));
        assert_eq!(y.dims(), [1, 3, 4, 4]);
        let wt = Tensor::ones([3, 2, 3, 3], &dev);
        let opts = ConvTranspose2dOptions::default()
            .stride(2)
            .padding(1)
            .output_padding(op);
        assert_eq!(y.conv_transpose2d(&wt, None, &opts).dims(), [1, 2, n, n]);
    }
}

// ---------------------------------------------------------------------------------------------
// Misuse panics at graph-building time, naming the op and the shapes.

#[test]
#[should_panic(expected = "conv2d: input [1, 4, 5, 5] and weight [2, 3, 3, 3] do not fit 1 group")]
fn conv2d_rejects_a_weight_with_the_wrong_channels() {
    let dev = Device::cpu();
    let _ = Tensor::ones([1, 4, 5, 5], &dev).conv2d(
        &Tensor::ones([2, 3, 3, 3], &dev),
        None,
        &Conv2dOptions::default(),
    );
}

#[test]
#[should_panic(expected = "conv2d: padding Same needs stride 1")]
fn conv2d_rejects_same_padding_with_a_stride() {
    let dev = Device::cpu();
    let _ = Tensor::ones([1, 1, 5, 5], &dev).conv2d(
        &Tensor::ones([1, 1, 3, 3], &dev),
        None,
        &Conv2dOptions::default().same().stride(2),
    );
}

#[test]
#[should_panic(expected = "conv2d: the bias must be [2]")]
fn conv2d_rejects_a_bias_of_the_wrong_size() {
    let dev = Device::cpu();
    let _ = Tensor::ones([1, 1, 5, 5], &dev).conv2d(
        &Tensor::ones([2, 1, 3, 3], &dev),
        Some(&Tensor::ones([3], &dev)),
        &Conv2dOptions::default(),
    );
}

#[test]
#[should_panic(
    expected = "conv2d: needs a float input and weight of one dtype, got f32 [1, 1, 5, 5] and f16"
)]
fn conv2d_rejects_mixed_dtypes() {
    let dev = Device::cpu();
    let _ = Tensor::ones([1, 1, 5, 5], &dev).conv2d(
        &Tensor::ones([1, 1, 3, 3], &dev).cast(DType::F16),
        None,
        &Conv2dOptions::default(),
    );
}

// ---------------------------------------------------------------------------------------------
// Gradients: finite differences on the exact reference, and the GPU against the reference.

fn both(f: impl Fn(&[Tensor]) -> Tensor + Copy, shapes: &[&[usize]], seed: u64) {
    check_gradients(f, shapes, seed);
    check_gpu_gradients(f, shapes, seed);
}

#[test]
fn gradients_of_conv2d() {
    let d = Conv2dOptions::default();
    // Each case: finite differences on the reference, and `dev` against the reference.
    let cases_on = |dev: &Device| {
        let both = |f: &dyn Fn(&[Tensor]) -> Tensor, shapes: &[&[usize]], seed: u64| {
            check_gradients(f, shapes, seed);
            check_gradients_on(dev, f, shapes, seed);
        };
        both(
            &|x| x[0].conv2d(&x[1], Some(&x[2]), &d.stride(2).padding(1)),
            &[&[1, 2, 4, 4], &[2, 2, 2, 2], &[2]],
            401,
        );
        both(
            &|x| x[0].conv2d(&x[1], None, &d.dilation(2).padding(1).groups(2)),
            &[&[1, 2, 5, 5], &[4, 1, 3, 3]],
            402,
        );
        both(
            &|x| x[0].conv2d(&x[1], Some(&x[2]), &d.same()),
            &[&[2, 1, 4, 5], &[2, 1, 2, 3], &[2]],
            403,
        );
        // Strides that leave rows and columns no window reaches (6 - 3 = 3 is odd; 7 + 2 - 3 = 6
        // is not a multiple of 4): those inputs get zero gradient.
        both(
            &|x| x[0].conv2d(&x[1], None, &d.stride(2)),
            &[&[2, 2, 6, 6], &[3, 2, 3, 3]],
            404,
        );
        both(
            &|x| {
                x[0].conv2d(
                    &x[1],
                    Some(&x[2]),
                    &Conv2dOptions {
                        stride: [2, 4],
                        padding: Padding::Explicit {
                            top: 1,
                            bottom: 0,
                            left: 0,
                            right: 2,
                        },
                        dilation: [1, 2],
                        groups: 2,
                    },
                )
            },
            &[&[1, 4, 5, 7], &[2, 2, 2, 2], &[2]],
            405,
        );
    };
    // Small layers: the [N, C KH KW, OH OW] product and col2im.
    cases_on(&gpu());
    // Large layers: the rewrite pass makes the input gradient a transposed convolution (see
    // `ScheduleLimits::col2im_product_limit`); a device whose limit is 0 does it for every layer.
    cases_on(&transposing_gpu());
}

/// A wgpu device whose rewrite pass turns every convolution's input gradient into a transposed
/// convolution.
fn transposing_gpu() -> Device {
    let opts = WgpuOptions {
        col2im_product_limit: Some(0),
        ..common::env_options()
    };
    kiln::wgpu_backend::wgpu_device_with(&opts).expect("a wgpu adapter")
}

#[test]
fn a_large_conv2d_input_gradient_is_a_transposed_convolution_without_col2im() {
    // Through the generic rules the input gradient is the [N, C KH KW, OH OW] product followed by
    // a col2im (Unwindow) reduction; the rewrite pass reads g through a window instead, above
    // `col2im_product_limit` (0 here), and computes the same values.
    let build_with = |dev: &Device, square: bool| {
        let x = Tensor::randn([2, 3, 8, 8], 1, dev);
        x.set_requires_grad(true);
        let w = Tensor::randn([4, 3, 3, 3], 2, dev);
        w.set_requires_grad(true);
        let y = x.conv2d(&w, None, &Conv2dOptions::default().stride(2).padding(1));
        let loss = if square { y.mul(&y).sum() } else { y.sum() };
        loss.grad_wrt(&[&x])
    };
    let limits = kiln::schedule::ScheduleLimits {
        col2im_product_limit: 0,
        ..kiln::schedule::ScheduleLimits::new(8)
    };
    let fired = check_rewrite(|dev| build_with(dev, true), limits, 1e-5);
    assert_eq!(fired, [("transposed_conv_input_gradient", 1)]);
    let gx = build_with(&Device::cpu(), false);
    let p = kiln::Pending::collect(&[&gx[0]]);
    let r = kiln::rewrite::rewrite(&p, &limits);
    let q = r.pending();
    assert!(
        q.nodes
            .iter()
            .all(|t| !matches!(t.op(), kiln::op::Op::Unwindow(_))),
        "the input gradient still has a col2im"
    );
    // Its only product writes the padded input's gradient [2, 3, 10, 10], not [2, 3 * 9, 4 * 4].
    let products: Vec<usize> = q
        .nodes
        .iter()
        .filter(|t| matches!(t.op(), kiln::op::Op::Matmul))
        .map(|t| t.numel())
        .collect();
    assert_eq!(products, [2 * 3 * 10 * 10]);
    // Below the limit nothing changes.
    let r = kiln::rewrite::rewrite(&p, &kiln::schedule::ScheduleLimits::new(8));
    assert!(r.fired.is_empty(), "{:?}", r.fired);
}

#[test]
fn gradients_of_conv_transpose2d() {
    let d = ConvTranspose2dOptions::default();
    both(
        |x| {
            x[0].conv_transpose2d(
                &x[1],
                Some(&x[2]),
                &d.stride(2).padding(1).output_padding(1),
            )
        },
        &[&[1, 2, 3, 3], &[2, 2, 3, 3], &[2]],
        411,
    );
    both(
        |x| x[0].conv_transpose2d(&x[1], None, &d.dilation(2).groups(2)),
        &[&[1, 2, 3, 2], &[2, 1, 2, 2]],
        412,
    );
}
