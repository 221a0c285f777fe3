//! The IDX format of MNIST and Fashion-MNIST (gzip-compressed or raw): a magic number giving the
//! element type and rank, the dimensions as big-endian u32, then the elements.
//!
//! Reading is bounded by the header: the dimensions are read first, their byte count is checked
//! (overflow, [`MAX_IDX_BYTES`], and for a file what its size can hold), and then exactly that many
//! bytes are read, plus at most [`TRAILING_SLACK`] to report trailing data. A gzip bomb (a small
//! file that inflates to gigabytes) is therefore never inflated past its header's promise.

use kiln_core::error::{KilnError, Result};
use std::io::Read;
use std::path::Path;

/// The most data bytes (the product of the dimensions) an IDX file may declare: 1 GiB. The full
/// MNIST training set is 47 MB, EMNIST's largest split 0.55 GB.
pub const MAX_IDX_BYTES: usize = 1 << 30;

/// How many bytes past the declared data are read (and counted) before an IDX file is rejected
/// for trailing data: 64 KiB.
pub const TRAILING_SLACK: usize = 64 << 10;

/// Deflate's largest compression ratio (a run of one byte: 258 bytes per 2 bits, about 1032:1).
/// No gzip file of `n` bytes inflates to more than `n * MAX_DEFLATE_RATIO` bytes.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// An IDX file of unsigned bytes (the only element type MNIST uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first: `[n, 28, 28]` for images, `[n]` for labels.
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file of u8 elements; `.gz` files (or any file starting with the gzip magic) are
/// decompressed (several concatenated gzip members are read as one stream). Errors name the file
/// and say what is wrong: missing, corrupt or truncated gzip data, a wrong magic number (not IDX,
/// or IDX of another element type), a truncated header, dimensions whose product overflows or
/// passes [`MAX_IDX_BYTES`], or a data length that does not match the dimensions (truncated, or
/// trailing bytes).
///
/// Limit: it allocates at most the data size the header declares (plus 64 KiB), and the
/// declaration must fit the file: a raw file holds at most its size, a gzip file at most 1032
/// times its size (deflate's largest ratio), so at most 1 byte per byte of a raw file and 1032
/// per byte of a gzip file, never more than [`MAX_IDX_BYTES`].
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| KilnError::Io {
        msg: format!("{}: cannot read: {e}", path.display()),
        source: e,
    })?;
    // Only a regular file has a size to check a declaration against (not a pipe).
    let size = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let reader = std::io::BufReader::with_capacity(TRAILING_SLACK, file);
    decode(reader, size, MAX_IDX_BYTES).map_err(|problem| problem.into_error(Some(path)))
}

/// Reads an IDX stream of u8 elements (raw, or gzip-compressed) from `reader`, as [`read_idx`]
/// reads a file, declaring at most `max_bytes` of data: it reads the header, refuses a
/// declaration past `max_bytes`, then reads the declared data and at most [`TRAILING_SLACK`]
/// bytes more. Errors say what is wrong, as [`read_idx`]'s do (without a file name).
///
/// Limit: it allocates at most the declared data size (at most `max_bytes`) plus 64 KiB, and
/// pulls at most that much (inflated) out of `reader`, whatever the stream holds after it.
pub fn read_idx_from(reader: impl Read, max_bytes: usize) -> Result<IdxArray> {
    decode(reader, None, max_bytes).map_err(|problem| problem.into_error(None))
}

/// Reads `reader` until `buf` is full or the stream ends; returns how many bytes were read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Decodes a raw or gzip IDX stream whose first bytes are still in `reader`; `file_size` is the
/// size of the file it comes from, where known, to check the header's declaration against.
fn decode(
    mut reader: impl Read,
    file_size: Option<u64>,
    max_bytes: usize,
) -> std::result::Result<IdxArray, Problem> {
    let mut magic = [0u8; 2];
    let got =
        read_up_to(&mut reader, &mut magic).map_err(|e| Problem::read("cannot read", e, true))?;
    let stream = (&magic[..got]).chain(reader);
    if magic[..got] == [0x1f, 0x8b] {
        // The inflater's errors say the data is corrupt: a `Data` error, not an `Io` one.
        let stream = flate2::read::MultiGzDecoder::new(stream);
        let holds = file_size.map(|n| Holds::Inflated(n, n.saturating_mul(MAX_DEFLATE_RATIO)));
        parse(
            stream,
            holds,
            max_bytes,
            "corrupt or truncated gzip data",
            false,
        )
    } else {
        parse(
            stream,
            file_size.map(Holds::Raw),
            max_bytes,
            "cannot read",
            true,
        )
    }
}

/// What is wrong with an IDX stream, and the read error behind it where the stream could not be
/// read (kept as the [`KilnError::Io`]'s source).
struct Problem {
    what: String,
    source: Option<std::io::Error>,
}

