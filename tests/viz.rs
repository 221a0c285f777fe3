//! Pictures (`kiln::viz`) rendered from small known tensors, their pixels checked: filter grids,
//! feature maps, confusion matrices, saliency maps, training curves and their CSV.

mod common;
use common::*;
use kiln::models::LeNet5;
use kiln::nn::{parameter, Module, ParamBuilder};
use kiln::prelude::*;
use kiln::viz::{self, Metrics, Picture, Rect};

/// The pixels of `r` in `pic` whose colour is `c`.
fn count(pic: &Picture, r: Rect, c: [u8; 3]) -> usize {
    let mut n = 0;
    for y in r.y..r.y + r.h {
        for x in r.x..r.x + r.w {
            n += (pic.pixel(x, y) == c) as usize;
        }
    }
    n
}

/// The block of `scale x scale` pixels of source pixel `(row, col)` in tile `r`.
fn block(r: Rect, scale: u32, row: u32, col: u32) -> Rect {
    Rect {
        x: r.x + col * scale,
        y: r.y + row * scale,
        w: scale,
        h: scale,
    }
}

const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];
const ZERO: [u8; 3] = [128, 128, 128];

#[test]
fn one_bright_weight_lights_one_block_of_the_right_tile() {
    // [4, 1, 5, 5]: only output channel 2 has a weight, at row 1, column 3.
    let mut w = vec![0.0f32; 4 * 25];
    w[2 * 25 + 5 + 3] = 0.7;
    let weight = Tensor::from_vec(w, [4, 1, 5, 5], &Device::cpu()).unwrap();
    let dir = temp_dir("filters");
    let path = dir.join("filters.png");
    let pic = viz::save_filters(&weight, &path).unwrap();
    assert!(path.exists());
    let scale = viz::grid::upscale_factor(5, 5);
    assert_eq!(scale, 10, "a 5x5 filter is upscaled to 50x50 pixels");
    assert_eq!(pic.regions.len(), 4);
    for (k, &r) in pic.regions.iter().enumerate() {
        assert_eq!((r.w, r.h), (50, 50));
        let bright = count(&pic, r, WHITE);
        if k == 2 {
            // The tile's largest |w| is white; everything else in it is zero (mid-gray).
            assert_eq!(bright, 100);
            assert_eq!(count(&pic, block(r, scale, 1, 3), WHITE), 100);
            assert_eq!(count(&pic, r, ZERO), 2500 - 100);
        } else {
            assert_eq!(bright, 0, "tile {k}");
            assert_eq!(count(&pic, r, ZERO), 2500, "tile {k}");
        }
    }
    // The PNG on disk holds the same pixels.
    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!(back, pic.image);
    // The caption is drawn (dark text pixels above the tiles); a picture without one has none.
    let above = Rect {
        x: 0,
        y: 0,
        w: pic.image.width(),
        h: pic.regions[0].y,
    };
    let dark = |p: &Picture| {
        (above.y..above.y + above.h)
            .flat_map(|y| (0..p.image.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| p.pixel(x, y)[0] < 100)
            .count()
    };
    assert!(
        dark(&pic) > 50,
        "the caption left {} dark pixels",
        dark(&pic)
    );
    let bare = viz::filter_grid(&weight, "").unwrap();
    let top = bare.regions[0].y;
    assert!((0..top).all(|y| (0..bare.image.width()).all(|x| bare.pixel(x, y) == WHITE)));
}

#[test]
fn filters_are_symmetric_around_zero_with_channels_side_by_side_or_as_rgb() {
    // Two input channels: the negative extreme is black.
    let mut w = vec![0.0f32; 2 * 2 * 3 * 3];
    w[9 + 2 * 3 + 2] = -2.0; // out 0, in 1, (2, 2)
    w[4] = 1.0; // out 0, in 0, (1, 1)
    let weight = Tensor::from_vec(w, [2, 2, 3, 3], &Device::cpu()).unwrap();
    let pic = viz::filter_grid(&weight, "").unwrap();
    let s = viz::grid::upscale_factor(3, 3);
    let r = pic.regions[0];
    // Input channel 1 starts after 3 columns and a separator.
    let gap = viz::grid::CHANNEL_GAP;
    assert_eq!(r.w, 2 * 3 * s + gap);
    let second = Rect {
        x: r.x + 3 * s + gap,
        ..r
    };
    assert_eq!(count(&pic, block(second, s, 2, 2), BLACK), (s * s) as usize);
    assert_eq!(count(&pic, r, BLACK), (s * s) as usize);
    // 1.0 in a tile whose largest |w| is 2: 128 + 127 / 2, rounded; -2.0 is black.
    assert_eq!(pic.pixel(r.x + s + 1, r.y + s + 1), [192, 192, 192]);
    // RGB: three input channels are one colour tile.
    let mut w = vec![0.0f32; 3 * 3 * 2 * 2];
    w[12] = 2.0; // out 1, in 0 (red), (0, 0)
    w[12 + 4 + 3] = -2.0; // out 1, in 1 (green), (1, 1)
    let weight = Tensor::from_vec(w, [3, 3, 2, 2], &Device::cpu()).unwrap();
    let pic = viz::filter_grid(&weight, "").unwrap();
    let s = viz::grid::upscale_factor(2, 2);
    let r = pic.regions[1];
    assert_eq!((r.w, r.h), (2 * s, 2 * s));
    assert_eq!(pic.pixel(r.x, r.y), [255, 128, 128]);
    assert_eq!(pic.pixel(r.x + s, r.y + s), [128, 0, 128]);
    // Bad input is an error.
    let not_conv = Tensor::zeros([3, 3], &Device::cpu());
    assert!(viz::filter_grid(&not_conv, "").is_err());
}

#[test]
fn feature_map_grid_has_one_tile_per_channel_in_order() {
    // [1, 5, 4, 4]: channel c is 0 except 1.0 at (c % 4, (c + 1) % 4).
    let (c, h, w) = (5usize, 4usize, 4usize);
    let mut v = vec![0.0f32; c * h * w];
    for ch in 0..c {
        v[ch * h * w + (ch % 4) * w + (ch + 1) % 4] = 1.0;
    }
    let act = Tensor::from_vec(v, [1, c, h, w], &Device::cpu()).unwrap();
    let dir = temp_dir("features");
    let pic = viz::save_feature_maps(&act, dir.join("maps.png")).unwrap();
    let s = viz::grid::upscale_factor(h, w);
    assert_eq!(pic.regions.len(), c);
    for (ch, &r) in pic.regions.iter().enumerate() {
        let (row, col) = ((ch % 4) as u32, ((ch + 1) % 4) as u32);
        assert_eq!(count(&pic, r, WHITE), (s * s) as usize, "channel {ch}");
        assert_eq!(count(&pic, block(r, s, row, col), WHITE), (s * s) as usize);
        assert_eq!(count(&pic, r, BLACK), (r.w * r.h - s * s) as usize);
    }
    // Tiles go left to right, then down.
    let r = &pic.regions;
    assert!(r[0].y == r[1].y && r[0].x < r[1].x);
    assert!(r.last().unwrap().y > r[0].y);
    // Sections stack: [C, H, W] too, tiles counted section after section.
    let two = viz::feature_maps(&[("a", &act.squeeze(0)), ("b", &act)]).unwrap();
    assert_eq!(two.regions.len(), 2 * c);
    assert!(two.regions[c].y > two.regions[c - 1].y);
    // A batch of two images is refused.
    let batch = Tensor::zeros([2, 3, 4, 4], &Device::cpu());
    assert!(viz::feature_maps(&[("x", &batch)]).is_err());
}

#[test]
fn confusion_matrix_of_perfect_predictions_is_diagonal() {
    let labels: Vec<usize> = (0..30).map(|i| i % 3).collect();
    let m = viz::confusion_matrix(&labels, &labels, 3).unwrap();
    assert_eq!(m, vec![vec![10, 0, 0], vec![0, 10, 0], vec![0, 0, 10]]);
    let dir = temp_dir("confusion");
    let pic =
        viz::save_confusion_matrix(&labels, &labels, &["cat", "dog", "bird"], dir.join("c.png"))
            .unwrap();
    assert_eq!(pic.regions.len(), 9);
    let dark_blue = [8, 48, 107];
    let pale = [247, 251, 255];
    for t in 0..3 {
        for p in 0..3 {
            let r = pic.regions[t * 3 + p];
            // A corner of the cell, away from the count written in its middle.
            let corner = pic.pixel(r.x + 1, r.y + 1);
            assert_eq!(
                corner,
                if t == p { dark_blue } else { pale },
                "cell {t},{p}"
            );
        }
    }
    // The diagonal counts are written in white over the dark cells.
    let d = pic.regions[4];
    let light = (d.y..d.y + d.h)
        .flat_map(|y| (d.x..d.x + d.w).map(move |x| (x, y)))
        .filter(|&(x, y)| pic.pixel(x, y).iter().all(|&c| c > 200))
        .count();
    assert!(light > 5, "{light} light pixels in a diagonal cell");
    // Counts of an imperfect classifier; rows are the true class.
    let preds = [0, 1, 1, 2, 2, 2];
    let truth = [0, 0, 1, 1, 2, 2];
    assert_eq!(
        viz::confusion_matrix(&preds, &truth, 3).unwrap(),
        vec![vec![1, 1, 0], vec![0, 1, 1], vec![0, 0, 2]]
    );
    assert!(viz::confusion_matrix(&[0, 1], &[0], 2).is_err());
    assert!(viz::confusion_matrix(&[0, 3], &[0, 1], 3).is_err());
    assert!(viz::confusion_picture(&[0], &[0], &[]).is_err());
}

/// Logits `flatten(x) W^T` with W zero except W[3][5] = 2: class 3 reads pixel (1, 1) only.
struct OnePixel {
    w: Tensor,
}

impl OnePixel {
    fn new(dev: &Device) -> OnePixel {
        let mut w = vec![0.0f32; 10 * 16];
        w[3 * 16 + 5] = 2.0;
        OnePixel {
            w: parameter(Tensor::from_vec(w, [10, 16], dev).unwrap()),
        }
    }
}

impl Module for OnePixel {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.flatten(1, 3).matmul(&self.w.t())
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("w".into(), self.w.clone())]
    }
}

