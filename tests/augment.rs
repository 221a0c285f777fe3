//! The augmentation pipeline (`kiln::data::Augment`): each transform against a per-pixel loop
//! written here from the random parameters read back, on the GPU and the CPU reference; a flip
//! of a flip, rotation by 0 and scaling by 1 are the identity; seeds and steps; plan replay; bad
//! batches; `Batches::transform`.

mod common;
use common::{assert_close, fresh_gpu, gpu, values};
use kiln::data::{Augment, Mnist};
use kiln::prelude::*;

/// Batch, channels, height, width: not square, so that a swapped axis shows.
const DIMS: [usize; 4] = [8, 3, 9, 7];

fn batch(seed: u64, dev: &Device) -> Tensor {
    Tensor::from_slice(&values(DIMS.iter().product(), seed), DIMS, dev).unwrap()
}

fn devices() -> [Device; 2] {
    [Device::cpu(), gpu()]
}

/// Per image: [flip, shift x, shift y, angle in degrees, scale], as the pipeline drew them.
fn params(aug: &Augment, n: usize, step: u64, dev: &Device) -> Vec<[f64; 5]> {
    let p = aug.params(n, step, dev);
    let cols: Vec<Vec<f64>> = [&p.flip, &p.shift_x, &p.shift_y, &p.angle, &p.scale]
        .iter()
        .map(|t| t.to_f64_vec().unwrap())
        .collect();
    (0..n)
        .map(|i| [cols[0][i], cols[1][i], cols[2][i], cols[3][i], cols[4][i]])
        .collect()
}

/// Bilinear sample of one `h x w` channel at (x, y) in pixel coordinates, zero outside: the sum
/// over the pixels within one pixel of (x, y) of `(1 - |dx|)(1 - |dy|) * value`.
fn bilinear(img: &[f32], h: usize, w: usize, x: f64, y: f64) -> f64 {
    let mut v = 0.0;
    for yy in (y.floor() as i64)..=(y.floor() as i64 + 1) {
        for xx in (x.floor() as i64)..=(x.floor() as i64 + 1) {
            if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                let wt = (1.0 - (x - xx as f64).abs()) * (1.0 - (y - yy as f64).abs());
                v += wt * img[yy as usize * w + xx as usize] as f64;
            }
        }
    }
    v
}

/// The augmented batch computed pixel by pixel: output pixel p of image b reads the input at
/// the point that the transforms, applied in order (crop, flip, rotation and scaling about the
/// centre), carry to p, i.e. their inverses applied to p in reverse order.
fn warp_reference(x: &[f32], p: &[[f64; 5]]) -> Vec<f32> {
    let [n, c, h, w] = DIMS;
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let mut out = Vec::with_capacity(x.len());
    for (b, &[flip, tx, ty, deg, s]) in p.iter().enumerate().take(n) {
        let (sin, cos) = deg.to_radians().sin_cos();
        for ch in 0..c {
            let img = &x[(b * c + ch) * h * w..(b * c + ch + 1) * h * w];
            for oy in 0..h {
                for ox in 0..w {
                    // Undo the rotation (counter-clockwise on screen, y down) and the scaling.
                    let (dx, dy) = (ox as f64 - cx, oy as f64 - cy);
                    let mut qx = cx + (cos * dx - sin * dy) / s;
                    let qy = cy + (sin * dx + cos * dy) / s;
                    // Undo the flip, then the crop.
                    if flip == 1.0 {
                        qx = w as f64 - 1.0 - qx;
                    }
                    out.push(bilinear(img, h, w, qx + tx, qy + ty) as f32);
                }
            }
        }
    }
    out
}

