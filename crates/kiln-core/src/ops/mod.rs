//! Tensor op methods, one file per family. Each method checks shapes (panicking with the op, the
//! shapes and the caller's line on a mistake) and records graph nodes; nothing runs.

mod creation;
mod elementwise;
mod matmul;
mod operators;
mod reduce;
mod views;
mod window;