impl From<String> for Problem {
    fn from(what: String) -> Problem {
        Problem { what, source: None }
    }
}

impl Problem {
    /// A read error `e`, said as `doing: e`; kept as the source if `keep`.
    fn read(doing: &str, e: std::io::Error, keep: bool) -> Problem {
        Problem {
            what: format!("{doing}: {e}"),
            source: keep.then_some(e),
        }
    }

    /// The error, its message prefixed with the file's name where there is one: [`KilnError::Io`]
    /// with the read error as its source, else [`KilnError::Data`].
    fn into_error(self, path: Option<&Path>) -> KilnError {
        let msg = match path {
            Some(path) => format!("{}: {}", path.display(), self.what),
            None => self.what,
        };
        match self.source {
            Some(source) => KilnError::Io { msg, source },
            None => KilnError::Data(msg),
        }
    }
}

/// What the file an IDX stream comes from can hold, in bytes of the (inflated) stream.
#[derive(Clone, Copy)]
enum Holds {
    /// A raw file of this size.
    Raw(u64),
    /// A gzip file of `.0` bytes, which inflates to at most `.1`.
    Inflated(u64, u64),
}

/// Reads an IDX header (magic number, then one big-endian u32 per dimension) and returns the
/// dimensions; only files of unsigned bytes are accepted. `io` says what a read error means.
fn parse_header(
    r: &mut impl Read,
    io: impl Fn(std::io::Error) -> Problem,
) -> std::result::Result<Vec<usize>, Problem> {
    let mut head = [0u8; 4];
    let n = read_up_to(r, &mut head).map_err(&io)?;
    if n < 4 {
        return Err(
            format!("{n} bytes is too short for an IDX header (truncated or empty file)").into(),
        );
    }
    let magic = format!(
        "{:02x}{:02x}{:02x}{:02x}",
        head[0], head[1], head[2], head[3]
    );
    if head[0] != 0 || head[1] != 0 {
        return Err(format!(
            "magic number {magic} is not that of an IDX file (00 00 type rank); is this an IDX file?"
        ).into());
    }
    if head[2] != 0x08 {
        let ty = match head[2] {
            0x09 => "i8",
            0x0b => "i16",
            0x0c => "i32",
            0x0d => "f32",
            0x0e => "f64",
            _ => "an unknown type",
        };
        return Err(format!(
            "magic number {magic}: elements of {ty}, but only IDX files of unsigned bytes (00 00 08 rank) are supported"
        ).into());
    }
    let rank = head[3] as usize;
    if rank == 0 {
        return Err(format!(
            "magic number {magic} gives rank 0; an IDX file has at least one dimension"
        )
        .into());
    }
    // At most 255 dimensions: 1020 bytes.
    let header = 4 + 4 * rank;
    let mut dim_bytes = vec![0u8; 4 * rank];
    let n = read_up_to(r, &mut dim_bytes).map_err(&io)?;
    if n < dim_bytes.len() {
        return Err(format!(
            "header of rank {rank} needs {header} bytes, the file has {} (truncated file)",
            4 + n
        )
        .into());
    }
    Ok(dim_bytes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect())
}

