//! Strided operands: a matmul operand that is a chain of views (permute, broadcast, reshape)
//! over one buffer reads element `(batch.., row, col)` at
//! `offset = sum(batch_i * s_i) + row * s_row + col * s_col` of that buffer. When either the
//! row or the column stride is 1, the software matmul can read it 4 values at a time (see
//! `shaders/matmul_cpu.wgsl`), whether it is stored row-major or transposed.

use crate::graph::Pending;
use crate::op::Op;

/// Where and how a view chain reads its buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strided {
    /// The materialized node whose buffer holds the values.
    pub base: usize,
    /// Element stride of each dimension of the viewed node (0 for a broadcast dimension).
    pub strides: Vec<usize>,
}

/// The strides of node `x` as a view of a materialized buffer, or `None` when some op in the
/// chain is not a pure view (slice, pad, window, arithmetic) or a reshape that no strides can
/// express. `materialized[i]` says which nodes have buffers; `root` (the kernel's output) is
/// never a base (`usize::MAX`: no root).
pub fn strided(p: &Pending, materialized: &[bool], root: usize, x: usize) -> Option<Strided> {
    let node = &p.nodes[x];
    if materialized[x] && x != root {
        return Some(Strided {
            base: x,
            strides: node.shape().strides(),
        });
    }
    if p.is_leaf(x) || node.shape().numel() == 0 {
        return None;
    }
    let input = p.inputs[x][0];
    let inner = strided(p, materialized, root, input)?;
    let in_dims = p.nodes[input].dims();
    let strides = match node.op() {
        Op::Permute(perm) => perm.iter().map(|&d| inner.strides[d]).collect(),
        Op::Expand => in_dims
            .iter()
            .zip(&inner.strides)
            .map(|(&n, &s)| if n == 1 { 0 } else { s })
            .collect(),
        Op::Reshape => view_strides(in_dims, &inner.strides, node.dims())?,
        _ => return None,
    };
    Some(Strided {
        base: inner.base,
        strides,
    })
}

/// Strides for viewing a tensor of `dims` with `strides` as `new_dims` without a copy, or `None`
/// when the reshape merges dimensions that are not laid out contiguously (PyTorch's
/// `computeStride`).
pub fn view_strides(dims: &[usize], strides: &[usize], new_dims: &[usize]) -> Option<Vec<usize>> {
    let mut out = vec![0; new_dims.len()];
    let mut view_d = new_dims.len() as isize - 1;
    let mut chunk_base = strides.last().copied().unwrap_or(1);
    let (mut tensor_numel, mut view_numel) = (1usize, 1usize);
    for d in (0..dims.len()).rev() {
        tensor_numel *= dims[d];
        // A chunk ends where the next outer dimension is not laid out right after this one.
        if d == 0 || (dims[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base) {
            while view_d >= 0 && (view_numel < tensor_numel || new_dims[view_d as usize] == 1) {
                out[view_d as usize] = view_numel * chunk_base;
                view_numel *= new_dims[view_d as usize];
                view_d -= 1;
            }
            if view_numel != tensor_numel {
                return None;
            }
            if d > 0 {
                chunk_base = strides[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    (view_d == -1).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::view_strides;

    #[test]
    fn reshape_of_contiguous_is_contiguous() {
        assert_eq!(
            view_strides(&[2, 3, 4], &[12, 4, 1], &[6, 4]),
            Some(vec![4, 1])
        );
        assert_eq!(
            view_strides(&[6, 4], &[4, 1], &[1, 2, 3, 4]),
            Some(vec![24, 12, 4, 1])
        );
    }

    #[test]
    fn reshape_of_transposed_splits_but_does_not_merge() {
        // [3, 4] stored transposed: strides [1, 3].
        assert_eq!(
            view_strides(&[3, 4], &[1, 3], &[3, 2, 2]),
            Some(vec![1, 6, 3])
        );
        assert_eq!(view_strides(&[3, 4], &[1, 3], &[12]), None);
    }

    #[test]
    fn broadcast_dimensions_keep_stride_zero() {
        assert_eq!(
            view_strides(&[5, 2, 3], &[0, 3, 1], &[5, 6]),
            Some(vec![0, 1])
        );
    }
}
