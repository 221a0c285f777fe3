//! [`World`]: the group of processes a data-parallel run is made of, with what a training
//! script asks of it (a device per rank, a replicated model, a distributed optimiser).

use crate::collective::Collective;
use crate::ddp::DistributedOptimizer;
use kiln_core::nn::{load_state_dict, realize_pending_updates, Module};
use kiln_core::optim::Optimizer;
use kiln_core::{DType, Device, KilnError, Result, Tensor};
use std::rc::Rc;
use std::sync::Arc;

/// The processes of a data-parallel run (one per GPU), made by [`crate::init`]. Cheap to
/// clone: the clones share the collective. Not `Send`: MPI is called from the main thread only.
#[derive(Clone)]
pub struct World {
    comm: Rc<dyn Collective>,
}

impl World {
    /// A world over any [`Collective`] (what [`crate::init`] makes; tests may bring their own).
    pub fn new(comm: Rc<dyn Collective>) -> World {
        World { comm }
    }
    /// A world of this process alone.
    pub fn single() -> World {
        World::new(Rc::new(crate::collective::SingleProcess))
    }
    /// This process's rank, in `0..size()`.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }
    /// Number of processes.
    pub fn size(&self) -> usize {
        self.comm.size()
    }
    /// This process's rank among those on its machine.
    pub fn local_rank(&self) -> usize {
        self.comm.local_rank()
    }
    /// True on rank 0, the one that prints, draws and writes files.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }
    /// The collective operations themselves.
    pub fn collective(&self) -> &dyn Collective {
        &*self.comm
    }

    /// A device for this rank: the adapter `KILN_ADAPTER` / `WGPU_BACKEND` name if set (the same
    /// for every rank: set them per rank in a wrapper script to choose), else, when the machine
    /// has several discrete GPUs, GPU number `local_rank % count`, else the best adapter (as
    /// `Device::default()` chooses, with its fallback to the CPU reference executor).
    pub fn device(&self) -> Result<Device> {
        let named = std::env::var_os("KILN_ADAPTER").is_some()
            || std::env::var_os("WGPU_BACKEND").is_some();
        if !named && self.size() > 1 {
            let instance = kiln_wgpu::adapter::instance();
            let gpus: Vec<_> = kiln_wgpu::adapter::all_adapters(&instance)
                .into_iter()
                .filter(|a| {
                    let info = a.get_info();
                    info.device_type == kiln_wgpu::wgpu::DeviceType::DiscreteGpu
                        && info.backend != kiln_wgpu::wgpu::Backend::Gl
                })
                .collect();
            if gpus.len() > 1 {
                let adapter = &gpus[self.local_rank() % gpus.len()];
                let backend = kiln_wgpu::WgpuBackend::with_options(
                    adapter,
                    &kiln_wgpu::WgpuOptions::from_env()?,
                )?;
                return Ok(Device::from_backend(Arc::new(backend)));
            }
        }
        match kiln_wgpu::wgpu_device() {
            Err(KilnError::NoDevice(why)) if !named => {
                eprintln!(
                    "kiln: rank {}: {why}; using the CPU reference executor",
                    self.rank()
                );
                Ok(Device::cpu())
            }
            other => other,
        }
    }

    /// Makes `model` the same on every rank: checks that every rank's model has the same
    /// tensors (names, dtypes, shapes, in order; a mismatch is an error on every rank naming
    /// rank 0's and the other rank's first differing tensor), then copies rank 0's parameters
    /// and buffers (BatchNorm's running statistics) into every other rank's model, in place.
    pub fn replicate<M: Module>(&self, model: M) -> Result<M> {
        self.broadcast_model(&model)?;
        Ok(model)
    }

