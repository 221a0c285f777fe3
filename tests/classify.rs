//! `kiln::classify`, the library side of `examples/classify.rs`: image files made into a model's
//! normalised input (bit for bit what the MNIST batches give), checkpoints made into a model of
//! the right shape, the top-k classes, class-name files, the errors for bad input, and a digit
//! written to a PNG from the shipped test set classified as its label by a briefly trained
//! LeNet-5.

mod common;
use common::*;
use image::{GrayImage, Rgb, RgbImage};
use kiln::checkpoint;
use kiln::classify::{
    load_classifier, read_labels, top_k, ImageInput, META_INPUT_SIZE, META_MEAN, META_MODEL,
    META_STD,
};
use kiln::data::{Mnist, MNIST_MEAN, MNIST_STD};
use kiln::models::{LeNet5, ResNet};
use kiln::nn::{save_weights, Module, ParamBuilder};
use kiln::optim::{Adam, Optimizer};
use kiln::prelude::*;
use std::path::{Path, PathBuf};

fn digits() -> Mnist {
    Mnist::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap()
}

/// Writes the first `n` test digits as 28x28 gray PNGs into `dir`; returns the paths and labels.
fn write_test_digits(dir: &Path, n: usize) -> (Vec<PathBuf>, Vec<usize>) {
    let data = digits();
    let test = data.test();
    let mut paths = vec![];
    let mut labels = vec![];
    for i in 0..n {
        let path = dir.join(format!("digit{i}.png"));
        GrayImage::from_raw(28, 28, test.image(i).to_vec())
            .unwrap()
            .save(&path)
            .unwrap();
        paths.push(path);
        labels.push(test.label(i) as usize);
    }
    (paths, labels)
}

fn mnist_input() -> ImageInput {
    ImageInput::new(1, [28, 28])
        .normalize(&[MNIST_MEAN], &[MNIST_STD])
        .unwrap()
}

#[test]
fn a_digit_png_reads_back_as_exactly_its_mnist_batch() {
    let dir = temp_dir("png-batch");
    let (paths, _) = write_test_digits(&dir, 3);
    let x = mnist_input().load(&paths, &Device::cpu()).unwrap();
    let (batch, _) = digits().test().take(3).batches(3).next().unwrap();
    assert_eq!(x.dims(), &[3, 1, 28, 28]);
    let (got, expected) = (x.to_vec::<f32>().unwrap(), batch.to_vec::<f32>().unwrap());
    let same_bits = got
        .iter()
        .zip(&expected)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same_bits, "the PNG path and the MNIST batches disagree");
}

#[test]
fn rgb_pixels_are_channel_major_and_normalised_per_channel() {
    let dir = temp_dir("rgb");
    let path = dir.join("rgb.png");
    // 2 wide, 1 high: a red and a blue pixel.
    let mut img = RgbImage::new(2, 1);
    img.put_pixel(0, 0, Rgb([255, 0, 0]));
    img.put_pixel(1, 0, Rgb([0, 51, 255]));
    img.save(&path).unwrap();
    let input = ImageInput::new(3, [1, 2])
        .normalize(&[0.5, 0.0, 0.25], &[0.5, 1.0, 0.25])
        .unwrap();
    assert_eq!(input.read(&path).unwrap(), vec![255, 0, 0, 51, 0, 255]);
    let x = input.load(&[&path], &Device::cpu()).unwrap();
    assert_eq!(x.dims(), &[1, 3, 1, 2]);
    // (p / 255 - mean[c]) / std[c]: red 1 -> 1, 0 -> -1; green 0, 0.2; blue -1, 3.
    let v = x.to_vec::<f32>().unwrap();
    let expected = [1.0, -1.0, 0.0, 0.2, -1.0, 3.0];
    for (g, e) in v.iter().zip(expected) {
        assert!((g - e).abs() < 1e-6, "{v:?} vs {expected:?}");
    }
}

#[test]
fn images_are_resized_converted_to_gray_and_inverted() {
    let dir = temp_dir("resize");
    let path = dir.join("flat.png");
    // A flat 8x6 color becomes a flat 4x4 gray of its luma (Rec. 709 weights, as `image` has).
    RgbImage::from_pixel(8, 6, Rgb([200, 200, 200]))
        .save(&path)
        .unwrap();
    let gray = ImageInput::new(1, [4, 4]).read(&path).unwrap();
    assert_eq!(gray, vec![200; 16]);
    let inverted = ImageInput::new(1, [4, 4]).invert(true).read(&path).unwrap();
    assert_eq!(inverted, vec![55; 16]);
    // A gray image becomes RGB with three equal channels.
    let gpath = dir.join("gray.png");
    GrayImage::from_raw(2, 1, vec![10, 240])
        .unwrap()
        .save(&gpath)
        .unwrap();
    assert_eq!(
        ImageInput::new(3, [1, 2]).read(&gpath).unwrap(),
        vec![10, 240, 10, 240, 10, 240]
    );
}

