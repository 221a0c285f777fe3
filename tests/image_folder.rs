//! `kiln::data::ImageFolder` on folders built on the fly from the shipped MNIST digits, written
//! as PNG (grey, RGB, RGBA, 16-bit), JPEG, BMP and WebP, with corrupt files among them.

mod common;
use common::{png_declaring, temp_dir};

use image::{DynamicImage, GrayImage, ImageBuffer, ImageFormat, Luma, Rgba};
use kiln::data::{read_class_list, FolderOptions, ImageFolder, Mnist, MNIST_MEAN, MNIST_STD};
use kiln::prelude::*;
use std::path::Path;

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k");

/// The first `per_class` training digits of each of the digit classes `digits`, as 28x28 grey
/// images.
fn digits(digits: &[u8], per_class: usize) -> Vec<(u8, GrayImage)> {
    let mnist = Mnist::from_dir(MNIST).unwrap();
    let train = mnist.train();
    let mut out = Vec::new();
    for &d in digits {
        let found = (0..train.len())
            .filter(|&i| train.label(i) == d)
            .take(per_class);
        for i in found {
            let img = GrayImage::from_raw(28, 28, train.image(i).to_vec()).unwrap();
            out.push((d, img));
        }
    }
    out
}

/// Writes image `k` of a class in one of six ways (grey PNG, RGB JPEG, BMP, RGBA PNG, 16-bit
/// PNG, lossless WebP), by `k % 6`.
fn write_image(dir: &Path, k: usize, img: &GrayImage) {
    let grey = DynamicImage::ImageLuma8(img.clone());
    let rgb = DynamicImage::ImageRgb8(grey.to_rgb8());
    match k % 6 {
        0 => grey.save(dir.join(format!("{k:03}.png"))).unwrap(),
        1 => rgb
            .save_with_format(dir.join(format!("{k:03}.JPG")), ImageFormat::Jpeg)
            .unwrap(),
        2 => rgb.save(dir.join(format!("{k:03}.bmp"))).unwrap(),
        3 => {
            let rgba: ImageBuffer<Rgba<u8>, _> = ImageBuffer::from_fn(28, 28, |x, y| {
                let v = img.get_pixel(x, y)[0];
                Rgba([v, v, v, 128])
            });
            rgba.save(dir.join(format!("{k:03}.png"))).unwrap()
        }
        4 => {
            let wide: ImageBuffer<Luma<u16>, _> =
                ImageBuffer::from_fn(28, 28, |x, y| Luma([img.get_pixel(x, y)[0] as u16 * 257]));
            wide.save(dir.join(format!("{k:03}.png"))).unwrap()
        }
        _ => rgb.save(dir.join(format!("{k:03}.webp"))).unwrap(),
    }
}

/// A folder `dir/<d{digit}>/` of the images of `digits`.
fn write_classes(dir: &Path, images: &[(u8, GrayImage)]) {
    for (k, (d, img)) in images.iter().enumerate() {
        let class = dir.join(format!("d{d}"));
        std::fs::create_dir_all(&class).unwrap();
        write_image(&class, k, img);
    }
}

