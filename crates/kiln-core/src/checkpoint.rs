//! Checkpoints: named tensors and string metadata in a [safetensors] file, the format PyTorch
//! users exchange weights in (`safetensors.torch.save_file` / `load_file`), so weights move
//! between kiln and PyTorch (or candle, JAX, ...) without pickle.
//!
//! Files are written atomically: to a temporary file in the same directory, synced, then renamed
//! over the target (and the directory synced on unix), so a crash or an error while saving leaves
//! any previous checkpoint intact.
//!
//! ```no_run
//! use kiln_core::{checkpoint, Device, Tensor};
//! # fn main() -> kiln_core::Result<()> {
//! let dev = Device::cpu();
//! let w = Tensor::randn([784, 10], 0, &dev);
//! checkpoint::save("model.safetensors", &[("fc.weight".into(), w)], &[("epoch".into(), "3".into())])?;
//! let ck = checkpoint::load("model.safetensors", &dev)?;
//! assert_eq!(ck.get("fc.weight").unwrap().dims(), &[784, 10]);
//! # Ok(()) }
//! ```
//!
//! [safetensors]: https://github.com/huggingface/safetensors

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::op::{HostData, Op};
use crate::shape::Shape;
use crate::tensor::Tensor;
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

fn bad(path: &Path, what: impl std::fmt::Display) -> KilnError {
    KilnError::Data(format!("{}: {what}", path.display()))
}

/// A [`KilnError::Io`] whose message is `path: what` (`what` says the io error `source`).
fn io_error(path: &Path, what: impl std::fmt::Display, source: std::io::Error) -> KilnError {
    KilnError::Io {
        msg: format!("{}: {what}", path.display()),
        source,
    }
}

/// A [`KilnError::Format`] whose message is `path: what`, keeping the safetensors error.
fn format_error(path: &Path, what: impl std::fmt::Display, source: SafeTensorError) -> KilnError {
    KilnError::Format {
        msg: format!("{}: {what}", path.display()),
        source: Box::new(source),
    }
}

/// Named tensors and metadata read from a checkpoint file by [`load`].
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    /// The tensors, sorted by name (safetensors does not keep the order they were saved in).
    pub tensors: Vec<(String, Tensor)>,
    /// The file's string metadata (`__metadata__`), sorted by key.
    pub metadata: Vec<(String, String)>,
}

impl Checkpoint {
    /// The tensor called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
    /// The metadata value for `key`, if any.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One tensor's bytes in safetensors layout, for the crate's serializer.
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Entry {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes named tensors and string metadata to a safetensors file at `path`, atomically: a
/// temporary file in the same directory is written and synced, then renamed over `path`, and the
/// directory is synced (unix). If anything fails, `path` keeps its previous contents (if any) and
/// no temporary file is left behind.
///
/// Tensors are computed first if needed (one plan per device). F32, F16, I32 and U32 are stored
/// as safetensors F32, F16, I32 and U32; Bool as BOOL (one byte per element). Errors if two
/// tensors or two metadata entries share a name, or if computing a tensor or writing fails.
pub fn save(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata: &[(String, String)],
) -> Result<()> {
    let path = path.as_ref();
    let mut seen = HashSet::new();
    for (name, _) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(bad(
                path,
                format!("two tensors are named {name:?}; checkpoint names must be unique"),
            ));
        }
    }
    let mut meta = HashMap::new();
    for (k, v) in metadata {
        if meta.insert(k.clone(), v.clone()).is_some() {
            return Err(bad(
                path,
                format!("metadata key {k:?} appears twice; keys must be unique"),
            ));
        }
    }
    // Compute everything pending in one plan per device before reading.
    let mut devices: Vec<(Device, Vec<&Tensor>)> = vec![];
    for (_, t) in tensors.iter().filter(|(_, t)| !t.is_realized()) {
        match devices.iter_mut().find(|(d, _)| d.same(t.device())) {
            Some((_, group)) => group.push(t),
            None => devices.push((t.device().clone(), vec![t])),
        }
    }
    for (_, group) in &devices {
        Tensor::realize_all(group)?;
    }
    let mut entries = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let bytes = t.to_bytes()?;
        let (dtype, data) = match t.dtype() {
            DType::F32 => (Dtype::F32, bytes),
            DType::F16 => (Dtype::F16, bytes),
            DType::I32 => (Dtype::I32, bytes),
            DType::U32 => (Dtype::U32, bytes),
            // On devices a bool is one u32 (0 or 1); safetensors' BOOL is one byte.
            DType::Bool => (
                Dtype::BOOL,
                bytes
                    .chunks_exact(4)
                    .map(|w| (w != [0, 0, 0, 0]) as u8)
                    .collect(),
            ),
        };
        entries.push((
            name.clone(),
            Entry {
                dtype,
                shape: t.dims().to_vec(),
                data,
            },
        ));
    }
    // Collected into whatever map type the crate takes (hashbrown's without its "std" feature,
    // std's with it), so this compiles under either.
    let info = (!meta.is_empty()).then(|| meta.into_iter().collect());
    let file = safetensors::serialize(entries.iter().map(|(n, e)| (n.as_str(), e)), info)
        .map_err(|e| format_error(path, format!("cannot encode the checkpoint: {e}"), e))?;
    drop(entries);
    write_atomic(path, |f| f.write_all(&file))
}

