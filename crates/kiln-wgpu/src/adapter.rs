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

/// The names `WGPU_BACKEND` accepts (wgpu 30's `Backends::from_comma_list`), case-insensitive,
/// several separated by commas: each name with the graphics API it selects.
pub const BACKEND_NAMES: [(&str, &str); 11] = [
    ("vulkan", "Vulkan"),
    ("vk", "Vulkan"),
    ("metal", "Metal"),
    ("mtl", "Metal"),
    ("dx12", "DX12"),
    ("d3d12", "DX12"),
    ("gl", "OpenGL"),
    ("gles", "OpenGL"),
    ("opengl", "OpenGL"),
    ("webgpu", "WebGPU"),
    ("noop", "no-op"),
];

/// Parses a `WGPU_BACKEND` value as wgpu does (a comma-separated list of the names in
/// [`BACKEND_NAMES`], case-insensitive, blanks around names ignored), but an unknown or empty
/// name is an error that lists the accepted ones, where wgpu would only log a warning and then
/// find no adapter.
pub fn parse_backends(value: &str) -> Result<wgpu::Backends> {
    let accepted = || {
        let names: Vec<&str> = BACKEND_NAMES.iter().map(|(n, _)| *n).collect();
        names.join(", ")
    };
    let mut backends = wgpu::Backends::empty();
    for name in value.split(',') {
        let name = name.trim().to_lowercase();
        if !BACKEND_NAMES.iter().any(|(n, _)| *n == name) {
            let what = if name.is_empty() {
                "an empty backend name".to_string()
            } else {
                format!("unknown backend {name:?}")
            };
            return Err(KilnError::InvalidArgument(format!(
                "WGPU_BACKEND={value:?}: {what}; the accepted names are {} (several separated \
                 by commas), or unset WGPU_BACKEND to let kiln choose",
                accepted()
            )));
        }
        backends |= wgpu::Backends::from_comma_list(&name);
    }
    Ok(backends)
}

/// The backends `WGPU_BACKEND` restricts the adapters to, `None` when it is not set, or an
/// error for a value wgpu would not understand (see [`parse_backends`]).
pub fn backends_from_env() -> Result<Option<wgpu::Backends>> {
    match std::env::var("WGPU_BACKEND") {
        Ok(v) => parse_backends(&v).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(KilnError::InvalidArgument(format!(
            "WGPU_BACKEND={v:?} is not valid UTF-8"
        ))),
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

/// [`pick`] among the adapters of graphics API `backend` only (all if `None`). Checks
/// `WGPU_BACKEND` first ([`backends_from_env`]): an unknown name is an error, and when it names
/// backends with no adapter, that is an error too (not "no adapter at all"), naming the
/// adapters of the other backends.
pub fn pick_with(
    instance: &wgpu::Instance,
    name: Option<&str>,
    backend: Option<wgpu::Backend>,
) -> Result<Option<wgpu::Adapter>> {
    let from_env = backends_from_env()?;
    let mut adapters = all_adapters(instance);
    if let (Some(env), true) = (from_env, adapters.is_empty()) {
        let others: Vec<String> = all_adapters(&wgpu::Instance::new(
            wgpu::InstanceDescriptor::new_without_display_handle(),
        ))
        .iter()
        .map(|a| format!("{} ({:?})", a.get_info().name, a.get_info().backend))
        .collect();
        return Err(KilnError::NoDevice(format!(
            "WGPU_BACKEND={:?} ({env:?}) leaves no adapter; adapters of other backends: {}; \
             unset WGPU_BACKEND or name one of theirs",
            std::env::var("WGPU_BACKEND").unwrap_or_default(),
            if others.is_empty() {
                "none".to_string()
            } else {
                others.join(", ")
            }
        )));
    }
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
