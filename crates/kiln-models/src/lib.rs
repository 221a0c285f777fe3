//! Classic CNNs built from kiln-core's graph API alone (no backend code): each model is a plain
//! struct of layers whose `forward` reads like the paper's figure. Names, shapes and `state_dict`
//! order follow torchvision where it has the model, so its weights load
//! ([`kiln_core::nn::load_weights`]).

mod alexnet;
mod blocks;
mod lenet;
mod resnet;

pub use alexnet::AlexNet;
pub use blocks::{BasicBlock, Bottleneck, Shortcut, ShortcutKind};
pub use lenet::LeNet5;
pub use resnet::{BlockKind, ResNet};

use kiln_core::nn::{freeze_except, Module, ParamBuilder};
use kiln_core::{KilnError, Result, Tensor};

/// A zoo classifier whose head (its last linear layer) can be replaced, for fine-tuning a
/// pretrained network on other classes: load the pretrained weights but the head
/// ([`kiln_core::nn::load_state_dict_except`] with [`FineTune::head_prefix`]), or load them all and
/// then [`FineTune::replace_head`]; freeze the rest ([`FineTune::freeze_backbone`]) and train.
///
/// ```
/// # use kiln_core::{Device, nn::{trainable_parameters, Module, ParamBuilder}};
/// # use kiln_models::{FineTune, LeNet5};
/// let pb = ParamBuilder::new(&Device::cpu(), 0);
/// let mut net = LeNet5::new(&pb);
/// net.replace_head(5, &pb).unwrap();
/// assert_eq!((net.head_name(), net.classes()), ("fc3", 5));
/// net.freeze_backbone().unwrap();
/// assert_eq!(trainable_parameters(&net).len(), 2); // fc3.weight, fc3.bias
/// ```
pub trait FineTune: Module {
    /// The head's module name in the `state_dict` (`"fc3"`, `"fc"`, `"classifier.6"`).
    fn head_name(&self) -> &'static str;
    /// The number of classes: the head's outputs.
    fn classes(&self) -> usize;
    /// Replaces the head with a new linear layer for `classes` classes, drawn by `pb`: the
    /// builder of the whole model, as given to its constructor, so that the new head's values
    /// are those of the same model built for `classes` classes (PyTorch's default init). Errors
    /// when the head would not fit `pb`'s device or `pb` builds on another device than the
    /// model's; the model is unchanged then.
    fn replace_head(&mut self, classes: usize, pb: &ParamBuilder) -> Result<()>;
    /// The name prefix of the head's parameters (`"fc3."`): what to skip when loading a
    /// `state_dict` of another class count, and what to keep trainable.
    fn head_prefix(&self) -> String {
        format!("{}.", self.head_name())
    }
    /// Freezes every parameter but the head's ([`kiln_core::nn::freeze_except`]) and returns
    /// the names frozen. BatchNorm layers in training mode still update their running
    /// statistics, as in PyTorch.
    fn freeze_backbone(&self) -> Result<Vec<String>> {
        freeze_except(self, &[&self.head_prefix()])
    }
}

/// The model names [`by_name`] knows.
pub const MODEL_NAMES: [&str; 6] = [
    "lenet5", "alexnet", "resnet20", "resnet32", "resnet56", "resnet18",
];

/// A fresh model chosen by name, for programs that let the user pick one: `"lenet5"`
/// ([`LeNet5`], 28x28 images only), `"alexnet"` (the small one, [`AlexNet::small`], without LRN),
/// `"resnet20"`, `"resnet32"`, `"resnet56"` (the CIFAR ResNets, [`ResNet::resnet20`], option A
/// shortcuts) or `"resnet18"` (the ImageNet ResNet-18, [`ResNet::resnet18`]), for `[N, in_channels, H, W]`
/// images and `classes` classes, weights drawn by `pb`; its head can be replaced ([`FineTune`]).
/// An unknown name is an error listing the known ones.
///
/// ```
/// # use kiln_core::{Device, nn::ParamBuilder};
/// let pb = ParamBuilder::new(&Device::cpu(), 0);
/// let model = kiln_models::by_name("resnet20", 1, 10, &pb).unwrap();
/// assert_eq!(model.num_parameters(), 269_434);
/// assert!(kiln_models::by_name("vgg16", 1, 10, &pb).is_err());
/// ```
pub fn by_name(
    name: &str,
    in_channels: usize,
    classes: usize,
    pb: &ParamBuilder,
) -> Result<Box<dyn FineTune>> {
    Ok(match name {
        "lenet5" => Box::new(LeNet5::with_channels(in_channels, classes, pb)?),
        "alexnet" => Box::new(AlexNet::small(in_channels, classes, false, pb)?),
        "resnet20" => Box::new(ResNet::resnet20(in_channels, classes, pb)?),
        "resnet32" => Box::new(ResNet::resnet32(in_channels, classes, pb)?),
        "resnet56" => Box::new(ResNet::resnet56(in_channels, classes, pb)?),
        "resnet18" => Box::new(ResNet::resnet18(in_channels, classes, pb)?),
        other => {
            return Err(KilnError::InvalidArgument(format!(
                "unknown model {other:?}; the models are {}",
                MODEL_NAMES.join(", ")
            )))
        }
    })
}

/// Errors if `pb`'s device cannot hold the f32 parameter `name` (under `pb`'s prefix) of `shape`
/// in one buffer, so that a model constructor returns an error naming it instead of failing while
/// it creates the weights.
pub(crate) fn check_parameter(pb: &ParamBuilder, name: &str, shape: &[usize]) -> Result<()> {
    let device = pb.device();
    let bytes = shape.iter().product::<usize>() as u64 * 4;
    let limit = device.backend().max_buffer_bytes();
    if bytes <= limit {
        return Ok(());
    }
    Err(KilnError::BufferTooLarge {
        tensor: format!("parameter {} f32 {shape:?}", pb.name(name)),
        bytes,
        limit,
        device: device.name(),
    })
}

/// Errors unless `pb` builds on the device of `like` (a tensor of the model a new layer joins).
pub(crate) fn check_same_device(pb: &ParamBuilder, like: &Tensor) -> Result<()> {
    if pb.device().same(like.device()) {
        return Ok(());
    }
    Err(KilnError::InvalidArgument(format!(
        "the builder makes tensors on {} but the model lives on {}",
        pb.device().name(),
        like.device().name()
    )))
}