#[test]
fn saliency_of_a_model_that_reads_one_pixel_lights_that_pixel() {
    for dev in [Device::cpu(), gpu()] {
        let model = OnePixel::new(&dev);
        let image = Tensor::from_vec(values(16, 3), [1, 4, 4], &Device::cpu()).unwrap();
        let map = viz::saliency(&model, &image, 3).unwrap();
        assert_eq!(map.dims(), &[4, 4]);
        let v = map.to_vec::<f32>().unwrap();
        let mut expected = vec![0.0f32; 16];
        expected[5] = 2.0;
        assert_eq!(v, expected, "on {}", dev.name());
        // A class that reads nothing has an all-zero map.
        let none = viz::saliency(&model, &image, 4).unwrap();
        assert!(none.to_vec::<f32>().unwrap().iter().all(|&x| x == 0.0));
        assert!(viz::saliency(&model, &image, 10).is_err());
        let dir = temp_dir("saliency");
        let pic = viz::save_saliency(&image, &map, "class 3", dir.join("s.png")).unwrap();
        let heat = pic.regions[1];
        let s = heat.w / 4;
        // The hot map's maximum is white; every other pixel is black.
        assert_eq!(count(&pic, block(heat, s, 1, 1), WHITE), (s * s) as usize);
        assert_eq!(count(&pic, heat, BLACK), (heat.w * heat.h - s * s) as usize);
    }
}

