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

use kiln_core::nn::{Module, ParamBuilder};
use kiln_core::{KilnError, Result};

/// The model names [`by_name`] knows.
pub const MODEL_NAMES: [&str; 3] = ["lenet5", "alexnet", "resnet20"];

/// A fresh model chosen by name, for programs that let the user pick one: `"lenet5"`
/// ([`LeNet5`], 28x28 images only), `"alexnet"` (the small one, [`AlexNet::small`], without LRN)
/// or `"resnet20"` ([`ResNet::resnet20`], option A shortcuts), for `[N, in_channels, H, W]`
/// images and `classes` classes, weights drawn by `pb`. An unknown name is an error listing the
/// known ones.
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
) -> Result<Box<dyn Module>> {
    Ok(match name {
        "lenet5" => Box::new(LeNet5::with_channels(in_channels, classes, pb)?),
        "alexnet" => Box::new(AlexNet::small(in_channels, classes, false, pb)?),
        "resnet20" => Box::new(ResNet::resnet20(in_channels, classes, pb)?),
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
