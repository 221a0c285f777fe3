//! Choosing a wgpu adapter: `KILN_ADAPTER` / `WGPU_BACKEND`, then discrete, integrated, software.

use kiln_core::{DeviceKind, KilnError, Result};

/// What kiln knows about one adapter, for listings (`examples/devices.rs`).
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Graphics API: "Vulkan", "Metal", "Dx12", "Gl".
    pub backend: String,
    /// Discrete, integrated, software...
    pub kind: DeviceKind,
    /// Driver name and version.
    pub driver: String,
    /// Largest storage-buffer binding in bytes.
    pub max_storage_binding_bytes: u64,
    /// Largest buffer in bytes.
    pub max_buffer_bytes: u64,
    /// Storage buffers one compute shader may bind.
    pub max_storage_buffers_per_stage: u32,
    /// Workgroups per dispatch dimension.
    pub max_workgroups_per_dimension: u32,
    /// Invocations per workgroup.
    pub max_invocations_per_workgroup: u32,
    /// Bytes of workgroup (shared) memory.
    pub max_workgroup_storage_bytes: u32,
    /// Native f16 arithmetic and storage (`SHADER_F16`).
    pub shader_f16: bool,
    /// GPU timestamp queries (`TIMESTAMP_QUERY`).
    pub timestamps: bool,
    /// Subgroup operations (`SUBGROUP`).
    pub subgroups: bool,
}

/// The kiln kind of a wgpu device type.
pub fn device_kind(t: wgpu::DeviceType) -> DeviceKind {
    match t {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu,
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu,
        wgpu::DeviceType::Cpu => DeviceKind::SoftwareGpu,
        _ => DeviceKind::OtherGpu,
    }
}

/// A new wgpu instance honouring `WGPU_BACKEND` (e.g. `vulkan`, `metal`, `dx12`, `gl`).
pub fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter the instance sees.
pub fn all_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

/// Summarises an adapter.
pub fn summarize(adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        kind: device_kind(info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        max_storage_binding_bytes: limits.max_storage_buffer_binding_size,
        max_buffer_bytes: limits.max_buffer_size,
        max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
        max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_workgroup_storage_bytes: limits.max_compute_workgroup_storage_size,
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        subgroups: features.contains(wgpu::Features::SUBGROUP),
    }
}

/// Preference rank: lower is better. Discrete before integrated before software; native APIs
/// before OpenGL.
fn rank(adapter: &wgpu::Adapter) -> (u8, u8) {
    let info = adapter.get_info();
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::Cpu => 2,
        _ => 3,
    };
    (kind, (info.backend == wgpu::Backend::Gl) as u8)
}

/// Picks an adapter: the first whose name contains `name` (case-insensitive) if given, else the
/// best by `rank`. `None` when there is no adapter at all.
pub fn pick(instance: &wgpu::Instance, name: Option<&str>) -> Result<Option<wgpu::Adapter>> {
    pick_with(instance, name, None)
}

/// [`pick`] among the adapters of graphics API `backend` only (all if `None`).
pub fn pick_with(
    instance: &wgpu::Instance,
    name: Option<&str>,
    backend: Option<wgpu::Backend>,
) -> Result<Option<wgpu::Adapter>> {
    let mut adapters = all_adapters(instance);
    if let Some(b) = backend {
        adapters.retain(|a| a.get_info().backend == b);
    }
    if let Some(name) = name {
        let want = name.to_lowercase();
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return match adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&want)) {
            Some(a) => Ok(Some(a)),
            None => Err(KilnError::NoDevice(format!(
                "no adapter name contains {name:?}; adapters present: {names:?} (run `cargo run --example devices` to list them)"
            ))),
        };
    }
    adapters.sort_by_key(rank);
    Ok(adapters.into_iter().next())
}

/// The message printed when no adapter exists.
pub const INSTALL_HINT: &str = "no GPU adapter found; install a Vulkan driver (on Debian/Ubuntu without a GPU: `sudo apt-get install mesa-vulkan-drivers`, which provides the lavapipe software driver)";