#[test]
fn bad_images_and_bad_normalisations_are_errors_that_say_what_is_wrong() {
    let dir = temp_dir("bad");
    let missing = dir.join("nothing-here.png");
    let e = mnist_input().read(&missing).unwrap_err().to_string();
    assert!(
        e.contains("nothing-here.png") && e.contains("cannot open"),
        "{e}"
    );
    let text = dir.join("notes.png");
    std::fs::write(&text, "not an image at all").unwrap();
    let e = mnist_input().read(&text).unwrap_err().to_string();
    assert!(
        e.contains("notes.png") && e.contains("cannot decode"),
        "{e}"
    );
    // The batch names the first file that fails.
    let e = mnist_input()
        .load(&[&text], &Device::cpu())
        .unwrap_err()
        .to_string();
    assert!(e.contains("notes.png"), "{e}");
    let e = ImageInput::new(1, [28, 28])
        .normalize(&[0.1, 0.2], &[0.3])
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 mean values for 1 channel"), "{e}");
    let e = ImageInput::new(3, [28, 28])
        .normalize(&[0.1], &[0.0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("positive standard deviations"), "{e}");
    let e = mnist_input()
        .tensor(&[vec![0; 10]], &Device::cpu())
        .unwrap_err()
        .to_string();
    assert!(e.contains("10 pixels") && e.contains("784"), "{e}");
}

#[test]
fn top_k_ranks_classes_by_their_softmax_probability() {
    let logits = Tensor::from_vec(
        vec![1.0f32, 3.0, 2.0, 0.0, 0.5, 0.5, 0.5, 0.5],
        [2, 4],
        &Device::cpu(),
    )
    .unwrap();
    let rows = top_k(&logits, 3).unwrap();
    let z: f64 = [1.0f64, 3.0, 2.0, 0.0].iter().map(|v| v.exp()).sum();
    let p = |v: f64| (v.exp() / z) as f32;
    let classes: Vec<usize> = rows[0].iter().map(|(c, _)| *c).collect();
    assert_eq!(classes, vec![1, 2, 0]);
    for ((_, got), want) in rows[0].iter().zip([p(3.0), p(2.0), p(1.0)]) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
    // Equal logits: equal probabilities, lower classes first.
    assert_eq!(rows[1], vec![(0, 0.25), (1, 0.25), (2, 0.25)]);
    // More than there are classes: all of them.
    assert_eq!(top_k(&logits, 10).unwrap()[0].len(), 4);
    let flat = Tensor::zeros([4], &Device::cpu());
    assert!(top_k(&flat, 1)
        .unwrap_err()
        .to_string()
        .contains("[N, classes]"));
}

#[test]
fn class_names_come_one_per_line() {
    let dir = temp_dir("labels");
    let good = dir.join("good.txt");
    std::fs::write(&good, "T-shirt/top\n Trouser \nAnkle boot\n\n").unwrap();
    assert_eq!(
        read_labels(&good).unwrap(),
        vec!["T-shirt/top", "Trouser", "Ankle boot"]
    );
    let gap = dir.join("gap.txt");
    std::fs::write(&gap, "a\n\nb\n").unwrap();
    let e = read_labels(&gap).unwrap_err().to_string();
    assert!(
        e.contains("gap.txt") && e.contains("line 2 is blank"),
        "{e}"
    );
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n").unwrap();
    assert!(read_labels(&empty)
        .unwrap_err()
        .to_string()
        .contains("no class names"));
    assert!(read_labels(dir.join("absent.txt")).is_err());
}

/// The metadata `examples/mnist.rs` writes with a checkpoint.
fn mnist_metadata(model: &str) -> Vec<(String, String)> {
    vec![
        (META_MODEL.into(), model.into()),
        (META_MEAN.into(), MNIST_MEAN.to_string()),
        (META_STD.into(), MNIST_STD.to_string()),
        (META_INPUT_SIZE.into(), "28x28".into()),
    ]
}

#[test]
fn a_checkpoint_gives_a_model_of_its_shape_with_its_weights() {
    let dir = temp_dir("load");
    let cpu = Device::cpu();
    // A PyTorch-style export (no model name): 3 channels, 7 classes, read from the shapes.
    let net = ResNet::resnet20(3, 7, &ParamBuilder::new(&cpu, 5)).unwrap();
    let exported = dir.join("resnet20.safetensors");
    save_weights(&net, &exported).unwrap();
    let loaded = load_classifier(Some("resnet20"), &exported, &cpu).unwrap();
    assert_eq!((loaded.in_channels, loaded.classes), (3, 7));
    assert_eq!(loaded.normalization, None);
    let want = net.fc.weight.to_vec::<f32>().unwrap();
    let got = loaded
        .model
        .state_dict()
        .into_iter()
        .find(|(n, _)| n == "fc.weight")
        .unwrap()
        .1
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(got, want);
    // Without a name and without metadata there is no telling which model it is.
    let e = load_classifier(None, &exported, &cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("resnet20.safetensors") && e.contains("name the model"),
        "{e}"
    );
    // The weights of one model for another: named.
    let e = load_classifier(Some("lenet5"), &exported, &cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no tensor \"fc3.weight\", which a lenet5 has"),
        "{e}"
    );
    let e = load_classifier(Some("vgg16"), &exported, &cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unknown model \"vgg16\""), "{e}");

    // A training checkpoint (examples/mnist.rs): the name and normalisation come with it, the
    // optimiser's tensors are skipped.
    let lenet = LeNet5::new(&ParamBuilder::new(&cpu, 3));
    let mut tensors = lenet.state_dict();
    tensors.push(("optimizer.step".into(), Tensor::zeros([1], &cpu)));
    let ckpt = dir.join("lenet5.safetensors");
    checkpoint::save(&ckpt, &tensors, &mnist_metadata("LeNet5")).unwrap();
    let loaded = load_classifier(None, &ckpt, &cpu).unwrap();
    assert_eq!(loaded.name, "lenet5");
    assert_eq!((loaded.in_channels, loaded.classes), (1, 10));
    assert_eq!(
        loaded.normalization,
        Some((vec![MNIST_MEAN], vec![MNIST_STD]))
    );
    assert_eq!(loaded.input_size, Some([28, 28]));
    let e = load_classifier(Some("alexnet"), &ckpt, &cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("holds model lenet5") && e.contains("not alexnet; pass --model lenet5"),
        "{e}"
    );
    let e = load_classifier(Some("vgg16"), &ckpt, &cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unknown model \"vgg16\""), "{e}");
    // A file that is not a checkpoint at all.
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, "junk").unwrap();
    let e = load_classifier(Some("lenet5"), &junk, &cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("junk.safetensors"), "{e}");
}

