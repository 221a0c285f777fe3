//! The seeded per-image transforms of `kiln::data::Compose` (host, on an image folder's decode
//! threads) and the colour jitter of `kiln::data::Augment` (device): values of known images.

mod common;
use common::{gpu, temp_dir};

use kiln::data::{Augment, Compose, FolderOptions, Image, ImageFolder};
use kiln::prelude::*;

/// A `channels x h x w` image whose value at (c, y, x) is `(c * 100 + y * 10 + x) / 1000`.
fn ramp(channels: usize, h: usize, w: usize) -> Image {
    let mut img = Image::zeros(channels, h, w);
    for c in 0..channels {
        for y in 0..h {
            for x in 0..w {
                img.data[(c * h + y) * w + x] = (c * 100 + y * 10 + x) as f32 / 1000.0;
            }
        }
    }
    img
}

fn constant(channels: usize, h: usize, w: usize, v: f32) -> Image {
    Image {
        data: vec![v; channels * h * w],
        ..Image::zeros(channels, h, w)
    }
}

#[test]
fn a_flip_mirrors_each_row_exactly() {
    let img = ramp(2, 3, 4);
    let flipped = Compose::new(0).horizontal_flip(1.0).apply(&img, 0, 0);
    for c in 0..2 {
        for y in 0..3 {
            for x in 0..4 {
                assert_eq!(flipped.at(c, y, x), img.at(c, y, 3 - x));
            }
        }
    }
    assert_eq!(Compose::new(0).horizontal_flip(0.0).apply(&img, 0, 0), img);
    // p = 0.5 over many images: about half are flipped.
    let half = Compose::new(3).horizontal_flip(0.5);
    let flips = (0..400).filter(|&i| half.apply(&img, 0, i) != img).count();
    assert!((160..240).contains(&flips), "{flips} of 400 flipped");
}

