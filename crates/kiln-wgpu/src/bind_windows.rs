//! Bind-group entries for a kernel's buffers, a buffer over one storage binding bound as several
//! windows (see [`crate::codegen::windows`]).

use crate::pool::GpuBuffer;
use std::num::NonZeroU64;

/// The entries of `bound` (in binding order): buffer `j` at binding `j` (its first `window`
/// bytes at most) when `windows[j]` is empty, else as consecutive windows of `window` bytes, the first at binding `j` and the
/// others at the numbers `windows[j]` lists (the last window runs to the buffer's end, at most
/// `window` bytes).
pub fn entries<'a>(
    bound: &[&'a GpuBuffer],
    windows: &[Vec<u32>],
    window: u64,
) -> Vec<wgpu::BindGroupEntry<'a>> {
    let mut entries = vec![];
    for (j, b) in bound.iter().enumerate() {
        let extra = windows.get(j).map(Vec::as_slice).unwrap_or(&[]);
        // A tensor that fits one binding may sit in a larger slot buffer (slots are shared by
        // liveness): bind only the first window of it.
        if extra.is_empty() && b.size <= window {
            entries.push(wgpu::BindGroupEntry {
                binding: j as u32,
                resource: b.buffer.as_entire_binding(),
            });
            continue;
        }
        let numbers = std::iter::once(j as u32).chain(extra.iter().copied());
        for (w, binding) in numbers.enumerate() {
            let offset = w as u64 * window;
            let size = window.min(b.size - offset);
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &b.buffer,
                    offset,
                    size: NonZeroU64::new(size),
                }),
            });
        }
    }
    entries
}
