//! The device counters behind `Device::stats()`, updated atomically.

use kiln_core::Stats;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Atomic counters of one wgpu device.
#[derive(Default)]
pub struct Counters {
    /// Queue submissions.
    pub submissions: AtomicU64,
    /// Dispatches recorded.
    pub dispatches: AtomicU64,
    /// Pipelines created.
    pub pipelines_created: AtomicU64,
    /// Buffers created.
    pub buffers_allocated: AtomicU64,
    /// Bytes in live buffers.
    pub bytes_live: AtomicU64,
    /// Largest bytes_live.
    pub peak_bytes: AtomicU64,
    /// Plans compiled.
    pub plans_compiled: AtomicU64,
    /// Plan-cache hits.
    pub plan_cache_hits: AtomicU64,
    /// Plans evicted from the plan cache.
    pub plans_evicted: AtomicU64,
}

impl Counters {
    /// Records a created buffer.
    pub fn buffer_created(&self, size: u64) {
        self.buffers_allocated.fetch_add(1, Relaxed);
        let live = self.bytes_live.fetch_add(size, Relaxed) + size;
        self.peak_bytes.fetch_max(live, Relaxed);
    }
    /// Records a destroyed buffer.
    pub fn buffer_destroyed(&self, size: u64) {
        self.bytes_live.fetch_sub(size, Relaxed);
    }
    /// A snapshot.
    pub fn snapshot(&self) -> Stats {
        Stats {
            submissions: self.submissions.load(Relaxed),
            dispatches: self.dispatches.load(Relaxed),
            pipelines_created: self.pipelines_created.load(Relaxed),
            buffers_allocated: self.buffers_allocated.load(Relaxed),
            bytes_live: self.bytes_live.load(Relaxed),
            peak_bytes: self.peak_bytes.load(Relaxed),
            plans_compiled: self.plans_compiled.load(Relaxed),
            plan_cache_hits: self.plan_cache_hits.load(Relaxed),
            plans_evicted: self.plans_evicted.load(Relaxed),
        }
    }
}