#[test]
fn a_briefly_trained_lenet5_classifies_a_test_digit_png_as_its_label() {
    let dev = gpu();
    let data = digits();
    let model = LeNet5::new(&ParamBuilder::new(&dev, 42));
    let mut opt = Adam::new(model.parameters(), 2e-3);
    // Two epochs of the 8,000 shipped training digits.
    for epoch in 0..2 {
        for (images, labels) in data.train().shuffled(epoch).batches(64) {
            let loss = model.forward(&images).cross_entropy(&labels);
            opt.step(&loss.backward()).unwrap();
        }
    }
    let dir = temp_dir("smoke");
    let ckpt = dir.join("lenet5.safetensors");
    checkpoint::save(&ckpt, &model.state_dict(), &mnist_metadata("lenet5")).unwrap();
    let (paths, labels) = write_test_digits(&dir, 4);

    let net = load_classifier(Some("lenet5"), &ckpt, &dev).unwrap();
    let (mean, std) = net.normalization.clone().unwrap();
    let input = ImageInput::new(net.in_channels, net.input_size.unwrap())
        .normalize(&mean, &std)
        .unwrap();
    let x = input.load(&paths, &dev).unwrap();
    let ranked = top_k(&kiln::no_grad(|| net.model.forward(&x)), 5).unwrap();
    // The same probabilities as the trained model on the test batch itself.
    model.set_training(false);
    let (batch, _) = data.test().take(4).batches(4).next().unwrap();
    let direct = top_k(&kiln::no_grad(|| model.forward(&batch)), 5).unwrap();
    for (a, b) in ranked.iter().zip(&direct) {
        for ((ca, pa), (cb, pb)) in a.iter().zip(b) {
            assert_eq!(ca, cb);
            assert!((pa - pb).abs() < 1e-5, "{pa} vs {pb}");
        }
    }
    let top1: Vec<usize> = ranked.iter().map(|r| r[0].0).collect();
    println!("labels {labels:?}, top-1 {top1:?}, first: {:?}", ranked[0]);
    assert_eq!(
        top1[0], labels[0],
        "digit 0 (a {}): {:?}",
        labels[0], ranked[0]
    );
    let correct = top1.iter().zip(&labels).filter(|(p, l)| p == l).count();
    assert!(
        correct >= 3,
        "{correct} of 4 test digits right: {top1:?} vs {labels:?}"
    );
    // Probabilities of a row sum to at most 1 (5 of 10 classes) and are ranked.
    for r in &ranked {
        assert!(r.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(r.iter().map(|(_, p)| p).sum::<f32>() <= 1.0 + 1e-5);
    }
}
