//! The MNIST loader and its mini-batches, on the shipped sample (data/mnist-10k: 8,000 training
//! and 2,000 test digits) and on broken files written to a temporary directory.

mod common;
use common::temp_dir;

use kiln::data::{read_idx, Mnist, Split};
use kiln::prelude::*;
use std::path::Path;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k");

fn mnist() -> Mnist {
    Mnist::from_dir(DIR).unwrap()
}

/// A raw IDX file of u8 with these dimensions and data.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    b
}

/// Writes a small MNIST-format directory: `n_train` / `n_test` images of 4x4 pixels, image k of
/// a split filled with the value k, label k % 10; files named `{stem}{kind}{suffix}`.
fn write_tiny(dir: &Path, n_train: u32, n_test: u32) {
    for (stem, n) in [("train", n_train), ("t10k", n_test)] {
        let pixels: Vec<u8> = (0..n).flat_map(|k| [k as u8; 16]).collect();
        let labels: Vec<u8> = (0..n).map(|k| (k % 10) as u8).collect();
        std::fs::write(
            dir.join(format!("{stem}-images-idx3-ubyte")),
            idx(&[n, 4, 4], &pixels),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{stem}-labels-idx1-ubyte")),
            idx(&[n], &labels),
        )
        .unwrap();
    }
}

fn err(dir: &Path) -> String {
    Mnist::from_dir(dir).unwrap_err().to_string()
}

