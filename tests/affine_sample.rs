//! `Tensor::affine_sample` (bilinear sampling at per-image affine coordinates, zero outside):
//! worked examples, PyTorch's `affine_grid` + `grid_sample` convention through
//! `affine_from_normalized`, the wgpu kernel against the reference on random images and
//! matrices, exact copies for whole-pixel moves, fusion, plan replay and errors.

mod common;
use common::{assert_close, fresh_gpu, gpu, values};
use kiln::prelude::*;
use kiln::schedule::{schedule, ScheduleLimits};
use kiln::Pending;

fn t(v: &[f32], dims: &[usize], dev: &Device) -> Tensor {
    Tensor::from_slice(v, dims, dev).unwrap()
}

/// Random f32 values in [-1, 1) of `dims` on `dev`.
fn rand_t(dims: &[usize], seed: u64, dev: &Device) -> Tensor {
    t(&values(dims.iter().product(), seed), dims, dev)
}

fn kernels(y: &Tensor) -> usize {
    let p = Pending::collect(&[y]);
    schedule(
        &p,
        ScheduleLimits {
            max_storage_buffers: 8,
            window_operand_bytes: 0,
            col2im_product_limit: kiln::schedule::COL2IM_PRODUCT_LIMIT,
            disabled_rules: 0,
        },
    )
    .kernels
    .len()
}

#[test]
fn worked_examples_on_both_devices() {
    for dev in [Device::cpu(), gpu()] {
        // Half a pixel right on a row: means of neighbours, the last one half faded out.
        let x = t(&[1., 2., 3., 4.], &[1, 1, 1, 4], &dev);
        let th = t(&[1., 0., 0.5, 0., 1., 0.], &[1, 2, 3], &dev);
        let y = x.affine_sample(&th, [1, 4]).unwrap();
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![1.5, 2.5, 3.5, 2.0]);

        // The 3x3 image 0..8 turned 90 degrees counter-clockwise about its centre (numpy's
        // rot90): output (ox, oy) reads input (2 - oy, ox).
        let x = t(&[0., 1., 2., 3., 4., 5., 6., 7., 8.], &[1, 1, 3, 3], &dev);
        let th = t(&[0., -1., 2., 1., 0., 0.], &[1, 2, 3], &dev);
        let y = x.affine_sample(&th, [3, 3]).unwrap();
        assert_eq!(
            y.to_vec::<f32>().unwrap(),
            vec![2., 5., 8., 1., 4., 7., 0., 3., 6.]
        );

        // Halving a 4x4 image: output (ox, oy) reads (2 ox + 0.5, 2 oy + 0.5), the mean of a 2x2
        // block. Two images with different matrices: the second is flipped left to right.
        let img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let x = t(&[img.clone(), img].concat(), &[2, 1, 4, 4], &dev);
        let th = t(
            &[2., 0., 0.5, 0., 2., 0.5, -2., 0., 2.5, 0., 2., 0.5],
            &[2, 2, 3],
            &dev,
        );
        let y = x.affine_sample(&th, [2, 2]).unwrap();
        assert_eq!(
            y.to_vec::<f32>().unwrap(),
            vec![2.5, 4.5, 10.5, 12.5, 4.5, 2.5, 12.5, 10.5]
        );
    }
}

/// PyTorch's `grid_sample(x, affine_grid(theta, [N, C, OH, OW], align_corners=False),
/// mode="bilinear", padding_mode="zeros", align_corners=False)`, written from its definition:
/// output pixel (i, j) has normalised centre ((2j + 1) / OW - 1, (2i + 1) / OH - 1), theta maps
/// it to (gx, gy), which un-normalises to ((gx + 1) W - 1) / 2; taps outside count as zero.
fn torch_grid_sample(x: &[f32], dims: [usize; 4], theta: &[f32], out_hw: [usize; 2]) -> Vec<f32> {
    let [n, c, h, w] = dims;
    let [oh, ow] = out_hw;
    let mut out = vec![];
    for b in 0..n {
        let m: Vec<f64> = theta[b * 6..b * 6 + 6].iter().map(|&v| v as f64).collect();
        for ch in 0..c {
            for i in 0..oh {
                for j in 0..ow {
                    let xn = (2.0 * j as f64 + 1.0) / ow as f64 - 1.0;
                    let yn = (2.0 * i as f64 + 1.0) / oh as f64 - 1.0;
                    let gx = m[0] * xn + m[1] * yn + m[2];
                    let gy = m[3] * xn + m[4] * yn + m[5];
                    let ix = ((gx + 1.0) * w as f64 - 1.0) / 2.0;
                    let iy = ((gy + 1.0) * h as f64 - 1.0) / 2.0;
                    let (x0, y0) = (ix.floor() as i64, iy.floor() as i64);
                    let mut v = 0.0;
                    for (yy, xx) in [(y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)] {
                        if yy < 0 || xx < 0 || yy >= h as i64 || xx >= w as i64 {
                            continue;
                        }
                        let wt = (1.0 - (ix - xx as f64).abs()) * (1.0 - (iy - yy as f64).abs());
                        v += wt * x[((b * c + ch) * h + yy as usize) * w + xx as usize] as f64;
                    }
                    out.push(v as f32);
                }
            }
        }
    }
    out
}

