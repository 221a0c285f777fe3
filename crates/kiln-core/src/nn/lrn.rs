//! Local response normalisation across channels (Krizhevsky et al., 2012), as PyTorch's
//! `LocalResponseNorm`.

use super::Module;
use crate::error::Result;
use crate::export::{layers, GraphBuilder, ValueId};
use crate::tensor::Tensor;

/// Local response normalisation: `[N, C, ..] -> [N, C, ..]`,
/// `b_c = a_c / (k + alpha / n * sum_{c'} a_{c'}^2)^beta`, the sum over the `n = size` channels
/// `c - n/2 ..= c + (n-1)/2` (channels outside `0..C` count as zeros), as PyTorch computes it.
/// AlexNet used size 5, alpha 1e-4, beta 0.75, k 2.
///
/// ```
/// # use kiln_core::{Device, Tensor, nn::{LocalResponseNorm, Module}};
/// let lrn = LocalResponseNorm::new(2);
/// let x = Tensor::full([1, 1, 1, 1], 2.0, &Device::cpu());
/// // 2 / (1 + 1e-4 / 2 * 4)^0.75
/// let y = lrn.forward(&x).item::<f32>().unwrap();
/// assert!((y - 2.0 / 1.0002f32.powf(0.75)).abs() < 1e-6);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalResponseNorm {
    /// Number of neighbouring channels summed (`n`).
    pub size: usize,
    /// Scale of the sum.
    pub alpha: f64,
    /// Exponent.
    pub beta: f64,
    /// Additive constant.
    pub k: f64,
}

impl LocalResponseNorm {
    /// PyTorch's defaults: alpha 1e-4, beta 0.75, k 1.
    #[track_caller]
    pub fn new(size: usize) -> LocalResponseNorm {
        LocalResponseNorm::with(size, 1e-4, 0.75, 1.0)
    }
    /// Any constants.
    #[track_caller]
    pub fn with(size: usize, alpha: f64, beta: f64, k: f64) -> LocalResponseNorm {
        assert!(size >= 1, "LocalResponseNorm: size must be >= 1");
        LocalResponseNorm {
            size,
            alpha,
            beta,
            k,
        }
    }
}

impl Module for LocalResponseNorm {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        assert!(
            x.rank() >= 3,
            "LocalResponseNorm: expects [N, C, ..] with at least one dimension after C, got {}",
            x.shape()
        );
        let (n, c) = (self.size, x.dims()[1]);
        // Zero channels before and after, then the sum of n shifted copies: window c covers the
        // padded channels c ..= c + n - 1, i.e. the input's c - n/2 ..= c + (n-1)/2.
        let squares = x.square().pad(&[(0, 0), (n / 2, (n - 1) / 2)], 0.0);
        let sum = (1..n).fold(squares.narrow(1, 0, c), |acc, j| {
            acc.add(&squares.narrow(1, j, c))
        });
        let div = sum
            .mul_scalar(self.alpha / n as f64)
            .add_scalar(self.k)
            .pow_scalar(self.beta);
        x.div(&div)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::lrn(self, g, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![]
    }
}
