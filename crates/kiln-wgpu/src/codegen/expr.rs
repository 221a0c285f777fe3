//! Expression emission: turns the part of the graph that one kernel computes into WGSL `let`
//! statements. Views never become copies: they rewrite the coordinates that their input is read
//! at, so `x.t().expand(..) + y` reads `x` and `y` in place.

pub use super::helpers::{helpers, F16_WGSL};
pub use super::index::{ravel, unravel};
pub use super::types::{
    is_nan, literal, load_conv, packed_f16, storage_type, store_conv, value_type,
};
mod arith;
mod views;

use kiln_core::op::{Op, RandDist};
use kiln_core::{DType, Pending};
use std::collections::HashMap;

/// Facts shared by every function of one kernel: bindings and runtime scalars.
pub struct KernelEnv<'a> {
    /// The pending graph.
    pub p: &'a Pending,
    /// Whether each node has its own buffer (stop emitting there and read it).
    pub materialized: &'a [bool],
    /// The node the kernel writes (computed, never read, even though it has a buffer).
    pub root: usize,
    /// Native f16 (`enable f16;`); without it f16 values are f32 in the kernel and packed
    /// halves in memory (see `shaders/f16.wgsl`).
    pub f16: bool,
    /// Binding variable of each materialized node the kernel reads.
    pub bindings: HashMap<usize, String>,
    /// First params word of each node with runtime scalars.
    pub scalar_word: HashMap<usize, usize>,
    /// Set when a Philox helper is needed.
    pub uses_philox: bool,
    /// Set when the `kiln_pow` helper is needed.
    pub uses_pow: bool,
    /// Set when the f16 conversions of `shaders/f16.wgsl` are needed.
    pub uses_f16: bool,
    /// Materialized f32 nodes whose binding the kernel declares as `array<vec4<f32>>` (the
    /// software matmul and elementwise kernels read them 4 values at a time); a single value
    /// of one is read as `b[i / 4u][i % 4u]`.
    pub vec4_reads: std::collections::HashSet<usize>,
    /// Set while an elementwise kernel emits element `lane` of the 4 it computes: reads of its
    /// vec4 inputs at exactly these coordinates come from their preloaded vec4.
    pub direct: Option<DirectReads>,
    /// The kernel writes its output as `array<vec4<f32>>`.
    pub out_vec4: bool,
}

/// The element an elementwise kernel is emitting (see [`KernelEnv::direct`]).
pub struct DirectReads {
    /// The output's coordinates of that element.
    pub coords: Vec<String>,
    /// Which of the invocation's 4 elements it is.
    pub lane: usize,
    /// The root's shape (the vec4 inputs have it too).
    pub shape: kiln_core::Shape,
    /// Inputs read directly so far; `d_inK` holds the 4 values of the input bound as `inK`.
    pub used: std::collections::BTreeSet<usize>,
}

impl KernelEnv<'_> {
    /// Whether values of `dtype` are f16 kept as f32 in the kernel and packed in memory.
    pub fn packed_f16(&self, dtype: DType) -> bool {
        packed_f16(dtype, self.f16)
    }

    /// A numeric expression `x` (e.g. an f32 accumulator) converted to the value type of
    /// `dtype`; without native f16, an f16 value is rounded to the nearest f16 (and stays f32).
    pub fn to_value(&mut self, dtype: DType, x: &str) -> String {
        if self.packed_f16(dtype) {
            self.round_f16(x)
        } else {
            format!("{}({x})", value_type(dtype, self.f16))
        }
    }

    /// `x` (an f32 expression) rounded to the nearest f16, as an f32.
    pub fn round_f16(&mut self, x: &str) -> String {
        self.uses_f16 = true;
        format!("kiln_round_f16({x})")
    }
}

