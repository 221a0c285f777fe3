//! The buffer pool: device buffers are reused by size, so a repeated training step creates none.

use crate::counters::Counters;
use kiln_core::StorageHandle;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

static NEXT_BUFFER_ID: AtomicU64 = AtomicU64::new(1);

/// A device buffer with a process-unique id (bind groups are cached by these ids).
pub struct GpuBuffer {
    /// The wgpu buffer.
    pub buffer: wgpu::Buffer,
    /// Unique id.
    pub id: u64,
    /// Capacity in bytes.
    pub size: u64,
    /// What the buffer can be used for (pools are kept per usage).
    pub usage: wgpu::BufferUsages,
    counters: Arc<Counters>,
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        self.counters.buffer_destroyed(self.size);
    }
}

/// Storage buffers reusable by size. Sizes are rounded up to 256 bytes; a request takes a free
/// buffer of exactly that rounded size or creates one.
pub struct BufferPool {
    device: wgpu::Device,
    free: Mutex<HashMap<(wgpu::BufferUsages, u64), Vec<GpuBuffer>>>,
    counters: Arc<Counters>,
}

/// Usage of every pooled storage buffer.
const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl BufferPool {
    /// An empty pool for `device`.
    pub fn new(device: wgpu::Device, counters: Arc<Counters>) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            device,
            free: Mutex::new(HashMap::new()),
            counters,
        })
    }

    /// A storage buffer of at least `bytes` bytes (at least 4).
    pub fn take(&self, bytes: u64) -> GpuBuffer {
        self.take_with(bytes, STORAGE_USAGE, "kiln storage")
    }

    /// A mappable staging buffer of at least `bytes` bytes, for readbacks.
    pub fn take_staging(&self, bytes: u64) -> GpuBuffer {
        self.take_with(
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            "kiln staging",
        )
    }

    /// A free buffer of `usage` and at least `bytes` bytes, or a new one.
    fn take_with(&self, bytes: u64, usage: wgpu::BufferUsages, label: &str) -> GpuBuffer {
        let size = bytes.max(4).div_ceil(256) * 256;
        let reused = self
            .free
            .lock()
            .unwrap()
            .get_mut(&(usage, size))
            .and_then(|v| v.pop());
        reused.unwrap_or_else(|| self.create(size, usage, label))
    }

    /// Creates a buffer outside the pool's free lists (counted like any other).
    pub fn create(&self, size: u64, usage: wgpu::BufferUsages, label: &str) -> GpuBuffer {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        });
        self.counters.buffer_created(size);
        GpuBuffer {
            usage,
            buffer,
            id: NEXT_BUFFER_ID.fetch_add(1, Ordering::Relaxed),
            size,
            counters: self.counters.clone(),
        }
    }

    /// Returns a buffer for reuse.
    pub fn give(&self, b: GpuBuffer) {
        self.free
            .lock()
            .unwrap()
            .entry((b.usage, b.size))
            .or_default()
            .push(b);
    }

    /// Destroys every free buffer (memory held by live tensors stays).
    pub fn trim(&self) {
        for (_, list) in self.free.lock().unwrap().drain() {
            for b in list {
                b.buffer.destroy();
            }
        }
    }
}

/// A realized tensor's values on the GPU. Dropping it returns the buffer to the pool.
pub struct GpuStorage {
    buffer: Option<GpuBuffer>,
    bytes: u64,
    pool: Arc<BufferPool>,
}

impl GpuStorage {
    /// Wraps a pooled buffer holding `bytes` bytes of values.
    pub fn new(buffer: GpuBuffer, bytes: u64, pool: Arc<BufferPool>) -> GpuStorage {
        GpuStorage {
            buffer: Some(buffer),
            bytes,
            pool,
        }
    }
    /// The buffer.
    pub fn buffer(&self) -> &GpuBuffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
}

impl StorageHandle for GpuStorage {
    fn size_bytes(&self) -> u64 {
        self.bytes
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Drop for GpuStorage {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.pool.give(b);
        }
    }
}
