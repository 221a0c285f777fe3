//! Neural-network layers. A layer is a plain struct holding its parameters (tensors that require
//! gradients) and implementing [`Module`]; parameter names follow PyTorch's `state_dict`
//! (`conv1.weight`, `fc1.bias`, `features.0.weight`), so checkpoints line up with PyTorch's.

mod activation;
mod conv;
mod dropout;
mod evaluate;
pub mod init;
mod linear;
mod pool;
mod sequential;
mod state;

pub use activation::{Activation, Maxout};
pub use conv::{Conv2d, ConvTranspose2d};
pub use dropout::Dropout;
pub use evaluate::evaluate;
pub use linear::Linear;
pub use pool::{AvgPool2d, Flatten, MaxPool2d};
pub use sequential::Sequential;
pub use state::load_parameters;

use crate::tensor::Tensor;

/// A layer or a whole model: a function of one tensor with named parameters.
pub trait Module {
    /// Applies the layer. Records graph nodes; nothing runs.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// The parameters with their PyTorch `state_dict` names, in a fixed order.
    fn named_parameters(&self) -> Vec<(String, Tensor)>;

    /// The parameters in the order of [`Module::named_parameters`] (what optimisers take).
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Switches between training (`true`: dropout active) and evaluation mode. Layers without a
    /// mode ignore it; containers pass it on.
    fn set_training(&self, _training: bool) {}

    /// Total number of parameter elements.
    fn num_parameters(&self) -> usize {
        self.named_parameters().iter().map(|(_, t)| t.numel()).sum()
    }
}

/// Names `inner`'s parameters `prefix.name`, as PyTorch does for a sub-module called `prefix`.
pub fn prefixed(prefix: &str, inner: &dyn Module) -> Vec<(String, Tensor)> {
    inner
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (format!("{prefix}.{n}"), t))
        .collect()
}

/// A new parameter: `init` realized into a buffer of its own, with no graph behind it, marked as
/// requiring gradients. Panics if the device fails (a model cannot be built without its weights).
pub fn parameter(init: Tensor) -> Tensor {
    let p = crate::tensor::no_grad(|| init.detach())
        .unwrap_or_else(|e| panic!("creating a parameter of shape {}: {e}", init.shape()));
    p.set_requires_grad(true);
    p
}