#[test]
fn normalised_matrices_reproduce_pytorch_affine_grid_and_grid_sample() {
    let dims = [2, 2, 5, 7];
    let x: Vec<f32> = values(2 * 2 * 5 * 7, 3);
    // A rotation with scaling and shift, and a squeeze with shear; the output size differs from
    // the input's (so the conversion's in/out roles matter).
    let theta = [
        0.8f32, -0.5, 0.1, 0.45, 0.9, -0.2, 1.3, 0.2, 0.0, 0.0, 0.7, 0.3,
    ];
    let expected = torch_grid_sample(&x, dims, &theta, [6, 4]);
    for dev in [Device::cpu(), gpu()] {
        let th = Tensor::affine_from_normalized(&t(&theta, &[2, 2, 3], &dev), [5, 7], [6, 4]);
        let y = t(&x, &dims, &dev)
            .affine_sample(&th.unwrap(), [6, 4])
            .unwrap();
        assert_close(&y, &t(&expected, &[2, 2, 6, 4], &Device::cpu()), 1e-5, 1e-5);
    }
    // PyTorch's identity keeps an image of the same size.
    let id = t(&[1., 0., 0., 0., 1., 0.], &[1, 2, 3], &Device::cpu());
    let m = Tensor::affine_from_normalized(&id, [5, 7], [5, 7]).unwrap();
    assert_eq!(m.to_vec::<f32>().unwrap(), vec![1., 0., 0., 0., 1., 0.]);
}

#[test]
fn gpu_matches_the_reference_on_random_images_and_matrices() {
    // Near-identity warps (what augmentation makes), wild ones reaching far outside, and an
    // output size that differs from the input's.
    let (dims, out_hw) = ([3usize, 2, 9, 11], [7usize, 12]);
    let near: Vec<f32> = values(18, 5)
        .iter()
        .enumerate()
        .map(|(k, v)| match k % 6 {
            0 | 4 => 1.0 + 0.2 * v,
            2 | 5 => 3.0 * v,
            _ => 0.3 * v,
        })
        .collect();
    let wild: Vec<f32> = values(18, 6).iter().map(|v| 8.0 * v).collect();
    for (name, theta) in [("near identity", near), ("wild", wild)] {
        let run = |dev: &Device| {
            rand_t(&dims, 7, dev)
                .affine_sample(&t(&theta, &[3, 2, 3], dev), out_hw)
                .unwrap()
        };
        let (got, expected) = (run(&gpu()), run(&Device::cpu()));
        assert_eq!(got.dims(), &[3, 2, 7, 12], "{name}");
        assert_close(&got, &expected, 1e-4, 1e-4);
    }
}

#[test]
fn whole_pixel_moves_copy_exactly_on_the_gpu() {
    let (n, h, w) = (3usize, 5usize, 6usize);
    let x: Vec<f32> = values(n * 2 * h * w, 11);
    // Image 0: flip; image 1: shift by (+2, -1); image 2: flip and shift by (-3, +4).
    let theta = [
        -1., 0., 5., 0., 1., 0., 1., 0., 2., 0., 1., -1., -1., 0., 2., 0., 1., 4.,
    ];
    let y = t(&x, &[n, 2, h, w], &gpu())
        .affine_sample(&t(&theta, &[n, 2, 3], &gpu()), [h, w])
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let mut expected = vec![];
    for b in 0..n {
        let m = &theta[b * 6..b * 6 + 6];
        for c in 0..2 {
            for oy in 0..h as i64 {
                for ox in 0..w as i64 {
                    let sx = (m[0] as i64) * ox + m[2] as i64;
                    let sy = oy + m[5] as i64;
                    let inside = (0..w as i64).contains(&sx) && (0..h as i64).contains(&sy);
                    expected.push(if inside {
                        x[((b * 2 + c) * h + sy as usize) * w + sx as usize]
                    } else {
                        0.0
                    });
                }
            }
        }
    }
    assert_eq!(y, expected);
}

#[test]
fn non_finite_positions_sample_zero() {
    for dev in [Device::cpu(), gpu()] {
        let x = t(&[1., 2., 3., 4.], &[1, 1, 2, 2], &dev);
        let nan = f32::NAN;
        let th = t(&[nan, 0., 0., 0., 1., f32::INFINITY], &[1, 2, 3], &dev);
        let y = x.affine_sample(&th, [2, 2]).unwrap();
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![0.0; 4]);
    }
}

