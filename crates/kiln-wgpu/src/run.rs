//! One realize of a compiled plan, phase by phase (see [`crate::backend`]): bind this run's
//! storages ([`RunBuffers::bind`]), encode its kernels ([`encode`]), resolve their timestamp
//! queries when profiling ([`Timestamps`]), copy the tensors that are read into staging buffers
//! ([`copy_reads`]) and, after the submission, read them back ([`read_back`]).

use crate::backend::gpu_storage;
use crate::context::Context;
use crate::plan_cache::{CompiledKernel, CompiledPlan, PackStep};
use crate::pool::{GpuBuffer, GpuStorage};
use crate::readback::map_and_copy;
use kiln_core::op::Op;
use kiln_core::schedule::{BufferRole, Kernel};
use kiln_core::{Pending, Result, Storage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bind groups one kernel keeps. A replay binds the plan's own buffers and the run's inputs and
/// outputs, which come from the pool and repeat in a steady loop; new buffers (new shapes, a
/// pool that released some) bring new ids, and a cache that only grew would keep every buffer
/// it ever bound alive on the device.
const MAX_BIND_GROUPS_PER_KERNEL: usize = 64;

/// Empties a kernel's bind-group cache when `key` is new and the cache is full.
fn forget_stale_bind_groups(groups: &mut HashMap<Vec<u64>, wgpu::BindGroup>, key: &[u64]) {
    if groups.len() >= MAX_BIND_GROUPS_PER_KERNEL && !groups.contains_key(key) {
        groups.clear();
    }
}

/// The buffers of one run: the plan's slots, and this run's storages of realized leaves,
/// uploads and targets.
pub(crate) struct RunBuffers<'r> {
    compiled: &'r CompiledPlan,
    storages: HashMap<usize, Storage>,
    /// The nodes whose storage this run creates (uploads and targets).
    created: Vec<usize>,
    /// `(leaf, target)`: an output written in place (`Kernel::in_place`) whose leaf's storage
    /// is held elsewhere too, so the leaf is copied into the target's new buffer first.
    copies: Vec<(usize, usize)>,
}

impl<'r> RunBuffers<'r> {
    /// Bind phase: the storages of the plan's realized leaves, and new buffers from the pool
    /// for its uploads (written now, for the submission) and targets.
    pub(crate) fn bind(ctx: &Context, p: &Pending, compiled: &'r CompiledPlan) -> Self {
        let mut storages: HashMap<usize, Storage> = HashMap::new();
        let mut created: Vec<usize> = vec![];
        let mut copies = vec![];
        // Outputs written in place take their leaf's storage where nothing else holds it.
        for &(t, l) in compiled.plan.kernels.iter().flat_map(|k| &k.in_place) {
            let s = p.nodes[l].storage().expect("realized leaf has storage");
            // Held by the leaf's node and `s` alone: no other tensor sees the values change.
            if Arc::strong_count(&s) == 2 {
                // A staged copy (a small target's, for a later read) holds the old values.
                if let Some(old) = gpu_storage(&s).take_staged() {
                    ctx.pool.give(old);
                }
                storages.insert(t, s);
                created.push(t);
            } else {
                copies.push((l, t));
            }
        }
        for (i, role) in compiled.plan.buffers.iter().enumerate() {
            let node = &p.nodes[i];
            let bytes = (node.numel() * node.dtype().size_bytes()) as u64;
            match role {
                BufferRole::Realized => {
                    let s = node.storage().expect("realized leaf has storage");
                    let _ = gpu_storage(&s);
                    storages.insert(i, s);
                }
                BufferRole::Upload => {
                    let Op::Data(data) = node.op() else {
                        unreachable!("uploads are data leaves")
                    };
                    let buf = ctx.pool.take(bytes);
                    if data.bytes.len() % 4 == 0 {
                        ctx.queue.write_buffer(&buf.buffer, 0, &data.bytes);
                    } else {
                        // Copies must be whole words (an odd number of f16 values is not).
                        let mut padded = data.bytes.clone();
                        padded.resize(data.bytes.len().div_ceil(4) * 4, 0);
                        ctx.queue.write_buffer(&buf.buffer, 0, &padded);
                    }
                    storages.insert(i, Arc::new(GpuStorage::new(buf, bytes, ctx.pool.clone())));
                    created.push(i);
                }
                BufferRole::Target if storages.contains_key(&i) => {}
                BufferRole::Target => {
                    let buf = ctx.pool.take(bytes);
                    storages.insert(i, Arc::new(GpuStorage::new(buf, bytes, ctx.pool.clone())));
                    created.push(i);
                }
                BufferRole::Slot(_) | BufferRole::None => {}
            }
        }
        RunBuffers {
            compiled,
            storages,
            created,
            copies,
        }
    }

