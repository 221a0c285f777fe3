//! Compiled plans: a scheduled plan with its pipelines, its intermediate buffers and its bind
//! groups, cached by the graph's structural signature so that a repeated step compiles nothing,
//! creates no pipeline and allocates no buffer.

use crate::codegen::{self, CodegenOptions, KernelSource, Workgroups};
use crate::context::Context;
use crate::pool::{BufferPool, GpuBuffer};
use kiln_core::schedule::{self, BufferRole, Plan, ScheduleLimits};
use kiln_core::{KilnError, Pending, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One kernel, compiled.
pub struct CompiledKernel {
    /// The generated source and its cost.
    pub source: KernelSource,
    /// The pipeline.
    pub pipeline: Arc<wgpu::ComputePipeline>,
    /// Its bind group layout.
    pub layout: wgpu::BindGroupLayout,
    /// Workgroups per dimension.
    pub dispatch: [u32; 3],
    /// The uniform buffer of runtime scalars and its size in words, if the kernel has any.
    pub params: Option<(GpuBuffer, usize)>,
    /// Bind groups by the ids of the buffers bound (output first).
    pub bind_groups: Mutex<HashMap<Vec<u64>, wgpu::BindGroup>>,
    /// Without native f16, for a non-elementwise kernel with an f16 output: the kernel writes
    /// f32 into the plan's scratch buffer and this packs it into the output, right after.
    pub pack: Option<PackStep>,
    /// Per bound buffer (output, reads, further outputs), the binding numbers of its windows
    /// after the first: empty for a buffer that fits one binding.
    pub windows: Vec<Vec<u32>>,
}

/// The dispatch that packs a kernel's f32 scratch output into its f16 output buffer (see
/// [`codegen::f16::pack_kernel`]): binding 0 the output, binding 1 the scratch buffer.
pub struct PackStep {
    /// The generated source.
    pub source: KernelSource,
    /// The pipeline.
    pub pipeline: Arc<wgpu::ComputePipeline>,
    /// Its bind group layout.
    pub layout: wgpu::BindGroupLayout,
    /// Workgroups per dimension.
    pub dispatch: [u32; 3],
    /// Bind groups by the ids of the output and scratch buffers.
    pub bind_groups: Mutex<HashMap<Vec<u64>, wgpu::BindGroup>>,
    /// The binding numbers of the output's and the scratch buffer's windows after the first.
    pub windows: Vec<Vec<u32>>,
}

/// A plan ready to run.
pub struct CompiledPlan {
    /// The backend-neutral plan.
    pub plan: Plan,
    /// Its kernels, in order (kernels with no output elements are left out).
    pub kernels: Vec<(usize, CompiledKernel)>,
    /// Intermediate buffers, one per liveness slot.
    pub slots: Vec<GpuBuffer>,
    /// The f32 scratch buffer of the kernels with a [`PackStep`] (one after the other), if any.
    pub scratch: Option<GpuBuffer>,
    /// Where the slots and scratch buffer go back when the plan is dropped (evicted).
    pub pool: Arc<BufferPool>,
    /// The size of the windows that buffers over one storage binding are bound in (see
    /// [`codegen::windows`]).
    pub window_bytes: u64,
}

impl CompiledPlan {
    /// Device bytes the plan keeps while cached: its slots, scratch and uniform buffers.
    pub fn footprint(&self) -> u64 {
        let params: u64 = self
            .kernels
            .iter()
            .filter_map(|(_, k)| k.params.as_ref().map(|(b, _)| b.size))
            .sum();
        let scratch = self.scratch.as_ref().map_or(0, |b| b.size);
        self.slots.iter().map(|b| b.size).sum::<u64>() + scratch + params
    }
    /// The pack step of kernel `k` and the scratch buffer it packs from (which the kernel then
    /// writes instead of its output), if the kernel has one.
    pub fn pack_of<'a>(&'a self, k: &'a CompiledKernel) -> Option<(&'a PackStep, &'a GpuBuffer)> {
        k.pack.as_ref().zip(self.scratch.as_ref())
    }
    /// Dispatches one run records: one per kernel, plus one per pack step.
    pub fn dispatches(&self) -> u64 {
        self.kernels
            .iter()
            .map(|(_, k)| 1 + k.pack.is_some() as u64)
            .sum()
    }
}

