//! A device: where tensors live and graphs run. A cheap, clonable handle to a backend.

use crate::backend::{Backend, DeviceKind, KernelFamily, Stats};
use std::sync::Arc;

/// Where tensors live and computation runs. Clone it freely: clones are the same device.
///
/// `Device::cpu()` is the plain-Rust reference executor. GPU devices come from the `kiln-wgpu`
/// crate; the `kiln` facade adds `Device::default()` (the best adapter) and
/// `Device::wgpu_by_name(..)`.
#[derive(Clone)]
pub struct Device {
    backend: Arc<dyn Backend>,
}

impl Device {
    /// Wraps a backend.
    pub fn from_backend(backend: Arc<dyn Backend>) -> Device {
        Device { backend }
    }
    /// The plain-Rust reference executor: runs every graph op by op on the host, in f64 rounded
    /// to each node's dtype. The test oracle and the last fallback.
    /// Every call returns the same device, so tensors made by different parts of a program meet.
    pub fn cpu() -> Device {
        static CPU: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
        CPU.get_or_init(|| {
            Device::from_backend(Arc::new(crate::reference::ReferenceBackend::new()))
        })
        .clone()
    }
    /// The reference executor in exact mode: float results stay in f64 instead of being rounded
    /// to f32/f16. For finite-difference gradient checks; read values with
    /// [`crate::reference::exact_values`].
    pub fn cpu_exact() -> Device {
        static EXACT: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
        EXACT
            .get_or_init(|| {
                Device::from_backend(Arc::new(crate::reference::ReferenceBackend::exact()))
            })
            .clone()
    }
    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
    /// The device's name, e.g. "cpu (reference)" or the wgpu adapter's.
    pub fn name(&self) -> String {
        self.backend.name()
    }
    /// What kind of machine it is.
    pub fn kind(&self) -> DeviceKind {
        self.backend.kind()
    }
    /// The kernel family a GPU device generates (`Gpu` or `Software`, see [`KernelFamily`]);
    /// `None` for the reference executor.
    pub fn kernel_family(&self) -> Option<KernelFamily> {
        self.backend.kernel_family()
    }
    /// The device's counters.
    pub fn stats(&self) -> Stats {
        self.backend.stats()
    }
    /// Turns per-kernel GPU timing on or off: while on, each kernel of every realize is timed
    /// with GPU timestamp queries (each kernel in a compute pass of its own, which costs a little)
    /// and the times add up until [`Device::take_profile`]. Returns false where the device cannot
    /// time kernels (no timestamp queries, or the CPU reference executor).
    pub fn set_profiling(&self, on: bool) -> bool {
        self.backend.set_profiling(on)
    }
    /// The kernel times accumulated while profiling since the last call, slowest kernel first;
    /// `None` where the device cannot time kernels.
    pub fn take_profile(&self) -> Option<crate::profile::Profile> {
        self.backend.take_profile()
    }
    /// True if both handles are the same device.
    pub fn same(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.backend, &other.backend)
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        self.same(other)
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({})", self.name())
    }
}
