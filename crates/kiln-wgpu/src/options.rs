//! How to open a wgpu device: which adapter, and which of its features and limits to use.

/// Options of [`crate::wgpu_device_with`]. `WgpuOptions::default()` picks the best adapter and
/// uses everything it offers; [`WgpuOptions::from_env`] is what [`crate::wgpu_device`] uses.
///
/// ```
/// use kiln_wgpu::WgpuOptions;
/// // f16 tensors stored as packed halves and computed in f32, even where SHADER_F16 is offered.
/// let opts = WgpuOptions { shader_f16: false, ..WgpuOptions::default() };
/// assert!(opts.adapter_name.is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WgpuOptions {
    /// Use the first adapter whose name contains this (case-insensitive); `None`: the best one
    /// (discrete, integrated, then software; native APIs before OpenGL).
    pub adapter_name: Option<String>,
    /// Only adapters of this graphics API (e.g. `wgpu::Backend::Gl`); `None`: any.
    pub backend: Option<wgpu::Backend>,
    /// Use native f16 (`SHADER_F16`) where the adapter offers it. When false, or where it is not
    /// offered, f16 tensors are stored as packed halves and computed in f32 (see
    /// `shaders/f16.wgsl`).
    pub shader_f16: bool,
    /// Workgroups per dispatch dimension, at most the adapter's (65,535 on most): a lower cap
    /// makes small problems split their dispatches over two or three dimensions, for tests.
    /// `None`: the adapter's limit.
    pub max_workgroups_per_dimension: Option<u32>,
    /// Bytes one storage binding may hold, at most the adapter's
    /// `max_storage_buffer_binding_size` (128 MiB on lavapipe): a lower cap makes small tensors
    /// take the path of those larger than one binding (bound as several windows), for tests.
    /// `None`: the adapter's limit.
    pub max_storage_binding_bytes: Option<u64>,
}

impl Default for WgpuOptions {
    fn default() -> Self {
        WgpuOptions {
            adapter_name: None,
            backend: None,
            shader_f16: true,
            max_workgroups_per_dimension: None,
            max_storage_binding_bytes: None,
        }
    }
}

impl WgpuOptions {
    /// The defaults with the environment's overrides: `KILN_ADAPTER` (an adapter name) and
    /// `KILN_NO_F16=1` (no native f16). `WGPU_BACKEND` is honoured by the wgpu instance itself.
    pub fn from_env() -> WgpuOptions {
        WgpuOptions {
            adapter_name: std::env::var("KILN_ADAPTER").ok().filter(|s| !s.is_empty()),
            shader_f16: !std::env::var("KILN_NO_F16").is_ok_and(|v| v == "1"),
            ..WgpuOptions::default()
        }
    }
}
