//! The IDX format of MNIST and Fashion-MNIST (gzip-compressed or raw): a magic number giving the
//! element type and rank, the dimensions as big-endian u32, then the elements.

use crate::error::{KilnError, Result};
use std::io::Read;
use std::path::Path;

/// An IDX file of unsigned bytes (the only element type MNIST uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first: `[n, 28, 28]` for images, `[n]` for labels.
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> KilnError {
    KilnError::Data(format!("{}: {what}", path.display()))
}

/// Reads an IDX file of u8 elements; `.gz` files (or any file starting with the gzip magic) are
/// decompressed (several concatenated gzip members are read as one stream). Errors name the file
/// and say what is wrong: missing, corrupt or truncated gzip data, a wrong magic number (not IDX,
/// or IDX of another element type), a truncated header, dimensions whose product overflows, or a
/// data length that does not match the dimensions (truncated, or trailing bytes).
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = vec![];
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| bad(path, format!("corrupt or truncated gzip data: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(|what| bad(path, what))
}

/// Parses the (decompressed) bytes of an IDX file of u8 elements.
fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "{} bytes is too short for an IDX header (truncated or empty file)",
            bytes.len()
        ));
    }
    let magic = format!(
        "{:02x}{:02x}{:02x}{:02x}",
        bytes[0], bytes[1], bytes[2], bytes[3]
    );
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "magic number {magic} is not that of an IDX file (00 00 type rank); is this an IDX file?"
        ));
    }
    if bytes[2] != 0x08 {
        let ty = match bytes[2] {
            0x09 => "i8",
            0x0b => "i16",
            0x0c => "i32",
            0x0d => "f32",
            0x0e => "f64",
            _ => "an unknown type",
        };
        return Err(format!(
            "magic number {magic}: elements of {ty}, but only IDX files of unsigned bytes (00 00 08 rank) are supported"
        ));
    }
    let rank = bytes[3] as usize;
    if rank == 0 {
        return Err(format!(
            "magic number {magic} gives rank 0; an IDX file has at least one dimension"
        ));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(format!(
            "header of rank {rank} needs {header} bytes, the file has {} (truncated file)",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} are too large (corrupt header)"))?;
    let got = bytes.len() - header;
    if got < expected {
        return Err(format!(
            "dimensions {dims:?} need {expected} bytes of data, found {got} (truncated file)"
        ));
    }
    if got > expected {
        return Err(format!(
            "dimensions {dims:?} need {expected} bytes of data, found {got}: {} trailing bytes (corrupt file or wrong header)",
            got - expected
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("kiln-idx-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn reads_a_raw_idx_file() {
        let p = write(
            "ok",
            &[0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6],
        );
        assert_eq!(
            read_idx(&p).unwrap(),
            IdxArray {
                dims: vec![2, 3],
                data: vec![1, 2, 3, 4, 5, 6]
            }
        );
    }

    #[test]
    fn truncated_and_corrupt_files_name_the_file_and_the_problem() {
        let p = write("short", &[0, 0, 8, 1, 0, 0, 0, 5, 1, 2]);
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(
            msg.contains("kiln-idx") && msg.contains("need 5 bytes") && msg.contains("found 2"),
            "{msg}"
        );
        let p = write("magic", &[0, 0, 9, 1, 0, 0, 0, 1, 0]);
        assert!(read_idx(&p)
            .unwrap_err()
            .to_string()
            .contains("magic number"));
        let p = write("gz", &[0x1f, 0x8b, 8, 0, 1, 2, 3]);
        assert!(read_idx(&p).unwrap_err().to_string().contains("gzip"));
        assert!(read_idx("/no/such/file")
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn err(name: &str, bytes: &[u8]) -> String {
        let p = write(name, bytes);
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(msg.contains(&*p.to_string_lossy()), "{msg}");
        msg
    }

    #[test]
    fn gzip_files_are_read_and_truncated_gzip_is_an_error() {
        let idx = [0, 0, 8, 1, 0, 0, 0, 4, 9, 8, 7, 6];
        let gz = gzip(&idx);
        let p = write("ok.gz", &gz);
        assert_eq!(read_idx(&p).unwrap().data, vec![9, 8, 7, 6]);
        // Two concatenated gzip members are one stream (what `cat a.gz b.gz` makes).
        let mut two = gzip(&idx[..6]);
        two.extend(gzip(&idx[6..]));
        let p = write("two.gz", &two);
        assert_eq!(read_idx(&p).unwrap().data, vec![9, 8, 7, 6]);
        // Cut inside the deflate stream, and cut inside the trailer (CRC, length).
        for cut in [gz.len() / 2, gz.len() - 3] {
            let msg = err(&format!("cut{cut}.gz"), &gz[..cut]);
            assert!(msg.contains("gzip"), "{msg}");
        }
    }

    #[test]
    fn every_header_problem_is_reported() {
        let msg = err("empty", &[]);
        assert!(msg.contains("too short"), "{msg}");
        let msg = err("notidx", b"PK\x03\x04 a zip file");
        assert!(msg.contains("magic number 504b0304"), "{msg}");
        let msg = err("f32", &[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert!(
            msg.contains("f32") && msg.contains("unsigned bytes"),
            "{msg}"
        );
        let msg = err("rank0", &[0, 0, 8, 0]);
        assert!(msg.contains("rank 0"), "{msg}");
        let msg = err("header", &[0, 0, 8, 3, 0, 0, 0, 1, 0, 0]);
        assert!(
            msg.contains("header of rank 3") && msg.contains("truncated"),
            "{msg}"
        );
        let huge = [
            0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        if usize::BITS == 64 {
            // 2^96 elements: the product overflows rather than panicking.
            let msg = err("huge", &huge);
            assert!(
                msg.contains("too large") || msg.contains("truncated"),
                "{msg}"
            );
        }
        let msg = err("trailing", &[0, 0, 8, 1, 0, 0, 0, 2, 1, 2, 3]);
        assert!(msg.contains("1 trailing bytes"), "{msg}");
    }

    #[test]
    fn reads_the_shipped_mnist_sample() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist-10k");
        let images = read_idx(format!("{dir}/train-images-idx3-ubyte.gz")).unwrap();
        let labels = read_idx(format!("{dir}/train-labels-idx1-ubyte.gz")).unwrap();
        assert_eq!(images.dims, vec![8000, 28, 28]);
        assert_eq!(labels.dims, vec![8000]);
        assert!(labels.data.iter().all(|&l| l < 10));
    }
}
