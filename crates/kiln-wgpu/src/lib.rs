//! kiln-wgpu: kiln's GPU backend. It compiles each pending graph into WGSL compute kernels
//! (generated elementwise and reduction kernels, the hand-written tiled matmul of `shaders/`),
//! caches the compiled plan by the graph's structure, and runs it on Vulkan, Metal or DX12 in one
//! queue submission.

#![warn(missing_docs)]

pub mod adapter;
pub mod backend;
pub mod codegen;
pub mod context;
pub mod counters;
pub mod plan_cache;
pub mod pool;
pub mod readback;

pub use adapter::{AdapterSummary, INSTALL_HINT};
pub use backend::WgpuBackend;

use kiln_core::{Device, KilnError, Result};
use std::sync::Arc;

/// The best wgpu adapter (honouring `KILN_ADAPTER` and `WGPU_BACKEND`) as a device, or an error
/// that says how to install a driver when there is none.
pub fn wgpu_device() -> Result<Device> {
    let name = std::env::var("KILN_ADAPTER").ok().filter(|s| !s.is_empty());
    open(name.as_deref())
}

/// The first adapter whose name contains `name` (case-insensitive).
pub fn wgpu_device_by_name(name: &str) -> Result<Device> {
    open(Some(name))
}

fn open(name: Option<&str>) -> Result<Device> {
    let instance = adapter::instance();
    let adapter = adapter::pick(&instance, name)?
        .ok_or_else(|| KilnError::NoDevice(INSTALL_HINT.to_string()))?;
    Ok(Device::from_backend(Arc::new(WgpuBackend::new(&adapter)?)))
}

/// Every adapter wgpu sees, summarised.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let instance = adapter::instance();
    adapter::all_adapters(&instance)
        .iter()
        .map(adapter::summarize)
        .collect()
}
