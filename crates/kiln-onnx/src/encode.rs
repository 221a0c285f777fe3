//! [`ExportGraph`] to ONNX's protobuf messages.

use crate::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use kiln_core::export::{Attr, Data, ExportGraph, Initializer, Node, OPSET};

/// The ONNX IR version written: 7, the one that came with opset 13.
pub const IR_VERSION: i64 = 7;

/// The name of the symbolic batch dimension of the input and the output.
const BATCH: &str = "batch";

/// The ONNX model of `graph`: IR version [`IR_VERSION`], the default domain at opset
/// [`OPSET`], producer `kiln`; the input's and output's first dimension symbolic (`batch`).
pub fn encode(graph: &ExportGraph) -> ModelProto {
    let g = GraphProto {
        name: Some("kiln".into()),
        node: graph.nodes.iter().map(node).collect(),
        initializer: graph.initializers.iter().map(tensor).collect(),
        input: vec![value_info(&graph.input, &graph.input_shape)],
        output: vec![value_info(&graph.output, &graph.output_shape)],
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("kiln".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(g),
        ..Default::default()
    }
}

fn node(n: &Node) -> NodeProto {
    NodeProto {
        name: Some(n.name.clone()),
        op_type: Some(n.op_type.clone()),
        input: n.inputs.clone(),
        output: n.outputs.clone(),
        attribute: n.attributes.iter().map(|(k, a)| attribute(k, a)).collect(),
        ..Default::default()
    }
}

fn attribute(name: &str, a: &Attr) -> AttributeProto {
    let mut p = AttributeProto {
        name: Some(name.to_string()),
        ..Default::default()
    };
    match a {
        Attr::Int(i) => {
            p.i = Some(*i);
            p.set_type(AttributeType::Int);
        }
        Attr::Ints(v) => {
            p.ints = v.clone();
            p.set_type(AttributeType::Ints);
        }
        Attr::Float(f) => {
            p.f = Some(*f);
            p.set_type(AttributeType::Float);
        }
    }
    p
}

fn tensor(t: &Initializer) -> TensorProto {
    let mut p = TensorProto {
        name: Some(t.name.clone()),
        dims: t.dims.iter().map(|&d| d as i64).collect(),
        ..Default::default()
    };
    match &t.data {
        Data::F32(v) => {
            p.float_data = v.clone();
            p.data_type = Some(DataType::Float as i32);
        }
        Data::I64(v) => {
            p.int64_data = v.clone();
            p.data_type = Some(DataType::Int64 as i32);
        }
    }
    p
}

/// A float tensor value of `shape`, its first dimension the symbolic batch size.
fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| Dimension {
            value: Some(if i == 0 {
                dimension::Value::DimParam(BATCH.into())
            } else {
                dimension::Value::DimValue(d as i64)
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
