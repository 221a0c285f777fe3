//! What examples/filters.rs relies on: the shipped test image, and `conv2d` with the course's
//! hand-made kernels on the GPU matching a direct host computation (cross-correlation with zero
//! padding) on that image.

mod common;

use kiln::prelude::*;

const SCENE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/test-scene.png");

const KERNELS: [(&str, [f32; 9]); 4] = [
    ("edges", [-1., -1., -1., -1., 8., -1., -1., -1., -1.]),
    ("sharpen", [0., -1., 0., -1., 5., -1., 0., -1., 0.]),
    (
        "blur",
        [
            0.0625, 0.125, 0.0625, 0.125, 0.25, 0.125, 0.0625, 0.125, 0.0625,
        ],
    ),
    ("vertical", [1., 0., -1., 1., 0., -1., 1., 0., -1.]),
];

fn scene() -> (Vec<f32>, usize, usize) {
    let img = image::open(SCENE).expect("assets/test-scene.png decodes");
    let gray = img.to_luma32f();
    let (w, h) = gray.dimensions();
    (gray.into_raw(), w as usize, h as usize)
}

#[test]
fn the_shipped_test_image_is_small_and_256_square() {
    let bytes = std::fs::metadata(SCENE).unwrap().len();
    assert!(bytes < 100 * 1024, "{bytes} bytes");
    let (px, w, h) = scene();
    assert_eq!((w, h), (256, 256));
    assert!(px.iter().all(|p| (0.0..=1.0).contains(p)));
    assert!(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/README.md")).is_file()
    );
}

#[test]
fn course_kernels_on_the_gpu_match_a_direct_computation() {
    let dev = common::gpu();
    let (px, w, h) = scene();
    let x = Tensor::from_slice(&px, [1, 1, h, w], &dev).unwrap();
    let opts = Conv2dOptions::default().padding(1);
    let at = |r: isize, c: isize| -> f32 {
        if r < 0 || c < 0 || r >= h as isize || c >= w as isize {
            0.0
        } else {
            px[r as usize * w + c as usize]
        }
    };
    for (name, k) in KERNELS {
        let kt = Tensor::from_slice(&k, [1, 1, 3, 3], &dev).unwrap();
        let y = x.conv2d(&kt, None, &opts);
        assert_eq!(y.dims(), &[1, 1, h, w], "{name}");
        let got: Vec<f32> = y.to_vec().unwrap();
        for r in 0..h as isize {
            for c in 0..w as isize {
                let mut want = 0.0f32;
                for i in 0..3isize {
                    for j in 0..3isize {
                        want += k[(i * 3 + j) as usize] * at(r + i - 1, c + j - 1);
                    }
                }
                let g = got[r as usize * w + c as usize];
                assert!(
                    (g - want).abs() <= 1e-5,
                    "{name} at ({r}, {c}): got {g}, expected {want}"
                );
            }
        }
    }
    // The edge kernel sums to 0: a flat region gives 0.
    let edges = x.conv2d(
        &Tensor::from_slice(&KERNELS[0].1, [1, 1, 3, 3], &dev).unwrap(),
        None,
        &opts,
    );
    let v: Vec<f32> = edges.to_vec().unwrap();
    let flat = 110 * w + 160; // inside the blue rectangle (rows 80..140, columns 120..200)
    assert!(v[flat].abs() < 1e-5, "{}", v[flat]);
}