    /// Encodes the copies of leaves into the new buffers of the outputs that replace them (see
    /// [`RunBuffers::copies`]), before the kernels.
    fn encode_copies(&self, p: &Pending, encoder: &mut wgpu::CommandEncoder) {
        for &(l, t) in &self.copies {
            let node = &p.nodes[t];
            let bytes = (node.numel() * node.dtype().size_bytes()) as u64;
            if bytes > 0 {
                let (src, dst) = (self.of(l), self.of(t));
                encoder.copy_buffer_to_buffer(
                    &src.buffer,
                    0,
                    &dst.buffer,
                    0,
                    bytes.div_ceil(4) * 4,
                );
            }
        }
    }

    /// The buffer node `i`'s values live in during the run.
    fn of(&self, i: usize) -> &GpuBuffer {
        match self.compiled.plan.buffers[i] {
            BufferRole::Realized | BufferRole::Upload | BufferRole::Target => {
                gpu_storage(&self.storages[&i]).buffer()
            }
            BufferRole::Slot(s) => &self.compiled.slots[s],
            BufferRole::None => unreachable!("node {i} is not materialized"),
        }
    }

    /// After the submission: the nodes this run created storages for keep them.
    pub(crate) fn keep_created(&mut self, p: &Pending) {
        for i in std::mem::take(&mut self.created) {
            p.nodes[i].set_storage(self.storages.remove(&i).unwrap());
        }
    }
}

/// The timestamp queries of a profiled run: one compute pass per kernel, its start and end.
pub(crate) struct Timestamps {
    set: wgpu::QuerySet,
    resolve: GpuBuffer,
    count: u32,
}

impl Timestamps {
    /// Queries for `kernels` kernels.
    pub(crate) fn new(ctx: &Context, kernels: usize) -> Timestamps {
        let count = 2 * kernels as u32;
        let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kiln profile"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolve = ctx.pool.create(
            count as u64 * 8,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            "kiln profile",
        );
        Timestamps {
            set,
            resolve,
            count,
        }
    }

    /// The timestamps of kernel `j`'s compute pass.
    fn writes(&self, j: usize) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * j as u32),
            end_of_pass_write_index: Some(2 * j as u32 + 1),
        }
    }

    /// Profile phase: encodes the copy of the timestamps into a staging buffer, returned with
    /// its size in bytes (two `u64` ticks per kernel) to read after the submission.
    pub(crate) fn resolve(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
    ) -> (GpuBuffer, u64) {
        let bytes = self.count as u64 * 8;
        encoder.resolve_query_set(&self.set, 0..self.count, &self.resolve.buffer, 0);
        let st = ctx.pool.take_staging(bytes);
        encoder.copy_buffer_to_buffer(&self.resolve.buffer, 0, &st.buffer, 0, bytes);
        (st, bytes)
    }
}

