//! Convolution layers.

use super::{init, Init, Module, ParamBuilder};
use crate::error::Result;
use crate::export::{layers, GraphBuilder, ValueId};
use crate::tensor::Tensor;
use crate::{Conv2dOptions, ConvTranspose2dOptions};

/// 2-D convolution: `x [N, C, H, W] -> [N, O, OH, OW]` with weight `[O, C / groups, k, k]` and
/// bias `[O]`, PyTorch's default initialisation; stride, padding, dilation and groups from
/// [`Conv2dOptions`].
pub struct Conv2d {
    /// `[out, in / groups, k, k]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation, groups.
    pub options: Conv2dOptions,
}

impl Conv2d {
    /// A `k x k` convolution from `inputs` to `outputs` channels with a bias: `weight` and
    /// `bias` under `pb`'s prefix, drawn as PyTorch does.
    pub fn new(
        inputs: usize,
        outputs: usize,
        k: usize,
        options: Conv2dOptions,
        pb: &ParamBuilder,
    ) -> Conv2d {
        let mut layer = Conv2d::no_bias(inputs, outputs, k, options, pb);
        let fan_in = init::fans(layer.weight.dims()).0;
        layer.bias = Some(pb.param("bias", &[outputs], Init::BiasDefault { fan_in }));
        layer
    }
    /// A `k x k` convolution without a bias (before a batch norm, whose shift replaces it), its
    /// weight initialised as in [`Conv2d::new`].
    pub fn no_bias(
        inputs: usize,
        outputs: usize,
        k: usize,
        options: Conv2dOptions,
        pb: &ParamBuilder,
    ) -> Conv2d {
        check_groups(inputs, outputs, options.groups);
        let shape = [outputs, inputs / options.groups, k, k];
        Conv2d {
            weight: pb.param("weight", &shape, Init::KaimingUniformDefault),
            bias: None,
            options,
        }
    }
}

#[track_caller]
fn check_groups(inputs: usize, outputs: usize, groups: usize) {
    assert!(
        groups >= 1 && inputs.is_multiple_of(groups) && outputs.is_multiple_of(groups),
        "Conv2d: {inputs} -> {outputs} channels do not split into {groups} groups"
    );
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(&self.weight, self.bias.as_ref(), &self.options)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::conv2d(self, g, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
}

/// 2-D transposed convolution: `x [N, C, H, W] -> [N, O, (H - 1) s - 2 p + d (k - 1) + op + 1,
/// ..]` with weight `[C, O / groups, k, k]` (PyTorch's layout) and bias `[O]`.
pub struct ConvTranspose2d {
    /// `[in, out / groups, k, k]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Option<Tensor>,
    /// Stride, padding, output padding, dilation, groups.
    pub options: ConvTranspose2dOptions,
}

impl ConvTranspose2d {
    /// A `k x k` transposed convolution from `inputs` to `outputs` channels with a bias:
    /// `weight` and `bias` under `pb`'s prefix, drawn as PyTorch does.
    pub fn new(
        inputs: usize,
        outputs: usize,
        k: usize,
        options: ConvTranspose2dOptions,
        pb: &ParamBuilder,
    ) -> ConvTranspose2d {
        let g = options.groups;
        assert!(
            g >= 1 && inputs.is_multiple_of(g) && outputs.is_multiple_of(g),
            "ConvTranspose2d: {inputs} -> {outputs} channels do not split into {g} groups"
        );
        // PyTorch computes the fans of this layout as if it were [in, out/g, k, k].
        let shape = [inputs, outputs / g, k, k];
        let weight = pb.param("weight", &shape, Init::KaimingUniformDefault);
        let fan_in = init::fans(&shape).0;
        let bias = pb.param("bias", &[outputs], Init::BiasDefault { fan_in });
        ConvTranspose2d {
            weight,
            bias: Some(bias),
            options,
        }
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv_transpose2d(&self.weight, self.bias.as_ref(), &self.options)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::conv_transpose2d(self, g, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
}
