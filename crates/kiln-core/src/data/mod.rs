//! Data: reading datasets from disk and cutting them into mini-batches.

pub mod augment;
pub mod batches;
pub mod idx;
pub mod mnist;
pub mod transform;
pub use augment::{Augment, AugmentParams};
pub use batches::Batches;
pub use idx::{read_idx, IdxArray};
pub use mnist::{Mnist, Split, MNIST_MEAN, MNIST_STD};
pub use transform::Transform;