/// Encode phase: records every kernel of the plan, each followed by its f16 pack step if it has
/// one, in one compute pass (one pass per kernel, with `timestamps`, when profiling), and
/// writes each kernel's runtime scalars into its uniform buffer.
pub(crate) fn encode(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    p: &Pending,
    buffers: &RunBuffers,
    timestamps: Option<&Timestamps>,
) {
    let compiled = buffers.compiled;
    buffers.encode_copies(p, encoder);
    let mut pass: Option<wgpu::ComputePass> = None;
    for (j, (k, ck)) in compiled.kernels.iter().enumerate() {
        let kernel = &compiled.plan.kernels[*k];
        write_params(ctx, p, kernel, ck);
        // One pass for the whole plan; one pass per kernel when timing each.
        if pass.is_none() || timestamps.is_some() {
            drop(pass.take());
            let descriptor = wgpu::ComputePassDescriptor {
                label: Some("kiln plan"),
                timestamp_writes: timestamps.map(|t| t.writes(j)),
            };
            pass = Some(encoder.begin_compute_pass(&descriptor).forget_lifetime());
        }
        let pass = pass.as_mut().unwrap();
        let target = buffers.of(kernel.root);
        let pack = compiled.pack_of(ck);
        // A kernel with a pack step writes f32 into the scratch buffer, packed right after.
        let out = pack.map_or(target, |(_, scratch)| scratch);
        let mut bound: Vec<&GpuBuffer> = vec![out];
        bound.extend(kernel.reads.iter().map(|&r| buffers.of(r)));
        bound.extend(kernel.extra.iter().map(|&e| buffers.of(e)));
        Dispatch::of_kernel(ck).record(ctx, pass, &bound, compiled.window_bytes);
        if let Some((pk, scratch)) = pack {
            Dispatch::of_pack(pk).record(ctx, pass, &[target, scratch], compiled.window_bytes);
        }
    }
}

/// Writes the runtime scalars of `kernel` into the uniform buffer of `ck`, if it has one (a
/// write staged for the next submission).
fn write_params(ctx: &Context, p: &Pending, kernel: &Kernel, ck: &CompiledKernel) {
    if let Some((params, words)) = &ck.params {
        let mut data: Vec<u32> = Vec::with_capacity(*words);
        for &s in &kernel.scalars {
            data.extend(p.nodes[s].op().scalar_words(p.nodes[s].dtype()));
        }
        data.resize(words.div_ceil(4) * 4, 0);
        ctx.queue
            .write_buffer(&params.buffer, 0, bytemuck::cast_slice(&data));
    }
}

/// One dispatch to record: a compiled kernel's, or its f16 pack step's.
struct Dispatch<'k> {
    pipeline: &'k wgpu::ComputePipeline,
    layout: &'k wgpu::BindGroupLayout,
    bind_groups: &'k Mutex<HashMap<Vec<u64>, wgpu::BindGroup>>,
    windows: &'k [Vec<u32>],
    /// The uniform buffer of runtime scalars, bound after the storage buffers.
    params: Option<&'k GpuBuffer>,
    workgroups: [u32; 3],
}

impl<'k> Dispatch<'k> {
    /// The dispatch of kernel `ck`.
    fn of_kernel(ck: &'k CompiledKernel) -> Self {
        Dispatch {
            pipeline: &ck.pipeline,
            layout: &ck.layout,
            bind_groups: &ck.bind_groups,
            windows: &ck.windows,
            params: ck.params.as_ref().map(|(b, _)| b),
            workgroups: ck.dispatch,
        }
    }

    /// The dispatch of pack step `pk` (binding 0 the output, binding 1 the scratch buffer).
    fn of_pack(pk: &'k PackStep) -> Self {
        Dispatch {
            pipeline: &pk.pipeline,
            layout: &pk.layout,
            bind_groups: &pk.bind_groups,
            windows: &pk.windows,
            params: None,
            workgroups: pk.dispatch,
        }
    }

