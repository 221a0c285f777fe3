//! kiln-wgpu: kiln's GPU backend. It compiles each pending graph into WGSL compute kernels
//! (generated elementwise and reduction kernels, the hand-written tiled matmul of `shaders/`),
//! caches the compiled plan by the graph's structure, and runs it on Vulkan, Metal or DX12 in one
//! queue submission.

#![warn(missing_docs)]

// Adapter choice and WGSL generation are public for kiln's own tests and benches only.
#[doc(hidden)]
pub mod adapter;
mod backend;
mod bind_windows;
#[doc(hidden)]
pub mod codegen;
mod context;
mod counters;
mod options;
mod plan_cache;
mod plan_store;
mod pool;
mod readback;
mod run;

pub use adapter::{AdapterSummary, INSTALL_HINT};
pub use backend::{KernelTiming, WgpuBackend};
pub use kiln_core::KernelFamily;
pub use options::WgpuOptions;
pub use plan_store::DEFAULT_PLAN_CACHE_BYTES;
/// The wgpu crate kiln-wgpu is built on (for [`WgpuOptions::backend`] and tools).
pub use wgpu;

use kiln_core::{Device, KilnError, Result};
use std::sync::Arc;

/// The best wgpu adapter (honouring `KILN_ADAPTER`, `KILN_NO_F16`, `KILN_KERNELS` and
/// `WGPU_BACKEND`) as a device, or an error that says how to install a driver when there is
/// none, or which values `KILN_KERNELS` accepts when it names no kernel family.
pub fn wgpu_device() -> Result<Device> {
    wgpu_device_with(&WgpuOptions::from_env()?)
}

/// The first adapter whose name contains `name` (case-insensitive).
pub fn wgpu_device_by_name(name: &str) -> Result<Device> {
    wgpu_device_with(&WgpuOptions {
        adapter_name: Some(name.to_string()),
        ..WgpuOptions::from_env()?
    })
}

/// A device opened with explicit options (which adapter, native f16 or not, a lower dispatch
/// limit, the kernel family); unlike the environment variables they apply to this device only.
pub fn wgpu_device_with(opts: &WgpuOptions) -> Result<Device> {
    let instance = adapter::instance();
    let adapter = adapter::pick_with(&instance, opts.adapter_name.as_deref(), opts.backend)?
        .ok_or_else(|| match opts.backend {
            Some(b) => KilnError::NoDevice(format!(
                "no {b:?} adapter (run `cargo run --example devices` to list them)"
            )),
            None => KilnError::NoDevice(INSTALL_HINT.to_string()),
        })?;
    Ok(Device::from_backend(Arc::new(WgpuBackend::with_options(
        &adapter, opts,
    )?)))
}

/// Every adapter wgpu sees, summarised.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let instance = adapter::instance();
    adapter::all_adapters(&instance)
        .iter()
        .map(adapter::summarize)
        .collect()
}