/// Replaces the file at `path` with what `write` writes, atomically: `write` fills a new
/// temporary file in the same directory, which is synced to disk and renamed over `path`; the
/// directory is then synced (unix), so the rename itself survives a crash. If `write`, the sync or
/// the rename fails, the temporary file is removed and `path` is untouched. A file that already
/// exists keeps its permissions.
///
/// The temporary file is named `.NAME.PID-NONCE-N.tmp` (PID: this process's id; NONCE: a
/// number drawn once per process, which tells this process from an earlier one given the same
/// id, as a restarted container's process often is). A process killed while writing (`kill -9`,
/// a power cut) leaves its file behind; every call first removes the temporary files in the
/// directory whose process is gone (see [`is_stale_temporary`]), so they do not pile up. Another
/// live process's temporary file is never touched.
pub fn write_atomic(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = path.as_ref();
    let Some(name) = path.file_name() else {
        return Err(bad(path, "not a file path (it has no file name)"));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    remove_stale_temporaries(&dir);
    let tmp = dir.join(format!(
        ".{}.{}-{:016x}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        process_nonce(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| {
            let what = format!(
                "cannot create the temporary file {} to write to: {e} (does the directory exist and is it writable?)",
                tmp.display()
            );
            io_error(path, what, e)
        })?;
    let written = (|| {
        if let Ok(old) = std::fs::metadata(path) {
            file.set_permissions(old.permissions())?;
        }
        write(&mut file)?;
        file.sync_all()
    })();
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(
            path,
            format!("writing failed ({e}); the previous file, if any, is unchanged"),
            e,
        ));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(
            path,
            format!(
                "cannot rename {} over it ({e}); the previous file, if any, is unchanged",
                tmp.display()
            ),
            e,
        ));
    }
    #[cfg(unix)]
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| {
        io_error(
            path,
            format!("written, but syncing its directory failed: {e}"),
            e,
        )
    })?;
    Ok(())
}

/// How old a temporary file must be to count as stale where a process's liveness cannot be
/// checked (no `/proc`): one hour.
const STALE_AGE: Duration = Duration::from_secs(3600);

/// How long a dead process's temporary file is left alone after its last write: one minute. A
/// writer in another pid namespace (another container sharing the directory) looks dead from
/// here; its file is being written to until it is renamed, so it is never this old.
const QUIET_AGE: Duration = Duration::from_secs(60);

/// A number for this process, drawn at its first save (from the clock and the address of a
/// local), so that its temporary files are told from those of an earlier process with its id.
fn process_nonce() -> u64 {
    static NONCE: OnceLock<u64> = OnceLock::new();
    *NONCE.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        nanos ^ ((&local as *const u8 as u64).rotate_left(32))
    })
}

/// The process id and the nonce (`None` in the older `.NAME.PID-N.tmp` form) in the name of a
/// temporary file of [`write_atomic`] (`.NAME.PID-NONCE-N.tmp`), or `None` if `file_name` is
/// not one.
fn temporary_owner(file_name: &str) -> Option<(u32, Option<u64>)> {
    let stem = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, tail) = stem.rsplit_once('.')?;
    let parts: Vec<&str> = tail.split('-').collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (pid, nonce, counter) = match parts[..] {
        [pid, counter] => (pid, None, counter),
        [pid, nonce, counter] => (pid, Some(u64::from_str_radix(nonce, 16).ok()?), counter),
        _ => return None,
    };
    if !digits(pid) || !digits(counter) {
        return None;
    }
    Some((pid.parse().ok()?, nonce))
}

