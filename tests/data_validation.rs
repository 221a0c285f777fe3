//! The MNIST loader refuses data sets a model cannot be trained or tested on (issue 15, point
//! 5), with errors that name the file and what is wrong: empty splits, images of no pixels,
//! test images of another size than the training images, and labels outside the class range
//! (with the index of the first).

mod common;
use common::temp_dir;
use kiln::data::Mnist;
use std::path::Path;

/// A raw IDX file of u8 with these dimensions and data.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    b
}

/// Writes one split: `labels.len()` images of `rows x cols` pixels.
fn write_split(dir: &Path, stem: &str, [rows, cols]: [u32; 2], labels: &[u8]) {
    let n = labels.len() as u32;
    let pixels = vec![7u8; (n * rows * cols) as usize];
    let images = idx(&[n, rows, cols], &pixels);
    std::fs::write(dir.join(format!("{stem}-images-idx3-ubyte")), images).unwrap();
    let labels = idx(&[n], labels);
    std::fs::write(dir.join(format!("{stem}-labels-idx1-ubyte")), labels).unwrap();
}

fn err(dir: &Path) -> String {
    Mnist::from_dir(dir).unwrap_err().to_string()
}

#[test]
fn test_images_must_have_the_training_images_size() {
    let d = temp_dir("sizes");
    write_split(&d, "train", [28, 28], &[0, 1, 2]);
    write_split(&d, "t10k", [32, 28], &[0, 1]);
    let msg = err(&d);
    assert!(
        msg.contains("test images are 32x28") && msg.contains("training images 28x28"),
        "{msg}"
    );
}

#[test]
fn a_test_label_outside_the_training_labels_range_is_named_with_its_index() {
    let d = temp_dir("labels");
    write_split(&d, "train", [4, 4], &[0, 1, 2, 9]);
    write_split(&d, "t10k", [4, 4], &[0, 9, 3, 200, 12]);
    let msg = err(&d);
    assert!(
        msg.contains("t10k-labels-idx1-ubyte")
            && msg.contains("label 200 at index 3")
            && msg.contains("0..=9"),
        "{msg}"
    );
}

#[test]
fn check_labels_checks_both_splits_against_a_class_count() {
    let d = temp_dir("classes");
    write_split(&d, "train", [4, 4], &[0, 1, 5, 2]);
    write_split(&d, "t10k", [4, 4], &[0, 1]);
    let m = Mnist::from_dir(&d).unwrap();
    assert_eq!(m.classes(), 6);
    assert!(m.check_labels(6).is_ok());
    let msg = m.check_labels(4).unwrap_err().to_string();
    assert!(
        msg.contains("train-labels-idx1-ubyte") && msg.contains("label 5 at index 2"),
        "{msg}"
    );
}

#[test]
fn empty_splits_and_images_of_no_pixels_are_refused() {
    let d = temp_dir("empty");
    write_split(&d, "train", [4, 4], &[]);
    write_split(&d, "t10k", [4, 4], &[1]);
    let msg = err(&d);
    assert!(
        msg.contains("train-images-idx3-ubyte") && msg.contains("holds no images"),
        "{msg}"
    );
    write_split(&d, "train", [4, 4], &[1]);
    write_split(&d, "t10k", [4, 4], &[]);
    assert!(err(&d).contains("t10k-images-idx3-ubyte"), "{}", err(&d));

    write_split(&d, "train", [0, 4], &[1, 2]);
    write_split(&d, "t10k", [0, 4], &[1]);
    let msg = err(&d);
    assert!(msg.contains("0x4 pixels hold nothing"), "{msg}");
}

#[test]
fn pixel_statistics_of_the_shipped_digits() {
    let m = Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap();
    let (mean, std) = m.train().pixel_mean_std();
    // MNIST's full training set: 0.1307 and 0.3081; the 8,000-image sample is close.
    assert!(
        (mean - 0.1307).abs() < 0.005 && (std - 0.3081).abs() < 0.005,
        "{mean} {std}"
    );
    assert_eq!(m.classes(), 10);
}
