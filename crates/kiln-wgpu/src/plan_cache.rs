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
    }
}

/// Schedules and compiles `p`.
pub fn compile(ctx: &Context, pipelines: &PipelineCache, p: &Pending) -> Result<CompiledPlan> {
    compile_plan(
        ctx,
        pipelines,
        p,
        schedule::schedule(p, schedule_limits(ctx)),
    )
}

/// Compiles `plan`, the schedule of `p`: code generation, pipelines and intermediate buffers.
pub fn compile_plan(
    ctx: &Context,
    pipelines: &PipelineCache,
    p: &Pending,
    plan: Plan,
) -> Result<CompiledPlan> {
    let max_binding = ctx.limits.max_storage_buffer_binding_size;
    for (i, role) in plan.buffers.iter().enumerate() {
        let bytes = schedule::node_bytes(p, i);
        if *role != BufferRole::None && bytes > max_binding {
            let t = &p.nodes[i];
            return Err(KilnError::BindingTooLarge {
                tensor: format!("{} {} ({})", t.dtype(), t.shape(), t.op().signature_key()),
                bytes,
                limit: max_binding,
                device: ctx.summary.name.clone(),
            });
        }
    }
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
        let source = codegen::generate(p, &plan, kernel, opts);
        let pipeline = pipelines.get(ctx, &source)?;
        let layout = pipeline.get_bind_group_layout(0);
        let dispatch = grid_of(ctx, &source)?;
        let pack = if codegen::writes_f32_scratch(p, kernel, opts) {
            let bytes = root.numel() as u64 * 4;
            if bytes > max_binding {
                return Err(KilnError::BindingTooLarge {
                    tensor: format!(
                        "the f32 scratch output of {} {} (no native f16 on this device)",
                        root.dtype(),
                        root.shape()
                    ),
                    bytes,
                    limit: max_binding,
                    device: ctx.summary.name.clone(),
                });
            }
            scratch_bytes = scratch_bytes.max(bytes);
            let source = codegen::f16::pack_kernel(root.numel() as u64);
            let pipeline = pipelines.get(ctx, &source)?;
            Some(PackStep {
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
    })
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