/// Every batch of `batches` as host values: the images' f32 and the labels.
fn collect(batches: impl Iterator<Item = (Tensor, Tensor)>) -> (Vec<f32>, Vec<i32>, Vec<usize>) {
    let (mut x, mut y, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for (images, labels) in batches {
        sizes.push(labels.dims()[0]);
        x.extend(images.to_vec::<f32>().unwrap());
        y.extend(labels.to_vec::<i32>().unwrap());
    }
    (x, y, sizes)
}

#[test]
fn classes_counts_and_pixels_of_a_train_and_val_folder() {
    let dir = temp_dir("layout");
    let imgs = digits(&[3, 1, 7], 8);
    write_classes(&dir.join("train"), &imgs[..]);
    // val/: two of each class.
    let val: Vec<_> = [0, 1, 8, 9, 16, 17]
        .iter()
        .map(|&i| imgs[i].clone())
        .collect();
    write_classes(&dir.join("val"), &val);
    std::fs::write(dir.join("train/d1/notes.txt"), "not an image, ignored").unwrap();

    let opts = FolderOptions::new().image_size(28, 28).threads(2);
    let folder = ImageFolder::open_with(&*dir, opts).unwrap();
    assert_eq!(folder.classes(), ["d1", "d3", "d7"]);
    assert_eq!((folder.train().len(), folder.val().len()), (24, 6));
    assert_eq!(folder.skipped(), 0);
    // File order: class by class (sorted names), files sorted by name.
    let labels = folder.train().labels();
    assert_eq!(labels, [[0u32; 8], [1; 8], [2; 8]].concat());

    let (x, y, sizes) = collect(folder.train().batches(10));
    assert_eq!(sizes, [10, 10, 4]);
    assert_eq!(y, labels.iter().map(|&l| l as i32).collect::<Vec<_>>());
    assert_eq!(x.len(), 24 * 3 * 28 * 28);
    // Class d1 holds images 8..16 of `imgs` (written as k = 8..16): whatever the lossless
    // format (grey, RGBA, 16-bit PNG, BMP, WebP), its pixels are the digit's exactly, in all
    // three channels.
    for (pos, k) in (8..16).enumerate() {
        if k % 6 == 1 {
            continue; // JPEG: lossy
        }
        let digit = imgs[k].1.as_raw();
        for c in 0..3 {
            let start = (pos * 3 + c) * 784;
            let got = &x[start..start + 784];
            for (g, &p) in got.iter().zip(digit) {
                assert!((g - p as f32 / 255.0).abs() < 1e-6, "file {k} channel {c}");
            }
        }
    }
}

#[test]
fn grey_output_and_resizing() {
    let dir = temp_dir("grey");
    write_classes(&dir, &digits(&[0, 1], 6));
    let opts = FolderOptions::new()
        .image_size(14, 7)
        .channels(1)
        .threads(1);
    let folder = ImageFolder::open_with(&*dir, opts).unwrap();
    let (x, _, sizes) = collect(folder.train().batches(12));
    assert_eq!(sizes, [12]);
    assert_eq!(x.len(), 12 * 14 * 7);
    assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(
        x.iter().any(|&v| v > 0.5),
        "digits keep their ink after resizing"
    );
}

#[test]
fn a_seeded_val_split_of_one_folder() {
    let dir = temp_dir("split");
    write_classes(&dir, &digits(&[2, 5], 10));
    let open = |seed| {
        let opts = FolderOptions::new().val_split(0.3).seed(seed).threads(2);
        ImageFolder::open_with(&*dir, opts).unwrap()
    };
    let (a, b, c) = (open(1), open(1), open(2));
    // 3 of each class's 10 images: 14 train, 6 val, 3 of each class.
    assert_eq!((a.train().len(), a.val().len()), (14, 6));
    assert_eq!(a.val().labels().iter().filter(|&&l| l == 0).count(), 3);
    let paths = |s: &kiln::data::ImageSet| {
        (0..s.len())
            .map(|i| s.path(i).to_path_buf())
            .collect::<Vec<_>>()
    };
    assert_eq!(paths(&a.val()), paths(&b.val()), "same seed, same split");
    assert_ne!(
        paths(&a.val()),
        paths(&c.val()),
        "another seed, another split"
    );
    let mut all = [paths(&a.train()), paths(&a.val())].concat();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        20,
        "train and val are disjoint and cover the folder"
    );
    // Without a split, everything trains.
    let whole = ImageFolder::open_with(&*dir, FolderOptions::new().threads(1)).unwrap();
    assert_eq!((whole.train().len(), whole.val().len()), (20, 0));
}