    /// [`World::replicate`] for a model behind a reference (a `Box<dyn Module>`, say).
    pub fn broadcast_model(&self, model: &dyn Module) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        // From here on a failure on one rank ends the job: the others would wait in a collective.
        self.abort_on_error(realize_pending_updates());
        let state = model.state_dict();
        self.check_same_tensors(&state, "model")?;
        let mut bytes = vec![];
        if self.is_main() {
            for (_, t) in &state {
                bytes.extend(self.abort_on_error(t.to_bytes()));
            }
        }
        self.comm.broadcast(0, &mut bytes);
        if !self.is_main() {
            let mut values = Vec::with_capacity(state.len());
            let mut at = 0;
            for (name, t) in &state {
                let len = t.numel() * t.dtype().size_bytes();
                let v = self.abort_on_error(tensor_from_bytes(&bytes[at..at + len], t));
                values.push((name.clone(), v));
                at += len;
            }
            load_state_dict(model, &values)?;
        }
        Ok(())
    }

    /// Wraps `inner` so that each step averages the gradients of `model`'s parameters over the
    /// ranks before `inner` applies them (see [`DistributedOptimizer`]). `model` should have
    /// been through [`World::replicate`].
    pub fn optimizer(
        &self,
        model: &dyn Module,
        inner: impl Optimizer + 'static,
    ) -> DistributedOptimizer {
        DistributedOptimizer::new(self.clone(), model.named_parameters(), Box::new(inner))
    }

    /// Makes every batch-norm layer of `model` compute its training-mode statistics over the
    /// whole global batch, gathered from every rank (PyTorch's
    /// `SyncBatchNorm.convert_sync_batchnorm`): for small per-rank batches, whose own statistics
    /// are too noisy. Each layer then costs one all-gather of `2 x channels + 1` floats per rank
    /// in the forward pass and one reduce-scatter of as many in the backward pass, and
    /// the step runs in `2 x layers + 1` stages instead of one plan (see
    /// `kiln_core::host_call`); the running statistics stay the same on every rank. Every rank
    /// must record the same training-mode forward passes and realize the same tensors after
    /// them (the exchanges run in recording order), on the thread that called this; a stage
    /// failing on one rank ends the job. With one rank nothing changes. Returns the names of the
    /// layers found.
    pub fn sync_batch_norm(&self, model: &dyn Module) -> Vec<String> {
        let layers = kiln_core::nn::batch_norm_layers(model);
        if self.size() > 1 {
            let gather = crate::sync_batch_norm::statistics_gather(self);
            for (_, layer) in &layers {
                layer.sync_statistics(Some(gather.clone()));
            }
        }
        layers.into_iter().map(|(name, _)| name).collect()
    }

    /// A handle on the collective that does not keep it alive (MPI finalizes when the last
    /// `World` is dropped).
    pub(crate) fn weak_collective(&self) -> std::rc::Weak<dyn Collective> {
        Rc::downgrade(&self.comm)
    }

    /// Checks that `tensors` have the same names, dtypes and shapes on every rank: an error on
    /// every rank if not, naming the first difference between rank 0 and the rank that differs.
    /// `what` names the tensors in the message ("model").
    pub fn check_same_tensors(&self, tensors: &[(String, Tensor)], what: &str) -> Result<()> {
        let lines: Vec<String> = tensors
            .iter()
            .map(|(n, t)| format!("{n} {} {}", t.dtype(), t.shape()))
            .collect();
        let mine = fnv1a(lines.join("\n").as_bytes());
        let all = self.comm.all_gather_u64(mine);
        if all.iter().all(|&h| h == all[0]) {
            return Ok(());
        }
        let mut root = lines.join("\n").into_bytes();
        self.comm.broadcast(0, &mut root);
        let root = String::from_utf8_lossy(&root).into_owned();
        let root: Vec<&str> = root.lines().collect();
        let differing: Vec<usize> = (0..all.len()).filter(|&r| all[r] != all[0]).collect();
        let rank = self.rank();
        let detail = if all[rank] == all[0] {
            format!("rank {rank} agrees with rank 0; see the differing ranks' messages")
        } else {
            first_difference(&root, &lines, rank)
        };
        Err(KilnError::InvalidArgument(format!(
            "the {what} differs between ranks (ranks {differing:?} differ from rank 0): {detail}"
        )))
    }

    /// Checks that `tensors` hold the same bits on every rank (a hash of their values compared
    /// across ranks): an error on every rank naming the ranks that drifted. One readback of the
    /// tensors; call it every few hundred steps.
    pub fn check_replicas(&self, tensors: &[Tensor]) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        let mut hash = FNV_OFFSET;
        for t in tensors {
            // A readback failing on one rank ends the job: the others would wait in the gather.
            hash = fnv1a_from(hash, &self.abort_on_error(t.to_bytes()));
        }
        let all = self.comm.all_gather_u64(hash);
        let drifted: Vec<usize> = (0..all.len()).filter(|&r| all[r] != all[0]).collect();
        if drifted.is_empty() {
            Ok(())
        } else {
            Err(KilnError::Backend(format!(
                "distributed: the replicas drifted apart: ranks {drifted:?} hold parameters \
                 different from rank 0's (checksums {all:x?})"
            )))
        }
    }

    /// `result`'s value, or, on an error, a message on stderr and the end of every rank of the
    /// job ([`Collective::abort`] with exit code 1): what a rank that cannot go on does so that
    /// the others do not wait for it in a collective forever.
    pub fn abort_on_error<T>(&self, result: Result<T>) -> T {
        match result {
            Ok(v) => v,
            Err(e) => {
                eprintln!("kiln: rank {} of {}: error: {e}", self.rank(), self.size());
                if self.size() > 1 {
                    eprintln!("kiln: aborting every rank of the job");
                }
                self.comm.abort(1)
            }
        }
    }
}