/// Emits the statements of one WGSL function body.
pub struct Emitter<'e, 'a> {
    env: &'e mut KernelEnv<'a>,
    /// Nodes whose values are already in variables (the accumulator of a matmul, or of each
    /// reduction of a reduction kernel).
    cores: Vec<(usize, String)>,
    /// The statements so far.
    pub lines: Vec<String>,
    memo: HashMap<(usize, Vec<String>), String>,
    next: usize,
    /// Arithmetic ops emitted (for FLOP counts).
    pub arith_ops: usize,
}

impl<'e, 'a> Emitter<'e, 'a> {
    /// A new emitter; `core` maps a node to a variable that already holds its value.
    pub fn new(env: &'e mut KernelEnv<'a>, core: Option<(usize, String)>) -> Self {
        Self::with_cores(env, core.into_iter().collect())
    }

    /// A new emitter; `cores` maps nodes to variables that already hold their values.
    pub fn with_cores(env: &'e mut KernelEnv<'a>, cores: Vec<(usize, String)>) -> Self {
        Emitter {
            env,
            cores,
            lines: vec![],
            memo: HashMap::new(),
            next: 0,
            arith_ops: 0,
        }
    }

    fn bind(&mut self, ty: &str, expr: String) -> String {
        let name = format!("v{}", self.next);
        self.next += 1;
        self.lines.push(format!("let {name}: {ty} = {expr};"));
        name
    }

    /// Binds the result of an op of `dtype`; without native f16 an f16 result (computed in f32)
    /// is rounded to f16, as native f16 and the reference round each op.
    fn bind_result(&mut self, dtype: DType, ty: &str, expr: String) -> String {
        let expr = if self.env.packed_f16(dtype) {
            self.env.round_f16(&expr)
        } else {
            expr
        };
        self.bind(ty, expr)
    }

    fn coords_var(&mut self, coords: Vec<String>) -> Vec<String> {
        coords
            .into_iter()
            .map(|c| if c.len() > 24 { self.bind("u32", c) } else { c })
            .collect()
    }

    fn scalar(&self, i: usize, k: usize) -> String {
        let w = self.env.scalar_word[&i] + k;
        format!("params[{}u][{}u]", w / 4, w % 4)
    }

    fn scalar_value(&mut self, i: usize, k: usize, dtype: DType) -> String {
        let w = self.scalar(i, k);
        let ty = value_type(dtype, self.env.f16);
        match dtype {
            DType::F32 => format!("bitcast<f32>({w})"),
            DType::F16 if !self.env.f16 => self.env.round_f16(&format!("bitcast<f32>({w})")),
            DType::F16 => format!("{ty}(bitcast<f32>({w}))"),
            DType::I32 => format!("bitcast<i32>({w})"),
            DType::U32 => w,
            DType::Bool => format!("({w} != 0u)"),
        }
    }

    /// A variable holding node `i`'s value at `coords` (one u32 expression per dimension).
    pub fn value(&mut self, i: usize, coords: &[String]) -> String {
        let key = (i, coords.to_vec());
        if let Some(v) = self.memo.get(&key) {
            return v.clone();
        }
        let v = self.compute(i, coords);
        self.memo.insert(key, v.clone());
        v
    }

    /// A variable holding the value of node `i`, a further output of a multi-output kernel, at
    /// `coords`: computed here (not read from its buffer), using the outputs already emitted.
    pub fn output(&mut self, i: usize, coords: &[String]) -> String {
        self.env.root = i;
        self.value(i, coords)
    }

