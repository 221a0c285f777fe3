//! `WgpuBackend`: kiln's [`Backend`] on a wgpu device. A realize looks the graph's signature up
//! in the plan cache (compiling on a miss), binds this run's buffers, records every kernel in one
//! compute pass, copies the tensors that are read into staging buffers, and submits once.

use crate::context::Context;
use crate::options::WgpuOptions;
use crate::plan_cache::{self, CompiledPlan, PipelineCache};
use crate::plan_store::PlanStore;
use crate::pool::{BufferPool, GpuBuffer, GpuStorage};
use crate::readback::map_and_copy;
use crate::run::{self, RunBuffers, Timestamps};
use kiln_core::profile::{Profile, ProfileRecorder};
use kiln_core::rewrite::{self, Rewritten};
use kiln_core::schedule::ScheduleLimits;
use kiln_core::{Backend, DeviceKind, KilnError, Pending, Result, Stats, Storage, Tensor};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// A wgpu device as a kiln backend.
pub struct WgpuBackend {
    ctx: Context,
    plans: Mutex<PlanStore>,
    pipelines: PipelineCache,
    log: Option<bool>,
    profiling: AtomicBool,
    last_profile: Mutex<Vec<KernelTiming>>,
    recorder: Mutex<ProfileRecorder>,
    /// Held from a replay's first write of its plan's shared buffers to its submission (see
    /// [`Backend::realize`]): threads realizing on clones of one device stay apart.
    replay: Mutex<()>,
}

/// The GPU time of one kernel of the last profiled realize.
#[derive(Clone, Debug)]
pub struct KernelTiming {
    /// The kernel's description, e.g. "matmul 1024x1024x1024".
    pub name: String,
    /// Floating-point operations.
    pub flops: u64,
    /// Fewest bytes moved.
    pub bytes: u64,
    /// GPU time in seconds, from timestamp queries.
    pub seconds: f64,
}

impl WgpuBackend {
    /// Opens `adapter` with the environment's options ([`WgpuOptions::from_env`]).
    pub fn new(adapter: &wgpu::Adapter) -> Result<WgpuBackend> {
        WgpuBackend::with_options(adapter, &WgpuOptions::from_env()?)
    }

    /// Opens `adapter` with `opts` (its adapter choice is not looked at here).
    pub fn with_options(adapter: &wgpu::Adapter, opts: &WgpuOptions) -> Result<WgpuBackend> {
        let log = match std::env::var("KILN_LOG").as_deref() {
            Ok("plan") => Some(false),
            Ok("kernels") => Some(true),
            _ => None,
        };
        Ok(WgpuBackend {
            ctx: Context::open(adapter, opts)?,
            plans: Mutex::new(PlanStore::new(opts.plan_cache_budget())),
            pipelines: PipelineCache::default(),
            log,
            profiling: AtomicBool::new(false),
            last_profile: Mutex::new(vec![]),
            recorder: Mutex::new(ProfileRecorder::default()),
            replay: Mutex::new(()),
        })
    }

    /// Turns GPU timing of every kernel on or off. While on, each kernel runs in a compute pass of
    /// its own with timestamp queries (where the adapter has them), and [`Self::last_profile`]
    /// holds the times of the last realize; every realize's times also add up in the recorder
    /// that `Device::take_profile` empties. Returns false if the adapter has no timestamps.
    pub fn set_profiling(&self, on: bool) -> bool {
        self.profiling.store(on && self.ctx.timestamps, Relaxed);
        self.ctx.timestamps
    }

    /// Kernel times of the last realize run while profiling.
    pub fn last_profile(&self) -> Vec<KernelTiming> {
        self.last_profile.lock().unwrap().clone()
    }

    /// The opened device, for benchmarks and tools.
    #[doc(hidden)]
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Changes the plan store with `change` (which returns how many plans it evicted), counts
    /// the evictions, and lets the pool's free buffers keep what the plans and `pending` more
    /// bytes (a plan about to take its buffers) leave of the one budget they share.
    fn update_plans(&self, pending: u64, change: impl FnOnce(&mut PlanStore) -> u64) {
        let mut plans = self.plans.lock().unwrap();
        let evicted = change(&mut plans);
        self.ctx.counters.plans_evicted.fetch_add(evicted, Relaxed);
        let budget = plans.budget().saturating_sub(plans.bytes() + pending);
        self.ctx.pool.set_budget(budget);
    }