/// Parses an (inflated) IDX stream of u8 elements: the header, then exactly the data it
/// declares, then at most [`TRAILING_SLACK`] bytes to report trailing data. `io_error` says what
/// a read error means (corrupt gzip data, or an unreadable file).
fn parse(
    mut r: impl Read,
    holds: Option<Holds>,
    max_bytes: usize,
    io_error: &str,
    keep_io_errors: bool,
) -> std::result::Result<IdxArray, Problem> {
    let io = |e: std::io::Error| Problem::read(io_error, e, keep_io_errors);
    let dims = parse_header(&mut r, io)?;
    let header = 4 + 4 * dims.len();
    let expected = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} are too large (corrupt header)"))?;
    if expected > max_bytes {
        return Err(format!(
            "dimensions {dims:?} declare {expected} bytes of data, more than the {max_bytes} an \
             IDX file may hold here (corrupt header?)"
        )
        .into());
    }
    let needed = (header + expected) as u64;
    match holds {
        Some(Holds::Raw(size)) if needed > size => {
            return Err(format!(
                "dimensions {dims:?} need {expected} bytes of data, found {} (truncated file)",
                size.saturating_sub(header as u64)
            )
            .into());
        }
        Some(Holds::Inflated(size, most)) if needed > most => {
            return Err(format!(
                "dimensions {dims:?} need {expected} bytes of data, more than a gzip file of \
                 {size} bytes can inflate to ({most} at most); the file is truncated or its \
                 header corrupt"
            )
            .into());
        }
        _ => {}
    }
    // The declaration fits the file: reserve it. From a stream of unknown size, grow as the
    // data arrives instead, so that a lying header allocates nothing.
    let reserve = if holds.is_some() {
        expected
    } else {
        expected.min(TRAILING_SLACK)
    };
    let mut data = Vec::with_capacity(reserve);
    (&mut r)
        .take(expected as u64)
        .read_to_end(&mut data)
        .map_err(io)?;
    if data.len() < expected {
        return Err(format!(
            "dimensions {dims:?} need {expected} bytes of data, found {} (truncated file)",
            data.len()
        )
        .into());
    }
    // Reading on to the end also checks a gzip member's CRC and length.
    let trailing = std::io::copy(&mut r.take(TRAILING_SLACK as u64), &mut std::io::sink())
        .map_err(io)? as usize;
    if trailing == TRAILING_SLACK {
        return Err(format!(
            "dimensions {dims:?} need {expected} bytes of data, but at least {TRAILING_SLACK} \
             more follow them (reading stopped there): a corrupt file, a wrong header, or a \
             decompression bomb"
        )
        .into());
    }
    if trailing > 0 {
        return Err(format!(
            "dimensions {dims:?} need {expected} bytes of data, found {}: {trailing} trailing bytes (corrupt file or wrong header)",
            expected + trailing
        ).into());
    }
    Ok(IdxArray { dims, data })
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

    /// An endless stream: an IDX header declaring `declared` bytes of data, then zeros forever.
    /// Counts the bytes taken from it.
    struct Endless {
        header: Vec<u8>,
        taken: std::rc::Rc<std::cell::Cell<u64>>,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let at = self.taken.get() as usize;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = self.header.get(at + i).copied().unwrap_or(0);
            }
            self.taken.set((at + buf.len()) as u64);
            Ok(buf.len())
        }
    }

    fn endless(declared: u32) -> (Endless, std::rc::Rc<std::cell::Cell<u64>>) {
        let mut header = vec![0, 0, 8, 1];
        header.extend(declared.to_be_bytes());
        let taken = std::rc::Rc::new(std::cell::Cell::new(0));
        let stream = Endless {
            header,
            taken: taken.clone(),
        };
        (stream, taken)
    }

    /// A reader that counts the bytes taken from it.
    struct Counting<R> {
        inner: R,
        taken: usize,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.taken += n;
            Ok(n)
        }
    }

    #[test]
    fn a_gzip_bomb_is_inflated_only_to_its_declared_size() {
        // 1000 bytes declared, then 2 GiB of zeros in 2048 gzip members of 1 MiB each (~2 MB).
        let mut bomb = gzip(&[0, 0, 8, 1, 0, 0, 0x03, 0xe8]);
        let mib = gzip(&vec![0; 1 << 20]);
        for _ in 0..2048 {
            bomb.extend_from_slice(&mib);
        }
        let mut reader = Counting {
            inner: &bomb[..],
            taken: 0,
        };
        let msg = read_idx_from(&mut reader, MAX_IDX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("at least 65536 more follow"), "{msg}");
        // The decoder reads ahead 32 KiB at a time; 2 MB would mean it inflated everything.
        assert!(
            reader.taken <= 2 * (32 << 10) + 2,
            "{} of {} compressed bytes read",
            reader.taken,
            bomb.len()
        );
        // Raw: an endless stream of zeros is read only to the declaration and the slack.
        let (stream, taken) = endless(1000);
        assert!(read_idx_from(stream, MAX_IDX_BYTES).is_err());
        assert!(taken.get() <= (8 + 1000 + TRAILING_SLACK + 8192) as u64);
    }

    #[test]
    fn declarations_past_the_limit_or_the_file_are_refused_before_reading_the_data() {
        // A stream: the limit is the caller's.
        let (stream, taken) = endless(1 << 20);
        let msg = read_idx_from(stream, 1000).unwrap_err().to_string();
        assert!(
            msg.contains("1048576 bytes") && msg.contains("more than the 1000"),
            "{msg}"
        );
        assert!(taken.get() <= 8192, "read {} bytes", taken.get());
        // A file: the size bounds what the header may declare. A raw file of 12 bytes cannot
        // hold 1000 bytes of data; a gzip file of 32 bytes cannot inflate to 2^29.
        let msg = err("liar", &[0, 0, 8, 1, 0, 0, 3, 0xe8, 1, 2, 3, 4]);
        assert!(msg.contains("found 4 (truncated file)"), "{msg}");
        let gz = gzip(&[0, 0, 8, 1, 0x20, 0, 0, 0, 1, 2, 3, 4]);
        let msg = err("liar.gz", &gz);
        assert!(
            msg.contains("more than a gzip file of") && msg.contains("can inflate to"),
            "{msg}"
        );
        // Past MAX_IDX_BYTES: refused whatever the file.
        let msg = err("max", &[0, 0, 8, 2, 0, 1, 0, 0, 0, 1, 0, 0]);
        assert!(msg.contains("more than the 1073741824"), "{msg}");
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
