//! # kiln-distributed
//!
//! Data-parallel training over MPI, in the spirit of PyTorch's DistributedDataParallel and
//! Horovod: the same script runs as N processes (`mpirun -np N`), each with its own GPU, its own
//! shard of every epoch and a replica of the model; every step the gradients are averaged over
//! the processes, so the replicas stay identical and train as one process would with an N times
//! larger batch.
//!
//! ```no_run
//! use kiln_distributed as distributed;
//! # fn main() -> kiln_core::Result<()> {
//! let world = distributed::init()?;             // MPI under mpirun with --features mpi; else 1 process
//! let dev = world.device()?;                    // an adapter chosen by the local rank
//! # let model = kiln_core::nn::Linear::new(4, 2, &kiln_core::nn::ParamBuilder::new(&dev, 1));
//! let model = world.replicate(model)?;          // rank 0's parameters and buffers everywhere
//! let params = kiln_core::nn::Module::parameters(&model);
//! let mut opt = world.optimizer(&model, kiln_core::optim::Sgd::new(params, 0.1));
//! // each step: loss.backward() on this rank's shard of the batch, then opt.step(&grads)
//! # Ok(()) }
//! ```
//!
//! Without the `mpi` feature (the default) [`init`] gives a [`World`] of one process, and all of
//! it costs nothing. See docs/DISTRIBUTED.md for the design and its cost model.

mod collective;
mod ddp;
#[cfg(feature = "mpi")]
mod mpi_world;
mod sync_batch_norm;
mod world;

pub use collective::{sum_in_rank_order, Collective, SingleProcess};
pub use ddp::{plan_buckets, DistributedOptimizer, BUCKET_BYTES, CHECK_EVERY, FIRST_BUCKET_BYTES};
#[cfg(feature = "mpi")]
pub use mpi_world::{launched_by_mpi, MpiCollective, Reduction};
pub use world::World;

use kiln_core::Result;

/// The processes of this run. Built with the `mpi` feature and started by an MPI launcher
/// (`mpirun`, `srun`): MPI's world, with sums in rank order (`Reduction::RankOrder`) and a panic
/// hook that aborts every rank when one panics. Otherwise: this process alone.
pub fn init() -> Result<World> {
    #[cfg(feature = "mpi")]
    {
        if mpi_world::launched_by_mpi() {
            return init_mpi(Reduction::default());
        }
    }
    Ok(World::single())
}

/// [`init`] under MPI with the sum of `reduction`, whether or not a launcher is detected (a
/// program started without one becomes a world of one MPI process).
#[cfg(feature = "mpi")]
pub fn init_mpi(reduction: Reduction) -> Result<World> {
    let comm = MpiCollective::init(reduction).ok_or_else(|| {
        kiln_core::KilnError::Backend("distributed: MPI was initialized already".into())
    })?;
    if comm.size() > 1 {
        mpi_world::abort_on_panic(comm.rank());
    }
    Ok(World::new(std::rc::Rc::new(comm)))
}
