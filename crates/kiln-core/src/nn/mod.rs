//! Neural-network layers. A layer is a plain struct holding its parameters (tensors that require
//! gradients) and its buffers (state that is not trained, such as BatchNorm's running
//! statistics), and implementing [`Module`]; names follow PyTorch's `state_dict`
//! (`conv1.weight`, `bn1.running_mean`, `features.0.weight`), so weights move between kiln and
//! PyTorch. Layers are built through a [`ParamBuilder`], which carries the device and draws each
//! parameter's first values from the model's seed and the parameter's full name.
//!
//! Fine-tuning takes three steps here: load a pretrained `state_dict` but its head
//! ([`load_state_dict_except`], [`LoadOptions::skip`]), build a new head for the new classes (the
//! zoo models' `replace_head`), and freeze the backbone ([`freeze`], [`freeze_except`]); the
//! optimisers take per-group learning rates (`crate::optim::ParamGroup`).

mod activation;
mod batchnorm;
mod batchnorm_sync;
mod builder;
mod conv;
mod dropout;
mod fold;
mod freeze;
pub mod init;
mod linear;
mod lrn;
mod pending;
mod pool;
mod sequential;
mod state;

pub use activation::{Activation, Maxout};
pub use batchnorm::{BatchNorm, BatchNorm1d, BatchNorm2d, BatchNormOptions};
pub use batchnorm_sync::batch_norm_layers;
pub use builder::{name_seed, ParamBuilder};
pub use conv::{Conv2d, ConvTranspose2d};
pub use dropout::Dropout;
pub use fold::fold_batch_norm;
pub use freeze::{
    freeze, freeze_except, frozen_parameters, split_parameters, trainable_parameters, unfreeze,
};
pub use init::Init;
pub use linear::Linear;
pub use lrn::LocalResponseNorm;
pub use pending::{
    pending_updates, pending_values, realize_pending_updates, record_update, updated_value,
};
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, Flatten, Identity, MaxPool2d};
pub use sequential::Sequential;
pub use state::{
    load_parameters, load_state_dict, load_state_dict_except, load_state_dict_with, load_weights,
    load_weights_with, save_weights, LoadOptions, LoadReport,
};

pub(crate) use pending::{restore_pending, take_pending};

use crate::error::Result;
use crate::export::{GraphBuilder, ValueId};
use crate::tensor::Tensor;

/// A layer or a whole model: a function of one tensor with named parameters and buffers.
///
/// A layer with tensors of its own implements [`Module::named_parameters`] (and
/// [`Module::named_buffers`] if it has state that is not trained). A container implements
/// [`Module::children`] instead and gets the names, the `state_dict`, the mode switch and the
/// counts from it, each child's names prefixed with the child's name as PyTorch does. A module
/// with both tensors of its own and children overrides all of `named_parameters`,
/// `named_buffers`, `state_dict` and `set_training`.
pub trait Module {
    /// Applies the layer. Records graph nodes; nothing runs.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// The sub-modules in registration order, with the names PyTorch gives them (`conv1`,
    /// `layer1`, `0`). Empty for a layer.
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![]
    }

    /// The parameters with their PyTorch `state_dict` names, in a fixed order (the children's,
    /// prefixed, unless overridden).
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        from_children(self.children(), |m| m.named_parameters())
    }

    /// The buffers (state that is saved but not trained, e.g. `running_mean`) with their
    /// PyTorch `state_dict` names (the children's, prefixed, unless overridden).
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        from_children(self.children(), |m| m.named_buffers())
    }

    /// Everything a checkpoint holds, in PyTorch's `state_dict` order: a module's own parameters,
    /// then its own buffers, then each child's `state_dict` in turn (`bn1.weight`, `bn1.bias`,
    /// `bn1.running_mean`, .., `layer1.0.conv1.weight`, ..).
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let children = self.children();
        if children.is_empty() {
            let mut v = self.named_parameters();
            v.extend(self.named_buffers());
            v
        } else {
            from_children(children, |m| m.state_dict())
        }
    }

    /// The parameters in the order of [`Module::named_parameters`] (what optimisers take).
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Switches between training (`true`: dropout active, batch statistics in BatchNorm) and
    /// evaluation mode. Layers without a mode ignore it; containers pass it to their children.
    fn set_training(&self, training: bool) {
        for (_, child) in self.children() {
            child.set_training(training);
        }
    }

    /// The mode set by [`Module::set_training`]: `Some(true)` in training, `Some(false)` in
    /// evaluation, `None` for a module without mode-dependent layers. Containers answer with
    /// their first child that has a mode.
    fn is_training(&self) -> Option<bool> {
        self.children().iter().find_map(|(_, c)| c.is_training())
    }

    /// This module as a batch-norm layer, if it is one (what [`batch_norm_layers`] finds;
    /// PyTorch's `isinstance(m, _BatchNorm)`). `None` unless overridden.
    fn as_batch_norm(&self) -> Option<&BatchNorm> {
        None
    }

    /// Total number of parameter elements (buffers not counted, as PyTorch's
    /// `sum(p.numel() for p in model.parameters())`).
    fn num_parameters(&self) -> usize {
        self.named_parameters().iter().map(|(_, t)| t.numel()).sum()
    }

    /// Adds to `g` the nodes that compute this module's forward pass in evaluation mode (batch
    /// norms with their running statistics, no dropout) from value `x`, and returns the output
    /// value: the module's part of an ONNX export (see [`crate::export`]). A container exports
    /// each child with [`GraphBuilder::child`], so that the child's initializers get its
    /// `state_dict` names. The default is an error naming the module's type and its place in
    /// the model.
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        let _ = x;
        Err(crate::export::not_exportable(
            g,
            std::any::type_name::<Self>(),
        ))
    }
}

/// `f` of each child, its names prefixed with the child's name.
fn from_children(
    children: Vec<(String, &dyn Module)>,
    f: impl Fn(&dyn Module) -> Vec<(String, Tensor)>,
) -> Vec<(String, Tensor)> {
    children
        .into_iter()
        .flat_map(|(prefix, child)| {
            f(child)
                .into_iter()
                .map(move |(n, t)| (format!("{prefix}.{n}"), t))
        })
        .collect()
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
    let p = buffer(init);
    p.set_requires_grad(true);
    p
}

/// A new buffer (module state that is not trained): `init` realized into storage of its own,
/// with no graph behind it and no gradient. Panics if the device fails.
pub fn buffer(init: Tensor) -> Tensor {
    crate::tensor::no_grad(|| init.detach())
        .unwrap_or_else(|e| panic!("creating a tensor of shape {}: {e}", init.shape()))
}