/// True if `path` is a temporary file of [`write_atomic`] (`.NAME.PID-NONCE-N.tmp`) left by a
/// process that no longer runs, untouched for a minute: on Linux, one whose `/proc/PID` does not
/// exist, or one with this process's id but another nonce (an earlier process given the same
/// id); where there is no `/proc`, one untouched for an hour. This process's own files are never
/// stale.
pub fn is_stale_temporary(path: &Path) -> bool {
    let Some((pid, nonce)) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(temporary_owner)
    else {
        return false;
    };
    let same_pid = pid == std::process::id();
    if same_pid && nonce == Some(process_nonce()) {
        return false;
    }
    let Some(age) = std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
    else {
        return false;
    };
    if cfg!(target_os = "linux") && Path::new("/proc/self").exists() {
        let gone = same_pid || !Path::new("/proc").join(pid.to_string()).exists();
        return gone && age > QUIET_AGE;
    }
    age > STALE_AGE
}

/// Removes the stale temporary files of [`write_atomic`] in `dir` ([`is_stale_temporary`]).
/// Best effort: a directory or file that cannot be read or removed is left as it is.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_file()) && is_stale_temporary(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// What a parse error of the safetensors crate means for a file of `bytes`.
fn explain(e: &SafeTensorError, bytes: &[u8]) -> String {
    use SafeTensorError as E;
    let size = bytes.len();
    let why = match e {
        E::HeaderTooSmall => {
            format!("the file has {size} bytes, fewer than the 8-byte header length")
        }
        E::HeaderTooLarge | E::InvalidHeaderLength => {
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
            format!("its first 8 bytes give a header of {n} bytes, but the file has {size} bytes")
        }
        E::MetadataIncompleteBuffer => {
            format!("the header's tensor offsets do not end where the file ({size} bytes) ends")
        }
        other => other.to_string(),
    };
    format!("not a valid safetensors file: {why}; the file is truncated or corrupt, or not a checkpoint")
}

/// The largest rank of a tensor [`load`] accepts: 16.
pub const MAX_RANK: usize = 16;

/// The largest product of a tensor's dimensions, zeros counted as ones, that [`load`] accepts:
/// 2^32 - 1. A tensor with data is bounded by the file already; this bounds the shape of an
/// empty one, which the file does not.
pub const MAX_DIMENSION_PRODUCT: usize = u32::MAX as usize;

/// Reads a safetensors file into tensors on `device` (as host data, uploaded when first used).
///
/// Stored dtypes: F32, F16, I32, U32 and BOOL load as themselves; three common PyTorch dtypes are
/// converted: BF16 to F32 (exactly), F64 to F32 (rounded to nearest) and I64 to I32 (an error if
/// a value does not fit; PyTorch stores counters such as BatchNorm's `num_batches_tracked` as
/// I64). Any other dtype is an error
/// naming the tensor. Errors name the file and say what is wrong (unreadable, truncated,
/// corrupt header or one past [`MAX_HEADER_BYTES`], unsupported dtype, a shape past
/// [`MAX_RANK`] or [`MAX_DIMENSION_PRODUCT`]).
///
/// Limit: every length in the file is checked against the file's size before it is used (the
/// header's length, each tensor's offsets, which must tile the data exactly, and its shape,
/// which must match its bytes), so it allocates at most about 5 bytes per byte of data (the
/// file itself, plus each tensor converted: BOOL grows to 4 bytes an element, BF16 to 2 per
/// byte) and 17 per byte of header (parsed), whose length is at most [`MAX_HEADER_BYTES`].
pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Checkpoint> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    decode(&bytes, path, device)
}

/// The largest header (JSON) [`load`] parses: 16 MiB, room for some 150,000 tensor entries. The
/// safetensors crate allows 100 MB, but a parsed header takes up to about 17 bytes per byte (a
/// header of many tiny entries), so kiln allows less.
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// The bytes of the file at `path`. A regular file is read whole (its size bounds it); from a
/// pipe or a device, the header's length is read and checked first, so that an endless stream
/// such as `/dev/zero` is refused instead of read until memory runs out.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let cannot = |e: std::io::Error| io_error(path, format!("cannot read: {e}"), e);
    let mut file = File::open(path).map_err(cannot)?;
    let mut bytes = vec![];
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        let mut head = [0u8; 8];
        file.read_exact(&mut head).map_err(|e| {
            io_error(
                path,
                format!("cannot read its 8-byte header length: {e}"),
                e,
            )
        })?;
        let n = u64::from_le_bytes(head);
        if !(2..=MAX_HEADER_BYTES).contains(&n) {
            return Err(bad(
                path,
                format!(
                    "not a valid safetensors file: its first 8 bytes give a header of {n} \
                     bytes (2 to {MAX_HEADER_BYTES} expected)"
                ),
            ));
        }
        bytes.extend_from_slice(&head);
    }
    file.read_to_end(&mut bytes).map_err(cannot)?;
    Ok(bytes)
}

