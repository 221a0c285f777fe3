//! Errors for failures that come from outside the program: devices, memory, data.
//!
//! Mistakes in model code (wrong shapes, wrong dtypes) are not errors but panics at graph-build
//! time; see [`crate::Tensor`].
//!
//! An error that comes from another one keeps it as its [`source()`](std::error::Error::source):
//! a file that cannot be read is a [`KilnError::Io`] holding the [`std::io::Error`], so a missing
//! file can be told from a corrupt one by its kind:
//!
//! ```
//! use kiln_core::{checkpoint, Device, KilnError};
//! let err = checkpoint::load("no/such/model.safetensors", &Device::cpu()).unwrap_err();
//! assert!(matches!(err, KilnError::Io { .. }));
//! assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
//! let source = std::error::Error::source(&err).unwrap();
//! let io = source.downcast_ref::<std::io::Error>().unwrap();
//! assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
//! ```

use std::error::Error as _;

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
    /// A file could not be read or written (missing, no permission, disk full): the message
    /// names the file and what was being done; the source is the operating system's error, whose
    /// kind [`KilnError::io_kind`] returns.
    #[error("{msg}")]
    Io {
        /// What failed, naming the file; it ends with (or contains) the source's message.
        msg: String,
        /// The error the operating system gave.
        #[source]
        source: std::io::Error,
    },
    /// A file is not in the format the library that reads or writes it expects (a corrupt image
    /// or checkpoint header): the message names the file and says what is wrong; the source is
    /// that library's error (`image::ImageError`, `safetensors::SafeTensorError`, ...).
    #[error("{msg}")]
    Format {
        /// What is wrong, naming the file.
        msg: String,
        /// The error of the library that decoded or encoded the file.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
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

impl KilnError {
    /// The kind of the first [`std::io::Error`] in this error's source chain (`NotFound`,
    /// `PermissionDenied`, ...), or `None` when no io error caused it. Looks past other
    /// libraries' errors too: an image that cannot be read because its file vanished says
    /// `NotFound` here.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        let mut next = self.source();
        while let Some(e) = next {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return Some(io.kind());
            }
            next = e.source();
        }
        None
    }
}

/// kiln's result type.
pub type Result<T> = std::result::Result<T, KilnError>;