impl Drop for CompiledPlan {
    /// Returns the intermediate buffers to the pool for the next plan to take.
    fn drop(&mut self) {
        for b in self.slots.drain(..).chain(self.scratch.take()) {
            self.pool.give(b);
        }
    }
}

/// Pipelines by WGSL source: graphs that differ only elsewhere share kernels.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    /// The pipeline of `src`, compiling it on first use.
    pub fn get(&self, ctx: &Context, src: &KernelSource) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self.map.lock().unwrap().get(&src.wgsl) {
            return Ok(p.clone());
        }
        let started = std::time::Instant::now();
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&src.name),
            source: wgpu::ShaderSource::Wgsl(src.wgsl.as_str().into()),
        };
        // Matmul and reduction indexing is covered by the tests against the reference on edge
        // shapes; skipping the runtime bounds checks there is worth it in the hot loops.
        let hot = src.name.starts_with("matmul") || src.name.starts_with("reduce");
        let module = if hot && std::env::var("KILN_BOUNDS_CHECKS").is_err() {
            // SAFETY: every index in these kernels is computed from the shapes baked into the
            // source and guarded by the edge checks; tests compare them with the reference on
            // shapes that are not multiples of the tiles.
            unsafe {
                ctx.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            ctx.device.create_shader_module(desc)
        };
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&src.name),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(KilnError::Backend(format!(
                "kernel `{}` failed to compile: {err}\n{}",
                src.name, src.wgsl
            )));
        }
        ctx.counters
            .pipelines_created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if std::env::var("KILN_LOG").is_ok_and(|v| v == "compile") {
            eprintln!(
                "kiln compile: {:8.1} ms  {}",
                started.elapsed().as_secs_f64() * 1e3,
                src.name
            );
        }
        let p = Arc::new(pipeline);
        self.map.lock().unwrap().insert(src.wgsl.clone(), p.clone());
        Ok(p)
    }
}

/// The limits plans are scheduled with on this device.
pub fn schedule_limits(ctx: &Context) -> ScheduleLimits {
    ScheduleLimits {
        max_storage_buffers: ctx.limits.max_storage_buffers_per_shader_stage as usize,
        // Any window that fits a binding: ResNet-20's 16-channel im2col at batch 128 (58 MB) is
        // written out too, which made its step ~4% faster (peak memory 1,024 -> 1,142 MiB).
        window_operand_bytes: if ctx.software_kernels() {
            ctx.limits.max_storage_buffer_binding_size
        } else {
            0
        },
        col2im_product_limit: ctx
            .col2im_product_limit
            .unwrap_or(schedule::COL2IM_PRODUCT_LIMIT),
        disabled_rules: ctx.disabled_rules,
    }
}

/// The size of the windows that buffers over one storage binding are bound in on this device.
fn window_bytes(ctx: &Context) -> u64 {
    codegen::windows::window_bytes(
        ctx.limits.max_storage_buffer_binding_size,
        ctx.limits.min_storage_buffer_offset_alignment as u64,
    )
}

/// Schedules `p` for this device: with few enough buffers per kernel that the windows of large
/// buffers fit the bindings a kernel may have; errors for a tensor past the largest buffer.
pub fn schedule_for(ctx: &Context, p: &Pending) -> Result<Plan> {
    schedule_fitting(ctx, p, window_bytes(ctx))
}

