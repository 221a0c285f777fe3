//! Data: reading datasets from disk.

pub mod idx;
pub use idx::{read_idx, IdxArray};
