//! The builder handed down a model while it is constructed: the device, the model's seed and the
//! name prefix of the module being built, from which every parameter's seed is derived.

use super::init::Init;
use super::{buffer, parameter};
use crate::device::Device;
use crate::tensor::Tensor;

/// What a layer needs to create its tensors: the device, the model's seed and the dotted name of
/// the module being built (`layer1.0.conv1`). A model's constructor takes one, gives each
/// sub-module a child with [`ParamBuilder::pp`] under the name `state_dict` gives it, and a layer
/// creates its parameters with [`ParamBuilder::param`].
///
/// A parameter's first values are drawn with the seed [`name_seed`]`(model seed, full name)`:
/// they depend on the model's seed and the parameter's name alone, so a layer added to a model
/// leaves every other parameter as it was. Two parameters built under the same full name get the
/// same values: give every module its own name.
///
/// ```
/// # use kiln_core::{Device, nn::{Linear, Module, ParamBuilder}};
/// let pb = ParamBuilder::new(&Device::cpu(), 42);
/// let fc1 = Linear::new(4, 3, &pb.pp("fc1")); // fc1.weight, fc1.bias
/// let fc2 = Linear::new(4, 3, &pb.pp("fc2")); // fc2.weight, fc2.bias: other values
/// assert_ne!(fc1.weight.to_vec::<f32>().unwrap(), fc2.weight.to_vec::<f32>().unwrap());
/// // The same name and seed give the same values, whatever was built before.
/// let again = Linear::new(4, 3, &ParamBuilder::new(&Device::cpu(), 42).pp("fc2"));
/// assert_eq!(again.weight.to_vec::<f32>().unwrap(), fc2.weight.to_vec::<f32>().unwrap());
/// ```
#[derive(Clone, Debug)]
pub struct ParamBuilder {
    device: Device,
    seed: u64,
    prefix: String,
}

impl ParamBuilder {
    /// The builder of a whole model: its tensors on `device`, their values drawn from `seed`, no
    /// name prefix.
    pub fn new(device: &Device, seed: u64) -> ParamBuilder {
        ParamBuilder {
            device: device.clone(),
            seed,
            prefix: String::new(),
        }
    }

    /// The builder of the sub-module `name` (`"conv1"`, `"layer1"`, a position `0` in a
    /// [`super::Sequential`]): the same device and seed, the prefix `prefix.name`.
    pub fn pp(&self, name: impl std::fmt::Display) -> ParamBuilder {
        ParamBuilder {
            device: self.device.clone(),
            seed: self.seed,
            prefix: self.name(&name.to_string()),
        }
    }

    /// The device the tensors are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The model's seed (the same for every child).
    pub fn model_seed(&self) -> u64 {
        self.seed
    }

    /// The dotted name of the module being built (empty for the whole model).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of this module's tensor `name`: `prefix.name` (`name` alone at the top).
    pub fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else if name.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The random seed of this module's tensor (or sub-module) `name`: [`name_seed`] of the
    /// model's seed and the full name. For layers that draw random numbers of their own, such as
    /// dropout's masks (`Dropout::new(p, pb.seed_for("0"))` for the layer at position 0).
    pub fn seed_for(&self, name: &str) -> u64 {
        name_seed(self.seed, &self.name(name))
    }

    /// A new parameter `name` of `shape`, drawn by `init` with the seed of its full name,
    /// realized on the device and requiring gradients (see [`super::parameter`]).
    pub fn param(&self, name: &str, shape: &[usize], init: Init) -> Tensor {
        parameter(init.tensor(shape, self.seed_for(name), &self.device))
    }

    /// A new buffer (state that is saved but not trained) `name` of `shape`, drawn by `init`
    /// with the seed of its full name (see [`super::buffer`]).
    pub fn buffer(&self, name: &str, shape: &[usize], init: Init) -> Tensor {
        buffer(init.tensor(shape, self.seed_for(name), &self.device))
    }
}

/// The seed of the tensor whose full name is `name` in a model built with `model_seed`: FNV-1a
/// (64-bit) over the 8 little-endian bytes of `model_seed` followed by the UTF-8 bytes of `name`,
/// then the SplitMix64 finaliser to spread the bits. Fixed arithmetic on bytes: the same on every
/// platform and with every Rust version (unlike `std`'s `DefaultHasher`), so a model's initial
/// values never change under a user.
pub fn name_seed(model_seed: u64, name: &str) -> u64 {
    let bytes = model_seed.to_le_bytes().into_iter().chain(name.bytes());
    splitmix64_mix(fnv1a64(bytes))
}

/// FNV-1a, 64-bit: offset basis `0xcbf29ce484222325`, prime `0x100000001b3`.
fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The output function of SplitMix64 (Steele, Lea & Flood, 2014).
fn splitmix64_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        // From the FNV reference test suite (Landon Curt Noll).
        assert_eq!(fnv1a64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(*b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn splitmix64_matches_its_reference_stream() {
        // The first output of SplitMix64 seeded with 0 is mix(0x9e3779b97f4a7c15).
        assert_eq!(splitmix64_mix(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn name_seeds_are_pinned() {
        // Pinned (computed independently in Python): changing them changes every model's
        // initial values.
        assert_eq!(name_seed(0, "conv1.weight"), 0x9280_73f5_ae1e_474f);
        assert_eq!(name_seed(42, "fc.bias"), 0xddc6_a628_562c_b093);
    }

    #[test]
    fn names_join_with_dots() {
        let pb = ParamBuilder::new(&Device::cpu(), 7);
        assert_eq!(pb.name("fc"), "fc");
        let block = pb.pp("layer1").pp(0);
        assert_eq!(block.prefix(), "layer1.0");
        assert_eq!(block.pp("conv1").name("weight"), "layer1.0.conv1.weight");
        assert_eq!(block.name(""), "layer1.0");
        assert_eq!(block.seed_for("x"), name_seed(7, "layer1.0.x"));
        assert_eq!(block.model_seed(), 7);
    }
}