fn host(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

#[test]
fn horizontal_flip_mirrors_the_chosen_images_exactly() {
    let aug = Augment::new(3).horizontal_flip(0.5);
    let [n, c, h, w] = DIMS;
    for dev in devices() {
        let x = batch(1, &dev);
        let y = host(&aug.apply_at(&x, 4).unwrap());
        let p = params(&aug, n, 4, &dev);
        let flipped = p.iter().filter(|q| q[0] == 1.0).count();
        assert!(flipped > 0 && flipped < n, "{flipped} of {n} flipped");
        let xs = host(&x);
        let mut expected = vec![];
        for (b, q) in p.iter().enumerate() {
            for ch in 0..c {
                for yy in 0..h {
                    for xx in 0..w {
                        let src = if q[0] == 1.0 { w - 1 - xx } else { xx };
                        expected.push(xs[((b * c + ch) * h + yy) * w + src]);
                    }
                }
            }
        }
        assert_eq!(y, expected, "{}", dev.name());
    }
}

#[test]
fn a_flip_of_a_flip_is_the_identity() {
    for dev in devices() {
        let x = batch(2, &dev);
        let always = Augment::new(1).horizontal_flip(1.0);
        let once = always.apply_at(&x, 0).unwrap();
        assert_ne!(host(&once), host(&x));
        assert_eq!(host(&always.apply_at(&once, 1).unwrap()), host(&x));
        // With p = 0.5, the same step flips the same images again.
        let half = Augment::new(9).horizontal_flip(0.5);
        let twice = half.apply_at(&half.apply_at(&x, 5).unwrap(), 5).unwrap();
        assert_eq!(host(&twice), host(&x), "{}", dev.name());
    }
}

#[test]
fn random_crop_is_a_whole_pixel_shift_with_zeros() {
    let pad = 3;
    let aug = Augment::new(5).random_crop(pad);
    let [n, c, h, w] = DIMS;
    for dev in devices() {
        let x = batch(3, &dev);
        let y = host(&aug.apply_at(&x, 2).unwrap());
        let p = params(&aug, n, 2, &dev);
        let xs = host(&x);
        let mut expected = vec![];
        for (b, q) in p.iter().enumerate() {
            let (tx, ty) = (q[1] as i64, q[2] as i64);
            assert!(
                q[1] == tx as f64 && q[2] == ty as f64,
                "whole pixels: {q:?}"
            );
            for ch in 0..c {
                for yy in 0..h as i64 {
                    for xx in 0..w as i64 {
                        let (sx, sy) = (xx + tx, yy + ty);
                        let inside = (0..w as i64).contains(&sx) && (0..h as i64).contains(&sy);
                        expected.push(if inside {
                            xs[((b * c + ch) * h + sy as usize) * w + sx as usize]
                        } else {
                            0.0
                        });
                    }
                }
            }
        }
        assert_eq!(y, expected, "{}", dev.name());
    }
    // Over many images every offset in [-pad, pad] comes up, and nothing else.
    let p = params(&aug, 400, 0, &gpu());
    for k in [1, 2] {
        let mut seen: Vec<i64> = p.iter().map(|q| q[k] as i64).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, (-3..=3).collect::<Vec<_>>());
    }
}

#[test]
fn rotation_by_zero_and_scaling_by_one_are_the_identity() {
    for dev in devices() {
        let x = batch(4, &dev);
        for aug in [
            Augment::new(1).rotation(0.0),
            Augment::new(2).scale(1.0, 1.0),
            Augment::new(3).rotation(0.0).scale(1.0, 1.0),
        ] {
            assert_close(&aug.apply_at(&x, 7).unwrap(), &x, 1e-5, 0.0);
        }
    }
}

#[test]
fn rotations_and_scalings_match_a_per_pixel_reference() {
    let [n, ..] = DIMS;
    let pipelines = [
        ("rotation", Augment::new(11).rotation(30.0)),
        ("scale", Augment::new(12).scale(0.7, 1.3)),
        (
            "everything",
            Augment::new(13)
                .horizontal_flip(0.5)
                .random_crop(2)
                .rotation(20.0)
                .scale(0.8, 1.2),
        ),
    ];
    for dev in devices() {
        let x = batch(5, &dev);
        for (name, aug) in &pipelines {
            let p = params(aug, n, 3, &dev);
            for q in &p {
                assert!(q[3].abs() <= 30.0 && (0.7..=1.3).contains(&q[4]), "{q:?}");
            }
            assert!(p.iter().any(|q| q[3] != p[0][3] || q[4] != p[0][4]));
            let expected = warp_reference(&host(&x), &p);
            let expected = Tensor::from_vec(expected, DIMS, &Device::cpu()).unwrap();
            let got = aug.apply_at(&x, 3).unwrap();
            assert_close(&got, &expected, 1e-4, 1e-4);
            assert_ne!(host(&got), host(&x), "{name} changed nothing");
        }
    }
}

