//! Export of kiln models to [ONNX](https://onnx.ai) files, for onnxruntime and the other runtimes
//! that read them.
//!
//! ```no_run
//! # use kiln_core::{Device, nn::ParamBuilder};
//! # fn main() -> kiln_core::Result<()> {
//! let net = kiln_models::ResNet::resnet20(3, 10, &ParamBuilder::new(&Device::cpu(), 0))?;
//! kiln_onnx::export(&net, &[1, 3, 32, 32], "resnet20.onnx")?;
//! # Ok(()) }
//! ```
//!
//! The file holds the model's inference graph (what `forward` computes in evaluation mode):
//! convolutions, pooling, batch norms with their running statistics, activations, linear layers
//! (`Gemm`), residual additions, flattening, local response normalisation. Each layer adds its
//! nodes through [`Module::export_onnx`] (see
//! [`kiln_core::export`]); a layer without one is an error naming it. The graph has one input,
//! `input`, and one output, `logits`; their first dimension is a symbolic batch size (`batch`),
//! the other dimensions those of the shape given. Parameters are initializers with their
//! `state_dict` names (`layer1.0.conv1.weight`). ONNX IR version 7, opset 13.

mod encode;
#[allow(missing_docs, clippy::all)]
#[rustfmt::skip]
pub mod proto;

pub use encode::{encode, IR_VERSION};
pub use kiln_core::export::{
    graph_of, Attr, Data, ExportGraph, GraphBuilder, Initializer, Node, ValueId, OPSET,
};

use kiln_core::nn::Module;
use kiln_core::{KilnError, Result};
use prost::Message;
use std::path::Path;

/// Writes `model`'s inference graph for inputs of `input_shape` (`[1, 3, 64, 64]`; the first
/// dimension is the batch, exported as a symbolic size) to an ONNX file at `path`. Errors name a
/// layer that has no export, or the file that could not be written.
pub fn export(model: &dyn Module, input_shape: &[usize], path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(model, input_shape)?;
    std::fs::write(path, bytes).map_err(|e| {
        KilnError::InvalidArgument(format!("ONNX export: writing {}: {e}", path.display()))
    })
}

/// The ONNX file of `model` for inputs of `input_shape`, in memory (see [`export`]).
pub fn to_bytes(model: &dyn Module, input_shape: &[usize]) -> Result<Vec<u8>> {
    Ok(to_model_proto(model, input_shape)?.encode_to_vec())
}

/// The ONNX model of `model` for inputs of `input_shape`, as protobuf messages (see [`export`]).
pub fn to_model_proto(model: &dyn Module, input_shape: &[usize]) -> Result<proto::ModelProto> {
    Ok(encode(&graph_of(model, input_shape)?))
}

/// Reads an ONNX file's bytes back into messages (to inspect an export).
pub fn decode(bytes: &[u8]) -> Result<proto::ModelProto> {
    proto::ModelProto::decode(bytes)
        .map_err(|e| KilnError::Data(format!("not an ONNX model (protobuf): {e}")))
}
