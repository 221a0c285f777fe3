//! The CIFAR-10/100 binary format (`kiln::data::Cifar`), on tiny files written on the fly.

mod common;
use common::temp_dir;

use kiln::data::{Cifar, DataFormat, CIFAR10_MEAN, CIFAR10_STD};
use std::path::Path;

/// Record `k`'s pixels: channel c, pixel i holds `(k * 7 + c * 50 + i) % 256`.
fn pixels(k: usize) -> Vec<u8> {
    (0..3)
        .flat_map(|c| (0..1024).map(move |i| ((k * 7 + c * 50 + i) % 256) as u8))
        .collect()
}

/// A file of `n` records with the label bytes `labels(k)` before record k's pixels.
fn write(path: &Path, n: usize, labels: impl Fn(usize) -> Vec<u8>) {
    let mut bytes = Vec::new();
    for k in 0..n {
        bytes.extend(labels(k));
        bytes.extend(pixels(k));
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn cifar10_records_read_back_with_labels_pixels_and_names() {
    let dir = temp_dir("c10");
    let d = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&d).unwrap();
    write(&d.join("data_batch_1.bin"), 3, |k| vec![k as u8]);
    write(&d.join("data_batch_2.bin"), 2, |k| vec![9 - k as u8]);
    write(&d.join("test_batch.bin"), 2, |k| vec![k as u8 + 4]);
    std::fs::write(d.join("batches.meta.txt"), "airplane\nautomobile\n\n").unwrap();

    let cifar = Cifar::from_dir(&*dir).unwrap();
    assert_eq!(cifar.classes(), 10);
    assert_eq!(cifar.class_names().unwrap(), ["airplane", "automobile"]);
    let (train, test) = (cifar.train(), cifar.test());
    assert_eq!((train.len(), test.len(), train.channels()), (5, 2, 3));
    assert_eq!(train.labels(), [0, 1, 2, 9, 8]);
    assert_eq!(test.labels(), [4, 5]);
    assert_eq!(
        train.image(3),
        &pixels(0)[..],
        "record 0 of the second file"
    );

    // Batches: [B, 3, 32, 32], normalised per channel with CIFAR-10's statistics.
    let (x, y) = train.batches(4).next().unwrap();
    assert_eq!(x.dims(), [4, 3, 32, 32]);
    assert_eq!(y.to_vec::<i32>().unwrap(), [0, 1, 2, 9]);
    let x = x.to_vec::<f32>().unwrap();
    let img1 = pixels(1);
    for (c, i) in [(0, 0), (1, 5), (2, 1023)] {
        let p = img1[c * 1024 + i] as f32 / 255.0;
        let want = (p - CIFAR10_MEAN[c]) / CIFAR10_STD[c];
        assert!(
            (x[3 * 1024 + c * 1024 + i] - want).abs() < 1e-6,
            "channel {c}"
        );
    }
    let raw = train.batches(5).unnormalized().next().unwrap().0;
    assert_eq!(raw.to_vec::<f32>().unwrap()[1], 1.0 / 255.0);
    let (mean, std) = train.channel_mean_std();
    assert_eq!((mean.len(), std.len()), (3, 3));
}

#[test]
fn cifar100_has_fine_and_coarse_labels() {
    let dir = temp_dir("c100");
    write(&dir.join("train.bin"), 4, |k| {
        vec![k as u8 % 20, 99 - k as u8]
    });
    write(&dir.join("test.bin"), 1, |_| vec![19, 42]);
    std::fs::write(
        dir.join("coarse_label_names.txt"),
        "aquatic_mammals\nfish\n",
    )
    .unwrap();
    let cifar = Cifar::from_dir(&*dir).unwrap();
    assert_eq!(cifar.classes(), 100);
    assert_eq!(cifar.train().labels(), [99, 98, 97, 96]);
    assert_eq!(cifar.test().labels(), [42]);
    assert!(cifar.class_names().is_none());
    assert_eq!(cifar.train().image(2), &pixels(2)[..]);
    let coarse = cifar.coarse_labels().unwrap();
    assert_eq!(coarse.classes(), 20);
    assert_eq!(coarse.train().labels(), [0, 1, 2, 3]);
    assert_eq!(coarse.test().labels(), [19]);
    assert_eq!(coarse.class_names().unwrap(), ["aquatic_mammals", "fish"]);
}

#[test]
fn truncated_files_and_bad_labels_are_clear_errors() {
    let dir = temp_dir("bad");
    write(&dir.join("data_batch_1.bin"), 2, |k| vec![k as u8]);
    write(&dir.join("test_batch.bin"), 2, |k| vec![k as u8]);
    let full = std::fs::read(dir.join("data_batch_1.bin")).unwrap();
    std::fs::write(dir.join("data_batch_1.bin"), &full[..full.len() - 100]).unwrap();
    let e = Cifar::from_dir(&*dir).unwrap_err().to_string();
    assert!(
        e.contains("data_batch_1.bin") && e.contains("6046 bytes") && e.contains("truncated"),
        "{e}"
    );

    std::fs::write(dir.join("data_batch_1.bin"), &full).unwrap();
    write(&dir.join("test_batch.bin"), 2, |k| vec![10 + k as u8]);
    let e = Cifar::from_dir(&*dir).unwrap_err().to_string();
    assert!(
        e.contains("test_batch.bin") && e.contains("label 10 of record 0"),
        "{e}"
    );

    let e = Cifar::from_dir(dir.join("none")).unwrap_err().to_string();
    assert!(e.contains("no CIFAR files"), "{e}");
    write(&dir.join("test_batch.bin"), 2, |k| vec![k as u8]);
    let e = Cifar::from_dir(&*dir).unwrap().coarse_labels().unwrap_err();
    assert!(
        e.to_string().contains("CIFAR-10 has no coarse labels"),
        "{e}"
    );
}

#[test]
fn a_data_directory_says_which_reader_it_needs() {
    let dir = temp_dir("detect");
    let c10 = dir.join("c10/cifar-10-batches-bin");
    std::fs::create_dir_all(&c10).unwrap();
    write(&c10.join("test_batch.bin"), 1, |_| vec![0]);
    assert_eq!(
        DataFormat::detect(dir.join("c10")).unwrap(),
        DataFormat::Cifar
    );
    let c100 = dir.join("c100");
    std::fs::create_dir_all(&c100).unwrap();
    write(&c100.join("train.bin"), 1, |_| vec![0, 0]);
    write(&c100.join("test.bin"), 1, |_| vec![0, 0]);
    assert_eq!(DataFormat::detect(&c100).unwrap(), DataFormat::Cifar);
    let mnist = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k");
    assert_eq!(DataFormat::detect(mnist).unwrap(), DataFormat::Idx);
    let photos = dir.join("photos/cat");
    std::fs::create_dir_all(&photos).unwrap();
    assert_eq!(
        DataFormat::detect(dir.join("photos")).unwrap(),
        DataFormat::ImageFolder
    );
    let e = DataFormat::detect(dir.join("none"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("none") && e.contains("no such data directory"),
        "{e}"
    );
}