#[test]
fn the_shipped_sample_has_8000_training_and_2000_test_digits() {
    let m = mnist();
    let (train, test) = (m.train(), m.test());
    assert_eq!((train.len(), test.len()), (8000, 2000));
    assert!(!train.is_empty());
    assert_eq!(train.image_dims(), [28, 28]);
    // The first and last labels, as in the files (read independently with Python's gzip).
    assert_eq!(train.labels()[..10], [8, 0, 2, 0, 0, 0, 9, 6, 4, 1]);
    assert_eq!(train.labels()[7997..], [3, 9, 6]);
    assert_eq!(test.labels()[..10], [9, 8, 7, 4, 2, 6, 9, 9, 4, 5]);
    assert_eq!(test.labels()[1997..], [3, 8, 9]);
    let mut counts = [0; 10];
    for l in train.labels() {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [810, 913, 786, 805, 799, 685, 807, 862, 745, 788]);
    let img = train.image(0);
    assert_eq!(img.len(), 784);
    assert_eq!(img.iter().map(|&p| p as u32).sum::<u32>(), 24984);
    assert_eq!(train.label(0), 8);
    assert_eq!(
        format!("{:?}", train.take(3)),
        "Split(3 of 8000 images of 28x28)"
    );
    // The loader agrees with the raw IDX reader.
    let raw = read_idx(format!("{DIR}/t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(test.image(1999), &raw.data[1999 * 784..]);
}

#[test]
fn batches_are_normalised_f32_images_and_i32_labels() {
    let m = mnist();
    let train = m.train();
    let mut batches = train.batches(300);
    assert_eq!(batches.len(), 27); // 26 full batches and one of 200
    let (x, y) = batches.next().unwrap();
    assert_eq!((x.dims(), x.dtype()), (&[300, 1, 28, 28][..], DType::F32));
    assert_eq!((y.dims(), y.dtype()), (&[300][..], DType::I32));
    assert!(x.device().same(&Device::cpu()));
    let labels: Vec<i32> = y.to_vec().unwrap();
    let expected: Vec<i32> = train.labels()[..300].iter().map(|&l| l as i32).collect();
    assert_eq!(labels, expected);
    let v: Vec<f32> = x.to_vec().unwrap();
    let (lo, hi) = (-0.1307f32 / 0.3081, (1.0 - 0.1307f32) / 0.3081);
    assert!(v.iter().all(|&p| p >= lo - 1e-6 && p <= hi + 1e-6));
    assert!((v.iter().cloned().fold(f32::MAX, f32::min) - lo).abs() < 1e-6);
    // Normalised with MNIST's statistics, the training pixels have mean ~0 and std ~1.
    let mean = v.iter().map(|&p| p as f64).sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|&p| (p as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
    assert!(
        mean.abs() < 0.05 && (var.sqrt() - 1.0).abs() < 0.05,
        "mean {mean} var {var}"
    );
    assert_eq!(batches.len(), 26);
    let rest: Vec<_> = batches.collect();
    assert_eq!(rest.last().unwrap().0.dims(), &[200, 1, 28, 28]);
    assert_eq!(rest.last().unwrap().1.dims(), &[200]);

    // Unnormalised: [0, 1], and the first image sums to its pixel sum / 255.
    let (x, _) = train.batches(2).unnormalized().next().unwrap();
    let v: Vec<f32> = x.to_vec().unwrap();
    assert!(v.iter().all(|&p| (0.0..=1.0).contains(&p)));
    assert_eq!(v[..784].iter().cloned().fold(0.0, f32::max), 254.0 / 255.0);
    let sum: f32 = v[..784].iter().sum();
    assert!((sum - 24984.0 / 255.0).abs() < 1e-3, "{sum}");
    // Custom statistics: (p/255 - 0.5) / 0.5 lies in [-1, 1].
    let (x, _) = train.batches(2).normalize(0.5, 0.5).next().unwrap();
    let v: Vec<f32> = x.to_vec().unwrap();
    assert!(v.iter().all(|&p| (-1.0..=1.0).contains(&p)));
    assert_eq!(v[0], -1.0);
}

#[test]
fn drop_last_skips_the_partial_batch() {
    let m = mnist();
    let count = |s: &Split, b: usize, drop: bool| s.batches(b).drop_last(drop).count();
    assert_eq!(count(&m.train(), 64, false), 125); // 8000 = 125 * 64
    assert_eq!(count(&m.train(), 64, true), 125);
    assert_eq!(count(&m.test(), 300, false), 7); // 2000 = 6 * 300 + 200
    assert_eq!(count(&m.test(), 300, true), 6);
    assert_eq!(m.test().batches(300).drop_last(true).len(), 6);
    assert!(m
        .test()
        .batches(300)
        .drop_last(true)
        .all(|(x, y)| x.dims()[0] == 300 && y.dims() == [300]));
    assert_eq!(count(&m.test().take(5), 10, false), 1);
    assert_eq!(count(&m.test().take(5), 10, true), 0);
    assert_eq!(count(&m.test().take(0), 10, false), 0);
}

#[test]
#[should_panic(expected = "batch_size must be at least 1")]
fn a_batch_size_of_zero_panics() {
    let m = mnist();
    let _ = m.test().batches(0);
}

#[test]
fn shuffling_is_a_seeded_permutation() {
    let m = mnist();
    let train = m.train();
    let a = train.shuffled(42);
    let b = train.shuffled(42);
    let c = train.shuffled(43);
    assert_eq!(a.len(), 8000);
    assert_eq!(a.labels(), b.labels());
    assert_ne!(a.labels(), c.labels());
    assert_ne!(a.labels(), train.labels());
    // Pinned: the same seed gives this order on every machine, in every version (checked against
    // an independent Python implementation of the documented Philox Fisher-Yates shuffle).
    assert_eq!(
        train.shuffled(0).labels()[..12],
        SHUFFLED_0_FIRST_LABELS,
        "the order of shuffled(0) changed"
    );
    // A permutation: every image exactly once.
    let mut orig: Vec<&[u8]> = (0..train.len()).map(|i| train.image(i)).collect();
    let mut shuf: Vec<&[u8]> = (0..a.len()).map(|i| a.image(i)).collect();
    assert_ne!(orig, shuf);
    orig.sort();
    shuf.sort();
    assert_eq!(orig, shuf);
    // Images and labels move together.
    for i in 0..50 {
        let j = (0..train.len())
            .find(|&j| train.image(j) == a.image(i))
            .unwrap();
        assert_eq!(train.label(j), a.label(i));
    }
    // Batches follow the shuffled order.
    let (_, y) = a.batches(16).next().unwrap();
    let want: Vec<i32> = a.labels()[..16].iter().map(|&l| l as i32).collect();
    assert_eq!(y.to_vec::<i32>().unwrap(), want);
    // take, skip and shuffled compose.
    let head = train.take(100);
    let mut l1 = head.shuffled(7).labels();
    let mut l2 = head.labels();
    l1.sort();
    l2.sort();
    assert_eq!(l1, l2);
    assert_eq!(train.take(10).labels(), train.labels()[..10]);
    assert_eq!(train.skip(7990).labels(), train.labels()[7990..]);
    assert_eq!(train.take(100_000).len(), 8000);
    assert!(train.skip(100_000).is_empty());
}

const SHUFFLED_0_FIRST_LABELS: [u8; 12] = [7, 3, 7, 6, 6, 0, 0, 2, 6, 0, 1, 1];

#[test]
fn batches_can_be_made_on_the_gpu_or_follow_it() {
    let gpu = common::gpu();
    let m = mnist();
    let test = m.test();
    let (x, y) = test.batches(8).on(&gpu).next().unwrap();
    assert!(x.device().same(&gpu) && y.device().same(&gpu));
    let (xc, yc) = test.batches(8).next().unwrap();
    assert_eq!(x.to_vec::<f32>().unwrap(), xc.to_vec::<f32>().unwrap());
    assert_eq!(y.to_vec::<i32>().unwrap(), yc.to_vec::<i32>().unwrap());
    // A host batch meeting a GPU tensor moves to the GPU, whichever side of the op it is on.
    let w = Tensor::ones([784, 2], &gpu).detach().unwrap();
    let (xc, _) = test.batches(8).next().unwrap();
    let s = xc.reshape([8, 784]).matmul(&w);
    assert!(s.device().same(&gpu));
    s.realize().unwrap();
    let (xc, _) = test.batches(8).next().unwrap();
    let z = xc.add(&Tensor::zeros([8, 1, 28, 28], &gpu));
    assert!(z.device().same(&gpu));
    assert_eq!(z.to_vec::<f32>().unwrap(), x.to_vec::<f32>().unwrap());
}

#[test]
fn other_file_layouts_load_too() {
    // Raw (not gzip) files with the standard names, 4x4 images.
    let d = temp_dir("tiny");
    write_tiny(&d, 7, 3);
    let m = Mnist::from_dir(&d).unwrap();
    assert_eq!((m.train().len(), m.test().len()), (7, 3));
    assert_eq!(m.train().image_dims(), [4, 4]);
    assert_eq!(m.train().image(5), &[5u8; 16]);
    let (x, y) = m.train().batches(4).unnormalized().last().unwrap();
    assert_eq!(x.dims(), &[3, 1, 4, 4]);
    assert_eq!(y.to_vec::<i32>().unwrap(), vec![4, 5, 6]);
    assert_eq!(x.to_vec::<f32>().unwrap()[16], 5.0 / 255.0);
    // Dotted names (train-images.idx3-ubyte) inside torchvision's raw/ subdirectory.
    let d2 = temp_dir("dotted");
    std::fs::create_dir(d2.join("raw")).unwrap();
    for f in std::fs::read_dir(&d).unwrap() {
        let f = f.unwrap().file_name().into_string().unwrap();
        let dotted = f.replacen("s-idx", "s.idx", 1);
        std::fs::copy(d.join(&f), d2.join("raw").join(dotted)).unwrap();
    }
    let m = Mnist::from_dir(&d2).unwrap();
    assert_eq!((m.train().len(), m.test().len()), (7, 3));
}

#[test]
fn a_missing_directory_or_file_is_named() {
    let msg = err(Path::new("/no/such/mnist-dir"));
    assert!(
        msg.contains("/no/such/mnist-dir") && msg.contains("no such directory"),
        "{msg}"
    );
    let d = temp_dir("missing");
    write_tiny(&d, 2, 2);
    std::fs::remove_file(d.join("t10k-labels-idx1-ubyte")).unwrap();
    let msg = err(&d);
    assert!(
        msg.contains(&*d.to_string_lossy()) && msg.contains("no t10k-labels-idx1-ubyte file"),
        "{msg}"
    );
}

#[test]
fn truncated_corrupt_and_mismatched_files_are_reported_with_their_names() {
    // A truncated gzip copy of the real training images.
    let d = temp_dir("truncated-gz");
    for f in [
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(Path::new(DIR).join(f), d.join(f)).unwrap();
    }
    let gz = std::fs::read(Path::new(DIR).join("train-images-idx3-ubyte.gz")).unwrap();
    let file = d.join("train-images-idx3-ubyte.gz");
    std::fs::write(&file, &gz[..gz.len() / 2]).unwrap();
    let msg = err(&d);
    assert!(
        msg.contains(&*file.to_string_lossy()) && msg.contains("gzip"),
        "{msg}"
    );

    // A raw file cut short.
    let d = temp_dir("truncated-raw");
    write_tiny(&d, 5, 2);
    let file = d.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 10]).unwrap();
    let msg = err(&d);
    assert!(
        msg.contains(&*file.to_string_lossy()) && msg.contains("truncated"),
        "{msg}"
    );

    // A wrong magic number.
    let d = temp_dir("magic");
    write_tiny(&d, 2, 2);
    let file = d.join("t10k-labels-idx1-ubyte");
    std::fs::write(&file, b"<html>not found</html>").unwrap();
    let msg = err(&d);
    assert!(
        msg.contains(&*file.to_string_lossy()) && msg.contains("magic number"),
        "{msg}"
    );

    // Images and labels that disagree on the count.
    let d = temp_dir("count");
    write_tiny(&d, 3, 2);
    std::fs::write(d.join("train-labels-idx1-ubyte"), idx(&[2], &[1, 2])).unwrap();
    let msg = err(&d);
    assert!(
        msg.contains(&*d.to_string_lossy()) && msg.contains("3 images") && msg.contains("2 labels"),
        "{msg}"
    );

    // Labels with an image's rank.
    let d = temp_dir("rank");
    write_tiny(&d, 2, 2);
    let file = d.join("t10k-labels-idx1-ubyte");
    std::fs::write(&file, idx(&[2, 1], &[1, 2])).unwrap();
    let msg = err(&d);
    assert!(
        msg.contains(&*file.to_string_lossy()) && msg.contains("1 dimension"),
        "{msg}"
    );
}

/// The full Fashion-MNIST of Debian's `dataset-fashion-mnist` package, where installed:
/// `cargo test --test data -- --ignored`.
#[test]
#[ignore = "needs apt-get install dataset-fashion-mnist"]
fn fashion_mnist_from_the_debian_package() {
    let m = Mnist::from_dir("/usr/share/datasets/fashion-mnist").unwrap();
    assert_eq!((m.train().len(), m.test().len()), (60000, 10000));
    assert_eq!(m.train().image_dims(), [28, 28]);
    assert!(m.test().labels().iter().all(|&l| l < 10));
    let (x, y) = m
        .train()
        .batches(128)
        .normalize(0.2860, 0.3530)
        .next()
        .unwrap();
    assert_eq!((x.dims(), y.dims()), (&[128, 1, 28, 28][..], &[128][..]));
}

#[test]
fn sharding_splits_a_shuffled_epoch_like_distributed_sampler() {
    let m = mnist();
    let epoch = m.train().take(10).shuffled(3);
    let all = epoch.labels();
    // Padded (DistributedSampler's default): 3 ranks get 4 images each, positions r, r+3, r+6,
    // r+9 of the epoch, the 10th..12th being the epoch's first two images again.
    let parts: Vec<Split> = (0..3).map(|r| epoch.shard(r, 3, true)).collect();
    for (r, part) in parts.iter().enumerate() {
        assert_eq!(part.len(), 4);
        let want: Vec<u8> = (0..4).map(|k| all[(r + 3 * k) % 10]).collect();
        assert_eq!(part.labels(), want, "rank {r}");
        assert_eq!(part.image(0), epoch.image(r));
    }
    // Without padding the tail is dropped: 3 each, disjoint, covering the first 9.
    let mut seen: Vec<&[u8]> = (0..3)
        .flat_map(|r| {
            let part = epoch.shard(r, 3, false);
            assert_eq!(part.len(), 3);
            (0..3).map(move |i| part.image(i))
        })
        .collect();
    let mut first9: Vec<&[u8]> = (0..9).map(|i| epoch.image(i)).collect();
    seen.sort();
    first9.sort();
    assert_eq!(seen, first9);
    // One rank: the view itself.
    assert_eq!(epoch.shard(0, 1, true).labels(), all);
}
