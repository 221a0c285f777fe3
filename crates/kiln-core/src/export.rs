//! A model's inference graph as plain Rust data, for exporting to other runtimes (the
//! `kiln-onnx` crate encodes it as an ONNX file).
//!
//! kiln's lazy graph is low level (windows, contractions, elementwise maps), so an export is
//! written from the module structure instead: each layer's [`Module::export_onnx`] adds the
//! nodes that compute its forward pass in evaluation mode (a convolution, a batch norm with its
//! running statistics, a ReLU) to a [`GraphBuilder`], with its parameters as initializers named
//! as in the `state_dict`. Node types, attributes and input orders are ONNX's (opset
//! [`OPSET`]), but nothing here depends on protobuf.
//!
//! ```
//! # use kiln_core::{Device, export::graph_of, nn::{Module, ParamBuilder, Sequential, Linear, Activation}};
//! let pb = ParamBuilder::new(&Device::cpu(), 0);
//! let net = Sequential::new().push(Linear::new(4, 3, &pb.pp(0))).push(Activation::Relu);
//! let g = graph_of(&net, &[2, 4]).unwrap();
//! let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
//! assert_eq!(ops, ["Gemm", "Relu"]);
//! assert_eq!(g.output_shape, [2, 3]);
//! assert_eq!(g.initializers[0].name, "0.weight");
//! ```

pub(crate) mod layers;

use crate::error::{KilnError, Result};
use crate::nn::Module;
use crate::tensor::{no_grad, Tensor};
use crate::{DType, Device};

/// The ONNX operator set the exported nodes follow.
pub const OPSET: i64 = 13;

/// A value of the graph under construction: the graph's input, a node's output or an
/// initializer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueId(usize);

/// An attribute value of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// One integer.
    Int(i64),
    /// A list of integers.
    Ints(Vec<i64>),
    /// One float.
    Float(f32),
}

/// One operation: its ONNX type (`"Conv"`), the names of the values it reads and writes, and
/// its attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// A name unique in the graph (`"layer1.0.conv1/Conv"`).
    pub name: String,
    /// The ONNX operator (`"Conv"`, `"Relu"`, `"Gemm"`).
    pub op_type: String,
    /// The values read, in the operator's input order.
    pub inputs: Vec<String>,
    /// The values written.
    pub outputs: Vec<String>,
    /// The attributes, by name.
    pub attributes: Vec<(String, Attr)>,
}

/// The contents of an initializer.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// 32-bit floats (weights, biases, running statistics).
    F32(Vec<f32>),
    /// 64-bit integers (shapes, pads and slice bounds that ONNX takes as inputs).
    I64(Vec<i64>),
}

/// A constant tensor of the graph: a parameter, a buffer, or a constant an operator reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Initializer {
    /// Its name: the `state_dict` name for parameters and buffers (`"conv1.weight"`).
    pub name: String,
    /// Its shape.
    pub dims: Vec<usize>,
    /// Its values, row-major.
    pub data: Data,
}

/// A finished inference graph: one input named `input`, one output named `logits`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportGraph {
    /// The input's name (`"input"`).
    pub input: String,
    /// The input's shape as exported (its first dimension is the batch).
    pub input_shape: Vec<usize>,
    /// The output's name (`"logits"`).
    pub output: String,
    /// The output's shape for `input_shape`.
    pub output_shape: Vec<usize>,
    /// The operations in an order that computes each value before it is read.
    pub nodes: Vec<Node>,
    /// The constants: parameters, buffers and operator inputs.
    pub initializers: Vec<Initializer>,
}

/// The inference graph of `model` for inputs of `input_shape` (`[1, 3, 64, 64]`; the first
/// dimension is the batch). The graph computes what `model.forward` computes in evaluation mode
/// (running statistics in batch norms, no dropout), whatever mode the model is in. Errors name
/// the first layer without an export ([`Module::export_onnx`]) and where it sits in the model,
/// and say when reading a parameter from the device fails.
pub fn graph_of(model: &dyn Module, input_shape: &[usize]) -> Result<ExportGraph> {
    if input_shape.is_empty() || input_shape.contains(&0) {
        return Err(KilnError::InvalidArgument(format!(
            "ONNX export: the input shape {input_shape:?} must have at least one dimension and \
             no zero sizes"
        )));
    }
    let (mut g, x) = GraphBuilder::new("input", input_shape);
    let y = model.export_onnx(&mut g, x)?;
    Ok(g.finish(y, "logits"))
}

