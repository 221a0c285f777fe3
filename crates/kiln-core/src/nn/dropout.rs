//! Dropout.

use super::Module;
use crate::error::Result;
use crate::export::{GraphBuilder, ValueId};
use crate::tensor::Tensor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Inverted dropout: in training mode each element is zeroed with probability `p` and the rest
/// scaled by `1 / (1 - p)`; in evaluation mode the identity. The masks are seeded: call `n` of a
/// layer made with seed `s` uses Philox key `s + n`, so a run is reproducible (and a resumed run,
/// given the same call count via [`Dropout::set_calls`]). The seed is a runtime value, so a new
/// mask does not recompile the step's plan.
pub struct Dropout {
    /// Probability of zeroing an element.
    pub p: f64,
    seed: u64,
    calls: AtomicU64,
    training: AtomicBool,
}

impl Dropout {
    /// A dropout layer in training mode.
    #[track_caller]
    pub fn new(p: f64, seed: u64) -> Dropout {
        assert!(
            (0.0..1.0).contains(&p),
            "Dropout: p must be in [0, 1), got {p}"
        );
        Dropout {
            p,
            seed,
            calls: AtomicU64::new(0),
            training: AtomicBool::new(true),
        }
    }
    /// Masks drawn so far (to restore when resuming).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
    /// Sets the number of masks drawn so far.
    pub fn set_calls(&self, n: u64) {
        self.calls.store(n, Ordering::Relaxed)
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Tensor {
        if !self.training.load(Ordering::Relaxed) || self.p == 0.0 {
            return x.clone();
        }
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let keep = Tensor::rand(x.shape(), self.seed.wrapping_add(n), x.device())
            .ge(&Tensor::full((), self.p as f32, x.device()).expand(x.shape()));
        let kept = keep.cast(x.dtype()).mul_scalar(1.0 / (1.0 - self.p));
        x.mul(&kept)
    }
    /// Dropout is the identity at inference.
    fn export_onnx(&self, _: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        Ok(x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![]
    }
    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed)
    }
    fn is_training(&self) -> Option<bool> {
        Some(self.training.load(Ordering::Relaxed))
    }
}
