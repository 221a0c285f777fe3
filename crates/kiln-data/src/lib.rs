//! kiln-data: data sets read from disk and cut into mini-batches, re-exported by the `kiln`
//! facade as `kiln::data`.
//!
//! - [`Mnist`]: the IDX files of MNIST and Fashion-MNIST ([`idx`] reads the format); [`Cifar`]:
//!   the binary files of CIFAR-10 and CIFAR-100.
//! - [`Split`]: a labelled image set on the host, in some order; [`Split::batches`] gives
//!   [`Batches`], an iterator of `(images, labels)` tensors (f32 `[B, C, H, W]`, i32 `[B]`).
//! - [`ImageFolder`]: a folder of pictures, one sub-folder per class (PNG, JPEG, BMP, WebP),
//!   decoded on CPU threads ahead of the consumer; [`ImageSet::batches`] gives batches of the
//!   same form.
//! - [`Compose`]: seeded per-image transforms on the host (resize, crops, flips, rotation,
//!   colour jitter, normalisation) composed like torchvision's, run on the decode threads.
//! - [`Transform`]: what batches pass through on the device; [`Augment`] is the built-in
//!   seeded augmentation pipeline.
//! - [`DataFormat::detect`]: which of these readers a directory needs.
//! - [`evaluate`] and [`accuracy`]: a model's classification accuracy on a split or on any
//!   iterator of batches.
//!
//! The engine (kiln-core) does not depend on this crate: image decoding and file formats stay
//! out of it.

#![warn(missing_docs)]

pub mod augment;
pub mod batches;
pub mod cifar;
pub mod compose;
mod evaluate;
pub mod folder;
pub mod format;
pub mod idx;
pub mod mnist;
pub mod pixels;
pub mod split;
pub mod transform;
pub use augment::{Augment, AugmentParams};
pub use batches::Batches;
pub use cifar::{Cifar, CIFAR100_MEAN, CIFAR100_STD, CIFAR10_MEAN, CIFAR10_STD};
pub use compose::Compose;
pub use evaluate::{accuracy, evaluate};
pub use folder::{
    class_list_path, read_class_list, write_class_list, FolderOptions, ImageBatches, ImageFolder,
    ImageSet,
};
pub use format::DataFormat;
pub use idx::{read_idx, IdxArray};
pub use mnist::{Mnist, MNIST_MEAN, MNIST_STD};
pub use pixels::Image;
pub use split::Split;
pub use transform::Transform;
