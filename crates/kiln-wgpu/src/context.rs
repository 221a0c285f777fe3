//! The wgpu device and queue kiln runs on, with its limits, features and counters.

use crate::adapter::{summarize, AdapterSummary};
use crate::counters::Counters;
use crate::pool::BufferPool;
use kiln_core::{KilnError, Result};
use std::sync::{Arc, Mutex};

/// One opened wgpu device.
pub struct Context {
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// What the adapter is.
    pub summary: AdapterSummary,
    /// The limits requested (the adapter's own).
    pub limits: wgpu::Limits,
    /// Native f16 enabled.
    pub f16: bool,
    /// Timestamp queries enabled.
    pub timestamps: bool,
    /// Counters.
    pub counters: Arc<Counters>,
    /// Storage buffers.
    pub pool: Arc<BufferPool>,
    /// Set when the device is lost, with the reason.
    pub lost: Arc<Mutex<Option<String>>>,
}

impl Context {
    /// Opens `adapter` with its real limits and the optional features kiln uses.
    pub fn open(adapter: &wgpu::Adapter) -> Result<Context> {
        let summary = summarize(adapter);
        let no_f16 = std::env::var("KILN_NO_F16").is_ok_and(|v| v == "1");
        let mut features = wgpu::Features::empty();
        let f16 = summary.shader_f16 && !no_f16;
        if f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        if summary.timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kiln"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| KilnError::NoDevice(format!("could not open {}: {e}", summary.name)))?;
        let lost = Arc::new(Mutex::new(None));
        let lost_cb = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *lost_cb.lock().unwrap() = Some(format!("{reason:?}: {msg}"));
        });
        let counters = Arc::new(Counters::default());
        let pool = BufferPool::new(device.clone(), counters.clone());
        Ok(Context {
            device,
            queue,
            summary,
            limits,
            f16,
            timestamps: summary_timestamps(&features),
            counters,
            pool,
            lost,
        })
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
        let max = self.limits.max_compute_workgroups_per_dimension as u64;
        let x = n.clamp(1, max);
        let rest = n.div_ceil(x);
        let y = rest.clamp(1, max);
        let z = rest.div_ceil(y);
        if z > max {
            return Err(KilnError::Backend(format!(
                "a kernel needs {n} workgroups, more than {max}^3"
            )));
        }
        Ok([x as u32, y as u32, z.max(1) as u32])
    }
}

fn summary_timestamps(features: &wgpu::Features) -> bool {
    features.contains(wgpu::Features::TIMESTAMP_QUERY)
}
