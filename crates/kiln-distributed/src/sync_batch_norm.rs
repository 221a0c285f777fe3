//! Synchronized batch norm over a [`World`] (PyTorch's `SyncBatchNorm`): the host functions
//! that gather every rank's batch statistics in the forward pass and sum their gradients in the
//! backward pass, for [`kiln_core::nn::BatchNorm::sync_statistics`].
//!
//! A graph holds `Send + Sync` ops while a [`World`]'s collective lives on the thread that made
//! it, so the functions hold the number of a registration in a per-thread table of worlds (a
//! weak handle: a model does not keep MPI from finalizing) and find their collective there when
//! the graph runs.

use crate::collective::Collective;
use crate::world::World;
use kiln_core::host_call::HostFunction;
use kiln_core::{KilnError, Result, Tensor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

thread_local! {
    static WORLDS: RefCell<HashMap<u64, Weak<dyn Collective>>> = RefCell::new(HashMap::new());
}

static NEXT_REGISTRATION: AtomicU64 = AtomicU64::new(1);

/// Where the host functions find their collective: a registration in this thread's table.
#[derive(Clone, Copy, Debug)]
struct Ranks {
    registration: u64,
    size: usize,
}

impl Ranks {
    fn register(world: &World) -> Ranks {
        let registration = NEXT_REGISTRATION.fetch_add(1, Ordering::Relaxed);
        WORLDS.with(|w| w.borrow_mut().insert(registration, world.weak_collective()));
        Ranks {
            registration,
            size: world.size(),
        }
    }

    /// A stage holding one of these exchanges failed on this rank: the other ranks are waiting
    /// (or will wait) for it in the exchange, so every rank of the job ends here.
    fn stage_failed(&self, error: &KilnError) {
        if let Ok(comm) = self.collective() {
            if comm.size() > 1 {
                eprintln!(
                    "kiln: rank {} of {}: error: {error}\nkiln: a SyncBatchNorm exchange cannot \
                     happen; aborting every rank of the job",
                    comm.rank(),
                    comm.size()
                );
                comm.abort(1);
            }
        }
    }

    /// The collective of this registration, or an error off its thread or after its world.
    fn collective(&self) -> Result<std::rc::Rc<dyn Collective>> {
        WORLDS
            .with(|w| w.borrow().get(&self.registration).and_then(Weak::upgrade))
            .ok_or_else(|| {
                KilnError::Backend(
                    "SyncBatchNorm: the statistics can only be exchanged on the thread that \
                     called World::sync_batch_norm, while its World lives"
                        .into(),
                )
            })
    }
}

/// `[K] -> [R, K]`: every rank's values, row `r` from rank `r`. Its gradient is [`SumOwnRow`].
struct GatherRows(Ranks);

/// `[R, K] -> [K]`: the sum over the ranks of their row for this rank (the transpose of
/// [`GatherRows`], whose gradient it is, and the other way round).
struct SumOwnRow(Ranks);

impl HostFunction for GatherRows {
    fn name(&self) -> String {
        "all_gather".into()
    }
    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        vec![self.0.size, input.iter().product()]
    }
    fn compute(&self, input: &[f32]) -> Result<Vec<f32>> {
        Ok(self.0.collective()?.all_gather_f32(input))
    }
    fn stage_failed(&self, error: &KilnError) {
        self.0.stage_failed(error)
    }
    fn vjp(&self, input: &Tensor, grad: &Tensor) -> Tensor {
        grad.host_call(Arc::new(SumOwnRow(self.0)))
            .reshape(input.dims())
    }
}

impl HostFunction for SumOwnRow {
    fn name(&self) -> String {
        "all_reduce_row".into()
    }
    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        vec![input.iter().skip(1).product()]
    }
    fn compute(&self, input: &[f32]) -> Result<Vec<f32>> {
        Ok(self.0.collective()?.reduce_scatter_sum(input))
    }
    fn stage_failed(&self, error: &KilnError) {
        self.0.stage_failed(error)
    }
    fn vjp(&self, input: &Tensor, grad: &Tensor) -> Tensor {
        grad.host_call(Arc::new(GatherRows(self.0)))
            .reshape(input.dims())
    }
}

/// The gather [`World::sync_batch_norm`] gives each batch-norm layer.
pub(crate) fn statistics_gather(world: &World) -> Arc<dyn HostFunction> {
    Arc::new(GatherRows(Ranks::register(world)))
}