    /// The compiled plan of the rewritten graph `r` (from the cache, or scheduled and compiled
    /// now).
    fn compiled(&self, r: &Rewritten) -> Result<Arc<CompiledPlan>> {
        let p = r.pending();
        if let Some(c) = self.plans.lock().unwrap().get(&p.signature) {
            self.ctx.counters.plan_cache_hits.fetch_add(1, Relaxed);
            return Ok(c);
        }
        let plan = plan_cache::schedule_for(&self.ctx, p)?;
        // Make room first: the plans evicted for this one give their buffers back before it
        // takes its own, so the peak is one budget, not one budget plus the new plan.
        let need: u64 = plan
            .slot_bytes
            .iter()
            .map(|&b| BufferPool::rounded_size(b))
            .sum();
        self.update_plans(need, |plans| plans.make_room(need));
        let c = Arc::new(plan_cache::compile_plan(
            &self.ctx,
            &self.pipelines,
            p,
            plan,
        )?);
        self.ctx.counters.plans_compiled.fetch_add(1, Relaxed);
        if let Some(with_source) = self.log {
            eprintln!("kiln rewrite rules fired: {}", r.fired_summary());
            plan_cache::log(&c, with_source);
        }
        self.update_plans(0, |plans| plans.insert(p.signature.clone(), c.clone()));
        Ok(c)
    }

    /// Reads a profiled run's timestamps (`staging`, two ticks per kernel) back: the kernels'
    /// times go to the recorder and to [`Self::last_profile`].
    fn record_profile(&self, compiled: &CompiledPlan, staging: (GpuBuffer, u64)) -> Result<()> {
        let ps = [staging];
        let raw = map_and_copy(&self.ctx, &ps)?.remove(0);
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
        let period = self.ctx.queue.get_timestamp_period() as f64 * 1e-9;
        let timings = compiled
            .kernels
            .iter()
            .enumerate()
            .map(|(j, (_, ck))| KernelTiming {
                name: ck.source.name.clone(),
                flops: ck.source.flops,
                bytes: ck.source.bytes,
                seconds: ticks[2 * j + 1].saturating_sub(ticks[2 * j]) as f64 * period,
            })
            .collect::<Vec<KernelTiming>>();
        {
            let mut rec = self.recorder.lock().unwrap();
            for k in &timings {
                rec.record(&k.name, k.flops, k.bytes, k.seconds);
            }
            // The submission's GPU time: first kernel's start to last kernel's end.
            let last = 2 * compiled.kernels.len() - 1;
            rec.submission(ticks[last].saturating_sub(ticks[0]) as f64 * period);
        }
        *self.last_profile.lock().unwrap() = timings;
        let [(st, _)] = ps;
        self.ctx.pool.give(st);
        Ok(())
    }
}

/// The storage of a tensor of this backend (panics for another backend's).
pub(crate) fn gpu_storage(s: &Storage) -> &GpuStorage {
    s.as_any()
        .downcast_ref::<GpuStorage>()
        .expect("tensor storage belongs to another backend")
}

impl Backend for WgpuBackend {
    fn name(&self) -> String {
        let s = &self.ctx.summary;
        format!(
            "{} ({}, {:?}, {} kernels)",
            s.name,
            s.backend,
            s.kind,
            self.ctx.kernel_family()
        )
    }

    fn kernel_family(&self) -> Option<kiln_core::KernelFamily> {
        Some(self.ctx.kernel_family())
    }

    fn kind(&self) -> DeviceKind {
        self.ctx.summary.kind
    }

    fn max_binding_bytes(&self) -> u64 {
        self.ctx.limits.max_storage_buffer_binding_size
    }

    fn max_buffer_bytes(&self) -> u64 {
        self.ctx.limits.max_buffer_size
    }