#[test]
fn normalisation_is_per_channel_and_alone_in_evaluation_mode() {
    let [n, c, h, w] = DIMS;
    let (mean, std) = ([0.1f32, -0.2, 0.3], [0.5f32, 0.25, 2.0]);
    let aug = Augment::new(1)
        .rotation(10.0)
        .random_crop(1)
        .normalize(&mean, &std);
    aug.set_training(false);
    for dev in devices() {
        let x = batch(6, &dev);
        let xs = host(&x);
        let expected: Vec<f32> = (0..n * c * h * w)
            .map(|i| (xs[i] - mean[(i / (h * w)) % c]) / std[(i / (h * w)) % c])
            .collect();
        let expected = Tensor::from_vec(expected, DIMS, &Device::cpu()).unwrap();
        assert_close(&aug.apply(&x).unwrap(), &expected, 1e-6, 1e-6);
        assert_eq!(aug.step(), 0, "evaluation draws nothing");
        // One mean and std for every channel.
        let one = Augment::new(1).normalize(&[0.5], &[0.25]);
        let expected: Vec<f32> = xs.iter().map(|v| (v - 0.5) / 0.25).collect();
        let expected = Tensor::from_vec(expected, DIMS, &Device::cpu()).unwrap();
        assert_close(&one.apply(&x).unwrap(), &expected, 1e-6, 1e-6);
    }
}

fn full_pipeline(seed: u64) -> Augment {
    Augment::new(seed)
        .horizontal_flip(0.5)
        .random_crop(2)
        .rotation(15.0)
        .scale(0.9, 1.1)
        .normalize(&[0.1, 0.2, 0.3], &[0.3, 0.4, 0.5])
}

#[test]
fn the_gpu_augments_like_the_cpu_device() {
    let aug = full_pipeline(21);
    for step in [0, 1, 1000] {
        let got = aug.apply_at(&batch(7, &gpu()), step).unwrap();
        let expected = aug.apply_at(&batch(7, &Device::cpu()), step).unwrap();
        assert_close(&got, &expected, 1e-4, 1e-4);
    }
}

#[test]
fn the_same_seed_replays_and_each_step_differs() {
    let dev = gpu();
    let x = batch(8, &dev);
    let (a, b) = (full_pipeline(5), full_pipeline(5));
    let a0 = host(&a.apply(&x).unwrap());
    let a1 = host(&a.apply(&x).unwrap());
    assert_eq!(a.step(), 2);
    assert_ne!(a0, a1, "a new step draws new parameters");
    assert_eq!(
        host(&b.apply(&x).unwrap()),
        a0,
        "same seed, same first batch"
    );
    assert_eq!(
        host(&b.apply(&x).unwrap()),
        a1,
        "same seed, same second batch"
    );
    assert_eq!(
        host(&b.apply_at(&x, 1).unwrap()),
        a1,
        "apply_at(1) is step 1"
    );
    b.set_step(0);
    assert_eq!(host(&b.apply(&x).unwrap()), a0, "set_step resumes");
    let other = host(&full_pipeline(6).apply(&x).unwrap());
    assert_ne!(other, a0, "another seed draws other parameters");
    // Nearby seeds do not share batches: seed 5 at step 1 is not seed 6 at step 0.
    assert_ne!(other, a1);
}

#[test]
fn a_new_batch_replays_the_plan_in_two_kernels() {
    let dev = fresh_gpu();
    let aug = full_pipeline(2);
    let first = host(&aug.apply(&batch(1, &dev)).unwrap());
    let before = dev.stats();
    let second = host(&aug.apply(&batch(2, &dev)).unwrap());
    let after = dev.stats();
    assert_ne!(first, second);
    assert_eq!(after.plans_compiled, before.plans_compiled, "{after}");
    assert_eq!(after.pipelines_created, before.pipelines_created, "{after}");
    assert_eq!(after.plan_cache_hits, before.plan_cache_hits + 1, "{after}");
    // The matrices (drawn on the device) and the warp with the normalisation fused in.
    assert_eq!(after.dispatches - before.dispatches, 2, "{after}");
    assert_eq!(after.submissions - before.submissions, 1, "{after}");
}