/// Compiles `plan`, the schedule of `p` ([`schedule_for`]): code generation, pipelines and
/// intermediate buffers.
pub fn compile_plan(
    ctx: &Context,
    pipelines: &PipelineCache,
    p: &Pending,
    plan: Plan,
) -> Result<CompiledPlan> {
    let window = window_bytes(ctx);
    let opts = CodegenOptions {
        f16: ctx.f16,
        family: ctx.kernel_family(),
    };
    let mut kernels = vec![];
    let mut scratch_bytes = 0;
    for (k, kernel) in plan.kernels.iter().enumerate() {
        let root = &p.nodes[kernel.root];
        if root.numel() == 0 {
            continue;
        }
        let mut source = codegen::generate(p, &plan, kernel, opts);
        let scratch = codegen::writes_f32_scratch(p, kernel, opts);
        let out_bytes = if scratch {
            root.numel() as u64 * 4
        } else {
            schedule::node_bytes(p, kernel.root)
        };
        let mut bound = vec![out_bytes];
        bound.extend(kernel.reads.iter().map(|&r| schedule::node_bytes(p, r)));
        bound.extend(kernel.extra.iter().map(|&e| schedule::node_bytes(p, e)));
        let first_free = kernel.bindings() as u32 + (codegen::params_words(p, kernel) > 0) as u32;
        let windows = bind_windows(&mut source, &bound, kernel.reads.len(), window, first_free);
        let pipeline = pipelines.get(ctx, &source)?;
        let layout = pipeline.get_bind_group_layout(0);
        let dispatch = grid_of(ctx, &source)?;
        let pack = if scratch {
            let bytes = root.numel() as u64 * 4;
            scratch_bytes = scratch_bytes.max(bytes);
            let mut source = codegen::f16::pack_kernel(root.numel() as u64);
            let packed = schedule::node_bytes(p, kernel.root);
            let windows = bind_windows(&mut source, &[packed, bytes], 1, window, 2);
            let pipeline = pipelines.get(ctx, &source)?;
            Some(PackStep {
                windows,
                layout: pipeline.get_bind_group_layout(0),
                dispatch: grid_of(ctx, &source)?,
                source,
                pipeline,
                bind_groups: Mutex::new(HashMap::new()),
            })
        } else {
            None
        };
        let words = codegen::params_words(p, kernel);
        let params = (words > 0).then(|| {
            let bytes = (words.div_ceil(4) * 16) as u64;
            let buf = ctx.pool.create(
                bytes,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                "kiln params",
            );
            (buf, words)
        });
        kernels.push((
            k,
            CompiledKernel {
                source,
                pipeline,
                layout,
                dispatch,
                params,
                bind_groups: Mutex::new(HashMap::new()),
                pack,
                windows,
            },
        ));
    }
    let slots = plan.slot_bytes.iter().map(|&b| ctx.pool.take(b)).collect();
    let scratch = (scratch_bytes > 0).then(|| ctx.pool.take(scratch_bytes));
    Ok(CompiledPlan {
        plan,
        kernels,
        slots,
        scratch,
        pool: ctx.pool.clone(),
        window_bytes: window,
    })
}

/// Schedules `p` so that every kernel binds at most `max_storage_buffers_per_shader_stage`
/// storage windows (a buffer over one binding counts one per window of `window` bytes), and
/// checks that every buffer fits the device: at most `max_buffer_size` bytes and 2^32 elements
/// (kernels index with u32).
fn schedule_fitting(ctx: &Context, p: &Pending, window: u64) -> Result<Plan> {
    let max_buffer = ctx.limits.max_buffer_size;
    let mut limits = schedule_limits(ctx);
    let plan = loop {
        let plan = schedule::schedule(p, limits);
        let bound = |i: usize| codegen::windows::windows_of(schedule::node_bytes(p, i), window);
        let most = plan
            .kernels
            .iter()
            .map(|k| {
                // An f16 output may be written as f32 scratch (without native f16).
                let out = |i: usize| {
                    let scratch = p.nodes[i].numel() as u64 * 4;
                    codegen::windows::windows_of(schedule::node_bytes(p, i).max(scratch), window)
                };
                k.outputs().map(|i| out(i) as usize).sum::<usize>()
                    + k.reads.iter().map(|&i| bound(i) as usize).sum::<usize>()
            })
            .max()
            .unwrap_or(0);
        let allowed = ctx.limits.max_storage_buffers_per_shader_stage as usize;
        if most <= allowed {
            break plan;
        }
        // Fewer buffers per kernel leaves room for the windows of the large ones.
        let fewer = limits.max_storage_buffers.saturating_sub(most - allowed);
        if fewer < 3 || fewer == limits.max_storage_buffers {
            return Err(KilnError::Backend(format!(
                "a kernel needs {most} storage bindings (buffers over {window} bytes count one \
                 per window) but {} allows {allowed}; use smaller tensors",
                ctx.summary.name
            )));
        }
        limits.max_storage_buffers = fewer;
    };
    for (i, role) in plan.buffers.iter().enumerate() {
        let t = &p.nodes[i];
        let bytes = schedule::node_bytes(p, i);
        let too_many = t.numel() as u64 > u32::MAX as u64;
        if *role != BufferRole::None && (bytes > max_buffer || too_many) {
            return Err(KilnError::BufferTooLarge {
                tensor: format!("{} {} ({})", t.dtype(), t.shape(), t.op().signature_key()),
                bytes,
                limit: max_buffer.min(u32::MAX as u64 * t.dtype().size_bytes() as u64),
                device: ctx.summary.name.clone(),
            });
        }
    }
    Ok(plan)
}

