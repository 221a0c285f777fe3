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
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn bad(path: &Path, what: impl std::fmt::Display) -> KilnError {
    KilnError::Data(format!("{}: {what}", path.display()))
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
        .map_err(|e| bad(path, format!("cannot encode the checkpoint: {e}")))?;
    drop(entries);
    write_atomic(path, |f| f.write_all(&file))
}

/// Replaces the file at `path` with what `write` writes, atomically: `write` fills a new
/// temporary file in the same directory, which is synced to disk and renamed over `path`; the
/// directory is then synced (unix), so the rename itself survives a crash. If `write`, the sync or
/// the rename fails, the temporary file is removed and `path` is untouched. A file that already
/// exists keeps its permissions.
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
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| {
            bad(
                path,
                format!(
                    "cannot create the temporary file {} to write to: {e} (does the directory exist and is it writable?)",
                    tmp.display()
                ),
            )
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
        return Err(bad(
            path,
            format!("writing failed ({e}); the previous file, if any, is unchanged"),
        ));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(bad(
            path,
            format!(
                "cannot rename {} over it ({e}); the previous file, if any, is unchanged",
                tmp.display()
            ),
        ));
    }
    #[cfg(unix)]
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| {
        bad(
            path,
            format!("written, but syncing its directory failed: {e}"),
        )
    })?;
    Ok(())
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

/// Reads a safetensors file into tensors on `device` (as host data, uploaded when first used).
///
/// Stored dtypes: F32, F16, I32, U32 and BOOL load as themselves; three common PyTorch dtypes are
/// converted: BF16 to F32 (exactly), F64 to F32 (rounded to nearest) and I64 to I32 (an error if
/// a value does not fit; PyTorch stores counters such as BatchNorm's `num_batches_tracked` as
/// I64). Any other dtype is an error
/// naming the tensor. Errors name the file and say what is wrong (unreadable, truncated,
/// corrupt header, unsupported dtype).
pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Checkpoint> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, explain(&e, &bytes)))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).expect("parsed above");
    let mut metadata: Vec<(String, String)> = header
        .metadata()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.sort();
    let mut tensors = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        let data = view.data();
        let unsupported = |what: &str| {
            bad(
                path,
                format!(
                    "tensor {name:?} has dtype {:?}{what}; kiln loads F32, F16, I32, U32, BOOL, \
                     BF16 and F64 (as F32) and I64 (as I32); convert it before saving (in PyTorch: t.float())",
                    view.dtype()
                ),
            )
        };
        let (dtype, bytes) = match view.dtype() {
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
            Shape(view.shape().to_vec()),
            dtype,
            device,
        );
        tensors.push((name, t));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Checkpoint { tensors, metadata })
}
