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
    /// Device bytes the plan cache's intermediate buffers and the buffer pool's free buffers may
    /// keep together before the least recently used are released. `None`:
    /// `KILN_PLAN_CACHE_MB` from the environment when set by [`WgpuOptions::from_env`], else
    /// [`crate::plan_store::DEFAULT_PLAN_CACHE_BYTES`] (1 GiB).
    pub plan_cache_bytes: Option<u64>,
}

impl Default for WgpuOptions {
    fn default() -> Self {
        WgpuOptions {
            adapter_name: None,
            backend: None,
            shader_f16: true,
            max_workgroups_per_dimension: None,
            plan_cache_bytes: None,
        }
    }
}

impl WgpuOptions {
    /// The defaults with the environment's overrides: `KILN_ADAPTER` (an adapter name),
    /// `KILN_NO_F16=1` (no native f16) and `KILN_PLAN_CACHE_MB` (the plan cache's bound in MiB;
    /// a value that is not a whole number is ignored with a warning). `WGPU_BACKEND` is honoured
    /// by the wgpu instance itself.
    pub fn from_env() -> WgpuOptions {
        let plan_cache_bytes = std::env::var("KILN_PLAN_CACHE_MB").ok().and_then(|v| {
            let mb = v.trim().parse::<u64>().ok();
            if mb.is_none() {
                eprintln!("kiln: KILN_PLAN_CACHE_MB={v:?} is not a whole number of MiB; using the default");
            }
            mb.map(|mb| mb << 20)
        });
        WgpuOptions {
            adapter_name: std::env::var("KILN_ADAPTER").ok().filter(|s| !s.is_empty()),
            shader_f16: !std::env::var("KILN_NO_F16").is_ok_and(|v| v == "1"),
            plan_cache_bytes,
            ..WgpuOptions::default()
        }
    }

    /// The plan cache's bound in bytes (the option, else the default).
    pub fn plan_cache_budget(&self) -> u64 {
        self.plan_cache_bytes
            .unwrap_or(crate::plan_store::DEFAULT_PLAN_CACHE_BYTES)
    }
}
