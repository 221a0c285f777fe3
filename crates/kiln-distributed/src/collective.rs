//! The [`Collective`] interface: what data-parallel training needs from the processes it runs
//! on (who am I, how many are we, sum these numbers over all of us), with the single-process
//! implementation; the MPI one is in `mpi_world.rs` behind the `mpi` feature.
//!
//! Every sum is deterministic and bit-identical on every rank: the contributions are added in
//! rank order (`((r0 + r1) + r2) + ...`) by every rank (see [`Collective::all_reduce_sum`]).

use half::f16;
use kiln_core::Result;

/// The collective operations of a group of processes (ranks `0..size`). Every rank must call
/// the same collective operations in the same order with buffers of the same length, as in MPI;
/// a rank that fails should [`Collective::abort`] the group rather than leave the others waiting.
pub trait Collective {
    /// This process's rank, in `0..size()`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn size(&self) -> usize;
    /// This process's rank among the processes on its machine (chooses its GPU).
    fn local_rank(&self) -> usize;
    /// Replaces `buf` by the element-wise sum of every rank's `buf`, added in rank order, so the
    /// result is the same bits on every rank and in every run with the same number of ranks.
    fn all_reduce_sum(&self, buf: &mut [f32]);
    /// Sums several buffers over the ranks, as [`Collective::all_reduce_sum`] does each: buffer
    /// `i` comes from `read(i)`, called in order `0..count`. An implementation may start
    /// reducing buffer `i` before it reads buffer `i + 1` (MPI's non-blocking collectives), so
    /// that reading one overlaps reducing the previous. Returns the sums, in order. An error
    /// from `read` is returned after the reductions already started have finished.
    fn all_reduce_buffers(
        &self,
        count: usize,
        read: &mut dyn FnMut(usize) -> Result<Vec<f32>>,
    ) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let mut buf = read(i)?;
            self.all_reduce_sum(&mut buf);
            out.push(buf);
        }
        Ok(out)
    }
    /// Every rank's `values` (the same length on every rank), concatenated in rank order:
    /// `[size x values.len()]`, the same on every rank (MPI_Allgather). The default sends a
    /// zero-padded `size x len` buffer through [`Collective::all_reduce_sum`].
    fn all_gather_f32(&self, values: &[f32]) -> Vec<f32> {
        let len = values.len();
        let mut buf = vec![0.0f32; len * self.size()];
        buf[self.rank() * len..(self.rank() + 1) * len].copy_from_slice(values);
        self.all_reduce_sum(&mut buf);
        buf
    }
    /// `rows` is `[size x len]` on every rank; returns, on rank `r`, the sum over the ranks of
    /// their row `r`, added in rank order (a reduce-scatter; the transpose of
    /// [`Collective::all_gather_f32`]). The default reduces all of `rows` and keeps row `r`.
    fn reduce_scatter_sum(&self, rows: &[f32]) -> Vec<f32> {
        let len = rows.len() / self.size().max(1);
        let mut buf = rows.to_vec();
        self.all_reduce_sum(&mut buf);
        buf[self.rank() * len..(self.rank() + 1) * len].to_vec()
    }
    /// Replaces `buf` on every rank by `root`'s `buf` (its length too).
    fn broadcast(&self, root: usize, buf: &mut Vec<u8>);
    /// Every rank's `value`, in rank order.
    fn all_gather_u64(&self, value: u64) -> Vec<u64>;
    /// Waits until every rank has called it.
    fn barrier(&self);
    /// Ends every process of the group at once with exit code `code` (MPI_Abort): what a rank
    /// that cannot go on does, so that the others do not wait for it forever.
    fn abort(&self, code: i32) -> !;

    /// [`Collective::all_reduce_sum`] of f16 values: each rank's values are widened to f32,
    /// summed in f32 in rank order, and rounded back to f16 once.
    fn all_reduce_sum_f16(&self, buf: &mut [f16]) {
        let mut wide: Vec<f32> = buf.iter().map(|v| v.to_f32()).collect();
        self.all_reduce_sum(&mut wide);
        for (dst, v) in buf.iter_mut().zip(wide) {
            *dst = f16::from_f32(v);
        }
    }
}

/// The group of one process: every collective is the identity, so code written for N ranks runs
/// unchanged (and costs nothing more) as one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn all_reduce_sum(&self, _buf: &mut [f32]) {}
    fn broadcast(&self, _root: usize, _buf: &mut Vec<u8>) {}
    fn all_gather_u64(&self, value: u64) -> Vec<u64> {
        vec![value]
    }
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Adds `parts` (one slice per rank, equally long, in rank order) into `out` in rank order: the
/// deterministic sum the MPI implementation computes from gathered buffers.
pub fn sum_in_rank_order(parts: &[&[f32]], out: &mut [f32]) {
    out.copy_from_slice(parts[0]);
    for part in &parts[1..] {
        for (o, v) in out.iter_mut().zip(part.iter()) {
            *o += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_process_is_the_identity() {
        let c = SingleProcess;
        let mut v = vec![1.5f32, -2.0, 3.25];
        c.all_reduce_sum(&mut v);
        assert_eq!(v, [1.5, -2.0, 3.25]);
        let mut h = vec![f16::from_f32(0.5), f16::from_f32(-7.0)];
        c.all_reduce_sum_f16(&mut h);
        assert_eq!(h, [f16::from_f32(0.5), f16::from_f32(-7.0)]);
        assert_eq!(c.all_gather_u64(9), [9]);
        let bufs = c
            .all_reduce_buffers(2, &mut |i| Ok(vec![i as f32; 3]))
            .unwrap();
        assert_eq!(bufs, [vec![0.0; 3], vec![1.0; 3]]);
        assert_eq!(c.all_gather_f32(&[1.0, 2.0]), [1.0, 2.0]);
        assert_eq!(c.reduce_scatter_sum(&[3.0, 4.0]), [3.0, 4.0]);
    }

    #[test]
    fn rank_order_sum_adds_left_to_right() {
        // (1e8 + 1) - 1e8 is 0 in f32 while 1e8 + (1 - 1e8) is 1: the order is the one documented.
        let parts: [&[f32]; 3] = [&[1e8, 1.0], &[1.0, 2.0], &[-1e8, 3.0]];
        let mut out = [0.0f32; 2];
        sum_in_rank_order(&parts, &mut out);
        assert_eq!(out, [0.0, 6.0]);
    }
}