/// Reads a checkpoint from the bytes of a safetensors file (for example one built into the
/// program with `include_bytes!`), as [`load`] reads a file, with the same checks and limits.
/// Errors begin with `checkpoint bytes:` where [`load`]'s name the file.
pub fn load_bytes(bytes: &[u8], device: &Device) -> Result<Checkpoint> {
    decode(bytes, Path::new("checkpoint bytes"), device)
}

/// Parses the safetensors file `bytes`; errors are named after `path`.
fn decode(bytes: &[u8], path: &Path, device: &Device) -> Result<Checkpoint> {
    if let Some(head) = bytes.get(..8) {
        let n = u64::from_le_bytes(head.try_into().expect("8 bytes"));
        if n > MAX_HEADER_BYTES {
            return Err(bad(
                path,
                format!(
                    "not a valid safetensors file: its first 8 bytes give a header of {n} \
                     bytes, more than the {MAX_HEADER_BYTES} kiln reads; the file is corrupt, \
                     or not a checkpoint"
                ),
            ));
        }
    }
    let (header_len, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| format_error(path, explain(&e, bytes), e))?;
    // read_metadata checked that the offsets tile the data exactly, to the file's end.
    let data = &bytes[8 + header_len..];
    let mut metadata: Vec<(String, String)> = header
        .metadata()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.sort();
    let infos = header.tensors();
    for (name, info) in &infos {
        let dims = &info.shape;
        let product = dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d.max(1)))
            .filter(|&n| n <= MAX_DIMENSION_PRODUCT);
        if dims.len() > MAX_RANK || product.is_none() {
            let shown = match dims.len() {
                r if r > MAX_RANK => format!("{:?}... ({r} dimensions)", &dims[..MAX_RANK]),
                _ => format!("{dims:?}"),
            };
            let name: String = name.chars().take(80).collect();
            return Err(bad(
                path,
                format!(
                    "tensor {name:?} has shape {shown}; kiln takes tensors of at most \
                     {MAX_RANK} dimensions whose product (zeros counted as ones) is at most \
                     {MAX_DIMENSION_PRODUCT}; the file is corrupt"
                ),
            ));
        }
    }
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, info) in infos {
        let data = &data[info.data_offsets.0..info.data_offsets.1];
        let unsupported = |what: &str| {
            bad(
                path,
                format!(
                    "tensor {name:?} has dtype {:?}{what}; kiln loads F32, F16, I32, U32, BOOL, \
                     BF16 and F64 (as F32) and I64 (as I32); convert it before saving (in PyTorch: t.float())",
                    info.dtype
                ),
            )
        };
        let (dtype, bytes) = match info.dtype {
            Dtype::F32 => (DType::F32, data.to_vec()),
            Dtype::F16 => (DType::F16, data.to_vec()),
            Dtype::I32 => (DType::I32, data.to_vec()),
            Dtype::U32 => (DType::U32, data.to_vec()),
            Dtype::BOOL => (
                DType::Bool,
                data.iter()
                    .flat_map(|&b| ((b != 0) as u32).to_le_bytes())
                    .collect(),
            ),
            Dtype::BF16 => (
                DType::F32,
                data.chunks_exact(2)
                    .flat_map(|h| [0, 0, h[0], h[1]])
                    .collect(),
            ),
            Dtype::F64 => (
                DType::F32,
                data.chunks_exact(8)
                    .flat_map(|w| (f64::from_le_bytes(w.try_into().unwrap()) as f32).to_le_bytes())
                    .collect(),
            ),
            Dtype::I64 => {
                let mut out = Vec::with_capacity(data.len() / 2);
                for w in data.chunks_exact(8) {
                    let v = i64::from_le_bytes(w.try_into().unwrap());
                    let v = i32::try_from(v).map_err(|_| {
                        unsupported(&format!(" and holds {v}, which does not fit in I32"))
                    })?;
                    out.extend_from_slice(&v.to_le_bytes());
                }
                (DType::I32, out)
            }
            _ => return Err(unsupported("")),
        };
        let t = Tensor::from_op(
            Op::Data(Arc::new(HostData { bytes })),
            vec![],
            Shape(info.shape.clone()),
            dtype,
            device,
        );
        tensors.push((name, t));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Checkpoint { tensors, metadata })
}