#[test]
fn center_crop_takes_torchvisions_offsets_and_pads_with_zeros() {
    let img = ramp(1, 5, 6);
    // (5 - 2) / 2 = 1.5 and (6 - 3) / 2 = 1.5 round to even: top 2, left 2.
    let c = Compose::new(0).center_crop(2, 3).apply(&img, 0, 0);
    assert_eq!((c.height, c.width), (2, 3));
    assert_eq!(c.data, [0.022, 0.023, 0.024, 0.032, 0.033, 0.034]);
    // (6 - 2) / 2 = 2: left 2; (5 - 1) / 2 = 2: top 2.
    let c = Compose::new(0).center_crop(1, 2).apply(&img, 0, 0);
    assert_eq!(c.data, [0.022, 0.023]);
    // Larger than the image: zeros around it.
    let small = constant(1, 2, 2, 1.0);
    let c = Compose::new(0).center_crop(4, 4).apply(&small, 0, 0);
    let ones: Vec<f32> = [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
        .concat()
        .iter()
        .map(|&v| v as f32)
        .collect();
    assert_eq!(c.data, ones);
}

#[test]
fn resize_sets_the_shorter_side() {
    let wide = constant(3, 48, 64, 0.25);
    let r = Compose::new(0).resize(24).apply(&wide, 0, 0);
    assert_eq!((r.channels, r.height, r.width), (3, 24, 32));
    assert!(r.data.iter().all(|&v| (v - 0.25).abs() < 1e-6));
    let tall = constant(1, 100, 30, 0.5);
    let r = Compose::new(0).resize(20).apply(&tall, 0, 0);
    assert_eq!((r.height, r.width), (66, 20)); // 20 * 100 / 30 = 66.67, truncated
    let eval = Compose::new(0).resize(36).center_crop(32, 32);
    let r = eval.apply(&wide, 0, 0);
    assert_eq!((r.height, r.width), (32, 32));
}

#[test]
fn random_resized_crops_are_seeded_and_sized() {
    let img = ramp(3, 40, 50);
    let t = Compose::new(11).random_resized_crop(16, 20, (0.2, 1.0), (0.75, 4.0 / 3.0));
    let a = t.apply(&img, 1, 9);
    assert_eq!((a.channels, a.height, a.width), (3, 16, 20));
    assert_eq!(a, t.apply(&img, 1, 9), "same seed, stream and index");
    assert_ne!(a, t.apply(&img, 2, 9), "another stream");
    assert_ne!(a, t.apply(&img, 1, 10), "another image");
    assert_ne!(
        a,
        Compose::new(12)
            .random_resized_crop(16, 20, (0.2, 1.0), (0.75, 4.0 / 3.0))
            .apply(&img, 1, 9)
    );
    // Of a constant image, any crop is the same constant.
    let c = t.apply(&constant(3, 40, 50, 0.7), 0, 0);
    assert!(c.data.iter().all(|&v| (v - 0.7).abs() < 1e-5));
    // Crops lie inside the image: values stay within the ramp's range per channel.
    for i in 0..20 {
        let x = t.apply(&img, 0, i);
        let red = x.plane(0);
        assert!(
            red.iter().all(|&v| (0.0..=0.4495).contains(&v)),
            "image {i}"
        );
    }
}

#[test]
fn rotation_turns_about_the_centre() {
    let mut img = Image::zeros(1, 7, 7);
    img.data[3 * 7 + 3] = 1.0;
    let t = Compose::new(5).rotation(90.0);
    for i in 0..10 {
        let r = t.apply(&img, 0, i);
        assert!(
            (r.at(0, 3, 3) - 1.0).abs() < 1e-6,
            "the centre stays: image {i}"
        );
    }
    assert_eq!(Compose::new(5).rotation(0.0).apply(&img, 0, 0), img);
    // A pixel right of the centre goes up or down, as the angle says; never off the circle.
    let mut dot = Image::zeros(1, 7, 7);
    dot.data[3 * 7 + 5] = 1.0;
    let r = t.apply(&dot, 0, 0);
    let total: f32 = r.data.iter().sum();
    assert!(
        (total - 1.0).abs() < 0.35,
        "bilinear spreads the dot, sum {total}"
    );
    assert!(r.at(0, 3, 5) < 1.0, "the dot moved");
}

#[test]
fn colour_jitter_follows_torchvisions_rules() {
    // Brightness alone scales every value of an image by one factor in [0.5, 1.5].
    let img = ramp(3, 4, 4);
    let b = Compose::new(1).color_jitter(0.5, 0.0, 0.0);
    for i in 0..10 {
        let out = b.apply(&img, 0, i);
        let f = out.data[5] / img.data[5];
        assert!((0.5..=1.5).contains(&f), "factor {f}");
        for (o, v) in out.data.iter().zip(&img.data) {
            assert!((o - (v * f).min(1.0)).abs() < 1e-6);
        }
    }
    // Contrast and saturation leave a grey image of one value as it is.
    let grey = constant(3, 4, 4, 0.4);
    let cs = Compose::new(1).color_jitter(0.0, 0.8, 0.8);
    for i in 0..5 {
        let out = cs.apply(&grey, 0, i);
        assert!(out.data.iter().all(|v| (v - 0.4).abs() < 1e-6));
    }
    // Saturation 0 amount leaves colour; a factor of 0 would make R = G = B.
    let none = Compose::new(1)
        .color_jitter(0.0, 0.0, 0.0)
        .apply(&img, 0, 0);
    assert_eq!(none, img);
}

#[test]
fn normalise_with_given_or_measured_statistics() {
    let img = ramp(3, 5, 5);
    let n = Compose::new(0)
        .normalize(&[0.1, 0.2, 0.3], &[0.5, 0.25, 2.0])
        .apply(&img, 0, 0);
    assert!((n.at(0, 1, 2) - (0.012 - 0.1) / 0.5).abs() < 1e-6);
    assert!((n.at(1, 0, 0) - (0.1 - 0.2) / 0.25).abs() < 1e-6);
    assert!((n.at(2, 4, 4) - (0.244 - 0.3) / 2.0).abs() < 1e-6);
    // Measured: each channel's own mean and std give mean 0, std 1.
    let plane = 25;
    let (mut mean, mut std) = (vec![], vec![]);
    for c in 0..3 {
        let p = img.plane(c);
        let m = p.iter().sum::<f32>() / plane as f32;
        let s = (p.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / plane as f32).sqrt();
        mean.push(m);
        std.push(s);
    }
    let n = Compose::new(0).normalize(&mean, &std).apply(&img, 0, 0);
    for c in 0..3 {
        let p = n.plane(c);
        let m = p.iter().sum::<f32>() / plane as f32;
        let v = p.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / plane as f32;
        assert!(
            m.abs() < 1e-5 && (v - 1.0).abs() < 1e-4,
            "channel {c}: {m} {v}"
        );
    }
}

/// An `[n, 3, h, w]` batch of images each of one grey value, and its values.
fn grey_batch(dev: &Device) -> (Tensor, Vec<f32>) {
    let (n, h, w) = (6, 5, 4);
    let v: Vec<f32> = (0..n)
        .flat_map(|i| vec![0.1 + 0.1 * i as f32; 3 * h * w])
        .collect();
    (Tensor::from_slice(&v, [n, 3, h, w], dev).unwrap(), v)
}

#[test]
fn the_devices_colour_jitter_scales_each_image_by_one_factor() {
    for dev in [Device::cpu(), gpu()] {
        let (x, v) = grey_batch(&dev);
        let aug = Augment::new(4).color_jitter(0.4, 0.0, 0.0);
        let out = aug.apply(&x).unwrap().to_vec::<f32>().unwrap();
        let per_image = 3 * 5 * 4;
        let mut factors = vec![];
        for i in 0..6 {
            let f = out[i * per_image] / v[i * per_image];
            assert!(
                (0.6 - 1e-6..=1.4 + 1e-6).contains(&f),
                "{} factor {f}",
                dev.name()
            );
            for k in 0..per_image {
                let want = (v[i * per_image + k] * f).min(1.0);
                assert!((out[i * per_image + k] - want).abs() < 1e-5);
            }
            factors.push(f);
        }
        assert!(
            factors.windows(2).any(|w| (w[0] - w[1]).abs() > 1e-3),
            "images differ"
        );
        // Contrast and saturation leave images of one grey value alone; evaluation mode too.
        let cs = Augment::new(4).color_jitter(0.0, 0.9, 0.9);
        let out = cs.apply(&x).unwrap().to_vec::<f32>().unwrap();
        assert!(out.iter().zip(&v).all(|(o, v)| (o - v).abs() < 1e-5));
        aug.set_training(false);
        assert_eq!(aug.apply(&x).unwrap().to_vec::<f32>().unwrap(), v);
    }
}

#[test]
fn the_devices_saturation_moves_colours_toward_grey() {
    let dev = Device::cpu();
    // One pixel per image, pure red.
    let x = Tensor::from_slice(&[1.0f32, 0.0, 0.0].repeat(8), [8, 3, 1, 1], &dev).unwrap();
    let out = Augment::new(2)
        .color_jitter(0.0, 0.0, 1.0)
        .apply(&x)
        .unwrap();
    let out = out.to_vec::<f32>().unwrap();
    let grey = 0.299f32;
    for px in out.chunks(3) {
        // r = s + (1 - s) grey, g = b = (1 - s) grey, for the image's factor s in [0, 2].
        let s = (px[0] - grey) / (1.0 - grey);
        let want_gb = ((1.0 - s) * grey).clamp(0.0, 1.0);
        assert!(
            (0.0..=2.0).contains(&s) && (px[1] - want_gb).abs() < 1e-5,
            "{px:?}"
        );
        assert_eq!(px[1], px[2]);
    }
}

#[test]
fn an_image_folder_runs_the_pipeline_on_its_decode_threads() {
    let dir = temp_dir("folder");
    for (class, n) in [("a", 5), ("b", 4)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for k in 0..n {
            let img = image::RgbImage::from_fn(30 + k * 3, 20 + k, |x, y| {
                image::Rgb([(x * 8) as u8, (y * 12) as u8, (k * 40) as u8])
            });
            img.save(dir.join(format!("{class}/{k}.png"))).unwrap();
        }
    }
    let pipeline = Compose::new(9)
        .random_resized_crop(12, 12, (0.3, 1.0), (0.75, 1.33))
        .horizontal_flip(0.5)
        .color_jitter(0.3, 0.3, 0.3);
    let run = |threads| {
        let opts = FolderOptions::new().image_size(12, 12).threads(threads);
        let folder = ImageFolder::open_with(&*dir, opts).unwrap();
        let epoch = |e: u64| {
            let batches = folder
                .train()
                .shuffled(e)
                .batches(4)
                .cpu_transform(pipeline.clone());
            batches
                .flat_map(|(x, _)| x.to_vec::<f32>().unwrap())
                .collect::<Vec<f32>>()
        };
        (epoch(1), epoch(2))
    };
    let (one, two) = run(1);
    assert_eq!(one.len(), 9 * 3 * 12 * 12);
    assert_ne!(one, two, "each epoch draws new crops");
    assert_eq!(run(4), (one, two), "the same for any number of threads");
}

#[test]
fn an_image_folders_batches_pass_through_the_devices_augmentation() {
    let dir = temp_dir("augment");
    for class in ["a", "b"] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for k in 0..3u32 {
            let img = image::RgbImage::from_fn(8, 6, |x, y| {
                image::Rgb([(x * 30) as u8, (y * 40) as u8, (k * 80) as u8])
            });
            img.save(dir.join(format!("{class}/{k}.png"))).unwrap();
        }
    }
    let opts = FolderOptions::new().image_size(6, 8).threads(2);
    let folder = ImageFolder::open_with(&*dir, opts).unwrap();
    let augment = Augment::new(3).horizontal_flip(1.0);
    let plain: Vec<f32> = folder
        .train()
        .batches(6)
        .flat_map(|(x, _)| x.to_vec::<f32>().unwrap())
        .collect();
    let flipped: Vec<f32> = folder
        .train()
        .batches(6)
        .transform(&augment)
        .unwrap()
        .flat_map(|(x, _)| x.to_vec::<f32>().unwrap())
        .collect();
    // Every row of every plane reversed.
    for (row, frow) in plain.chunks(8).zip(flipped.chunks(8)) {
        let mut r = row.to_vec();
        r.reverse();
        assert_eq!(r, frow);
    }
    let wrong = Augment::new(3).normalize(&[0.5, 0.5], &[0.2, 0.2]);
    assert!(
        folder.train().batches(6).transform(&wrong).is_err(),
        "2 values for 3 channels"
    );
}
