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
    rank: usize,
    size: usize,
}

impl Ranks {
    fn register(world: &World) -> Ranks {
        let registration = NEXT_REGISTRATION.fetch_add(1, Ordering::Relaxed);
        WORLDS.with(|w| w.borrow_mut().insert(registration, world.weak_collective()));
        Ranks {
            registration,
            rank: world.rank(),
            size: world.size(),
        }
    }

    /// `[R * K]` with this rank's `values` in row `rank` and zeros elsewhere, summed over the
    /// ranks (in rank order: adding zeros leaves every row exactly as its rank sent it).
    fn all_reduce_rows(&self, values: &[f32], row: Option<usize>) -> Result<Vec<f32>> {
        let comm = WORLDS
            .with(|w| w.borrow().get(&self.registration).and_then(Weak::upgrade))
            .ok_or_else(|| {
                KilnError::Backend(
                    "SyncBatchNorm: the statistics can only be exchanged on the thread that \
                     called World::sync_batch_norm, while its World lives"
                        .into(),
                )
            })?;
        let mut buf = match row {
            Some(r) => {
                let mut buf = vec![0.0f32; values.len() * self.size];
                buf[r * values.len()..(r + 1) * values.len()].copy_from_slice(values);
                buf
            }
            None => values.to_vec(),
        };
        comm.all_reduce_sum(&mut buf);
        Ok(buf)
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
        self.0.all_reduce_rows(input, Some(self.0.rank))
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
        let k = input.len() / self.0.size.max(1);
        let all = self.0.all_reduce_rows(input, None)?;
        Ok(all[self.0.rank * k..(self.0.rank + 1) * k].to_vec())
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