/// A graph under construction, passed to each layer's [`Module::export_onnx`]. It knows every
/// value's shape (for the batch size of the export), names a layer's initializers after the
/// layer's place in the model ([`GraphBuilder::scoped`]), and reads parameters from their
/// device.
pub struct GraphBuilder {
    /// Every value: its name and shape.
    values: Vec<(String, Vec<usize>)>,
    nodes: Vec<Node>,
    initializers: Vec<Initializer>,
    /// The names of the modules around the current one (`["layer1", "0", "conv1"]`).
    scope: Vec<String>,
}

impl GraphBuilder {
    /// A graph with one input of `shape` named `input`, and that input's id.
    pub fn new(input: &str, shape: &[usize]) -> (GraphBuilder, ValueId) {
        let mut g = GraphBuilder {
            values: vec![],
            nodes: vec![],
            initializers: vec![],
            scope: vec![],
        };
        let x = g.value(input.to_string(), shape.to_vec());
        (g, x)
    }

    fn value(&mut self, name: String, shape: Vec<usize>) -> ValueId {
        self.values.push((name, shape));
        ValueId(self.values.len() - 1)
    }

    /// The shape of value `v`.
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.values[v.0].1
    }

    /// The current module's place in the model, dotted (`"layer1.0.conv1"`; empty at the top).
    pub fn path(&self) -> String {
        self.scope.join(".")
    }

    /// Runs `f` as the export of a child module called `name`: initializers it adds are named
    /// `name.<their name>` (as in the `state_dict`), and errors say where they happened.
    pub fn scoped<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.scope.push(name.to_string());
        let result = f(self);
        self.scope.pop();
        result
    }

    /// Exports child `module`, called `name`, applied to `x` (as [`GraphBuilder::scoped`]).
    pub fn child(&mut self, name: &str, module: &dyn Module, x: ValueId) -> Result<ValueId> {
        self.scoped(name, |g| module.export_onnx(g, x))
    }

    /// The error of a module that cannot be exported: names the module `what` (its type), where
    /// it sits in the model and `why`.
    pub fn unsupported(&self, what: &str, why: &str) -> KilnError {
        let place = match self.path() {
            p if p.is_empty() => "the model".to_string(),
            p => format!("`{p}`"),
        };
        KilnError::InvalidArgument(format!("ONNX export: {what} at {place}: {why}"))
    }

    /// A float initializer with the values of `tensor` (read from its device, pending updates
    /// included), called `name` under the current scope (`"weight"` becomes `"conv1.weight"`).
    pub fn tensor(&mut self, name: &str, tensor: &Tensor) -> Result<ValueId> {
        let data = no_grad(|| tensor.cast(DType::F32).to_vec::<f32>())?;
        self.floats(name, tensor.dims(), data)
    }

    /// A float initializer of `dims` with `data`, called `name` under the current scope.
    pub fn floats(&mut self, name: &str, dims: &[usize], data: Vec<f32>) -> Result<ValueId> {
        self.initializer(name, dims, Data::F32(data))
    }

    /// An int64 initializer (a shape, pads, slice bounds), called `name` under the current scope.
    pub fn ints(&mut self, name: &str, data: &[i64]) -> Result<ValueId> {
        self.initializer(name, &[data.len()], Data::I64(data.to_vec()))
    }

    fn initializer(&mut self, name: &str, dims: &[usize], data: Data) -> Result<ValueId> {
        let mut full = self.scope.clone();
        full.push(name.to_string());
        let full = full.join(".");
        if self.values.iter().any(|(n, _)| *n == full) {
            return Err(self.unsupported(
                "an initializer",
                &format!("the name {full:?} is used twice in the graph"),
            ));
        }
        self.initializers.push(Initializer {
            name: full.clone(),
            dims: dims.to_vec(),
            data,
        });
        Ok(self.value(full, dims.to_vec()))
    }

    /// Adds a node of ONNX type `op_type` reading `inputs`, with `attributes`, whose one output
    /// has `shape`; returns the output.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[ValueId],
        attributes: Vec<(&str, Attr)>,
        shape: Vec<usize>,
    ) -> ValueId {
        let path = match self.path() {
            p if p.is_empty() => op_type.to_string(),
            p => format!("{p}/{op_type}"),
        };
        // Unique names: a module may add several nodes of one type.
        let same = self
            .nodes
            .iter()
            .filter(|n| n.name.starts_with(&path))
            .count();
        let name = if same == 0 {
            path
        } else {
            format!("{path}_{same}")
        };
        let out = self.value(format!("{name}:0"), shape);
        self.nodes.push(Node {
            name,
            op_type: op_type.to_string(),
            inputs: inputs.iter().map(|v| self.values[v.0].0.clone()).collect(),
            outputs: vec![self.values[out.0].0.clone()],
            attributes: attributes
                .into_iter()
                .map(|(k, a)| (k.to_string(), a))
                .collect(),
        });
        out
    }

    /// A node whose output has the shape kiln's own op gives: `op` is applied to a lazy tensor
    /// of the first input's shape (nothing runs) to learn it. An input that `op` rejects (kiln's
    /// ops panic on shapes that do not fit, as `forward` would) is an error naming the node.
    pub fn node_like(
        &mut self,
        op_type: &str,
        inputs: &[ValueId],
        attributes: Vec<(&str, Attr)>,
        op: impl FnOnce(&Tensor) -> Tensor,
    ) -> Result<ValueId> {
        let input = self.shape(inputs[0]).to_vec();
        let probed = crate::probe::catch_probe(|| probe(&input, op));
        let shape = probed.map_err(|payload| {
            let why = crate::probe::panic_message(&*payload);
            let why = why.as_deref().unwrap_or("rejected by kiln's op");
            self.unsupported(op_type, &format!("the input {input:?} does not fit: {why}"))
        })?;
        Ok(self.node(op_type, inputs, attributes, shape))
    }

    /// An elementwise node of one input and no attributes (`"Relu"`, `"Tanh"`).
    pub fn unary(&mut self, op_type: &str, x: ValueId) -> ValueId {
        let shape = self.shape(x).to_vec();
        self.node(op_type, &[x], vec![], shape)
    }

    /// `a + b` (ONNX broadcasting, as kiln's); shapes that do not broadcast are an error.
    pub fn add(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        let b_shape = self.shape(b).to_vec();
        self.node_like("Add", &[a, b], vec![], |t| {
            t.add(&Tensor::zeros(b_shape, &Device::cpu()))
        })
    }

    /// `[N, ..] -> [N, product of the rest]` (ONNX `Flatten`, axis 1).
    pub fn flatten(&mut self, x: ValueId) -> ValueId {
        let s = self.shape(x).to_vec();
        let shape = vec![s[0], s[1..].iter().product()];
        self.node("Flatten", &[x], vec![("axis", Attr::Int(1))], shape)
    }

    /// The finished graph, its output `y` renamed `output`.
    pub fn finish(mut self, y: ValueId, output: &str) -> ExportGraph {
        let produced = self
            .nodes
            .iter()
            .any(|n| n.outputs.contains(&self.values[y.0].0));
        // The graph's input or a constant as the output: copy it through a node.
        let y = if produced && y.0 != 0 {
            y
        } else {
            self.unary("Identity", y)
        };
        let old = std::mem::replace(&mut self.values[y.0].0, output.to_string());
        for node in &mut self.nodes {
            for name in node.inputs.iter_mut().chain(node.outputs.iter_mut()) {
                if *name == old {
                    *name = output.to_string();
                }
            }
        }
        ExportGraph {
            input: self.values[0].0.clone(),
            input_shape: self.values[0].1.clone(),
            output: output.to_string(),
            output_shape: self.values[y.0].1.clone(),
            nodes: self.nodes,
            initializers: self.initializers,
        }
    }
}

/// The shape `op` gives a tensor of `shape`: applied to lazy zeros on the CPU device, nothing
/// runs.
fn probe(shape: &[usize], op: impl FnOnce(&Tensor) -> Tensor) -> Vec<usize> {
    no_grad(|| {
        op(&Tensor::zeros(shape.to_vec(), &Device::cpu()))
            .dims()
            .to_vec()
    })
}

/// The error of [`Module::export_onnx`] for a module that does not implement it.
pub(crate) fn not_exportable(g: &GraphBuilder, type_name: &str) -> KilnError {
    g.unsupported(
        type_name,
        "this layer has no ONNX export (implement Module::export_onnx for it)",
    )
}
