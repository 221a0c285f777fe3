//! The plain-Rust reference executor: the oracle every GPU kernel is compared with, and the
//! last-resort CPU device ([`crate::Device::cpu`]).
//!
//! It evaluates a pending graph node by node, in order, holding every tensor as `Vec<f64>` and
//! rounding each result to its node's dtype ([`DType::round`]), so a value is what a device that
//! computes each op exactly and stores it in the dtype would hold. [`ReferenceBackend::exact`]
//! skips the rounding for float dtypes (values stay f64), for finite-difference gradient checks;
//! read such values with [`exact_values`].
//!
//! One file per op family: `creation` (Data, Full, Arange, Rand), `views` (Reshape .. Cat),
//! `elementwise` (Unary, Binary, Where, Cast), `reduce`, `matmul`, `affine` (AffineSample).
//! Clarity first: nothing here is optimised beyond keeping matmul's inner loop on contiguous
//! data.

mod affine;
mod creation;
mod elementwise;
mod matmul;
mod reduce;
mod views;
mod window;

use crate::backend::{Backend, DeviceKind, Stats, Storage, StorageHandle};
use crate::dtype::{encode_f64, DType};
use crate::error::{KilnError, Result};
use crate::graph::Pending;
use crate::op::Op;
use crate::tensor::Tensor;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The counters of one reference device, shared with every storage it creates so that a storage
/// dropped after its backend still updates `bytes_live` correctly.
#[derive(Default)]
struct Counters {
    submissions: AtomicU64,
    dispatches: AtomicU64,
    buffers_allocated: AtomicU64,
    bytes_live: AtomicU64,
    peak_bytes: AtomicU64,
}

/// A realized tensor's values on the host: exact f64 values (already rounded to `dtype` unless
/// the backend is exact) in row-major order.
///
/// Its size, for [`StorageHandle::size_bytes`] and the device counters, is the size in the
/// dtype's device layout (4 bytes per f32, 2 per f16), not the 8 bytes per value it takes here,
/// so the counters are comparable with a GPU backend's.
pub struct HostStorage {
    values: Vec<f64>,
    dtype: DType,
    counters: Arc<Counters>,
}

impl HostStorage {
    fn new(values: Vec<f64>, dtype: DType, counters: &Arc<Counters>) -> HostStorage {
        let bytes = (values.len() * dtype.size_bytes()) as u64;
        counters.buffers_allocated.fetch_add(1, Ordering::Relaxed);
        let live = counters.bytes_live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        counters.peak_bytes.fetch_max(live, Ordering::Relaxed);
        HostStorage {
            values,
            dtype,
            counters: counters.clone(),
        }
    }
    /// The values, row-major.
    pub fn values(&self) -> &[f64] {
        &self.values
    }
    /// The element type the values belong to.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// The values in the dtype's little-endian device layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.values.len() * self.dtype.size_bytes());
        for &v in &self.values {
            encode_f64(self.dtype, v, &mut out);
        }
        out
    }
}

