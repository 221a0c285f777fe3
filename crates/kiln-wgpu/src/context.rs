//! The wgpu device and queue kiln runs on, with its limits, features and counters.

use crate::adapter::{summarize, AdapterSummary};
use crate::counters::Counters;
use crate::options::WgpuOptions;
use crate::pool::BufferPool;
use kiln_core::{KernelFamily, KilnError, Result};
use std::sync::{Arc, Mutex};

/// One opened wgpu device.
pub struct Context {
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// What the adapter is.
    pub summary: AdapterSummary,
    /// The limits requested (the adapter's own, or lower where the options ask).
    pub limits: wgpu::Limits,
    /// Native f16 enabled; without it f16 tensors are packed halves computed in f32.
    pub f16: bool,
    /// Timestamp queries enabled.
    pub timestamps: bool,
    /// The kernel family this device generates: the options' choice, else the adapter type's.
    /// Everything that differs between the families asks [`Context::kernel_family`].
    pub kernels: KernelFamily,
    /// Counters.
    pub counters: Arc<Counters>,
    /// Storage buffers.
    pub pool: Arc<BufferPool>,
    /// Set when the device is lost, with the reason.
    pub lost: Arc<Mutex<Option<String>>>,
    /// The options' [`WgpuOptions::col2im_product_limit`].
    pub col2im_product_limit: Option<usize>,
    /// The options' [`WgpuOptions::disabled_rules`] as a mask of
    /// [`kiln_core::rewrite::RULES`].
    pub disabled_rules: u64,
}

impl Context {
    /// Opens `adapter` with its real limits and the optional features kiln uses, as far as
    /// `opts` allows.
    pub fn open(adapter: &wgpu::Adapter, opts: &WgpuOptions) -> Result<Context> {
        // Options are checked before the device is opened.
        let names: Vec<&str> = opts.disabled_rules.iter().map(String::as_str).collect();
        let disabled_rules =
            kiln_core::rewrite::rules_mask(&names).map_err(KilnError::InvalidArgument)?;
        let summary = summarize(adapter);
        let mut features = wgpu::Features::empty();
        let f16 = summary.shader_f16 && opts.shader_f16;
        if f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        if summary.timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let mut limits = adapter.limits();
        if let Some(cap) = opts.max_workgroups_per_dimension {
            if cap == 0 || cap > limits.max_compute_workgroups_per_dimension {
                return Err(KilnError::NoDevice(format!(
                    "max_workgroups_per_dimension {cap} must be between 1 and {}'s {}",
                    summary.name, limits.max_compute_workgroups_per_dimension
                )));
            }
            limits.max_compute_workgroups_per_dimension = cap;
        }
        if let Some(cap) = opts.max_storage_binding_bytes {
            let (align, most) = (
                limits.min_storage_buffer_offset_alignment as u64,
                limits.max_storage_buffer_binding_size,
            );
            if cap < align.max(16) || cap > most {
                return Err(KilnError::NoDevice(format!(
                    "max_storage_binding_bytes {cap} must be between {} and {}'s {most}",
                    align.max(16),
                    summary.name
                )));
            }
            limits.max_storage_buffer_binding_size = cap;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kiln"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| KilnError::NoDevice(format!("could not open {}: {e}", summary.name)))?;
        let kernels = opts
            .kernels
            .unwrap_or_else(|| KernelFamily::for_kind(summary.kind));
        let lost = Arc::new(Mutex::new(None));
        let lost_cb = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *lost_cb.lock().unwrap() = Some(format!("{reason:?}: {msg}"));
        });
        let counters = Arc::new(Counters::default());
        let pool = BufferPool::new(device.clone(), counters.clone(), opts.plan_cache_budget());
        Ok(Context {
            device,
            queue,
            summary,
            limits,
            f16,
            timestamps: summary_timestamps(&features),
            kernels,
            counters,
            pool,
            lost,
            col2im_product_limit: opts.col2im_product_limit,
            disabled_rules,
        })
    }

    /// The kernel family this device generates (see [`KernelFamily`]).
    pub fn kernel_family(&self) -> KernelFamily {
        self.kernels
    }

    /// True when this device generates the software family (`shaders/matmul_cpu.wgsl`, windows
    /// written out, vec4 elementwise kernels).
    pub fn software_kernels(&self) -> bool {
        self.kernels == KernelFamily::Software
    }

    /// Errors if the device was lost.
    pub fn check_lost(&self) -> Result<()> {
        match self.lost.lock().unwrap().as_ref() {
            Some(why) => Err(KilnError::DeviceLost(format!(
                "{} was lost ({why})",
                self.summary.name
            ))),
            None => Ok(()),
        }
    }

    /// Blocks until the queue is idle.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| KilnError::DeviceLost(format!("waiting for {}: {e}", self.summary.name)))
    }

    /// Splits `n` workgroups over (x, y, z) within the per-dimension limit.
    pub fn split_workgroups(&self, n: u64) -> Result<[u32; 3]> {
        split_workgroups(n, self.limits.max_compute_workgroups_per_dimension)
    }
}

/// Splits `n` workgroups over a grid (x, y, z) with at most `max` per dimension and at least `n`
/// in all; kernels fold the three ids back into the flat index `x + y nx + z nx ny` and skip
/// those past `n`. Errors past `max`^3 workgroups, or past 2^32 (the flat index is a u32).
pub fn split_workgroups(n: u64, max: u32) -> Result<[u32; 3]> {
    let max = max.max(1) as u64;
    let x = n.clamp(1, max);
    let rest = n.div_ceil(x);
    let y = rest.clamp(1, max);
    let z = rest.div_ceil(y);
    if z > max || n > u32::MAX as u64 {
        return Err(KilnError::Backend(format!(
            "a kernel needs {n} workgroups, more than {max}^3 or 2^32; split the tensor"
        )));
    }
    Ok([x as u32, y as u32, z.max(1) as u32])
}

fn summary_timestamps(features: &wgpu::Features) -> bool {
    features.contains(wgpu::Features::TIMESTAMP_QUERY)
}

#[cfg(test)]
mod tests {
    use super::split_workgroups;

    #[test]
    fn splits_cover_n_within_the_limit() {
        for max in [1u32, 2, 7, 65_535] {
            for n in [
                0u64,
                1,
                2,
                6,
                7,
                8,
                48,
                49,
                50,
                342,
                343,
                65_536,
                70_000 * 3,
            ] {
                let Ok([x, y, z]) = split_workgroups(n, max) else {
                    assert!(n > (max as u64).pow(3), "{n} over {max} refused");
                    continue;
                };
                assert!(
                    x <= max && y <= max && z <= max,
                    "{n} over {max}: {x} {y} {z}"
                );
                let total = x as u64 * y as u64 * z as u64;
                assert!(total >= n.max(1), "{n} over {max}: {x} {y} {z}");
                // At most one partial row (x workgroups) and one partial plane beyond n.
                let (x, y) = (x as u64, y as u64);
                assert!(total < n.max(1) + x + x * y, "{n}: {x} {y} {z}");
            }
        }
        assert_eq!(split_workgroups(70_000, 65_535).unwrap(), [65_535, 2, 1]);
        assert_eq!(split_workgroups(50, 7).unwrap(), [7, 7, 2]);
        assert!(split_workgroups(344, 7).is_err());
    }
}
