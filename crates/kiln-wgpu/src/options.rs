//! How to open a wgpu device: which adapter, which of its features and limits to use, and which
//! kernel family to generate.

use kiln_core::{KernelFamily, KilnError, Result};

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
    /// [`crate::DEFAULT_PLAN_CACHE_BYTES`] (1 GiB).
    pub plan_cache_bytes: Option<u64>,
    /// The kernel family to generate (see [`KernelFamily`]); `None`: follow the adapter's type
    /// (`Software` on a software adapter such as lavapipe, `Gpu` elsewhere). Forcing `Gpu` on
    /// lavapipe runs the kernels a real GPU gets, slowly, on the CPU (how CI tests them).
    pub kernels: Option<KernelFamily>,
    /// Bytes one storage binding may hold, at most the adapter's
    /// `max_storage_buffer_binding_size` (128 MiB on lavapipe): a lower cap makes small tensors
    /// take the path of those larger than one binding (bound as several windows), for tests.
    /// `None`: the adapter's limit.
    pub max_storage_binding_bytes: Option<u64>,
    /// A convolution's input gradient whose col2im product has more elements than this is
    /// computed as a transposed convolution (see [`kiln_core::rewrite`]); `Some(0)` always does,
    /// for tests. `None`: [`kiln_core::schedule::COL2IM_PRODUCT_LIMIT`].
    pub col2im_product_limit: Option<usize>,
    /// Rewrite rules to leave off (names from [`kiln_core::rewrite::RULES`], or `"all"`), to
    /// measure what a rule gains; empty: every rule runs. `KILN_REWRITE_OFF` (comma-separated)
    /// sets it from the environment.
    pub disabled_rules: Vec<String>,
}

impl Default for WgpuOptions {
    fn default() -> Self {
        WgpuOptions {
            adapter_name: None,
            backend: None,
            shader_f16: true,
            max_workgroups_per_dimension: None,
            plan_cache_bytes: None,
            kernels: None,
            max_storage_binding_bytes: None,
            col2im_product_limit: None,
            disabled_rules: vec![],
        }
    }
}

impl WgpuOptions {
    /// The defaults with the environment's overrides: `KILN_ADAPTER` (an adapter name),
    /// `KILN_NO_F16=1` (no native f16), `KILN_KERNELS=gpu|software` (the kernel family) and
    /// `KILN_PLAN_CACHE_MB` (the plan cache's bound in MiB) and `KILN_REWRITE_OFF` (rewrite rules
    /// to leave off, comma-separated). `WGPU_BACKEND` is honoured by the
    /// wgpu instance itself. Errors ([`kiln_core::KilnError::InvalidArgument`]) on a
    /// `KILN_KERNELS` value that names no family, listing the accepted ones, and on a
    /// `KILN_PLAN_CACHE_MB` that is not a whole number, and on a `KILN_REWRITE_OFF` name that is
    /// no rule.
    pub fn from_env() -> Result<WgpuOptions> {
        let kernels = match std::env::var("KILN_KERNELS") {
            Ok(v) if !v.trim().is_empty() => Some(KernelFamily::from_name(&v)?),
            _ => None,
        };
        let plan_cache_bytes = match std::env::var("KILN_PLAN_CACHE_MB") {
            Ok(v) if !v.trim().is_empty() => Some(
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| {
                        KilnError::InvalidArgument(format!(
                            "KILN_PLAN_CACHE_MB={v:?} is not a whole number of MiB"
                        ))
                    })?
                    .saturating_mul(1 << 20),
            ),
            _ => None,
        };
        let disabled_rules: Vec<String> = std::env::var("KILN_REWRITE_OFF")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let names: Vec<&str> = disabled_rules.iter().map(String::as_str).collect();
        kiln_core::rewrite::rules_mask(&names)
            .map_err(|e| KilnError::InvalidArgument(format!("KILN_REWRITE_OFF: {e}")))?;
        Ok(WgpuOptions {
            adapter_name: std::env::var("KILN_ADAPTER").ok().filter(|s| !s.is_empty()),
            shader_f16: !std::env::var("KILN_NO_F16").is_ok_and(|v| v == "1"),
            kernels,
            plan_cache_bytes,
            disabled_rules,
            ..WgpuOptions::default()
        })
    }

    /// The plan cache's bound in bytes (the option, else the default).
    pub fn plan_cache_budget(&self) -> u64 {
        self.plan_cache_bytes
            .unwrap_or(crate::plan_store::DEFAULT_PLAN_CACHE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::WgpuOptions;
    use kiln_core::{KernelFamily, KilnError};

    // The only test of this binary that touches KILN_KERNELS (the environment is per process).
    #[test]
    fn kiln_kernels_chooses_the_family_and_rejects_other_values() {
        let saved = std::env::var("KILN_KERNELS").ok();
        std::env::set_var("KILN_KERNELS", "GPU");
        let gpu = WgpuOptions::from_env().map(|o| o.kernels);
        std::env::set_var("KILN_KERNELS", "software");
        let software = WgpuOptions::from_env().map(|o| o.kernels);
        std::env::set_var("KILN_KERNELS", "");
        let unset = WgpuOptions::from_env().map(|o| o.kernels);
        std::env::set_var("KILN_KERNELS", "cuda");
        let wrong = WgpuOptions::from_env();
        match saved {
            Some(v) => std::env::set_var("KILN_KERNELS", v),
            None => std::env::remove_var("KILN_KERNELS"),
        }
        assert_eq!(gpu.unwrap(), Some(KernelFamily::Gpu));
        assert_eq!(software.unwrap(), Some(KernelFamily::Software));
        assert_eq!(unset.unwrap(), None);
        let Err(KilnError::InvalidArgument(msg)) = wrong else {
            panic!("KILN_KERNELS=cuda accepted: {wrong:?}");
        };
        assert!(
            msg.contains("\"cuda\"") && msg.contains("gpu, software"),
            "{msg}"
        );
    }
}