    fn compute(&mut self, i: usize, coords: &[String]) -> String {
        if let Some((_, var)) = self.cores.iter().find(|(c, _)| *c == i) {
            return var.clone();
        }
        let p = self.env.p;
        let node = &p.nodes[i];
        if self.env.materialized[i] && i != self.env.root {
            return self.load(i, coords);
        }
        if node.op().is_elementwise() {
            self.arith_ops += 1;
        }
        match node.op() {
            Op::Buffer | Op::Data(_) => panic!("codegen: leaf {i} is not materialized"),
            Op::Full(_) | Op::Arange { .. } | Op::Rand { .. } => self.generator(i, coords),
            Op::Reshape | Op::Permute(_) | Op::Expand | Op::Slice { .. } | Op::Window(_) => {
                self.remap(i, coords)
            }
            Op::Pad { before, .. } => self.pad(i, before, coords),
            Op::Unwindow(g) => self.unwindow(i, g, coords),
            Op::Cat { axis } => self.cat(i, *axis, coords),
            Op::Unary(u) => self.unary(i, *u, coords),
            Op::Binary(b) => self.binary(i, *b, coords),
            Op::Where => {
                let ins = &p.inputs[i];
                let c = self.value(ins[0], coords);
                let a = self.value(ins[1], coords);
                let b = self.value(ins[2], coords);
                let ty = value_type(node.dtype(), self.env.f16);
                self.bind(ty, format!("select({b}, {a}, {c})"))
            }
            Op::Cast(to) => self.cast(i, *to, coords),
            Op::Reduce { .. } | Op::Matmul | Op::AffineSample | Op::HostCall(_) => {
                panic!("codegen: node {i} ({:?}) must be materialized", node.op())
            }
        }
    }

    /// Node `i`'s value at `coords` read from its buffer (a materialized node the kernel reads).
    fn load(&mut self, i: usize, coords: &[String]) -> String {
        let p = self.env.p;
        let node = &p.nodes[i];
        let dtype = node.dtype();
        let ty = value_type(dtype, self.env.f16);
        let b = self
            .env
            .bindings
            .get(&i)
            .unwrap_or_else(|| panic!("codegen: node {i} has no binding"))
            .clone();
        // An input declared vec4 by an elementwise kernel, read at the output's own element.
        let vec4 = self.env.vec4_reads.contains(&i);
        if let Some(d) = self.env.direct.as_mut().filter(|_| vec4) {
            if coords == d.coords.as_slice() && node.shape() == &d.shape {
                d.used.insert(i);
                // Named by binding, not node: equal kernels of a long chain share a pipeline.
                return format!("d_{b}[{}u]", d.lane);
            }
        }
        let idx = ravel(coords, node.shape());
        if vec4 {
            let idx = self.bind("u32", idx);
            return self.bind(ty, format!("{b}[{idx} / 4u][{idx} % 4u]"));
        }
        if self.env.packed_f16(dtype) {
            // Element idx is half (idx & 1) of word idx / 2.
            self.env.uses_f16 = true;
            let idx = self.bind("u32", idx);
            return self.bind(
                ty,
                format!("kiln_f16_to_f32({b}[{idx} >> 1u] >> (({idx} & 1u) << 4u))"),
            );
        }
        self.bind(ty, load_conv(dtype, &format!("{b}[{idx}]")))
    }

    /// A generator's value at `coords` (`Full`, `Arange`, `Rand`): computed, never stored.
    fn generator(&mut self, i: usize, coords: &[String]) -> String {
        let p = self.env.p;
        let node = &p.nodes[i];
        let dtype = node.dtype();
        let ty = value_type(dtype, self.env.f16);
        match node.op() {
            Op::Full(_) => {
                let e = self.scalar_value(i, 0, dtype);
                self.bind(ty, e)
            }
            Op::Arange { .. } => {
                let (s, st) = (
                    self.scalar_value(i, 0, dtype),
                    self.scalar_value(i, 1, dtype),
                );
                self.bind_result(dtype, ty, format!("{s} + {st} * {ty}({})", coords[0]))
            }
            Op::Rand { dist, .. } => {
                self.env.uses_philox = true;
                let lin = ravel(coords, node.shape());
                let f = match dist {
                    RandDist::Uniform => "kiln_uniform",
                    RandDist::Normal => "kiln_normal",
                };
                let e = format!(
                    "{f}({lin}, vec2<u32>({}, {}))",
                    self.scalar(i, 0),
                    self.scalar(i, 1)
                );
                self.bind_result(dtype, ty, format!("{ty}({e})"))
            }
            other => unreachable!("codegen: {other:?} is not a generator"),
        }
    }
}
