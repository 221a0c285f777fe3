//! Finding where NaNs and infinities come from (an anomaly mode, as PyTorch's
//! `detect_anomaly`), and refusing to keep non-finite values.
//!
//! ```
//! use kiln_core::{debug, Device, Tensor};
//! let dev = Device::cpu();
//! let x = Tensor::from_vec(vec![1.0f32, -1.0], [2], &dev).unwrap();
//! let y = x.log().mul_scalar(2.0).sum();          // log(-1) is NaN
//! let report = debug::first_non_finite(&y).unwrap().expect("a NaN");
//! assert_eq!(report.op, "log");
//! assert_eq!(report.index, 1);
//! ```

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use crate::tensor::{no_grad, Tensor};
use std::collections::HashMap;
use std::fmt;

/// One input of the op a [`NonFiniteReport`] names.
#[derive(Clone, Debug)]
pub struct InputReport {
    /// The input's op ("buffer" for a parameter or another realized leaf).
    pub op: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// True when it already held a NaN or an infinity.
    pub non_finite: bool,
    /// The input itself (compare with a model's parameters with [`Tensor::same`]).
    pub tensor: Tensor,
}

/// The first op of a graph whose result held a NaN or an infinity, from [`first_non_finite`].
#[derive(Clone, Debug)]
pub struct NonFiniteReport {
    /// The op's short name: "log", "div", "matmul", "sum", "exp", ...
    pub op: String,
    /// The op's output shape.
    pub shape: Vec<usize>,
    /// The op's output dtype.
    pub dtype: DType,
    /// The first non-finite element of the output (row-major index) and its value.
    pub index: usize,
    /// That element's value: NaN, inf or -inf.
    pub value: f64,
    /// The op's inputs; a non-finite input means the values came in from outside the graph
    /// (a parameter or data that already held them).
    pub inputs: Vec<InputReport>,
    /// How many ops of the graph ran before this one (in the walk's order, inputs first).
    pub position: usize,
    /// The node itself.
    pub tensor: Tensor,
}

impl fmt::Display for NonFiniteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} ({}) produced {} at element {} (op {} of the graph)",
            self.op,
            self.shape,
            self.dtype,
            self.value,
            self.index,
            self.position + 1
        )?;
        let bad: Vec<String> = self
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, i)| i.non_finite)
            .map(|(k, i)| format!("input {k} ({} {:?})", i.op, i.shape))
            .collect();
        if bad.is_empty() {
            write!(f, "; its inputs were finite")
        } else {
            write!(f, "; already non-finite: {}", bad.join(", "))
        }
    }
}

/// A short, lower-case name for an op, as the reports print it.
pub fn op_name(op: &Op) -> String {
    let lower = |s: String| s.to_lowercase();
    match op {
        Op::Buffer => "buffer".into(),
        Op::Data(_) => "data".into(),
        Op::Full(_) => "full".into(),
        Op::Arange { .. } => "arange".into(),
        Op::Rand { .. } => "rand".into(),
        Op::Unary(u) => match u {
            UnaryOp::Not => "not".into(),
            u => lower(format!("{u:?}")),
        },
        Op::Binary(b) => match b {
            BinaryOp::Maximum => "maximum".into(),
            BinaryOp::Minimum => "minimum".into(),
            b => lower(format!("{b:?}")),
        },
        Op::Reduce { op, .. } => match op {
            ReduceOp::ArgMax => "argmax".into(),
            ReduceOp::ArgMin => "argmin".into(),
            op => lower(format!("{op:?}")),
        },
        Op::Where => "where".into(),
        Op::Cast(d) => format!("cast({d})"),
        Op::Matmul => "matmul".into(),
        Op::AffineSample => "affine_sample".into(),
        Op::HostCall(f) => format!("host_call({})", f.0.name()),
        Op::Reshape => "reshape".into(),
        Op::Permute(_) => "permute".into(),
        Op::Expand => "expand".into(),
        Op::Slice { .. } => "slice".into(),
        Op::Pad { .. } => "pad".into(),
        Op::Cat { .. } => "cat".into(),
        Op::Window(_) => "window".into(),
        Op::Unwindow(_) => "unwindow".into(),
    }
}