/// A tensor like `like` (dims, dtype, device) holding `bytes` (little-endian device layout).
fn tensor_from_bytes(bytes: &[u8], like: &Tensor) -> Result<Tensor> {
    let (dims, dev) = (like.dims().to_vec(), like.device());
    match like.dtype() {
        DType::F32 => Tensor::from_vec(le_words(bytes, f32::from_le_bytes), dims, dev),
        DType::I32 => Tensor::from_vec(le_words(bytes, i32::from_le_bytes), dims, dev),
        DType::U32 => Tensor::from_vec(le_words(bytes, u32::from_le_bytes), dims, dev),
        DType::F16 => {
            let v: Vec<half::f16> = bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]))
                .collect();
            Tensor::from_vec(v, dims, dev)
        }
        other => Err(KilnError::InvalidArgument(format!(
            "distributed: cannot broadcast a {other} tensor"
        ))),
    }
}

/// The 4-byte little-endian words of `bytes`, decoded by `f`.
fn le_words<T>(bytes: &[u8], f: fn([u8; 4]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(4)
        .map(|b| f([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// "rank 0 has X where rank `rank` has Y": the first line where the two descriptions differ.
fn first_difference(root: &[&str], mine: &[String], rank: usize) -> String {
    for i in 0..root.len().max(mine.len()) {
        let (a, b) = (root.get(i).copied(), mine.get(i).map(String::as_str));
        if a != b {
            let show = |s: Option<&str>| s.map_or("nothing".to_string(), |s| format!("`{s}`"));
            return format!(
                "tensor {i}: rank 0 has {} where rank {rank} has {} (rank 0: {} tensors, rank \
                 {rank}: {})",
                show(a),
                show(b),
                root.len(),
                mine.len()
            );
        }
    }
    format!("rank {rank} has the same tensors as rank 0")
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a of `bytes`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(FNV_OFFSET, bytes)
}

/// FNV-1a continued from `hash` over `bytes`.
fn fnv1a_from(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_names_both_sides() {
        let root = ["a f32 [2]", "b f32 [3]"];
        let mine = vec!["a f32 [2]".to_string(), "b f32 [4]".to_string()];
        assert_eq!(
            first_difference(&root, &mine, 1),
            "tensor 1: rank 0 has `b f32 [3]` where rank 1 has `b f32 [4]` (rank 0: 2 tensors, \
             rank 1: 2)"
        );
        let short = vec!["a f32 [2]".to_string()];
        assert!(first_difference(&root, &short, 3).contains("rank 3 has nothing"));
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
