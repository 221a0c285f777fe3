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
/// buffer of exactly that rounded size or creates one. The free buffers take at most a budget of
/// bytes: past it, the longest-unused free buffers are destroyed (inference over many shapes
/// would otherwise keep a buffer of every size it ever saw).
pub struct BufferPool {
    device: wgpu::Device,
    free: Mutex<FreeLists>,
    counters: Arc<Counters>,
    budget: AtomicU64,
}

/// Free buffers by (usage, size), and the order they were given back in.
#[derive(Default)]
struct FreeLists {
    lists: HashMap<(wgpu::BufferUsages, u64), Vec<GpuBuffer>>,
    /// (usage, size, id) of each free buffer, oldest first (may hold ids already taken again).
    order: std::collections::VecDeque<(wgpu::BufferUsages, u64, u64)>,
    bytes: u64,
}

/// Usage of every pooled storage buffer.
const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl BufferPool {
    /// An empty pool for `device` whose free buffers take at most `budget` bytes.
    pub fn new(device: wgpu::Device, counters: Arc<Counters>, budget: u64) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            device,
            free: Mutex::new(FreeLists::default()),
            counters,
            budget: AtomicU64::new(budget),
        })
    }

    /// The size of the buffer a request for `bytes` bytes gets: at least 4, rounded up to 256.
    pub fn rounded_size(bytes: u64) -> u64 {
        bytes.max(4).div_ceil(256) * 256
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
        let size = BufferPool::rounded_size(bytes);
        let reused = {
            let mut free = self.free.lock().unwrap();
            let b = free.lists.get_mut(&(usage, size)).and_then(|v| v.pop());
            if b.is_some() {
                free.bytes -= size;
            }
            b
        };
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

    /// Returns a buffer for reuse; destroys the longest-unused free buffers while the free ones
    /// take more than the budget. (A destroyed buffer's id is never bound again: bind groups
    /// cached for it are never looked up.)
    pub fn give(&self, b: GpuBuffer) {
        let mut free = self.free.lock().unwrap();
        free.bytes += b.size;
        free.order.push_back((b.usage, b.size, b.id));
        free.lists.entry((b.usage, b.size)).or_default().push(b);
        self.shrink(&mut free);
    }

    /// Sets the bytes the free buffers may take, destroying the longest-unused ones now if they
    /// take more.
    pub fn set_budget(&self, bytes: u64) {
        self.budget.store(bytes, Ordering::Relaxed);
        self.shrink(&mut self.free.lock().unwrap());
    }

    /// Destroys the longest-unused free buffers while they take more than the budget.
    fn shrink(&self, free: &mut FreeLists) {
        let budget = self.budget.load(Ordering::Relaxed);
        while free.bytes > budget {
            let Some((usage, size, id)) = free.order.pop_front() else {
                break;
            };
            let Some(list) = free.lists.get_mut(&(usage, size)) else {
                continue;
            };
            // Ids taken again since they were given back are stale entries of `order`.
            if let Some(pos) = list.iter().position(|x| x.id == id) {
                let old = list.remove(pos);
                free.bytes -= old.size;
                old.buffer.destroy();
            }
        }
        if free.order.len() > 4 * free.lists.values().map(Vec::len).sum::<usize>() + 64 {
            // Drop stale entries now and then so `order` stays proportional to the free buffers.
            let live: std::collections::HashSet<u64> =
                free.lists.values().flatten().map(|x| x.id).collect();
            free.order.retain(|(_, _, id)| live.contains(id));
        }
    }

    /// Bytes held by free buffers.
    pub fn free_bytes(&self) -> u64 {
        self.free.lock().unwrap().bytes
    }

    /// Destroys every free buffer (memory held by live tensors stays).
    pub fn trim(&self) {
        let mut free = self.free.lock().unwrap();
        for (_, list) in free.lists.drain() {
            for b in list {
                b.buffer.destroy();
            }
        }
        free.order.clear();
        free.bytes = 0;
    }
}

/// A realized tensor's values on the GPU. Dropping it returns the buffer to the pool.
pub struct GpuStorage {
    buffer: Option<GpuBuffer>,
    bytes: u64,
    pool: Arc<BufferPool>,
    /// A staging buffer that the submission which computed the values also copied them into
    /// (small targets: a loss, a flag), so that reading them needs no submission of its own.
    staged: Mutex<Option<GpuBuffer>>,
}

impl GpuStorage {
    /// Wraps a pooled buffer holding `bytes` bytes of values.
    pub fn new(buffer: GpuBuffer, bytes: u64, pool: Arc<BufferPool>) -> GpuStorage {
        GpuStorage {
            buffer: Some(buffer),
            bytes,
            pool,
            staged: Mutex::new(None),
        }
    }
    /// The buffer.
    pub fn buffer(&self) -> &GpuBuffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
    /// Keeps `staging`, into which the submission that computes these values also copies them.
    pub fn set_staged(&self, staging: GpuBuffer) {
        if let Some(old) = self.staged.lock().unwrap().replace(staging) {
            self.pool.give(old);
        }
    }
    /// Takes the staging copy, if the values were staged and not read since.
    pub fn take_staged(&self) -> Option<GpuBuffer> {
        self.staged.lock().unwrap().take()
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
        if let Some(b) = self.staged.lock().unwrap().take() {
            self.pool.give(b);
        }
    }
}