#[test]
fn saliency_on_the_gpu_matches_the_reference() {
    let digit = Tensor::from_vec(values(784, 11), [1, 1, 28, 28], &Device::cpu()).unwrap();
    let on =
        |dev: &Device| viz::saliency(&LeNet5::new(&ParamBuilder::new(dev, 7)), &digit, 4).unwrap();
    let (g, c) = (on(&gpu()), on(&Device::cpu()));
    assert_close(&g, &c, 1e-5, 1e-3);
    assert!(c.to_vec::<f32>().unwrap().iter().any(|&x| x > 0.0));
}

#[test]
fn curves_png_and_metrics_csv() {
    let mut m = Metrics::new();
    for epoch in 1..=3 {
        for k in 0..10 {
            let t = ((epoch - 1) * 10 + k) as f64;
            m.push_step(epoch, 2.0 / (1.0 + t), 0.5 + t / 80.0, 1000.0 + t);
        }
        m.end_epoch(
            epoch,
            Some(1.5 / epoch as f64),
            Some([0.7, 0.8, 0.9][epoch - 1]),
        );
    }
    let e1 = m.epochs[0];
    assert_eq!(e1.steps_done, 10);
    let mean_loss: f64 = (0..10).map(|t| 2.0 / (1.0 + t as f64)).sum::<f64>() / 10.0;
    assert!((e1.train_loss - mean_loss).abs() < 1e-12);
    assert!((e1.train_accuracy - (0.5 + 4.5 / 80.0)).abs() < 1e-12);
    let dir = temp_dir("curves");
    let path = dir.join("curves.png");
    viz::save_curves(&m, &path).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(
        img.dimensions(),
        (viz::curves::CURVES_WIDTH, viz::curves::CURVES_HEIGHT)
    );
    let pixels: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    let not_white = pixels.iter().filter(|&&p| p != WHITE).count();
    assert!(not_white > 5_000, "{not_white} drawn pixels");
    // The per-epoch train (blue) and test (orange) lines are drawn in both panels.
    let half = viz::curves::CURVES_WIDTH / 2;
    for (x0, x1) in [(0, half), (half, viz::curves::CURVES_WIDTH)] {
        for color in [[31, 119, 180], [255, 127, 14]] {
            let n = img
                .enumerate_pixels()
                .filter(|(x, _, p)| *x >= x0 && *x < x1 && p.0 == color)
                .count();
            assert!(n > 50, "{n} pixels of {color:?} in the panel at x {x0}");
        }
    }
    let csv = dir.join("metrics.csv");
    m.save_csv(&csv).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "step,epoch,split,loss,accuracy,images_per_s");
    assert_eq!(lines.len(), 1 + 30 + 3 + 3);
    assert_eq!(lines[1], "0,1,train_step,2,0.5,1000.0");
    assert!(lines.contains(&"29,3,test_epoch,0.5,0.9,"));
    // Nothing recorded: an error, not an empty picture.
    assert!(viz::save_curves(&Metrics::new(), dir.join("none.png")).is_err());
}
