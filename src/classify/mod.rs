//! Classifying image files with a trained model: the pieces of `examples/classify.rs`.
//!
//! - [`ImageInput`] turns an image file (PNG or JPEG) into the model's input: resized to its
//!   height and width, converted to gray or RGB, scaled to [0, 1] and normalised with the mean
//!   and standard deviation the training used (`(p / 255 - mean) / std`, exactly as
//!   [`crate::data::Batches`] makes MNIST batches).
//! - [`load_classifier`] builds a model by name ([`crate::models::by_name`]) with the input
//!   channels and classes of a checkpoint (kiln's, from `examples/mnist.rs`, or a PyTorch
//!   `state_dict` saved with safetensors) and loads its weights.
//! - [`top_k`] reads the `k` most probable classes of each row of logits; [`read_labels`] reads
//!   class names, one per line.
//!
//! ```no_run
//! use kiln::classify::{load_classifier, top_k, ImageInput};
//! use kiln::prelude::*;
//! # fn main() -> kiln::Result<()> {
//! let dev = Device::default()?;
//! let net = load_classifier(Some("lenet5"), "runs/mnist/lenet5.safetensors", &dev)?;
//! let (mean, std) = net.normalization.clone().unwrap_or((vec![0.1307], vec![0.3081]));
//! let input = ImageInput::new(net.in_channels, [28, 28]).normalize(&mean, &std)?;
//! let x = input.load(&["digit.png"], &dev)?;
//! let logits = kiln::no_grad(|| net.model.forward(&x));
//! for (class, p) in &top_k(&logits, 5)?[0] {
//!     println!("{class}: {:.1}%", p * 100.0);
//! }
//! # Ok(()) }
//! ```

mod input;
mod load;
mod topk;

pub use input::{ImageInput, MAX_IMAGE_BYTES, MAX_IMAGE_SIDE, MAX_INPUT_SIDE};
pub use load::{
    classifier_from_checkpoint, load_classifier, Classifier, META_INPUT_SIZE, META_MEAN,
    META_MODEL, META_STD,
};
pub use topk::{read_labels, top_k};
