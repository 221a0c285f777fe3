//! The one small trait a backend implements, and the counters every device exposes.

use crate::error::Result;
use crate::graph::Pending;
use crate::profile::Profile;
use crate::schedule::ScheduleLimits;
use crate::tensor::Tensor;
use std::any::Any;
use std::sync::Arc;

/// A backend's handle to a realized tensor's values (a GPU buffer, a host array). Backends
/// downcast it with [`StorageHandle::as_any`].
pub trait StorageHandle: Any + Send + Sync {
    /// Size of the values in bytes.
    fn size_bytes(&self) -> u64;
    /// For downcasting to the backend's own type.
    fn as_any(&self) -> &dyn Any;
}

/// Shared handle to realized values.
pub type Storage = Arc<dyn StorageHandle>;

/// What kind of machine a device computes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// The plain-Rust reference executor on the host CPU.
    Cpu,
    /// A discrete GPU through wgpu.
    DiscreteGpu,
    /// An integrated GPU through wgpu.
    IntegratedGpu,
    /// A software rasteriser through wgpu (lavapipe, WARP, SwiftShader).
    SoftwareGpu,
    /// Another wgpu adapter (virtual GPU, unknown type).
    OtherGpu,
}

/// A compute backend: realizes pending graphs and reads results back.
pub trait Backend: Send + Sync {
    /// Human-readable name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, software)".
    fn name(&self) -> String;
    /// The kind of machine.
    fn kind(&self) -> DeviceKind;
    /// Computes `pending.targets` and stores each one's values on its node
    /// ([`Tensor::set_storage`]); returns the bytes of the targets listed in `read` (indices into
    /// `pending.targets`), in that order. One call is one submission on a GPU backend.
    fn realize(&self, pending: &Pending, read: &[usize]) -> Result<Vec<Vec<u8>>>;
    /// Copies a realized tensor's values to the host (little-endian device layout).
    fn read(&self, tensor: &Tensor) -> Result<Vec<u8>>;
    /// The device's counters.
    fn stats(&self) -> Stats;
    /// Largest storage binding in bytes (`u64::MAX` where there is no limit).
    fn max_binding_bytes(&self) -> u64 {
        u64::MAX
    }
    /// Largest buffer in bytes, so the largest tensor (`u64::MAX` where there is no limit).
    fn max_buffer_bytes(&self) -> u64 {
        u64::MAX
    }
    /// The limits the backend schedules plans with (`None` for backends that run graphs op by
    /// op, like the reference executor).
    fn schedule_limits(&self) -> Option<ScheduleLimits> {
        None
    }
    /// Turns per-kernel GPU timing on or off (see [`crate::profile`]); returns whether the
    /// device can time kernels (false by default).
    fn set_profiling(&self, _on: bool) -> bool {
        false
    }
    /// The kernel times accumulated while profiling, since the last call (the recorder starts
    /// again); `None` where the device cannot time kernels.
    fn take_profile(&self) -> Option<Profile> {
        None
    }
}

/// Device counters, cumulative since the device was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Queue submissions.
    pub submissions: u64,
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Compute pipelines created (shader compiles).
    pub pipelines_created: u64,
    /// Device buffers created (pool misses).
    pub buffers_allocated: u64,
    /// Bytes in buffers currently alive (in use or pooled).
    pub bytes_live: u64,
    /// Largest `bytes_live` seen.
    pub peak_bytes: u64,
    /// Plans compiled (code generated for a graph shape never seen before).
    pub plans_compiled: u64,
    /// Realizes served from the plan cache.
    pub plan_cache_hits: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "submissions {}, dispatches {}, pipelines created {}, buffers allocated {}, bytes live {}, peak bytes {}, plans compiled {}, plan-cache hits {}",
            self.submissions,
            self.dispatches,
            self.pipelines_created,
            self.buffers_allocated,
            self.bytes_live,
            self.peak_bytes,
            self.plans_compiled,
            self.plan_cache_hits
        )
    }
}
