//! Hostile inputs get an error before they cost memory or time: a gzip bomb of an IDX file is
//! not inflated past its header's promise, IDX headers that declare more than the file can hold
//! are refused before the data is read, image sizes from checkpoint metadata or from the caller
//! are checked before anything of that size is allocated, image files that declare huge sizes
//! are refused by the decoder's limits, and checkpoint shapes the file does not bound are
//! bounded. Allocations are metered per thread (see `fuzz_support`).

mod common;
mod fuzz_support;
use common::png_declaring;
use fuzz_support::metered;
use image::GrayImage;
use kiln::checkpoint;
use kiln::classify::{load_classifier, ImageInput, MAX_INPUT_SIDE};
use kiln::data::idx::{read_idx, MAX_IDX_BYTES};
use kiln::nn::ParamBuilder;
use kiln::prelude::*;
use std::io::Write;
use std::path::PathBuf;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-bounded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An IDX header of rank 1 declaring `n` bytes.
fn idx_header(n: u32) -> Vec<u8> {
    let mut h = vec![0, 0, 8, 1];
    h.extend(n.to_be_bytes());
    h
}

#[test]
fn a_gzip_bomb_idx_file_is_refused_without_being_inflated() {
    // 1000 bytes declared and given, then 256 MiB of zeros: a 260 KB file.
    let mut file = idx_header(1000);
    file.extend([7; 1000]);
    let mut bomb = gzip(&file);
    let mib = gzip(&vec![0; 1 << 20]);
    for _ in 0..256 {
        bomb.extend_from_slice(&mib);
    }
    let path = temp("bomb-idx1-ubyte.gz");
    std::fs::write(&path, &bomb).unwrap();
    let (result, peak) = metered(|| read_idx(&path));
    let msg = result.unwrap_err().to_string();
    assert!(
        msg.contains("bomb-idx1-ubyte.gz") && msg.contains("at least 65536 more follow"),
        "{msg}"
    );
    // The declared 1000 bytes, the 64 KiB of slack and the decoder's buffers; not 256 MiB.
    assert!(peak < 1 << 20, "reading the bomb allocated {peak} bytes");
}

#[test]
fn idx_headers_declaring_more_than_the_file_holds_are_refused_before_reading() {
    // A 40-byte gzip file cannot inflate to 2^28 bytes: refused from the header alone.
    let path = temp("liar-idx1-ubyte.gz");
    let mut file = idx_header(1 << 28);
    file.extend([1, 2, 3, 4]);
    std::fs::write(&path, gzip(&file)).unwrap();
    let (result, peak) = metered(|| read_idx(&path));
    let msg = result.unwrap_err().to_string();
    assert!(msg.contains("more than a gzip file of"), "{msg}");
    assert!(peak < 1 << 20, "allocated {peak} bytes");
    // Past MAX_IDX_BYTES, whatever the file: refused.
    let path = temp("huge-idx2-ubyte");
    let mut file = vec![0, 0, 8, 2];
    file.extend((1u32 << 16).to_be_bytes());
    file.extend((1u32 << 15).to_be_bytes());
    std::fs::write(&path, &file).unwrap();
    let msg = read_idx(&path).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("more than the {MAX_IDX_BYTES}")),
        "{msg}"
    );
}

