//! The dense (fully connected) layer.

use super::{Init, Module, ParamBuilder};
use crate::error::Result;
use crate::export::{layers, GraphBuilder, ValueId};
use crate::tensor::Tensor;

/// `y = x Wᵀ + b`: `x [.., in] -> y [.., out]`, weight `[out, in]`, bias `[out]`, initialised as
/// PyTorch does (Kaiming-uniform with a = sqrt(5), fan-in uniform bias).
///
/// ```
/// # use kiln_core::{Device, Tensor, nn::{Linear, Module, ParamBuilder}};
/// let fc = Linear::new(4, 3, &ParamBuilder::new(&Device::cpu(), 0).pp("fc"));
/// let y = fc.forward(&Tensor::ones([2, 4], &Device::cpu()));
/// assert_eq!(y.dims(), &[2, 3]);
/// assert_eq!(fc.num_parameters(), 15);
/// ```
pub struct Linear {
    /// `[out, in]`
    pub weight: Tensor,
    /// `[out]`, if the layer has a bias.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A layer with a bias: `weight` and `bias` under `pb`'s prefix, drawn as PyTorch does.
    pub fn new(inputs: usize, outputs: usize, pb: &ParamBuilder) -> Linear {
        let mut layer = Linear::no_bias(inputs, outputs, pb);
        layer.bias = Some(pb.param("bias", &[outputs], Init::BiasDefault { fan_in: inputs }));
        layer
    }
    /// A layer without a bias: `weight` under `pb`'s prefix.
    pub fn no_bias(inputs: usize, outputs: usize, pb: &ParamBuilder) -> Linear {
        let weight = pb.param("weight", &[outputs, inputs], Init::KaimingUniformDefault);
        Linear { weight, bias: None }
    }
}

impl Module for Linear {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let inputs = self.weight.dims()[1];
        assert!(
            x.rank() >= 1 && x.dims()[x.rank() - 1] == inputs,
            "Linear: expects [.., {inputs}], got {}",
            x.shape()
        );
        let y = x.matmul(&self.weight.t());
        match &self.bias {
            Some(b) => y.add(b),
            None => y,
        }
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::linear(self, g, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
}
