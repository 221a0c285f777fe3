//! Fuzzing on stable: the IDX reader (raw and gzip), the checkpoint loader (with kiln's metadata
//! and optimiser state) and the image input path of `kiln::classify`, each run on a bounded
//! number of generated and mutated inputs from a seeded RNG (bit flips, truncations, lying
//! lengths, huge declared sizes, gzip bombs made on the fly). Every case must return `Ok` or
//! `Err`: a panic, a case that runs past [`HANG_LIMIT`] or one that allocates past its target's
//! bound (a metering allocator counts this thread's live bytes) fails the test and writes the
//! input to a file named in the failure. The files in `tests/fixtures/fuzz/` are the
//! interesting cases kept as regression inputs. The targets themselves are in
//! `tests/fuzz_harness/`, shared with the `cargo fuzz` targets in `fuzz/`.

mod fuzz_harness;
mod fuzz_support;
use fuzz_harness::IDX_LIMIT;
use fuzz_support::{metered, mutate, Rng};
use kiln::nn::ParamBuilder;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A case running this long has hung: every case takes milliseconds. (A hang detector, not a
/// speed test: the limit is two orders of magnitude above the slowest case.)
const HANG_LIMIT: Duration = Duration::from_secs(20);

/// Generated IDX inputs per run (half of them mutated).
const IDX_CASES: usize = 2000;

/// `KILN_FUZZ_SCALE=N` runs N times as many cases, `KILN_FUZZ_SEED=S` other ones (for a longer
/// search by hand; CI runs the defaults, 1 and 0).
fn from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The RNG of a test: its own seed, moved by `KILN_FUZZ_SEED`.
fn rng(seed: u64) -> Rng {
    Rng(seed ^ from_env("KILN_FUZZ_SEED", 0).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// `n` cases, times `KILN_FUZZ_SCALE`.
fn cases(n: usize) -> usize {
    n * from_env("KILN_FUZZ_SCALE", 1) as usize
}

/// Runs `target` on `input` as case `case` of `name`: it must return (not panic), within
/// [`HANG_LIMIT`], allocating at most `bound` bytes. A failure keeps the input in a file.
fn check_case(
    name: &str,
    case: &str,
    input: &[u8],
    bound: usize,
    target: fn(&[u8]) -> kiln::Result<()>,
) -> bool {
    let started = Instant::now();
    let (outcome, peak) = metered(|| std::panic::catch_unwind(|| target(input)));
    let took = started.elapsed();
    let problem = match outcome {
        Err(_) => Some("panicked".to_string()),
        Ok(_) if took > HANG_LIMIT => Some(format!("ran {took:?}")),
        Ok(_) if peak > bound => Some(format!("allocated {peak} bytes, bound {bound}")),
        Ok(result) => return result.is_ok(),
    };
    let kept = std::env::temp_dir().join(format!("kiln-fuzz-{name}-{case}.bin"));
    std::fs::write(&kept, input).unwrap();
    panic!(
        "{name} case {case} ({} bytes) {}: input kept in {}",
        input.len(),
        problem.unwrap(),
        kept.display()
    );
}

/// Every file of `tests/fixtures/fuzz/<dir>`, sorted by name.
fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A generated IDX input: random dimensions, maybe a lying one; data shorter, longer or as
/// declared, sometimes followed by megabytes of zeros (a bomb once compressed); raw, gzip, or
/// gzip in several members.
fn idx_case(rng: &mut Rng) -> Vec<u8> {
    let rank = 1 + rng.below(3);
    let mut dims: Vec<u32> = (0..rank).map(|_| rng.below(40) as u32).collect();
    if rng.below(6) == 0 {
        dims[rng.below(rank)] = *rng.pick(&[u32::MAX, 1 << 24, 1 << 31]);
    }
    let declared = dims
        .iter()
        .map(|&d| d as usize)
        .product::<usize>()
        .min(1 << 16);
    let len = match rng.below(4) {
        0 => declared.saturating_sub(1 + rng.below(8)),
        1 => declared + 1 + rng.below(8),
        2 if rng.below(3) == 0 => declared + (1 + rng.below(8)) * (1 << 20),
        _ => declared,
    };
    let mut file = vec![0, 0, 8, rank as u8];
    for d in &dims {
        file.extend_from_slice(&d.to_be_bytes());
    }
    file.extend((0..len.min(declared)).map(|_| rng.next() as u8));
    file.resize(file.len() + len.saturating_sub(declared), 0);
    match rng.below(3) {
        0 => file,
        1 => gzip(&file),
        _ => {
            let cut = rng.below(file.len() + 1);
            let mut two = gzip(&file[..cut]);
            two.extend(gzip(&file[cut..]));
            two
        }
    }
}

/// The most an IDX case may allocate: twice what it can hold (the data vector grows by
/// doubling) plus the decoder's buffers.
fn idx_bound(input: &[u8]) -> usize {
    2 * IDX_LIMIT.min(input.len() * 1032) + (1 << 20)
}

#[test]
fn idx_inputs_generated_and_mutated_never_panic_hang_or_overallocate() {
    let mut rng = rng(0x1d_2026);
    let mut ok = 0;
    for case in 0..cases(IDX_CASES) {
        let mut input = idx_case(&mut rng);
        if case % 2 == 1 {
            mutate(&mut rng, &mut input, 32);
        }
        let bound = idx_bound(&input);
        ok += check_case("idx", &case.to_string(), &input, bound, fuzz_harness::idx) as usize;
    }
    // The generator makes valid files too: the reader is exercised past its header checks.
    assert!(
        ok >= cases(IDX_CASES) / 10,
        "only {ok} cases were valid files"
    );
}

#[test]
fn the_idx_corpus_reads_as_recorded() {
    for (name, input) in corpus("idx") {
        let ok = check_case("idx", &name, &input, idx_bound(&input), fuzz_harness::idx);
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    }
}

/// A safetensors file made by hand (so that it can hold PyTorch's dtypes too): tensors as
/// `(name, dtype, shape, bytes)` and string metadata.
fn safetensors_file(
    tensors: &[(&str, &str, Vec<usize>, Vec<u8>)],
    metadata: &[(&str, &str)],
) -> Vec<u8> {
    let mut entries = vec![];
    if !metadata.is_empty() {
        let kv: Vec<String> = metadata
            .iter()
            .map(|(k, v)| format!("{k:?}:{v:?}"))
            .collect();
        entries.push(format!("\"__metadata__\":{{{}}}", kv.join(",")));
    }
    let mut offset = 0;
    for (name, dtype, shape, bytes) in tensors {
        entries.push(format!(
            "{name:?}:{{\"dtype\":{dtype:?},\"shape\":{shape:?},\"data_offsets\":[{offset},{}]}}",
            offset + bytes.len()
        ));
        offset += bytes.len();
    }
    let header = format!("{{{}}}", entries.join(","));
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    for (_, _, _, bytes) in tensors {
        file.extend_from_slice(bytes);
    }
    file
}

/// A small checkpoint of every dtype the loader reads, with kiln's metadata and optimiser state
/// that fits a LeNet-5's first parameter.
fn small_checkpoint() -> Vec<u8> {
    let f32s = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
            .collect()
    };
    safetensors_file(
        &[
            ("a.f32", "F32", vec![2, 3], f32s(6)),
            (
                "b.f16",
                "F16",
                vec![4],
                vec![0, 60, 0, 64, 0, 0x7c, 0, 0xfc],
            ),
            ("c.bf16", "BF16", vec![2], vec![0x80, 0x3f, 0, 0x40]),
            ("d.f64", "F64", vec![1], 1.5f64.to_le_bytes().to_vec()),
            (
                "e.i64",
                "I64",
                vec![2],
                [7i64, -3].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            ("f.i32", "I32", vec![1], 9i32.to_le_bytes().to_vec()),
            ("g.u32", "U32", vec![1], 9u32.to_le_bytes().to_vec()),
            ("h.bool", "BOOL", vec![3], vec![0, 1, 2]),
            ("i.empty", "F32", vec![0, 7], vec![]),
            ("optimizer.0.exp_avg", "F32", vec![6, 1, 5, 5], f32s(150)),
            ("optimizer.0.exp_avg_sq", "F32", vec![6, 1, 5, 5], f32s(150)),
            (
                "optimizer.0.momentum_buffer",
                "F32",
                vec![6, 1, 5, 5],
                f32s(150),
            ),
            (
                "optimizer.step",
                "F32",
                vec![1],
                3f32.to_le_bytes().to_vec(),
            ),
        ],
        // kiln's metadata but the model's name (it holds no model's weights): parsed, and
        // the optimiser state goes into a LeNet-5's optimisers.
        &[
            ("mean", "0.1307"),
            ("std", "0.3081"),
            ("input_size", "28x28"),
            ("epochs", "2"),
        ],
    )
}

/// A LeNet-5 checkpoint as `examples/mnist.rs` writes it: weights, Adam's state, metadata.
fn lenet5_checkpoint() -> Vec<u8> {
    use kiln::optim::Optimizer;
    let dev = kiln::Device::cpu();
    let model = kiln::models::by_name("lenet5", 1, 10, &ParamBuilder::new(&dev, 3)).unwrap();
    let mut adam = kiln::optim::Adam::new(model.parameters(), 1e-3);
    let x = kiln::Tensor::randn([2, 1, 28, 28], 1, &dev);
    let loss = model.forward(&x).sum();
    adam.step(&loss.backward()).unwrap();
    let mut tensors = model.state_dict();
    for (name, t) in adam.state() {
        tensors.push((format!("optimizer.{name}"), t));
    }
    let metadata: Vec<(String, String)> = [
        ("model", "lenet5"),
        ("mean", "0.1307"),
        ("std", "0.3081"),
        ("input_size", "28x28"),
        ("epochs", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let path = std::env::temp_dir().join(format!("kiln-fuzz-lenet5-{}.st", std::process::id()));
    kiln::checkpoint::save(&path, &tensors, &metadata).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

/// The most a checkpoint case may allocate: the loader's 5 bytes per byte of file, the parsed
/// header, and the models and optimisers the harness builds.
fn checkpoint_bound(input: &[u8]) -> usize {
    16 * input.len() + (32 << 20)
}

/// The header's length (the hot bytes for mutation): its 8-byte length and its JSON.
fn header_span(file: &[u8]) -> usize {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    8 + n
}

#[test]
fn checkpoints_mutated_never_panic_hang_or_overallocate() {
    let mut rng = rng(0xc4e_2026);
    let seeds = [(small_checkpoint(), 1500), (lenet5_checkpoint(), 100)];
    let mut ok = 0;
    for (s, (seed, count)) in seeds.iter().enumerate() {
        assert!(fuzz_harness::checkpoint(seed).is_ok(), "seed {s} must load");
        let hot = header_span(seed);
        for case in 0..cases(*count) {
            let mut input = seed.clone();
            mutate(&mut rng, &mut input, hot);
            let name = format!("{s}-{case}");
            let bound = checkpoint_bound(&input);
            ok += check_case("checkpoint", &name, &input, bound, fuzz_harness::checkpoint) as usize;
        }
    }
    assert!(ok >= 10, "only {ok} mutated checkpoints loaded");
}

#[test]
fn the_checkpoint_corpus_loads_or_fails_as_recorded() {
    for (name, input) in corpus("checkpoint") {
        let bound = checkpoint_bound(&input);
        let ok = check_case("checkpoint", &name, &input, bound, fuzz_harness::checkpoint);
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    }
}

/// Image files of the kinds `kiln::classify` reads: gray, RGB, RGBA and 16-bit PNGs, a JPEG.
fn image_seeds() -> Vec<Vec<u8>> {
    use image::{DynamicImage, ImageFormat};
    let gray = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([(x * 9 + y) as u8]));
    let rgb = image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 50, y as u8 * 80, 7]));
    let rgba = image::RgbaImage::from_fn(4, 4, |x, y| image::Rgba([x as u8, y as u8, 9, 128]));
    let deep = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(6, 2, |x, _| {
        image::Luma([x as u16 * 9000])
    });
    let images = [
        (DynamicImage::ImageLuma8(gray.clone()), ImageFormat::Png),
        (DynamicImage::ImageRgb8(rgb), ImageFormat::Png),
        (DynamicImage::ImageRgba8(rgba), ImageFormat::Png),
        (DynamicImage::ImageLuma16(deep), ImageFormat::Png),
        (DynamicImage::ImageLuma8(gray), ImageFormat::Jpeg),
    ];
    images
        .iter()
        .map(|(img, format)| {
            let mut bytes = std::io::Cursor::new(vec![]);
            img.write_to(&mut bytes, *format).unwrap();
            bytes.into_inner()
        })
        .collect()
}

/// The most an image case may allocate: what the decoder may ([`MAX_IMAGE_BYTES`]) and a
/// little for the resized input.
fn image_bound(_: &[u8]) -> usize {
    kiln::classify::MAX_IMAGE_BYTES as usize + (16 << 20)
}

#[test]
fn images_mutated_never_panic_hang_or_overallocate() {
    let mut rng = rng(0x1_3a6e);
    let seeds = image_seeds();
    let mut ok = 0;
    for case in 0..cases(1500) {
        let seed = rng.pick(&seeds);
        // The first byte picks the input size (see the harness); the rest is the file.
        let mut input = vec![rng.below(5) as u8];
        input.extend_from_slice(seed);
        if case % 10 != 0 {
            mutate(&mut rng, &mut input, 64);
        }
        let bound = image_bound(&input);
        ok += check_case(
            "image",
            &case.to_string(),
            &input,
            bound,
            fuzz_harness::image_input,
        ) as usize;
    }
    assert!(ok >= 20, "only {ok} images decoded");
}

#[test]
fn the_image_corpus_decodes_or_fails_as_recorded() {
    for (name, input) in corpus("image") {
        let ok = check_case(
            "image",
            &name,
            &input,
            image_bound(&input),
            fuzz_harness::image_input,
        );
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    }
}