#[test]
fn the_prefetch_order_is_the_same_for_every_thread_count() {
    let dir = temp_dir("order");
    write_classes(&dir, &digits(&[4, 6, 9], 7));
    let run = |threads, cache| {
        let opts = FolderOptions::new()
            .image_size(20, 20)
            .threads(threads)
            .cache(cache);
        let folder = ImageFolder::open_with(&*dir, opts).unwrap();
        let first = collect(folder.train().shuffled(7).batches(4).drop_last(true));
        let again = collect(folder.train().shuffled(7).batches(4).drop_last(true));
        assert_eq!(
            first, again,
            "a second epoch (from the cache: {cache}) gives the same"
        );
        first
    };
    let one = run(1, false);
    assert_eq!(one.2, [4; 5]);
    assert_ne!(one.1[..7], [0; 7], "shuffled");
    for (threads, cache) in [(3, false), (8, true), (21, false)] {
        assert_eq!(run(threads, cache), one, "{threads} threads");
    }
}

#[test]
fn corrupt_files_are_skipped_counted_or_errors_in_strict_mode() {
    let dir = temp_dir("corrupt");
    write_classes(&dir, &digits(&[0, 8], 5));
    let good = std::fs::read(dir.join("d0/000.png")).unwrap();
    std::fs::write(dir.join("d0/zero.png"), b"").unwrap();
    std::fs::write(dir.join("d0/text.jpg"), b"hello, I am not a JPEG\n").unwrap();
    std::fs::write(
        dir.join("d8/bomb.png"),
        png_declaring(100_000, 100_000, 0, 8),
    )
    .unwrap();
    std::fs::write(dir.join("d8/cut.png"), &good[..good.len() / 2]).unwrap();

    let folder = ImageFolder::open_with(&*dir, FolderOptions::new().threads(2)).unwrap();
    // The headers of the first three do not read: skipped at open.
    assert_eq!(folder.skipped(), 3);
    assert_eq!(folder.train().len(), 11);
    let (_, y, sizes) = collect(folder.train().batches(4));
    // The truncated PNG is found when decoded: the batches hold the 10 good images.
    assert_eq!(y.len(), 10);
    assert_eq!(sizes, [4, 4, 2]);
    assert_eq!(folder.skipped(), 4);
    let names: Vec<String> = folder
        .skipped_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["text.jpg", "zero.png", "bomb.png", "cut.png"]);
    // A second pass warns no more and counts nothing twice.
    let _ = collect(folder.train().batches(4));
    assert_eq!(folder.skipped(), 4);

    // A side limit above the bomb's: its header passes, the allocation limit refuses it.
    let opts = FolderOptions::new().max_side(200_000).threads(1);
    let folder = ImageFolder::open_with(&*dir, opts).unwrap();
    let (_, y, _) = collect(folder.train().batches(16));
    assert_eq!(y.len(), 10);
    assert_eq!(folder.skipped(), 4);

    let err = ImageFolder::open_with(&*dir, FolderOptions::new().strict(true)).unwrap_err();
    assert!(err.to_string().contains("text.jpg"), "{err}");
    assert!(matches!(err, KilnError::Format { .. }));
}

#[test]
fn bad_layouts_are_errors_that_name_the_folder() {
    let dir = temp_dir("bad");
    let err = |d: &Path| ImageFolder::open(d).unwrap_err().to_string();

    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = err(&empty);
    assert!(e.contains("empty") && e.contains("no class folders"), "{e}");

    let one = dir.join("one");
    write_classes(&one, &digits(&[5], 2));
    let e = err(&one);
    assert!(e.contains("only one class folder (d5)"), "{e}");

    let unreadable = dir.join("unreadable");
    write_classes(&unreadable, &digits(&[1, 2], 2));
    std::fs::create_dir_all(unreadable.join("d3")).unwrap();
    std::fs::write(unreadable.join("d3/a.jpg"), b"text").unwrap();
    let e = err(&unreadable);
    assert!(e.contains("d3") && e.contains("no readable image"), "{e}");

    let differ = dir.join("differ");
    write_classes(&differ.join("train"), &digits(&[1, 2, 3], 1));
    write_classes(&differ.join("val"), &digits(&[1, 2, 4], 1));
    let e = err(&differ);
    assert!(
        e.contains("only in train/: [d3]") && e.contains("only in val/: [d4]"),
        "{e}"
    );

    let missing = err(&dir.join("nothing-here"));
    assert!(missing.contains("nothing-here"), "{missing}");
}

