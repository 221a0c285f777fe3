//! The MPI implementation of [`Collective`] (feature `mpi`), over the system's Open MPI or MPICH
//! through rsmpi. Sums are deterministic in one of two ways ([`Reduction`]).

use crate::collective::{sum_in_rank_order, Collective};
use kiln_core::Result;
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// How the MPI implementation sums buffers over the ranks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// Every rank gathers every rank's buffer (`MPI_Iallgather`) and adds them in rank order
    /// itself: the same bits on every rank and in every run, whatever MPI library or algorithm,
    /// by construction. Each rank receives `(N - 1) x` the buffer, against `2 (N - 1) / N x` for
    /// a ring all-reduce: the same at 2 ranks, `N / 2` times more beyond. The default.
    #[default]
    RankOrder,
    /// MPI's own sum (`MPI_Iallreduce` with `MPI_SUM`): the bandwidth-optimal algorithms. Open
    /// MPI's and MPICH's algorithms give every rank the same bits for a fixed number of ranks and
    /// buffer size (they are chosen by size, and float addition is commutative), but the MPI
    /// standard only recommends it; the replica checksum catches a library where it fails.
    Mpi,
}

/// The processes of `MPI_COMM_WORLD`. Made by [`crate::init`] when the program runs under
/// `mpirun` / `srun`; finalizes MPI when dropped.
pub struct MpiCollective {
    world: SimpleCommunicator,
    local_rank: usize,
    reduction: Reduction,
    // Declared last: dropped (MPI_Finalize) after the communicators.
    _universe: Universe,
}

impl MpiCollective {
    /// Initializes MPI (threading level `Funneled`: only the main thread calls MPI). `None` if
    /// MPI was initialized already.
    pub fn init(reduction: Reduction) -> Option<MpiCollective> {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)?;
        let world = universe.world();
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        MPI_LIVE.store(true, Ordering::SeqCst);
        Some(MpiCollective {
            world,
            local_rank,
            reduction,
            _universe: universe,
        })
    }
}

/// True when this process was started by an MPI launcher (Open MPI's `mpirun`, MPICH's
/// Hydra, Slurm's `srun`), judged from the environment variables they set.
pub fn launched_by_mpi() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_RANK",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// True while an [`MpiCollective`] is alive, i.e. between MPI's initialization and its
/// finalization: the panic hook may call MPI_Abort only then. (MPI can be initialized only once
/// per process, so one flag serves.)
static MPI_LIVE: AtomicBool = AtomicBool::new(false);

impl Drop for MpiCollective {
    fn drop(&mut self) {
        // Runs before the fields are dropped, so before `_universe` finalizes MPI.
        MPI_LIVE.store(false, Ordering::SeqCst);
    }
}

/// Installs a panic hook that, after the usual message, aborts every rank of the job
/// (MPI_Abort), so that a panic on one rank does not leave the others waiting in a collective.
/// It aborts only for a panic on the thread that calls it (the one that initialized MPI and
/// makes the collective calls) while MPI is live: a panic on another thread (a worker whose
/// panic its owner catches at `join`), a probe's panic, or a panic after MPI was finalized
/// runs the previous hook alone.
pub(crate) fn abort_on_panic(rank: usize) {
    let mpi_thread = std::thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        // Another thread's panic may be caught (and this thread makes no MPI call for it); a
        // probe's panic (a shape a model may reject) is expected and becomes an error.
        if std::thread::current().id() != mpi_thread
            || !MPI_LIVE.load(Ordering::SeqCst)
            || kiln_core::probe::is_probing()
        {
            return;
        }
        eprintln!("kiln: rank {rank} panicked; aborting every rank of the MPI job");
        SimpleCommunicator::world().abort(101);
    }));
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) {
        let summed = self
            .all_reduce_buffers(1, &mut |_| Ok(buf.to_vec()))
            .expect("the buffer is given");
        buf.copy_from_slice(&summed[0]);
    }
    fn all_reduce_buffers(
        &self,
        count: usize,
        read: &mut dyn FnMut(usize) -> Result<Vec<f32>>,
    ) -> Result<Vec<Vec<f32>>> {
        let n = self.size();
        let gather = self.reduction == Reduction::RankOrder;
        let mut sends: Vec<Vec<f32>> = vec![vec![]; count];
        let mut recvs: Vec<Vec<f32>> = vec![vec![]; count];
        let (send_refs, recv_refs) = (&mut sends, &mut recvs);
        let world = &self.world;
        let rank = self.rank();
        mpi::request::scope(move |scope| {
            let mut pending = Vec::with_capacity(count);
            for (i, (send, recv)) in send_refs.iter_mut().zip(recv_refs).enumerate() {
                // Reading buffer i (a GPU readback) overlaps the reduction of buffer i - 1.
                *send = match read(i) {
                    Ok(v) => v,
                    Err(e) => {
                        // The other ranks are inside this collective already: end them all.
                        eprintln!("kiln: rank {rank}: {e}; aborting every rank of the MPI job");
                        world.abort(1);
                    }
                };
                *recv = vec![0.0; if gather { n * send.len() } else { send.len() }];
                let send: &Vec<f32> = send;
                pending.push(if gather {
                    world.immediate_all_gather_into(scope, &send[..], &mut recv[..])
                } else {
                    world.immediate_all_reduce_into(
                        scope,
                        &send[..],
                        &mut recv[..],
                        SystemOperation::sum(),
                    )
                });
            }
            for request in pending {
                request.wait();
            }
        });
        if !gather {
            return Ok(recvs);
        }
        Ok(sends
            .iter_mut()
            .zip(&recvs)
            .map(|(out, gathered)| {
                let parts: Vec<&[f32]> = gathered.chunks_exact(out.len().max(1)).collect();
                if !out.is_empty() {
                    sum_in_rank_order(&parts, out);
                }
                std::mem::take(out)
            })
            .collect())
    }
    fn all_gather_f32(&self, values: &[f32]) -> Vec<f32> {
        let mut all = vec![0.0f32; values.len() * self.size()];
        self.world.all_gather_into(values, &mut all[..]);
        all
    }
    fn reduce_scatter_sum(&self, rows: &[f32]) -> Vec<f32> {
        // Every rank sends row r to rank r (MPI_Alltoall) and adds what it receives in rank
        // order: the same bits whatever MPI's algorithms, as `Reduction::RankOrder`.
        let len = rows.len() / self.size().max(1);
        let mut received = vec![0.0f32; rows.len()];
        self.world.all_to_all_into(rows, &mut received[..]);
        let mut out = vec![0.0f32; len];
        if len > 0 {
            let parts: Vec<&[f32]> = received.chunks_exact(len).collect();
            sum_in_rank_order(&parts, &mut out);
        }
        out
    }
    fn broadcast(&self, root: usize, buf: &mut Vec<u8>) {
        let process = self.world.process_at_rank(root as i32);
        let mut len = buf.len() as u64;
        process.broadcast_into(&mut len);
        buf.resize(len as usize, 0);
        process.broadcast_into(&mut buf[..]);
    }
    fn all_gather_u64(&self, value: u64) -> Vec<u64> {
        let mut all = vec![0u64; self.size()];
        self.world.all_gather_into(&value, &mut all[..]);
        all
    }
    fn barrier(&self) {
        self.world.barrier();
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
