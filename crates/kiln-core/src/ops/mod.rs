//! Tensor op methods, one file per family. Each method checks shapes (panicking with the op, the
//! shapes and the caller's line on a mistake) and records graph nodes; nothing runs.

mod activation;
mod affine;
pub(crate) mod conv;
mod creation;
mod elementwise;
mod loss;
mod matmul;
mod operators;
pub(crate) mod pool;
mod reduce;
mod views;
mod window;
