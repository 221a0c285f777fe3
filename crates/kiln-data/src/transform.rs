//! The [`Transform`] trait: what a dataset's batches pass through on their way to the model.

use kiln_core::dtype::DType;
use kiln_core::error::Result;
use kiln_core::tensor::Tensor;

/// A transformation of image batches that [`crate::Batches::transform`] applies to every
/// batch, as part of the lazy graph (so it runs as kernels on the batch's device).
/// [`crate::Augment`] is the built-in one; implement this trait for your own (e.g. a
/// colour jitter written with tensor ops).
pub trait Transform: std::fmt::Debug {
    /// Transforms a batch of images `[N, C, H, W]` into the batch the model sees. Called once
    /// per batch, in order, so a stateful transform may draw new randomness each call. The
    /// batches iterator panics with this error if a batch that passed [`Transform::check_batch`]
    /// fails here.
    fn apply(&self, images: &Tensor) -> Result<Tensor>;

    /// Errors if a batch of `dims` and `dtype` cannot pass through; called once when the
    /// transform is attached, so that a misfit is reported before training starts. The default
    /// accepts everything.
    fn check_batch(&self, dims: &[usize], dtype: DType) -> Result<()> {
        let _ = (dims, dtype);
        Ok(())
    }
}