    /// Records the dispatch in `pass` with `bound` at bindings 0.. (a buffer over one binding
    /// as windows of `window_bytes`) and the uniform buffer after them; the bind group is the
    /// one cached for these buffers, or a new one.
    fn record(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass,
        bound: &[&GpuBuffer],
        window_bytes: u64,
    ) {
        let key: Vec<u64> = bound.iter().map(|b| b.id).collect();
        let mut groups = self.bind_groups.lock().unwrap();
        forget_stale_bind_groups(&mut groups, &key);
        let group = groups.entry(key).or_insert_with(|| {
            let mut entries = crate::bind_windows::entries(bound, self.windows, window_bytes);
            if let Some(params) = self.params {
                entries.push(wgpu::BindGroupEntry {
                    binding: bound.len() as u32,
                    resource: params.buffer.as_entire_binding(),
                });
            }
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: self.layout,
                entries: &entries,
            })
        });
        pass.set_pipeline(self.pipeline);
        pass.set_bind_group(0, &*group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Encodes the copies of the targets `read` (positions in `p.targets`) into new staging
/// buffers, returned with each tensor's size in bytes.
pub(crate) fn copy_reads(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    p: &Pending,
    buffers: &RunBuffers,
    read: &[usize],
) -> Vec<(GpuBuffer, u64)> {
    let mut staging = vec![];
    for &r in read {
        let i = p.targets[r];
        let node = &p.nodes[i];
        let bytes = (node.numel() * node.dtype().size_bytes()) as u64;
        let st = ctx.pool.take_staging(bytes);
        if bytes > 0 {
            let src = buffers.of(i);
            encoder.copy_buffer_to_buffer(&src.buffer, 0, &st.buffer, 0, bytes.div_ceil(4) * 4);
        }
        staging.push((st, bytes));
    }
    staging
}

/// Targets of at most this many bytes (a loss, a flag, a metric) that the caller does not read
/// now are also copied into a staging buffer by the submission that computes them, so that
/// reading them later (`loss.item()`) maps that buffer instead of making a submission of its own.
pub(crate) const STAGED_TARGET_BYTES: u64 = 64;

/// Encodes the copies of the small targets that `read` does not name (see
/// [`STAGED_TARGET_BYTES`]) into new staging buffers, returned with the node each belongs to.
pub(crate) fn stage_small_targets(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    p: &Pending,
    buffers: &RunBuffers,
    read: &[usize],
) -> Vec<(usize, GpuBuffer)> {
    let mut staged: Vec<(usize, GpuBuffer)> = vec![];
    for (k, &i) in p.targets.iter().enumerate() {
        let node = &p.nodes[i];
        let bytes = (node.numel() * node.dtype().size_bytes()) as u64;
        let small = bytes > 0 && bytes <= STAGED_TARGET_BYTES;
        let created = buffers.compiled.plan.buffers[i] == BufferRole::Target;
        if !small || !created || read.contains(&k) || staged.iter().any(|(j, _)| *j == i) {
            continue;
        }
        let st = ctx.pool.take_staging(bytes);
        let src = buffers.of(i);
        encoder.copy_buffer_to_buffer(&src.buffer, 0, &st.buffer, 0, bytes.div_ceil(4) * 4);
        staged.push((i, st));
    }
    staged
}

/// After the submission: gives each staged target's storage its staging copy.
pub(crate) fn keep_staged(p: &Pending, staged: Vec<(usize, GpuBuffer)>) {
    for (i, st) in staged {
        let storage = p.nodes[i]
            .storage()
            .expect("a target is realized by its run");
        gpu_storage(&storage).set_staged(st);
    }
}

/// Read-back phase (after the submission): the bytes of each staging buffer, which go back to
/// the pool.
pub(crate) fn read_back(ctx: &Context, staging: Vec<(GpuBuffer, u64)>) -> Result<Vec<Vec<u8>>> {
    let result = if staging.is_empty() {
        Ok(vec![])
    } else {
        map_and_copy(ctx, &staging)
    };
    for (st, _) in staging {
        ctx.pool.give(st);
    }
    result
}