/// Rewrites `source` so that each of its bound buffers over one binding (byte sizes `bound`, in
/// binding order: output, reads, further outputs) is bound as windows of `window` bytes, windows
/// 1.. at binding numbers from `first_free` on; returns those numbers per buffer. `reads`: how
/// many of the buffers are reads.
fn bind_windows(
    source: &mut KernelSource,
    bound: &[u64],
    reads: usize,
    window: u64,
    first_free: u32,
) -> Vec<Vec<u32>> {
    let counts: Vec<u32> = bound
        .iter()
        .map(|&b| codegen::windows::windows_of(b, window))
        .collect();
    let extra = codegen::windows::extra_bindings(&counts, first_free);
    // Binding names: `out_buf` (0), the reads `in1..` (1..), then the further outputs `out1..`.
    for (j, e) in extra.iter().enumerate() {
        if e.is_empty() {
            continue;
        }
        let name = match j {
            0 => "out_buf".to_string(),
            j if j <= reads => format!("in{j}"),
            j => codegen::outputs::var(j - reads - 1),
        };
        source.wgsl = codegen::windows::rewrite(&source.wgsl, &name, j as u32, window, e);
    }
    extra
}

/// The grid `source` is dispatched as: a flat count spread over x, y and z, or its own grid
/// when that is within the per-dimension limit.
fn grid_of(ctx: &Context, source: &KernelSource) -> Result<[u32; 3]> {
    match source.workgroups {
        Workgroups::Flat(n) => ctx.split_workgroups(n),
        Workgroups::Grid(g) => {
            let max = ctx.limits.max_compute_workgroups_per_dimension;
            if g.iter().any(|&d| d > max) {
                return Err(KilnError::Backend(format!(
                    "kernel `{}` needs a grid of {g:?} workgroups, more than {max} in a dimension",
                    source.name
                )));
            }
            Ok(g)
        }
    }
}

/// Prints a compiled plan for `KILN_LOG=plan` (and its WGSL for `KILN_LOG=kernels`).
pub fn log(plan: &CompiledPlan, with_source: bool) {
    eprintln!(
        "kiln plan: {} kernels, {} intermediate slots",
        plan.kernels.len(),
        plan.slots.len()
    );
    for (i, (_, k)) in plan.kernels.iter().enumerate() {
        eprintln!(
            "  [{i}] {:<40} workgroups {:?}  {:.3} MB moved  {:.3} MFLOP",
            k.source.name,
            k.dispatch,
            k.source.bytes as f64 / 1e6,
            k.source.flops as f64 / 1e6
        );
        if with_source {
            eprintln!("{}", k.source.wgsl);
        }
        if let Some(pk) = &k.pack {
            eprintln!(
                "      + {:<36} workgroups {:?}",
                pk.source.name, pk.dispatch
            );
            if with_source {
                eprintln!("{}", pk.source.wgsl);
            }
        }
    }
}
