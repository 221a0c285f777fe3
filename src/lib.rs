//! # kiln
//!
//! Train and run convolutional networks on the GPU through wgpu, in Rust.
//!
//! Tensors are lazy: every operation records a node and returns at once. Reading a value
//! (`to_vec`, `item`) or calling `realize` compiles the pending graph into WGSL compute kernels,
//! runs them in one queue submission, and caches the compiled plan for the next time the same
//! graph shape comes.
//!
//! ```no_run
//! use kiln::prelude::*;
//! # fn main() -> kiln::Result<()> {
//! let dev = Device::default()?;                      // best adapter; says which one it chose
//! let a = Tensor::randn([256, 512], 7, &dev);        // seeded: same numbers on every device
//! let b = Tensor::from_vec(vec![0.5f32; 512 * 128], [512, 128], &dev)?;
//! let bias = Tensor::zeros([128], &dev);
//! let c = (a.matmul(&b) + &bias).relu().sum_axes_keepdim(&[1]);   // nothing runs yet
//! let v: Vec<f32> = c.to_vec()?;                     // one plan, one submission, one readback
//! println!("{}", dev.stats());
//! # Ok(()) }
//! ```

pub use kiln_core::*;
/// Data sets, batches, transforms and augmentation: the `kiln-data` crate.
pub use kiln_data as data;
/// Neural-network layers (everything of `kiln_core::nn`), with [`evaluate`](nn::evaluate) and
/// [`accuracy`](nn::accuracy) from `kiln-data`, which need a data set.
pub mod nn {
    pub use kiln_core::nn::*;
    pub use kiln_data::{accuracy, evaluate};
}
/// The scheduler (everything of `kiln_core::schedule`): the backends' business, not a user's.
#[doc(hidden)]
pub mod schedule {
    pub use kiln_core::schedule::*;
}
/// Data-parallel training over MPI (build with `--features mpi`; one process without it).
pub use kiln_distributed as distributed;
pub use kiln_models as models;
/// Export to ONNX files: [`onnx::export`] writes a model's inference graph.
pub use kiln_onnx as onnx;
pub use kiln_viz as viz;
pub use kiln_wgpu as wgpu_backend;

pub mod classify;
pub mod preflight;
pub mod profile;

/// The lazy compute graph (everything of `kiln_core::graph`) and its pictures as Graphviz DOT:
/// [`graph::to_dot`] draws the ops of a graph (a training step's, say) with a box around the ops
/// of each fused kernel, [`graph::plan_to_dot`] the compiled plan's kernels and the buffers they
/// read, and [`graph::save_dot`] writes either and renders it where Graphviz is installed.
pub mod graph {
    pub use kiln_core::graph::*;
    pub use kiln_viz::dot::{graph_dot as to_dot, plan_dot as plan_to_dot, save_dot};
}

/// `Device::default()`, `Device::wgpu()` and `Device::wgpu_by_name(..)`: the constructors that
/// need the wgpu backend, added to [`Device`] (which lives in kiln-core and knows no GPU API).
pub trait DeviceExt: Sized {
    /// The best device: the adapter named by `KILN_ADAPTER` (a substring of its name) or the
    /// backend named by `WGPU_BACKEND`; else a discrete GPU, an integrated GPU, a software Vulkan
    /// adapter, in that order; else the CPU reference executor, with one warning line saying how
    /// to install a Vulkan driver. Prints which one it chose on stderr (`KILN_LOG=quiet` silences it).
    /// An adapter or backend named in the environment must exist: an unknown `WGPU_BACKEND`
    /// value is an error listing the accepted names, and a named adapter or backend that is
    /// not there is an error, not a fallback to the CPU.
    fn default() -> Result<Self>;
    /// The best wgpu adapter, or an error saying how to install a driver when there is none.
    fn wgpu() -> Result<Self>;
    /// The first wgpu adapter whose name contains `name` (case-insensitive).
    fn wgpu_by_name(name: &str) -> Result<Self>;
}

impl DeviceExt for Device {
    fn default() -> Result<Device> {
        let quiet = std::env::var("KILN_LOG").is_ok_and(|v| v == "quiet");
        let named = std::env::var("KILN_ADAPTER").is_ok_and(|v| !v.is_empty())
            || std::env::var_os("WGPU_BACKEND").is_some();
        match kiln_wgpu::wgpu_device() {
            Ok(dev) => {
                if !quiet {
                    eprintln!("kiln: using {}", dev.name());
                }
                Ok(dev)
            }
            // An adapter the user named explicitly must exist: do not fall back silently.
            Err(e) if named => Err(e),
            Err(KilnError::NoDevice(why)) => {
                eprintln!("kiln: warning: {why}; running on the CPU reference executor (slow)");
                Ok(Device::cpu())
            }
            Err(e) => Err(e),
        }
    }
    fn wgpu() -> Result<Device> {
        kiln_wgpu::wgpu_device()
    }
    fn wgpu_by_name(name: &str) -> Result<Device> {
        kiln_wgpu::wgpu_device_by_name(name)
    }
}

/// Everything a program usually needs: `use kiln::prelude::*;`. Tensors and devices, the
/// [`Module`](nn::Module) and [`Optimizer`](optim::Optimizer) traits (whose methods `forward`,
/// `parameters` and `step` are), the optimisers and [`evaluate`](nn::evaluate); a model and a
/// data set are named from [`models`] and [`data`].
pub mod prelude {
    pub use crate::DeviceExt;
    pub use kiln_core::nn::{Module, ParamBuilder};
    pub use kiln_core::optim::{Adam, Optimizer, Sgd};
    pub use kiln_core::{
        no_grad, Conv2dOptions, ConvTranspose2dOptions, DType, Device, Gradients, IntoShape,
        KilnError, Padding, Pool2dOptions, Result, Shape, Tensor,
    };
    pub use kiln_data::evaluate;
}

/// The code blocks of README.md, compiled by `cargo test --doc` (its first program must need
/// only `use kiln::prelude::*` and the model and data it names).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
