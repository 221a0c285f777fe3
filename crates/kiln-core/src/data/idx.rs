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
/// decompressed. Errors name the file and say what is wrong: missing, truncated, a wrong magic
/// number, or a length that does not match the dimensions.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = vec![];
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| bad(path, format!("corrupt or truncated gzip data: {e}")))?;
        out
    } else {
        raw
    };
    if bytes.len() < 4 {
        return Err(bad(path, "too short for an IDX header"));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(bad(
            path,
            format!("magic number {:02x}{:02x}{:02x}{:02x} is not that of an IDX file of u8 (0000 08 rank)", bytes[0], bytes[1], bytes[2], bytes[3]),
        ));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if rank == 0 || bytes.len() < header {
        return Err(bad(path, format!("header of rank {rank} is truncated")));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .collect();
    let expected: usize = dims.iter().product();
    let got = bytes.len() - header;
    if got != expected {
        return Err(bad(path, format!("dimensions {dims:?} need {expected} bytes of data, found {got} (truncated or corrupt file)")));
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
