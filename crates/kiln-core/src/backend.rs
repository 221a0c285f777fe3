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

/// Which family of kernels a GPU backend generates. Each kernel kind (matmul, elementwise, the
/// scheduler's treatment of convolution windows) has one form per family: `Gpu` for discrete and
/// integrated GPUs (shared-memory tiled matmul with windows folded into its loads), `Software`
/// for CPU Vulkan drivers such as lavapipe (no shared memory, windows written out, vec4
/// elementwise kernels). The adapter's type chooses it unless `KILN_KERNELS=gpu|software` or
/// `WgpuOptions::kernels` says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelFamily {
    /// Kernels for GPUs: `shaders/matmul.wgsl`, implicit-GEMM convolutions.
    Gpu,
    /// Kernels for CPU drivers: `shaders/matmul_cpu.wgsl`, windows written out.
    Software,
}

impl KernelFamily {
    /// The names `KILN_KERNELS` accepts, in the order error messages list them.
    pub const NAMES: [&'static str; 2] = ["gpu", "software"];

    /// The family named `name` (`gpu` or `software`, case-insensitive), or an error that lists
    /// the accepted names.
    pub fn from_name(name: &str) -> crate::error::Result<KernelFamily> {
        match name.trim().to_ascii_lowercase().as_str() {
            "gpu" => Ok(KernelFamily::Gpu),
            "software" => Ok(KernelFamily::Software),
            _ => Err(crate::error::KilnError::InvalidArgument(format!(
                "KILN_KERNELS={name:?} is not a kernel family; accepted values: {} (or unset, to follow the adapter's type)",
                KernelFamily::NAMES.join(", ")
            ))),
        }
    }

    /// The family's name as `KILN_KERNELS` spells it.
    pub fn name(self) -> &'static str {
        match self {
            KernelFamily::Gpu => "gpu",
            KernelFamily::Software => "software",
        }
    }

    /// The family an adapter of `kind` gets by default: `Software` on software adapters,
    /// `Gpu` on every other GPU.
    pub fn for_kind(kind: DeviceKind) -> KernelFamily {
        if kind == DeviceKind::SoftwareGpu {
            KernelFamily::Software
        } else {
            KernelFamily::Gpu
        }
    }
}

impl std::fmt::Display for KernelFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
    /// The kernel family the backend generates (`None` for backends without generated kernels,
    /// like the reference executor).
    fn kernel_family(&self) -> Option<KernelFamily> {
        None
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
    /// Plans evicted from a bounded plan cache (their buffers released).
    pub plans_evicted: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "submissions {}, dispatches {}, pipelines created {}, buffers allocated {}, bytes live {}, peak bytes {}, plans compiled {}, plan-cache hits {}, plans evicted {}",
            self.submissions,
            self.dispatches,
            self.pipelines_created,
            self.buffers_allocated,
            self.bytes_live,
            self.peak_bytes,
            self.plans_compiled,
            self.plan_cache_hits,
            self.plans_evicted
        )
    }
}
