//! Activation layers: the activation functions as modules, for [`super::Sequential`].

use super::{prefixed, Linear, Module, ParamBuilder};
use crate::error::Result;
use crate::export::{layers, GraphBuilder, ValueId};
use crate::tensor::Tensor;

/// An elementwise (or, for softmax, per-row) activation function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// max(x, 0)
    Relu,
    /// x if x > 0, else slope x
    LeakyRelu(f64),
    /// x if x > 0, else alpha (e^x - 1)
    Elu(f64),
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// tanh x
    Tanh,
    /// x Φ(x) (erf form, PyTorch's default)
    Gelu,
    /// softmax over dimension 1 (classes)
    Softmax,
}

impl Module for Activation {
    fn forward(&self, x: &Tensor) -> Tensor {
        match *self {
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(slope) => x.leaky_relu(slope),
            Activation::Elu(alpha) => x.elu(alpha),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => x.gelu(),
            Activation::Softmax => x.softmax(1),
        }
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::activation(*self, g, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![]
    }
}

/// Maxout (Goodfellow et al., 2013): `pieces` linear maps of the input, and the elementwise
/// maximum over them: `[.., in] -> [.., out]`. Its linear layer has `out * pieces` outputs, the
/// pieces of output j being consecutive (`j * pieces .. (j + 1) * pieces`).
pub struct Maxout {
    /// `in -> out * pieces`
    pub linear: Linear,
    /// Number of pieces per output.
    pub pieces: usize,
}

impl Maxout {
    /// A maxout layer with fresh parameters (`linear.weight`, `linear.bias` under `pb`'s
    /// prefix).
    pub fn new(inputs: usize, outputs: usize, pieces: usize, pb: &ParamBuilder) -> Maxout {
        Maxout {
            linear: Linear::new(inputs, outputs * pieces, &pb.pp("linear")),
            pieces,
        }
    }
}

impl Module for Maxout {
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = self.linear.forward(x);
        y.maxout(self.pieces, y.rank() - 1)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        layers::maxout(self, g, x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        prefixed("linear", &self.linear)
    }
}