#[test]
fn bad_batches_are_errors() {
    let dev = Device::cpu();
    let aug = full_pipeline(1);
    let err = |r: Result<Tensor>| r.expect_err("an error").to_string();
    let e = err(aug.apply(&Tensor::zeros([4, 9, 7], &dev)));
    assert!(e.contains("[N, C, H, W]") && e.contains("[4, 9, 7]"), "{e}");
    let e = err(aug.apply(&Tensor::zeros([2, 3, 9, 7], &dev).cast(DType::I32)));
    assert!(e.contains("f32"), "{e}");
    let e = err(aug.apply(&Tensor::zeros([2, 1, 9, 7], &dev)));
    assert!(e.contains("3 values") && e.contains("1 channels"), "{e}");
    assert_eq!(aug.step(), 0, "a refused batch draws nothing");
    let mnist = Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap();
    let e = mnist.train().batches(4).transform(&aug).err().unwrap();
    assert!(e.to_string().contains("channels"), "{e}");
}

#[test]
fn batches_pass_through_the_pipeline_one_step_each() {
    let mnist = Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap();
    let split = mnist.train().take(10);
    let aug = Augment::new(4)
        .random_crop(2)
        .rotation(10.0)
        .normalize(&[0.1307], &[0.3081]);
    let manual = Augment::new(4)
        .random_crop(2)
        .rotation(10.0)
        .normalize(&[0.1307], &[0.3081]);
    let plain = split.batches(4).unnormalized();
    let augmented = split.batches(4).unnormalized().transform(&aug).unwrap();
    let mut count = 0;
    for (step, ((x, y), (ax, ay))) in plain.zip(augmented).enumerate() {
        assert_eq!(host(&ax), host(&manual.apply_at(&x, step as u64).unwrap()));
        assert_ne!(host(&ax), host(&x));
        assert_eq!(y.to_vec::<i32>().unwrap(), ay.to_vec::<i32>().unwrap());
        count += 1;
    }
    assert_eq!((count, aug.step()), (3, 3));
}

#[test]
fn a_host_batch_is_augmented_on_the_gpu_it_meets() {
    // Batches are host data by default; their augmentation graph moves with them to the device
    // of the first GPU tensor they meet, and runs there as part of that plan.
    let dev = fresh_gpu();
    let aug = full_pipeline(8);
    let weight = Tensor::full([1, 3, 1, 1], 2.0, &dev);
    let y = aug.apply(&batch(9, &Device::cpu())).unwrap().mul(&weight);
    assert!(y.device().same(&dev));
    let before = dev.stats();
    let got = host(&y);
    assert_eq!(dev.stats().dispatches - before.dispatches, 2, "on the GPU");
    let expected = aug.apply_at(&batch(9, &dev), 0).unwrap().mul_scalar(2.0);
    assert_eq!(got, host(&expected));
}

/// A user-written transform: inverts the images and counts its calls.
#[derive(Debug, Default)]
struct Invert {
    calls: std::cell::Cell<usize>,
}

impl kiln::data::Transform for Invert {
    fn apply(&self, images: &Tensor) -> Result<Tensor> {
        self.calls.set(self.calls.get() + 1);
        Ok(images.neg() + 1.0)
    }
    fn check_batch(&self, dims: &[usize], _dtype: DType) -> Result<()> {
        match dims {
            [_, 1, _, _] => Ok(()),
            _ => Err(KilnError::InvalidArgument(format!(
                "Invert wants one channel, got {dims:?}"
            ))),
        }
    }
}

#[test]
fn batches_pass_through_a_user_written_transform() {
    let mnist = Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap();
    let split = mnist.train().take(6);
    let invert = Invert::default();
    let plain = split.batches(4).unnormalized();
    let inverted = split.batches(4).unnormalized().transform(&invert).unwrap();
    for ((x, _), (ix, _)) in plain.zip(inverted) {
        let expected: Vec<f32> = host(&x).iter().map(|v| 1.0 - v).collect();
        assert_eq!(host(&ix), expected);
    }
    assert_eq!(invert.calls.get(), 2, "one call per batch");
}
