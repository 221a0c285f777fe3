//! The data-loading row of `cargo bench --bench models`: photos (256x256 RGB JPEGs made on the
//! fly) decoded and resized to 64x64 by an `ImageFolder`, in images per second on one thread
//! (per core) and on every core; then a few ResNet-20 training steps fed from a folder at
//! 32x32, and the share of their time spent waiting for the next batch.

use kiln::data::{FolderOptions, ImageFolder};
use kiln::models::ResNet;
use kiln::nn::{Module, ParamBuilder};
use kiln::optim::{Optimizer, Sgd};
use kiln::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Writes `n` JPEG photos of 256x256 (a colour ramp with noise, so they compress like pictures)
/// into two class folders under a new temporary folder, and returns it.
fn write_photos(n: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-bench-photos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for k in 0..n {
        let class = dir.join(if k % 2 == 0 { "even" } else { "odd" });
        std::fs::create_dir_all(&class).unwrap();
        let img = image::RgbImage::from_fn(256, 256, |x, y| {
            let noise = (x.wrapping_mul(7919) ^ y.wrapping_mul(104_729) ^ (k as u32 * 31)) % 37;
            image::Rgb([(x + noise) as u8, (y + k as u32) as u8, (x ^ y) as u8])
        });
        img.save(class.join(format!("{k:05}.jpg"))).unwrap();
    }
    dir
}

/// Images per second of one pass over `dir` at 64x64 on `threads` decode threads.
fn decode_rate(dir: &Path, threads: usize) -> f64 {
    let opts = FolderOptions::new().image_size(64, 64).threads(threads);
    let folder = ImageFolder::open_with(dir, opts).expect("open the photos");
    let t = Instant::now();
    let mut images = 0;
    for (_, labels) in folder.train().batches(32) {
        images += labels.dims()[0];
    }
    images as f64 / t.elapsed().as_secs_f64()
}

/// Seconds spent waiting for batches and in total over `steps` ResNet-20 training steps fed
/// from `dir` at 32x32.
fn training_wait(dir: &Path, steps: usize, dev: &Device) -> kiln::Result<(f64, f64)> {
    let opts = FolderOptions::new().image_size(32, 32);
    let folder = ImageFolder::open_with(dir, opts)?;
    let model = ResNet::resnet20(3, 2, &ParamBuilder::new(dev, 1))?;
    let mut opt = Sgd::new(model.parameters(), 0.01);
    let mut batches = folder.train().batches(32).drop_last(true).on(dev);
    // The first step compiles the plan: not counted.
    let (x, y) = batches.next().expect("a batch");
    opt.step(&model.forward(&x).cross_entropy(&y).backward())?;
    let (mut wait, start) = (0.0, Instant::now());
    for _ in 0..steps {
        let t = Instant::now();
        let Some((x, y)) = batches.next() else { break };
        wait += t.elapsed().as_secs_f64();
        let loss = model.forward(&x).cross_entropy(&y);
        opt.step(&loss.backward())?;
        loss.item::<f32>()?;
    }
    Ok((wait, start.elapsed().as_secs_f64()))
}

/// Runs the row, prints it, and returns it for models.json.
pub fn run(quick: bool, dev: &Device) -> serde_json::Value {
    let n = if quick { 96 } else { 512 };
    let dir = write_photos(n);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let per_core = decode_rate(&dir, 1);
    let all = decode_rate(&dir, cores);
    let steps = if quick { 2 } else { 8 };
    let wait = training_wait(&dir, steps, dev);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "data loading: 256x256 JPEG -> 64x64: {per_core:.0} images/s on 1 core, {all:.0} on {cores}"
    );
    let (waited, total) = match wait {
        Ok((w, t)) => {
            println!(
                "  resnet20 fed from a folder at 32x32: waited for data {:.1}% of {steps} steps ({w:.2} of {t:.2} s)",
                100.0 * w / t
            );
            (Some(w), Some(t))
        }
        Err(e) => {
            println!("  resnet20 fed from a folder: failed: {e}");
            (None, None)
        }
    };
    serde_json::json!({
        "model": "data-loading",
        "images": n,
        "jpeg_images_per_s_per_core": per_core,
        "jpeg_images_per_s_all_cores": all,
        "cores": cores,
        "train_steps": steps,
        "train_wait_s": waited,
        "train_total_s": total,
    })
}