impl StorageHandle for HostStorage {
    fn size_bytes(&self) -> u64 {
        (self.values.len() * self.dtype.size_bytes()) as u64
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for HostStorage {
    fn drop(&mut self) {
        let bytes = self.size_bytes();
        self.counters.bytes_live.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// The host storage behind a storage handle, or an error if another backend made it.
fn host(storage: &Storage) -> Result<&HostStorage> {
    storage
        .as_any()
        .downcast_ref::<HostStorage>()
        .ok_or_else(|| {
            KilnError::Backend(
                "the reference executor was given a tensor realized by another backend; \
             copy it to the CPU device first"
                    .into(),
            )
        })
}

/// The exact f64 values of a tensor on a reference device, realizing it first if needed. On a
/// [`ReferenceBackend::exact`] device float values are not rounded to their dtype, unlike what
/// [`Tensor::to_vec`] returns. Errors if the tensor lives on another backend.
pub fn exact_values(tensor: &Tensor) -> Result<Vec<f64>> {
    if tensor.numel() == 0 {
        return Ok(vec![]);
    }
    tensor.realize()?;
    let storage = tensor
        .storage()
        .ok_or_else(|| KilnError::Backend("realize left the tensor without values".into()))?;
    Ok(host(&storage)?.values().to_vec())
}

/// Runs graphs op by op on the host, in f64 rounded to each node's dtype.
///
/// Counters: `submissions` +1 per realize that had work (a node not yet realized),
/// `dispatches` +1 per node computed (every non-realized node except host data, which is an
/// upload), `buffers_allocated` +1 per [`HostStorage`] created (one per node computed or
/// uploaded), `bytes_live` / `peak_bytes` over live storages. Intermediates are dropped after
/// their last reader, so `peak_bytes` reflects the graph's liveness. No plans: `plans_compiled`,
/// `plan_cache_hits` and `pipelines_created` stay 0.
pub struct ReferenceBackend {
    exact: bool,
    counters: Arc<Counters>,
}

impl ReferenceBackend {
    /// A reference backend that rounds every result to its dtype (the test oracle).
    pub fn new() -> Self {
        ReferenceBackend {
            exact: false,
            counters: Arc::default(),
        }
    }
    /// A reference backend that keeps float results in f64 (no rounding to f32/f16); integer
    /// and bool results are still rounded. For finite-difference gradient checks.
    pub fn exact() -> Self {
        ReferenceBackend {
            exact: true,
            counters: Arc::default(),
        }
    }
    /// True for a backend made by [`ReferenceBackend::exact`].
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// Rounds a value to `dtype` (float dtypes are left alone in exact mode).
    fn round(&self, dtype: DType, v: f64) -> f64 {
        if self.exact && dtype.is_float() {
            v
        } else {
            dtype.round(v)
        }
    }

    /// Computes one non-realized node from its inputs' values (unrounded).
    fn compute(&self, node: &Tensor, ins: &[&HostStorage]) -> Result<Vec<f64>> {
        let numel = node.numel();
        let dims = node.dims();
        let x = |i: usize| ins[i].values();
        let in_dims = |i: usize| node.inputs()[i].dims();
        Ok(match node.op() {
            Op::Buffer => {
                return Err(KilnError::Backend(
                    "a Buffer node has no storage (it was never realized)".into(),
                ))
            }
            Op::Data(data) => creation::data(&data.bytes, node.dtype(), numel)?,
            Op::Full(value) => creation::full(*value, numel),
            Op::Arange { start, step } => creation::arange(*start, *step, numel),
            Op::Rand { seed, dist } => creation::rand(*seed, *dist, numel),
            Op::Reshape => x(0).to_vec(),
            Op::Permute(perm) => views::permute(x(0), in_dims(0), perm),
            Op::Expand => views::expand(x(0), in_dims(0), dims),
            Op::Slice { start, step } => views::slice(x(0), in_dims(0), dims, start, step),
            Op::Pad { before, value } => views::pad(x(0), in_dims(0), dims, before, *value),
            Op::Cat { axis } => {
                let parts: Vec<(&[f64], &[usize])> =
                    (0..ins.len()).map(|i| (x(i), in_dims(i))).collect();
                views::cat(&parts, dims, *axis)
            }
            Op::Window(g) => window::window(x(0), in_dims(0), dims, g),
            Op::Unwindow(g) => window::unwindow(x(0), in_dims(0), dims, g),
            Op::Unary(op) => elementwise::unary(*op, x(0)),
            Op::Binary(op) => elementwise::binary(*op, x(0), x(1), ins[0].dtype()),
            Op::Where => elementwise::where_(x(0), x(1), x(2)),
            Op::Cast(_) => elementwise::cast(x(0)),
            Op::Reduce { op, axes } => reduce::reduce(*op, x(0), in_dims(0), axes),
            Op::Matmul => matmul::matmul(x(0), in_dims(0), x(1), in_dims(1)),
            Op::AffineSample => affine::affine_sample(x(0), in_dims(0), x(1), dims),
            // Normally computed before the graph gets here (`host_call::resolve_host_calls`).
            Op::HostCall(f) => {
                let input: Vec<f32> = x(0).iter().map(|&v| v as f32).collect();
                f.0.compute(&input)?.into_iter().map(f64::from).collect()
            }
        })
    }

    /// Wraps computed values in a new storage, rounding them to `dtype`.
    fn store(&self, mut values: Vec<f64>, dtype: DType) -> Storage {
        for v in &mut values {
            *v = self.round(dtype, *v);
        }
        Arc::new(HostStorage::new(values, dtype, &self.counters))
    }
}

impl Default for ReferenceBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl Backend for ReferenceBackend {
    fn name(&self) -> String {
        if self.exact {
            "cpu (reference, exact)".into()
        } else {
            "cpu (reference)".into()
        }
    }

    fn kind(&self) -> DeviceKind {
        DeviceKind::Cpu
    }

    fn realize(&self, pending: &Pending, read: &[usize]) -> Result<Vec<Vec<u8>>> {
        let n = pending.nodes.len();
        // The last node that reads each node, so intermediates can be freed after it.
        let mut last_use: Vec<Option<usize>> = vec![None; n];
        for (i, ins) in pending.inputs.iter().enumerate() {
            for &j in ins {
                last_use[j] = Some(i);
            }
        }
        let mut is_target = vec![false; n];
        for &t in &pending.targets {
            is_target[t] = true;
        }

        let mut values: Vec<Option<Storage>> = vec![None; n];
        let mut had_work = false;
        for (i, node) in pending.nodes.iter().enumerate() {
            if let Some(storage) = node.storage() {
                host(&storage)?;
                values[i] = Some(storage);
                continue;
            }
            had_work = true;
            let computed = {
                let ins: Vec<&HostStorage> = pending.inputs[i]
                    .iter()
                    .map(|&j| host(values[j].as_ref().expect("inputs come first")))
                    .collect::<Result<_>>()?;
                self.compute(node, &ins)?
            };
            let storage = self.store(computed, node.dtype());
            if matches!(node.op(), Op::Data(_)) {
                // Uploaded once: later realizes read the storage, not the bytes.
                node.set_storage(storage.clone());
            } else {
                self.counters.dispatches.fetch_add(1, Ordering::Relaxed);
            }
            if is_target[i] {
                node.set_storage(storage.clone());
            }
            values[i] = Some(storage);
            for &j in &pending.inputs[i] {
                if last_use[j] == Some(i) && !is_target[j] {
                    values[j] = None;
                }
            }
        }
        if had_work {
            self.counters.submissions.fetch_add(1, Ordering::Relaxed);
        }

        read.iter()
            .map(|&r| {
                let node = pending.targets.get(r).ok_or_else(|| {
                    KilnError::Backend(format!(
                        "read index {r} is out of range for {} targets",
                        pending.targets.len()
                    ))
                })?;
                let storage = values[*node].as_ref().expect("targets are kept");
                Ok(host(storage)?.to_bytes())
            })
            .collect()
    }

    fn read(&self, tensor: &Tensor) -> Result<Vec<u8>> {
        let storage = tensor.storage().ok_or_else(|| {
            KilnError::Backend(format!(
                "read of tensor {} {} that is not realized; call realize() first",
                tensor.shape(),
                tensor.dtype()
            ))
        })?;
        Ok(host(&storage)?.to_bytes())
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            submissions: c.submissions.load(Ordering::Relaxed),
            dispatches: c.dispatches.load(Ordering::Relaxed),
            buffers_allocated: c.buffers_allocated.load(Ordering::Relaxed),
            bytes_live: c.bytes_live.load(Ordering::Relaxed),
            peak_bytes: c.peak_bytes.load(Ordering::Relaxed),
            ..Stats::default()
        }
    }
}

#[cfg(test)]
mod tests;
