//! All-reduce bandwidth over bucket sizes, for docs/DISTRIBUTED.md's cost model:
//! `cargo bench --bench allreduce --features mpi --no-run`, then
//! `mpirun -np 2 --oversubscribe target/release/deps/allreduce-*` (as root also
//! `OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1`). Rank 0 prints, per size and per
//! [`Reduction`], the median time of one all-reduce and its bus bandwidth
//! `2 (N - 1) / N x bytes / time` (NCCL's measure: comparable across rank counts).

use kiln::distributed::{Collective, MpiCollective, Reduction};
use std::time::Instant;

fn main() {
    let reduction = match std::env::var("KILN_REDUCTION").as_deref() {
        Ok("mpi") => Reduction::Mpi,
        _ => Reduction::RankOrder,
    };
    let Some(comm) = MpiCollective::init(reduction) else {
        eprintln!("allreduce: MPI was initialized already");
        std::process::exit(1);
    };
    let n = comm.size() as f64;
    if comm.rank() == 0 {
        println!(
            "all-reduce over {} ranks, {reduction:?} (set KILN_REDUCTION=mpi for MPI's sum)",
            comm.size()
        );
        println!("{:>10} {:>12} {:>12}", "bytes", "median ms", "bus GB/s");
    }
    for kib in [4usize, 64, 1024, 4096, 25 * 1024, 64 * 1024] {
        let len = kib * 1024 / 4;
        let mut buf = vec![1.0f32; len];
        let reps = (256 * 1024 / kib).clamp(3, 50);
        let mut times = vec![];
        for _ in 0..reps {
            comm.barrier();
            let start = Instant::now();
            comm.all_reduce_sum(&mut buf);
            times.push(start.elapsed().as_secs_f64());
            buf.fill(1.0);
        }
        times.sort_by(f64::total_cmp);
        let t = times[times.len() / 2];
        let bytes = (len * 4) as f64;
        if comm.rank() == 0 {
            let bus = 2.0 * (n - 1.0) / n * bytes / t / 1e9;
            println!("{:>10} {:>12.3} {:>12.2}", len * 4, t * 1e3, bus);
        }
    }
}