#[test]
fn normalisation_with_measured_statistics() {
    let dir = temp_dir("norm");
    write_classes(&dir, &digits(&[0, 7], 4));
    let opts = FolderOptions::new().image_size(28, 28).threads(2);
    let folder = ImageFolder::open_with(&*dir, opts).unwrap();
    let (mean, std) = folder.train().mean_std();
    let (raw, _, _) = collect(folder.train().batches(8));
    let n = raw.len() as f64;
    let m = raw.iter().map(|&v| v as f64).sum::<f64>() / n;
    let s = (raw.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n).sqrt();
    // Grey digits: every channel has the same statistics (the JPEG's are close).
    for c in 0..3 {
        assert!((mean[c] as f64 - m).abs() < 0.01, "{mean:?} vs {m}");
        assert!((std[c] as f64 - s).abs() < 0.01, "{std:?} vs {s}");
    }
    let (norm, _, _) = collect(folder.train().batches(8).normalize(&mean, &std));
    let nm = norm.iter().map(|&v| v as f64).sum::<f64>() / n;
    let ns = (norm.iter().map(|&v| (v as f64 - nm).powi(2)).sum::<f64>() / n).sqrt();
    assert!(
        nm.abs() < 1e-3 && (ns - 1.0).abs() < 1e-3,
        "mean {nm} std {ns}"
    );
}

#[test]
fn the_class_list_is_written_beside_the_checkpoint() {
    let dir = temp_dir("classes");
    write_classes(&dir.join("data"), &digits(&[3, 4], 1));
    let folder = ImageFolder::open(dir.join("data")).unwrap();
    let written = folder.write_classes(dir.join("model.safetensors")).unwrap();
    assert_eq!(written, dir.join("model.classes.txt"));
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "d3\nd4\n");
    assert_eq!(
        read_class_list(dir.join("model.safetensors")).unwrap(),
        ["d3", "d4"]
    );
    let e = read_class_list(dir.join("other.safetensors")).unwrap_err();
    assert!(e.to_string().contains("other.classes.txt"), "{e}");
}

#[test]
fn digits_as_grey_pngs_give_the_mnist_batches_exactly() {
    // The first 60 training digits written as PNGs, one class folder per digit: with one
    // channel, 28x28 and MNIST's normalisation, the folder's batches are the IDX path's, so a
    // trainer reaches the same accuracy on either.
    let dir = temp_dir("same");
    let mnist = Mnist::from_dir(MNIST).unwrap();
    let train = mnist.train().take(60);
    // The folder's order: by class, then by file name (the index in the split).
    let mut order: Vec<usize> = (0..60).collect();
    order.sort_by_key(|&i| (train.label(i), i));
    for &i in &order {
        let class = dir.join(format!("{}", train.label(i)));
        std::fs::create_dir_all(&class).unwrap();
        let img = GrayImage::from_raw(28, 28, train.image(i).to_vec()).unwrap();
        img.save(class.join(format!("{i:03}.png"))).unwrap();
    }
    let opts = FolderOptions::new()
        .image_size(28, 28)
        .channels(1)
        .threads(3);
    let folder = ImageFolder::open_with(&*dir, opts).unwrap();
    assert_eq!(
        folder.classes(),
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    );
    let batches = folder
        .train()
        .batches(16)
        .normalize(&[MNIST_MEAN], &[MNIST_STD]);
    let (x, y, _) = collect(batches);
    let (mut want_x, mut want_y) = (Vec::new(), Vec::new());
    for &i in &order {
        let (xi, yi) = train.take(i + 1).skip(i).batches(1).next().unwrap();
        want_x.extend(xi.to_vec::<f32>().unwrap());
        want_y.extend(yi.to_vec::<i32>().unwrap());
    }
    assert_eq!(y, want_y);
    assert_eq!(x, want_x, "bit for bit");
}
