//! kiln-core: tensors, the lazy compute graph, the scheduler and the plain-Rust reference
//! executor. It knows nothing of any GPU API; backends implement [`Backend`].
//!
//! ```
//! use kiln_core::{Device, Tensor};
//! let dev = Device::cpu();
//! let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2], &dev).unwrap();
//! let b = (a.matmul(&a) + 1.0).relu().sum_axes(&[1]);   // nothing runs yet
//! assert_eq!(b.to_vec::<f32>().unwrap(), vec![19.0, 39.0]);
//! ```

#![warn(missing_docs)]

pub mod autodiff;
pub mod backend;
pub mod checkpoint;
pub mod debug;
pub mod device;
pub mod dtype;
pub mod error;
pub mod export;
pub mod graph;
pub mod host_call;
pub mod nn;
pub mod op;
mod ops;
pub mod optim;
pub mod probe;
pub mod profile;
pub mod reference;
pub mod rewrite;
pub mod rng;
pub mod schedule;
pub mod shape;
pub mod tensor;

pub use autodiff::Gradients;
pub use backend::{Backend, DeviceKind, KernelFamily, Stats, Storage, StorageHandle};
pub use checkpoint::Checkpoint;
pub use device::Device;
pub use dtype::{DType, Element};
pub use error::{KilnError, Result};
pub use graph::Pending;
pub use host_call::{HostCall, HostFunction};
pub use ops::conv::{conv_output_size, Conv2dOptions, ConvTranspose2dOptions, Padding};
pub use ops::pool::Pool2dOptions;
pub use profile::{KernelStats, Profile};
pub use shape::{IntoShape, Shape};
pub use tensor::{is_grad_enabled, no_grad, Tensor};