    fn schedule_limits(&self) -> Option<ScheduleLimits> {
        Some(plan_cache::schedule_limits(&self.ctx))
    }

    fn set_profiling(&self, on: bool) -> bool {
        WgpuBackend::set_profiling(self, on)
    }

    fn take_profile(&self) -> Option<Profile> {
        self.ctx
            .timestamps
            .then(|| self.recorder.lock().unwrap().take(self.name()))
    }

    fn realize(&self, p: &Pending, read: &[usize]) -> Result<Vec<Vec<u8>>> {
        self.ctx.check_lost()?;
        // The rewrite pass (kiln_core::rewrite) decides how to compute the graph; the plan is
        // the rewritten graph's, and the original targets get their replacements' storage.
        let rewritten = rewrite::rewrite(p, &plan_cache::schedule_limits(&self.ctx));
        let p = rewritten.pending();
        let compiled = self.compiled(&rewritten)?;
        let mut buffers = RunBuffers::bind(&self.ctx, p, &compiled);
        // A cached plan's runtime scalars (its uniform buffers) and intermediate slots are
        // shared by every replay of it. `queue.write_buffer` only stages a write for the next
        // submission, whichever thread makes it, so two threads replaying one plan could each
        // run with the other's scalars. From the first scalar write to the submission, one
        // replay at a time; the GPU runs submissions in order, so the slots are safe after it.
        let replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("kiln step"),
            });
        let profiling = self.profiling.load(Relaxed) && !compiled.kernels.is_empty();
        let timestamps = profiling.then(|| Timestamps::new(&self.ctx, compiled.kernels.len()));
        run::encode(&self.ctx, &mut encoder, p, &buffers, timestamps.as_ref());
        let profile_staging = timestamps
            .as_ref()
            .map(|t| t.resolve(&self.ctx, &mut encoder));
        let staging = run::copy_reads(&self.ctx, &mut encoder, p, &buffers, read);
        let staged = run::stage_small_targets(&self.ctx, &mut encoder, p, &buffers, read);
        // A plan of uploads alone (host values given to their nodes, as a host call's results
        // are) records no command: its `write_buffer`s go out with the next submission, which
        // is the first that can read them, so it makes none of its own.
        let uploads_only = compiled.kernels.is_empty() && staging.is_empty() && staged.is_empty();
        if !uploads_only || profile_staging.is_some() {
            self.ctx.queue.submit([encoder.finish()]);
            self.ctx.counters.submissions.fetch_add(1, Relaxed);
        }
        drop(replay);
        self.ctx
            .counters
            .dispatches
            .fetch_add(compiled.dispatches(), Relaxed);
        buffers.keep_created(p);
        run::keep_staged(p, staged);
        rewritten.hand_back();
        if let Some(ps) = profile_staging {
            self.record_profile(&compiled, ps)?;
        }
        run::read_back(&self.ctx, staging)
    }

    fn read(&self, tensor: &Tensor) -> Result<Vec<u8>> {
        self.ctx.check_lost()?;
        let storage = tensor
            .storage()
            .ok_or_else(|| KilnError::Backend("read of an unrealized tensor".into()))?;
        let bytes = storage.size_bytes();
        // A small target was copied out by the submission that computed it.
        if let Some(st) = gpu_storage(&storage).take_staged() {
            let staging = [(st, bytes)];
            let out = map_and_copy(&self.ctx, &staging);
            let [(st, _)] = staging;
            self.ctx.pool.give(st);
            return Ok(out?.remove(0));
        }
        let st = self.ctx.pool.take_staging(bytes);
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("kiln read"),
            });
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(
                &gpu_storage(&storage).buffer().buffer,
                0,
                &st.buffer,
                0,
                bytes.div_ceil(4) * 4,
            );
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.counters.submissions.fetch_add(1, Relaxed);
        let staging = [(st, bytes)];
        let out = map_and_copy(&self.ctx, &staging);
        let [(st, _)] = staging;
        self.ctx.pool.give(st);
        Ok(out?.remove(0))
    }

    fn stats(&self) -> Stats {
        self.ctx.counters.snapshot()
    }
}