#[test]
fn prologue_epilogue_and_matrices_fuse_into_two_kernels() {
    let dev = Device::cpu();
    let x = rand_t(&[2, 3, 6, 5], 1, &dev);
    let theta_data = rand_t(&[2, 2, 3], 2, &dev);
    // Matrices from host data: one kernel, with the image's prologue and the epilogue inside.
    let y = x
        .mul_scalar(2.0)
        .affine_sample(&theta_data, [4, 4])
        .unwrap()
        .sub_scalar(0.5)
        .div_scalar(0.25);
    assert_eq!(kernels(&y), 1);
    // Computed matrices get one small kernel of their own.
    let theta = Tensor::rand([2, 6], 3, &dev).reshape([2, 2, 3]).cos();
    let y = x.affine_sample(&theta, [4, 4]).unwrap().relu();
    assert_eq!(kernels(&y), 2);
    // Generated matrices (a leaf) are computed inline.
    let y = x
        .affine_sample(&Tensor::rand([2, 2, 3], 4, &dev), [4, 4])
        .unwrap();
    assert_eq!(kernels(&y), 1);
    let run = |dev: &Device| {
        let th = Tensor::rand([2, 2, 3], 4, dev);
        rand_t(&[2, 3, 6, 5], 1, dev)
            .affine_sample(&th, [4, 4])
            .unwrap()
    };
    assert_close(&run(&gpu()), &run(&Device::cpu()), 1e-4, 1e-4);
    // The fused graph computes the same on the GPU as on the reference.
    let run = |dev: &Device| {
        let x = rand_t(&[2, 3, 6, 5], 1, dev).mul_scalar(2.0);
        let th = Tensor::rand([2, 6], 3, dev)
            .reshape([2, 2, 3])
            .mul_scalar(4.0)
            .cos();
        x.affine_sample(&th, [4, 4]).unwrap().sub_scalar(0.5).relu()
    };
    assert_close(&run(&gpu()), &run(&Device::cpu()), 1e-4, 1e-4);
}

#[test]
fn new_matrices_replay_the_plan() {
    let dev = fresh_gpu();
    let run = |seed: u64| {
        let x = rand_t(&[4, 1, 8, 8], seed, &dev);
        let th = Tensor::rand([4, 6], seed, &dev).reshape([4, 2, 3]);
        x.affine_sample(&th, [8, 8])
            .unwrap()
            .sum()
            .item::<f32>()
            .unwrap()
    };
    let first = run(1);
    let before = dev.stats();
    let second = run(2);
    let after = dev.stats();
    assert_ne!(first, second, "new matrices and images give a new result");
    assert_eq!(after.plans_compiled, before.plans_compiled, "{after}");
    assert_eq!(after.pipelines_created, before.pipelines_created, "{after}");
    assert_eq!(after.plan_cache_hits, before.plan_cache_hits + 1, "{after}");
}

#[test]
fn bad_shapes_and_dtypes_are_errors() {
    let dev = Device::cpu();
    let x = rand_t(&[2, 1, 4, 4], 1, &dev);
    let th = rand_t(&[2, 2, 3], 2, &dev);
    let err = |r: Result<Tensor>| r.expect_err("an error").to_string();
    let e = err(rand_t(&[2, 4, 4], 1, &dev).affine_sample(&th, [4, 4]));
    assert!(e.contains("[N, C, H, W]") && e.contains("[2, 4, 4]"), "{e}");
    let e = err(x.affine_sample(&rand_t(&[2, 3, 2], 2, &dev), [4, 4]));
    assert!(e.contains("[2, 2, 3]") && e.contains("[2, 3, 2]"), "{e}");
    let e = err(x.affine_sample(&rand_t(&[3, 2, 3], 2, &dev), [4, 4]));
    assert!(e.contains("[2, 2, 3]"), "{e}");
    let e = err(x.cast(DType::I32).affine_sample(&th, [4, 4]));
    assert!(e.contains("f32"), "{e}");
    let e = err(x.affine_sample(&th.cast(DType::F16), [4, 4]));
    assert!(e.contains("f32"), "{e}");
    let e = err(Tensor::affine_from_normalized(
        &rand_t(&[2, 6], 2, &dev),
        [4, 4],
        [4, 4],
    ));
    assert!(e.contains("[N, 2, 3]"), "{e}");
    // No gradient: refused rather than silently dropped; fine under no_grad.
    let p = rand_t(&[2, 1, 4, 4], 1, &dev);
    p.set_requires_grad(true);
    let e = err(p.affine_sample(&th, [4, 4]));
    assert!(e.contains("no gradient"), "{e}");
    assert!(no_grad(|| p.affine_sample(&th, [4, 4])).is_ok());
}
