//! Matrix multiplication: 2-D, batched, with NumPy broadcasting of the batch dimensions.

use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::Tensor;

impl Tensor {
    /// Matrix product as `numpy.matmul`: `[.., M, K] x [.., K, N] -> [.., M, N]`, batch dimensions
    /// broadcast. A 1-D left operand is a row vector and a 1-D right operand a column vector (the
    /// added dimension is removed from the result). Transposed operands (`b.t()`) are read in
    /// place, never copied.
    #[track_caller]
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        assert!(
            self.rank() >= 1 && other.rank() >= 1,
            "matmul: operands must have at least 1 dimension, got {} and {}",
            self.shape(),
            other.shape()
        );
        assert!(
            self.dtype() == other.dtype() && self.dtype().is_float(),
            "matmul: needs two float tensors of one dtype, got {} {} and {} {}",
            self.dtype(),
            self.shape(),
            other.dtype(),
            other.shape()
        );
        let (this, other) = Tensor::same_device("matmul", self, other);
        let a = if this.rank() == 1 {
            this.unsqueeze(0)
        } else {
            this.clone()
        };
        let b = if other.rank() == 1 {
            other.unsqueeze(1)
        } else {
            other.clone()
        };
        let (m, k) = (a.dims()[a.rank() - 2], a.dims()[a.rank() - 1]);
        let (k2, n) = (b.dims()[b.rank() - 2], b.dims()[b.rank() - 1]);
        assert!(
            k == k2,
            "matmul: inner dimensions differ: {} x {} ({k} != {k2})",
            self.shape(),
            other.shape()
        );
        let batch_a = Shape(a.dims()[..a.rank() - 2].to_vec());
        let batch_b = Shape(b.dims()[..b.rank() - 2].to_vec());
        let batch = Shape::broadcast(&batch_a, &batch_b).unwrap_or_else(|| {
            panic!(
                "matmul: batch dimensions of {} and {} do not broadcast",
                self.shape(),
                other.shape()
            )
        });
        let mut a_shape = batch.0.clone();
        a_shape.extend([m, k]);
        let mut b_shape = batch.0.clone();
        b_shape.extend([k, n]);
        let mut out_shape = batch.0.clone();
        out_shape.extend([m, n]);
        let out = Tensor::from_op(
            Op::Matmul,
            vec![a.expand(a_shape), b.expand(b_shape)],
            Shape(out_shape),
            self.dtype(),
            this.device(),
        );
        let out = if self.rank() == 1 {
            out.squeeze(out.rank() - 2)
        } else {
            out
        };
        if other.rank() == 1 {
            out.squeeze(out.rank() - 1)
        } else {
            out
        }
    }
}
