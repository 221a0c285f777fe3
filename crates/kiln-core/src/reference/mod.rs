//! The plain-Rust reference executor (placeholder while it is written).
use crate::backend::{Backend, DeviceKind, Stats};
use crate::error::Result;
use crate::graph::Pending;
use crate::tensor::Tensor;

/// Runs graphs op by op on the host.
pub struct ReferenceBackend;
impl ReferenceBackend {
    /// A new reference backend.
    pub fn new() -> Self {
        ReferenceBackend
    }
}
impl Default for ReferenceBackend {
    fn default() -> Self {
        Self::new()
    }
}
impl Backend for ReferenceBackend {
    fn name(&self) -> String {
        "cpu (reference)".into()
    }
    fn kind(&self) -> DeviceKind {
        DeviceKind::Cpu
    }
    fn realize(&self, _p: &Pending, _read: &[usize]) -> Result<Vec<Vec<u8>>> {
        Err(crate::KilnError::Backend(
            "reference executor not written yet".into(),
        ))
    }
    fn read(&self, _t: &Tensor) -> Result<Vec<u8>> {
        Err(crate::KilnError::Backend(
            "reference executor not written yet".into(),
        ))
    }
    fn stats(&self) -> Stats {
        Stats::default()
    }
}