/// A LeNet-5 checkpoint with `examples/mnist.rs`'s metadata, its input size replaced by `size`.
fn lenet5_checkpoint(name: &str, size: &str) -> PathBuf {
    let cpu = Device::cpu();
    let net = kiln::models::by_name("lenet5", 1, 10, &ParamBuilder::new(&cpu, 0)).unwrap();
    let path = temp(name);
    let metadata: Vec<(String, String)> = [
        ("model", "lenet5"),
        ("mean", "0.1307"),
        ("std", "0.3081"),
        ("input_size", size),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    checkpoint::save(&path, &net.state_dict(), &metadata).unwrap();
    path
}

#[test]
fn an_input_size_in_checkpoint_metadata_is_bounded() {
    let cpu = Device::cpu();
    let ok = lenet5_checkpoint("lenet5-28.safetensors", "28x28");
    assert_eq!(
        load_classifier(None, &ok, &cpu).unwrap().input_size,
        Some([28, 28])
    );
    for size in ["100000x100000", "28x4097", "0x28", "18446744073709551616x1"] {
        let path = lenet5_checkpoint("lenet5-huge.safetensors", size);
        let (result, peak) = metered(|| load_classifier(None, &path, &cpu).map(|_| ()));
        let msg = result.unwrap_err().to_string();
        assert!(
            msg.contains("\"input_size\"") && msg.contains(&format!("1 to {MAX_INPUT_SIDE}")),
            "{size}: {msg}"
        );
        assert!(peak < 16 << 20, "{size}: allocated {peak} bytes");
    }
}

#[test]
fn an_input_size_from_the_caller_is_refused_before_any_image_of_it_is_made() {
    let png = temp("digit.png");
    GrayImage::from_fn(28, 28, |x, y| image::Luma([(x + y) as u8]))
        .save(&png)
        .unwrap();
    let cpu = Device::cpu();
    for size in [[100_000, 100_000], [28, MAX_INPUT_SIDE + 1]] {
        let input = ImageInput::new(1, size);
        let (results, peak) = metered(|| {
            [
                input.check(1, &cpu),
                input.read(&png).map(|_| ()),
                input.load(&[&png], &cpu).map(|_| ()),
                input.tensor(&[vec![0; 784]], &cpu).map(|_| ()),
            ]
        });
        for result in results {
            let msg = result.unwrap_err().to_string();
            assert!(
                msg.contains(&format!("{}x{}", size[0], size[1]))
                    && msg.contains(&format!("{MAX_INPUT_SIDE} pixels a side")),
                "{msg}"
            );
        }
        assert!(peak < 1 << 20, "allocated {peak} bytes");
    }
    // At the limit, a batch is checked against the device's largest buffer.
    let input = ImageInput::new(3, [MAX_INPUT_SIDE, MAX_INPUT_SIDE]);
    assert!(input.check(1, &cpu).is_ok());
}

#[test]
fn image_files_declaring_huge_sizes_are_refused_by_the_decoders_limits() {
    let input = ImageInput::new(1, [28, 28]);
    // Past the side limit (gray), and past the allocation limit (2 GiB of 16-bit RGBA).
    for (w, h, color, depth) in [
        (100_000, 100_000, 0, 8),
        (16_385, 1, 0, 8),
        (16_384, 16_384, 6, 16),
    ] {
        let path = temp(&format!("huge-{w}x{h}.png"));
        std::fs::write(&path, png_declaring(w, h, color, depth)).unwrap();
        let (result, peak) = metered(|| input.read(&path));
        let msg = result.unwrap_err().to_string();
        assert!(
            msg.contains(&format!("huge-{w}x{h}.png")) && msg.contains("too large to decode"),
            "{msg}"
        );
        assert!(peak < 1 << 20, "{w}x{h}: allocated {peak} bytes");
    }
    // A small declared size that the data does not fill is an ordinary decode error.
    let msg = input
        .decode(&png_declaring(64, 64, 0, 8))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("image bytes: cannot decode"), "{msg}");
}

#[test]
fn checkpoint_shapes_the_file_does_not_bound_are_bounded() {
    // An empty tensor's shape is not bounded by its (zero) bytes: 2^32 x 2^31 x 0.
    let header = r#"{"x":{"dtype":"F32","shape":[4294967296,2147483648,0],"data_offsets":[0,0]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header.as_bytes());
    let msg = checkpoint::load_bytes(&file, &Device::cpu())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("checkpoint bytes") && msg.contains("tensor \"x\"") && msg.contains("product"),
        "{msg}"
    );
    // A header length past the file's end: refused, named.
    let mut file = (1u64 << 40).to_le_bytes().to_vec();
    file.extend(b"{}");
    let msg = checkpoint::load_bytes(&file, &Device::cpu())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("header of 1099511627776 bytes"), "{msg}");
}

#[cfg(unix)]
#[test]
fn endless_devices_are_refused_from_their_first_bytes() {
    // Read whole, /dev/zero never ends: both readers look at the header first.
    let msg = checkpoint::load("/dev/zero", &Device::cpu())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("/dev/zero") && msg.contains("header of 0 bytes"),
        "{msg}"
    );
    let msg = read_idx("/dev/zero").unwrap_err().to_string();
    assert!(
        msg.contains("/dev/zero") && msg.contains("magic number 00000000"),
        "{msg}"
    );
}

/// A checkpoint whose header holds `entries` tiny metadata entries: the most objects per byte.
fn many_entries_checkpoint(entries: usize) -> Vec<u8> {
    let kv: Vec<String> = (0..entries).map(|i| format!("\"{i:x}\":\"\"")).collect();
    let header = format!("{{\"__metadata__\":{{{}}}}}", kv.join(","));
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header.as_bytes());
    file
}

#[test]
fn a_checkpoint_header_is_parsed_within_a_bounded_multiple_of_its_size() {
    // Tiny metadata entries are the most objects per byte (measured: 16.5 bytes per byte).
    let file = many_entries_checkpoint(1 << 17);
    let (result, peak) = metered(|| checkpoint::load_bytes(&file, &Device::cpu()).map(|_| ()));
    result.unwrap();
    assert!(
        peak < 24 * file.len(),
        "{} bytes allocated {peak}",
        file.len()
    );
    // A header past MAX_HEADER_BYTES is refused from its length alone.
    let mut file = (checkpoint::MAX_HEADER_BYTES + 1).to_le_bytes().to_vec();
    file.extend(b"{}");
    let msg = checkpoint::load_bytes(&file, &Device::cpu())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("more than the 16777216 kiln reads"), "{msg}");
}
