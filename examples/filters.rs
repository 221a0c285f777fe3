//! The course's hand-made 3x3 kernels, applied to a photo with `conv2d` on the GPU: edge
//! detection, sharpening, Gaussian blur and vertical edges. Each result is written as a PNG.
//!
//! ```text
//! cargo run --release --example filters -- [IMAGE] [--out DIR]
//! ```
//!
//! With no IMAGE it filters `assets/test-scene.png` (a synthetic scene shipped with kiln; see
//! `assets/README.md`). The image (PNG or JPEG) is converted to grayscale in [0, 1]; the four
//! kernels run as four convolutions of one graph (one plan, one submission), with padding 1 so
//! that each output has the input's size. Outputs go to DIR (default `target/filters/`):
//! `gray.png` (the input in grayscale) and one PNG per kernel.
//!
//! Mapping the results to 0..=255: blur and sharpen produce intensities, which are clamped to
//! [0, 1] and scaled by 255 (sharpening overshoots at edges: the clamp cuts the overshoot). The
//! two edge kernels sum to zero and give signed responses; their absolute values are scaled so
//! that the strongest response is 255 (an image with no edges gives black).

use clap::Parser;
use image::ImageReader;
use kiln::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// How a filter's output is mapped to 0..=255.
#[derive(Clone, Copy)]
enum Map {
    /// `clamp(v, 0, 1) * 255`: for filters whose output is an intensity (blur, sharpen).
    Clamp,
    /// `|v| / max|v| * 255`: for signed edge responses.
    AbsMax,
}

struct Filter {
    name: &'static str,
    file: &'static str,
    kernel: [f32; 9],
    map: Map,
}

/// The course's kernels, row by row. `conv2d` is a cross-correlation (as in PyTorch): the
/// kernel is not flipped, so [1, 0, -1] responds positively where the image gets darker to the
/// right.
const FILTERS: [Filter; 4] = [
    Filter {
        name: "edge detection",
        file: "edges.png",
        kernel: [-1., -1., -1., -1., 8., -1., -1., -1., -1.],
        map: Map::AbsMax,
    },
    Filter {
        name: "sharpen",
        file: "sharpen.png",
        kernel: [0., -1., 0., -1., 5., -1., 0., -1., 0.],
        map: Map::Clamp,
    },
    Filter {
        name: "Gaussian blur",
        file: "blur.png",
        kernel: [
            1. / 16.,
            2. / 16.,
            1. / 16.,
            2. / 16.,
            4. / 16.,
            2. / 16.,
            1. / 16.,
            2. / 16.,
            1. / 16.,
        ],
        map: Map::Clamp,
    },
    Filter {
        name: "vertical edges",
        file: "vertical-edges.png",
        kernel: [1., 0., -1., 1., 0., -1., 1., 0., -1.],
        map: Map::AbsMax,
    },
];

/// Apply the course's 3x3 kernels (edges, sharpen, blur, vertical edges) to an image on the GPU.
#[derive(Parser, Debug)]
#[command(name = "filters")]
struct Args {
    /// The image to filter (PNG or JPEG); default: the synthetic test scene in assets/.
    image: Option<PathBuf>,
    /// Directory the PNGs are written to (created if needed).
    #[arg(long, short, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/filters"))]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            // --help
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message is several lines; its first says what is wrong.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "filters: {} (usage: filters [IMAGE] [--out DIR])",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("filters: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The image as grayscale f32 in [0, 1], with its width and height.
fn read_gray(path: &Path) -> std::result::Result<(Vec<f32>, u32, u32), String> {
    let img = ImageReader::open(path)
        .map_err(|e| format!("{}: cannot open: {e}", path.display()))?
        .with_guessed_format()
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?
        .decode()
        .map_err(|e| format!("{}: not a readable image: {e}", path.display()))?;
    let gray = img.to_luma32f();
    let (w, h) = gray.dimensions();
    Ok((gray.into_raw(), w, h))
}

/// A filter's output as 8-bit pixels (see [`Map`]).
fn to_u8(values: &[f32], map: Map) -> Vec<u8> {
    match map {
        Map::Clamp => values
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect(),
        Map::AbsMax => {
            let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { 255.0 / max } else { 0.0 };
            values
                .iter()
                .map(|&v| (v.abs() * scale).round().min(255.0) as u8)
                .collect()
        }
    }
}

fn write_png(
    dir: &Path,
    file: &str,
    pixels: Vec<u8>,
    w: u32,
    h: u32,
) -> std::result::Result<PathBuf, String> {
    let path = dir.join(file);
    kiln::viz::save_gray(&pixels, w, h, &path).map_err(|e| e.to_string())?;
    Ok(path)
}

fn run(args: &Args) -> std::result::Result<(), String> {
    let input = args.image.clone().unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/test-scene.png"
        ))
    });
    let (gray, w, h) = read_gray(&input)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("{}: cannot create the directory: {e}", args.out.display()))?;
    let dev = Device::default().map_err(|e| e.to_string())?;

    let start = Instant::now();
    let x = Tensor::from_vec(gray.clone(), [1, 1, h as usize, w as usize], &dev)
        .map_err(|e| e.to_string())?;
    let opts = Conv2dOptions::default().padding(1);
    let outputs: Vec<Tensor> = FILTERS
        .iter()
        .map(|f| {
            let k = Tensor::from_vec(f.kernel.to_vec(), [1, 1, 3, 3], &dev).expect("3x3 kernel");
            x.conv2d(&k, None, &opts)
        })
        .collect();
    // All four convolutions in one plan and one submission.
    Tensor::realize_all(&outputs.iter().collect::<Vec<_>>()).map_err(|e| e.to_string())?;
    let values: Vec<Vec<f32>> = outputs
        .iter()
        .map(|t| t.to_vec::<f32>())
        .collect::<kiln::Result<_>>()
        .map_err(|e| e.to_string())?;
    let took = start.elapsed();

    println!(
        "{} ({w}x{h}): 4 kernels in {:.1} ms on {} (upload, kernel compilation and readback included)",
        input.display(),
        took.as_secs_f64() * 1e3,
        dev.name()
    );
    let p = write_png(&args.out, "gray.png", to_u8(&gray, Map::Clamp), w, h)?;
    println!("  {:<16} {}", "grayscale input", p.display());
    for (f, v) in FILTERS.iter().zip(values) {
        let p = write_png(&args.out, f.file, to_u8(&v, f.map), w, h)?;
        println!("  {:<16} {}", f.name, p.display());
    }
    Ok(())
}
