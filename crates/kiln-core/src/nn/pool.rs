//! Pooling, flattening and identity layers (no parameters).

use super::Module;
use crate::error::Result;
use crate::export::{layers, GraphBuilder, ValueId};
use crate::tensor::Tensor;
use crate::Pool2dOptions;

/// Max pooling over `k x k` windows: `[N, C, H, W] -> [N, C, OH, OW]`.
pub struct MaxPool2d {
    /// Kernel, stride, padding, dilation, ceil mode.
    pub options: Pool2dOptions,
}

impl MaxPool2d {
    /// `k x k` windows with stride `k` (as `nn.MaxPool2d(k)`).
    pub fn new(k: usize) -> MaxPool2d {
        MaxPool2d {
            options: Pool2dOptions::new(k),
        }
    }
    /// Any options.
    pub fn with(options: Pool2dOptions) -> MaxPool2d {
        MaxPool2d { options }
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.max_pool2d(&self.options)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::max_pool(self, g, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![]
    }
}

/// Average pooling over `k x k` windows: `[N, C, H, W] -> [N, C, OH, OW]`.
pub struct AvgPool2d {
    /// Kernel, stride, padding, ceil mode, whether padding counts in the divisor.
    pub options: Pool2dOptions,
}

impl AvgPool2d {
    /// `k x k` windows with stride `k` (as `nn.AvgPool2d(k)`).
    pub fn new(k: usize) -> AvgPool2d {
        AvgPool2d {
            options: Pool2dOptions::new(k),
        }
    }
    /// Any options.
    pub fn with(options: Pool2dOptions) -> AvgPool2d {
        AvgPool2d { options }
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.avg_pool2d(&self.options)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::avg_pool(self, g, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![]
    }
}

/// Flattens every dimension after the first: `[N, ..] -> [N, product of the rest]`.
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Tensor {
        if x.rank() <= 1 {
            return x.clone();
        }
        x.flatten(1, x.rank() - 1)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        Ok(layers::flatten(g, x))
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![]
    }
}

/// Adaptive average pooling to a fixed output size: `[N, C, H, W] -> [N, C, out[0], out[1]]`
/// for any `H, W` (as `nn.AdaptiveAvgPool2d`; see [`Tensor::adaptive_avg_pool2d`]).
pub struct AdaptiveAvgPool2d {
    /// Output height and width.
    pub output: [usize; 2],
}

impl AdaptiveAvgPool2d {
    /// Pools to `output[0] x output[1]`.
    pub fn new(output: [usize; 2]) -> AdaptiveAvgPool2d {
        AdaptiveAvgPool2d { output }
    }
}

impl Module for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.adaptive_avg_pool2d(self.output)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::adaptive_avg_pool(self, g, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![]
    }
}

/// The identity: returns its input (a placeholder where a layer is optional, as `nn.Identity`).
pub struct Identity;

impl Module for Identity {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.clone()
    }
    fn export_onnx(&self, _: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        Ok(x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![]
    }
}