/// The first element of `values` that is NaN or infinite, with its value.
fn first_bad(values: &[f64]) -> Option<(usize, f64)> {
    values
        .iter()
        .position(|v| !v.is_finite())
        .map(|i| (i, values[i]))
}

/// Every node behind `t` (through realized nodes too, down to the leaves), inputs first.
fn all_nodes(t: &Tensor) -> Vec<Tensor> {
    crate::autodiff::topological(t)
}

/// Re-runs the graph behind `t` op by op on the reference executor ([`Device::cpu`]), from its
/// leaves (parameters, data, constants: their current values, copied from `t`'s device), and
/// returns the first op whose result holds a NaN or an infinity: its name, shape, the first bad
/// element, and which of its inputs were already non-finite (a NaN weight shows as a finite
/// graph whose first op reads a non-finite parameter). `None` when every value is finite. A
/// non-finite leaf that no op reads (`t` itself) is reported as that leaf.
///
/// For debugging: it computes every op of the graph on the CPU in f64 (rounded to each op's
/// dtype, as the reference executor does) and keeps every intermediate value, so it is slow for
/// large graphs. Realized tensors are recomputed, not trusted, so a GPU result that differs from
/// the reference shows up too.
pub fn first_non_finite(t: &Tensor) -> Result<Option<NonFiniteReport>> {
    let cpu = Device::cpu();
    let nodes = all_nodes(t);
    let mut on_cpu: HashMap<u64, (Tensor, bool)> = HashMap::new();
    let mut ops_run = 0;
    for node in &nodes {
        let copy = if node.inputs().is_empty() {
            node.to_device(&cpu)?
        } else {
            let inputs: Vec<Tensor> = node
                .inputs()
                .iter()
                .map(|i| on_cpu[&i.id()].0.clone())
                .collect();
            no_grad(|| {
                Tensor::from_op(
                    node.op().clone(),
                    inputs,
                    node.shape().clone(),
                    node.dtype(),
                    &cpu,
                )
            })
        };
        copy.realize()?;
        let bad = if node.dtype().is_float() {
            first_bad(&copy.to_f64_vec()?)
        } else {
            None
        };
        let is_leaf = node.inputs().is_empty();
        if let Some((index, value)) = bad {
            if !is_leaf || node.same(t) {
                let inputs = node
                    .inputs()
                    .iter()
                    .map(|i| InputReport {
                        op: op_name(i.op()),
                        shape: i.dims().to_vec(),
                        non_finite: on_cpu[&i.id()].1,
                        tensor: i.clone(),
                    })
                    .collect();
                return Ok(Some(NonFiniteReport {
                    op: op_name(node.op()),
                    shape: node.dims().to_vec(),
                    dtype: node.dtype(),
                    index,
                    value,
                    inputs,
                    position: ops_run,
                    tensor: node.clone(),
                }));
            }
        }
        if !is_leaf {
            ops_run += 1;
        }
        on_cpu.insert(node.id(), (copy, bad.is_some()));
    }
    Ok(None)
}

/// Checks that every float tensor of `named` (a `state_dict`, an optimiser's state) holds only
/// finite values; the error names the first tensor that does not, how many of its values are
/// NaN or infinite and the first of them. Call it before writing a checkpoint, so that a
/// diverged run never replaces the last good one. Reads every tensor back to the host.
pub fn check_finite(named: &[(String, Tensor)]) -> Result<()> {
    for (name, t) in named {
        if !t.dtype().is_float() {
            continue;
        }
        let values = t.to_f64_vec()?;
        if let Some((index, value)) = first_bad(&values) {
            let count = values.iter().filter(|v| !v.is_finite()).count();
            return Err(KilnError::Data(format!(
                "{name} {:?}: {count} of {} values are not finite (the first is element {index}, \
                 {value}); the training diverged, so these values are not written (the last \
                 good checkpoint is kept)",
                t.dims(),
                values.len()
            )));
        }
    }
    Ok(())
}
