//! kiln: train and run convolutional networks on the GPU through wgpu.
pub use kiln_core::*;
