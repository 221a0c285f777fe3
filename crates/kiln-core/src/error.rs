//! Errors for failures that come from outside the program: devices, memory, data.
//!
//! Mistakes in model code (wrong shapes, wrong dtypes) are not errors but panics at graph-build
//! time; see [`crate::Tensor`].

/// Everything that can go wrong at run time in kiln, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum KilnError {
    /// Host data does not fit the shape it was given.
    #[error("{op}: got {got} elements for shape {shape:?}, which holds {expected}; pass exactly {expected} values or change the shape")]
    DataLength {
        /// The constructor that was called.
        op: &'static str,
        /// The requested shape.
        shape: Vec<usize>,
        /// Elements the shape holds.
        expected: usize,
        /// Elements that were passed.
        got: usize,
    },
    /// No device could be created.
    #[error("no device: {0}")]
    NoDevice(String),
    /// A tensor is larger than the largest buffer the device can hold (`max_buffer_size`), or
    /// has more elements than kernels can index (2^32).
    #[error("tensor {tensor} needs {bytes} bytes but {device} holds at most {limit} bytes in one buffer; use smaller tensors (for example a smaller batch, or a layer split in two)")]
    BufferTooLarge {
        /// What the tensor is (dtype, shape and op).
        tensor: String,
        /// Its size in bytes.
        bytes: u64,
        /// The device's limit in bytes.
        limit: u64,
        /// The device's name.
        device: String,
    },
    /// The device was lost (driver reset, GPU removed) or ran out of memory.
    #[error("device lost: {0}; recreate the device with Device::default() and run again")]
    DeviceLost(String),
    /// A tensor was read back as the wrong element type.
    #[error("to_vec::<{requested}>() on a tensor of dtype {actual}; cast it first with .cast(DType::{actual_variant})")]
    WrongElementType {
        /// Rust element type requested.
        requested: &'static str,
        /// The tensor's dtype.
        actual: String,
        /// The dtype variant name to cast to.
        actual_variant: String,
    },
    /// `item()` on a tensor that does not hold exactly one element.
    #[error("item() needs a tensor of one element, got shape {0:?}")]
    NotScalar(Vec<usize>),
    /// Tensors from two different devices met in one realize.
    #[error("tensors from different devices ({0} and {1}) cannot be realized together; move one with .to_device()")]
    MixedDevices(String, String),
    /// A data file is missing, truncated or corrupt (the message names the file).
    #[error("data: {0}")]
    Data(String),
    /// An input of an operation fed from data (image sampling, augmentation) has the wrong
    /// shape or dtype; the message says what was expected.
    #[error("{op}: {msg}")]
    InvalidInput {
        /// The operation that was called.
        op: &'static str,
        /// What is wrong and what was expected.
        msg: String,
    },
    /// An argument that a user chose is not valid (an unknown model name, layers that do not
    /// fit together); the message says what is accepted.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Any other backend failure, with its message.
    #[error("backend: {0}")]
    Backend(String),
}

/// kiln's result type.
pub type Result<T> = std::result::Result<T, KilnError>;
