//! Expression emission: turns the part of the graph that one kernel computes into WGSL `let`
//! statements. Views never become copies: they rewrite the coordinates that their input is read
//! at, so `x.t().expand(..) + y` reads `x` and `y` in place.

pub use super::helpers::{helpers, F16_WGSL};
pub use super::index::{ravel, unravel};
pub use super::types::{
    is_nan, literal, load_conv, packed_f16, storage_type, store_conv, value_type,
};
use kiln_core::op::{BinaryOp, Op, RandDist, UnaryOp};
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
    /// A node whose value is already in a variable (the accumulator of a matmul or reduction).
    core: Option<(usize, String)>,
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
        Emitter {
            env,
            core,
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
        if let Some((c, var)) = &self.core {
            if *c == i {
                return var.clone();
            }
        }
        let p = self.env.p;
        let node = &p.nodes[i];
        let dtype = node.dtype();
        let ty = value_type(dtype, self.env.f16);
        if self.env.materialized[i] && i != self.env.root {
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
            return self.bind(ty, load_conv(dtype, &format!("{b}[{idx}]")));
        }
        let ins = p.inputs[i].clone();
        if node.op().is_elementwise() {
            self.arith_ops += 1;
        }
        let in_shape = |k: usize| p.nodes[ins[k]].shape().clone();
        match node.op() {
            Op::Buffer | Op::Data(_) => panic!("codegen: leaf {i} is not materialized"),
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
            Op::Reshape => {
                let lin = self.bind("u32", ravel(coords, node.shape()));
                let c = unravel(&lin, &in_shape(0));
                self.value(ins[0], &c)
            }
            Op::Permute(perm) => {
                let mut c = vec![String::new(); perm.len()];
                for (d, &pd) in perm.iter().enumerate() {
                    c[pd] = coords[d].clone();
                }
                self.value(ins[0], &c)
            }
            Op::Expand => {
                let s = in_shape(0);
                let c: Vec<String> = s
                    .dims()
                    .iter()
                    .zip(coords)
                    .map(|(&n, c)| if n == 1 { "0u".to_string() } else { c.clone() })
                    .collect();
                self.value(ins[0], &c)
            }
            Op::Slice { start, step } => {
                let c: Vec<String> = coords
                    .iter()
                    .zip(start.iter().zip(step))
                    .map(|(c, (&s, &st))| match (s, st) {
                        (0, 1) => c.clone(),
                        (s, 1) => format!("({c} + {s}u)"),
                        (s, st) if st > 0 => format!("({s}u + {c} * {st}u)"),
                        (s, st) => format!("({s}u - {c} * {}u)", -st),
                    })
                    .collect();
                let c = self.coords_var(c);
                self.value(ins[0], &c)
            }
            Op::Pad { before, .. } => {
                let s = in_shape(0);
                let mut conds = vec![];
                let mut c = vec![];
                for ((coord, &b), &n) in coords.iter().zip(before).zip(s.dims()) {
                    if b == 0 && n == node.shape().dims()[c.len()] {
                        c.push(coord.clone());
                        continue;
                    }
                    let ok = self.bind("bool", format!("{coord} >= {b}u && {coord} < {}u", b + n));
                    c.push(self.bind("u32", format!("select(0u, {coord} - {b}u, {ok})")));
                    conds.push(ok);
                }
                let inner = self.value(ins[0], &c);
                if conds.is_empty() {
                    return inner;
                }
                let fill = self.scalar_value(i, 0, dtype);
                self.bind(
                    ty,
                    format!("select({fill}, {inner}, {})", conds.join(" && ")),
                )
            }
            Op::Window(g) => {
                let r = g.rank();
                let lead = coords.len() - 2 * r;
                let mut c = coords[..lead].to_vec();
                for j in 0..r {
                    let (k, o) = (&coords[lead + j], &coords[lead + r + j]);
                    c.push(format!(
                        "({o} * {}u + {k} * {}u)",
                        g.stride[j], g.dilation[j]
                    ));
                }
                let c = self.coords_var(c);
                self.value(ins[0], &c)
            }
            Op::Unwindow(g) => {
                let r = g.rank();
                let lead = coords.len() - 2 * r;
                let o_dims = in_shape(0).dims()[lead + r..].to_vec();
                let mut c = coords[..lead + r].to_vec();
                let mut conds = vec![];
                for j in 0..r {
                    let (k, s) = (&coords[lead + j], &coords[lead + r + j]);
                    let tap = self.bind("u32", format!("{k} * {}u", g.dilation[j]));
                    let rel = self.bind("u32", format!("select(0u, {s} - {tap}, {s} >= {tap})"));
                    let st = g.stride[j];
                    let o = if st == 1 {
                        rel.clone()
                    } else {
                        self.bind("u32", format!("{rel} / {st}u"))
                    };
                    let mut ok = format!("{s} >= {tap} && {o} < {}u", o_dims[j]);
                    if st != 1 {
                        ok += &format!(" && {rel} % {st}u == 0u");
                    }
                    conds.push(self.bind("bool", ok));
                    c.push(self.bind("u32", format!("select(0u, {o}, {})", conds[j])));
                }
                let inner = self.value(ins[0], &c);
                let zero = match dtype {
                    DType::Bool => "false".to_string(),
                    _ => format!("{ty}(0)"),
                };
                self.bind(
                    ty,
                    format!("select({zero}, {inner}, {})", conds.join(" && ")),
                )
            }
            Op::Cat { axis } => {
                let axis = *axis;
                let mut offset = 0usize;
                let mut parts = vec![];
                for &inp in &ins {
                    let n = p.nodes[inp].shape().dims()[axis];
                    let a = &coords[axis];
                    let mut c = coords.to_vec();
                    c[axis] = self.bind(
                        "u32",
                        format!(
                            "select(0u, {a} - {offset}u, {a} >= {offset}u && {a} < {}u)",
                            offset + n
                        ),
                    );
                    let v = self.value(inp, &c);
                    offset += n;
                    parts.push((v, offset));
                }
                let mut acc = parts.last().unwrap().0.clone();
                for (v, end) in parts.iter().rev().skip(1) {
                    acc = self.bind(ty, format!("select({acc}, {v}, {} < {end}u)", coords[axis]));
                }
                acc
            }
            Op::Unary(u) => {
                let x = self.value(ins[0], coords);
                let one = literal(1.0, dtype, self.env.f16);
                let zero = literal(0.0, dtype, self.env.f16);
                let e = match u {
                    UnaryOp::Neg if dtype == DType::U32 => format!("0u - {x}"),
                    UnaryOp::Neg => format!("-{x}"),
                    UnaryOp::Abs => format!("abs({x})"),
                    UnaryOp::Exp => format!("exp({x})"),
                    UnaryOp::Log => format!("log({x})"),
                    UnaryOp::Sqrt => format!("sqrt({x})"),
                    UnaryOp::Rsqrt => format!("inverseSqrt({x})"),
                    UnaryOp::Recip => format!("{one} / {x}"),
                    UnaryOp::Sin => format!("sin({x})"),
                    UnaryOp::Cos => format!("cos({x})"),
                    // exp(-2|x|) never overflows, unlike some drivers' tanh for large |x|.
                    UnaryOp::Tanh => {
                        let e = self.bind(
                            ty,
                            format!("exp({} * abs({x}))", literal(-2.0, dtype, self.env.f16)),
                        );
                        format!("sign({x}) * ({one} - {e}) / ({one} + {e})")
                    }
                    UnaryOp::Sigmoid => format!("{one} / ({one} + exp(-{x}))"),
                    // Not `max(x, 0)`: WGSL's max may drop a NaN, the reference keeps it.
                    UnaryOp::Relu => format!("select({x}, {zero}, {x} < {zero})"),
                    UnaryOp::Floor => format!("floor({x})"),
                    UnaryOp::Ceil => format!("ceil({x})"),
                    UnaryOp::Round => format!("round({x})"),
                    UnaryOp::Not => format!("!{x}"),
                };
                // These give an f16 for an f16 input: no rounding needed.
                let exact = matches!(
                    u,
                    UnaryOp::Neg
                        | UnaryOp::Abs
                        | UnaryOp::Relu
                        | UnaryOp::Floor
                        | UnaryOp::Ceil
                        | UnaryOp::Round
                );
                if exact {
                    self.bind(ty, e)
                } else {
                    self.bind_result(dtype, ty, e)
                }
            }
            Op::Binary(b) => {
                let x = self.value(ins[0], coords);
                let y = self.value(ins[1], coords);
                let in_dtype = p.nodes[ins[0]].dtype();
                let is_float = in_dtype.is_float();
                let e = match b {
                    // WGSL has no arithmetic or ordering on bool. The reference computes on 0 and
                    // 1 and rounds the result to bool as `!= 0`: 1 + 1 and 0 - 1 are true.
                    BinaryOp::Add | BinaryOp::Maximum if in_dtype == DType::Bool => {
                        format!("{x} || {y}")
                    }
                    BinaryOp::Sub if in_dtype == DType::Bool => format!("{x} != {y}"),
                    BinaryOp::Mul | BinaryOp::Div | BinaryOp::Minimum
                        if in_dtype == DType::Bool =>
                    {
                        format!("{x} && {y}")
                    }
                    BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
                        if in_dtype == DType::Bool =>
                    {
                        let op = match b {
                            BinaryOp::Lt => "<",
                            BinaryOp::Le => "<=",
                            BinaryOp::Gt => ">",
                            _ => ">=",
                        };
                        format!("u32({x}) {op} u32({y})")
                    }
                    BinaryOp::Add => format!("{x} + {y}"),
                    BinaryOp::Sub => format!("{x} - {y}"),
                    BinaryOp::Mul => format!("{x} * {y}"),
                    BinaryOp::Div if in_dtype.is_int() => {
                        let zero = literal(0.0, in_dtype, self.env.f16);
                        format!("select({x} / {y}, {zero}, {y} == {zero})")
                    }
                    BinaryOp::Div => format!("{x} / {y}"),
                    BinaryOp::Pow => {
                        self.env.uses_pow = true;
                        format!("{ty}(kiln_pow(f32({x}), f32({y})))")
                    }
                    // WGSL's max and min may drop a NaN; the reference propagates it (x + y is
                    // NaN when either is).
                    BinaryOp::Maximum | BinaryOp::Minimum if is_float => {
                        let f = if *b == BinaryOp::Maximum {
                            "max"
                        } else {
                            "min"
                        };
                        let nan = format!("{} || {}", is_nan(&x, in_dtype), is_nan(&y, in_dtype));
                        format!("select({f}({x}, {y}), {x} + {y}, {nan})")
                    }
                    BinaryOp::Maximum => format!("max({x}, {y})"),
                    BinaryOp::Minimum => format!("min({x}, {y})"),
                    BinaryOp::Eq => format!("{x} == {y}"),
                    // naga's float `!=` is ordered (false with a NaN); the reference's is true.
                    BinaryOp::Ne if is_float => format!("!({x} == {y})"),
                    BinaryOp::Ne => format!("{x} != {y}"),
                    BinaryOp::Lt => format!("{x} < {y}"),
                    BinaryOp::Le => format!("{x} <= {y}"),
                    BinaryOp::Gt => format!("{x} > {y}"),
                    BinaryOp::Ge => format!("{x} >= {y}"),
                };
                if matches!(b, BinaryOp::Maximum | BinaryOp::Minimum) {
                    // One of the two f16 inputs: no rounding needed.
                    self.bind(ty, e)
                } else {
                    self.bind_result(dtype, ty, e)
                }
            }
            Op::Where => {
                let c = self.value(ins[0], coords);
                let a = self.value(ins[1], coords);
                let b = self.value(ins[2], coords);
                self.bind(ty, format!("select({b}, {a}, {c})"))
            }
            Op::Cast(to) => {
                let x = self.value(ins[0], coords);
                let from = p.nodes[ins[0]].dtype();
                let e = match (from, *to) {
                    (DType::Bool, t) => format!(
                        "select({}, {}, {x})",
                        literal(0.0, t, self.env.f16),
                        literal(1.0, t, self.env.f16)
                    ),
                    // `!(x == 0)`, not `x != 0`: NaN is true, as in the reference.
                    (f, DType::Bool) => format!("!({x} == {})", literal(0.0, f, self.env.f16)),
                    // The reference truncates and saturates to the integer range, like Rust's
                    // `as`; NaN gives 0. WGSL clamps to the largest value of the source type
                    // inside the range instead (f32: 2^31 - 128, 2^32 - 256; f16: +-65504, even
                    // for an infinity), so convert from f32 and select the top explicitly.
                    (f, DType::I32) if f.is_float() => format!(
                        "select(select(i32(f32({x})), 2147483647i, f32({x}) >= 2147483648.0), 0i, {})",
                        is_nan(&x, f)
                    ),
                    // Negative values clamp to 0 explicitly: GLSL's uint() of a negative float
                    // is undefined (llvmpipe's GL gives 2^32 - 1).
                    (f, DType::U32) if f.is_float() => format!(
                        "select(select(u32(max(f32({x}), 0.0)), 4294967295u, f32({x}) >= 4294967296.0), 0u, {})",
                        is_nan(&x, f)
                    ),
                    // Through f32, which holds every integer up to f16's range exactly: WGSL's
                    // integer-to-f16 conversion clamps to 65504 where rounding gives infinity.
                    (DType::I32 | DType::U32, DType::F16) => format!("{ty}(f32({x}))"),
                    // Integer to integer saturates too (WGSL reinterprets the bits).
                    (DType::I32, DType::U32) => format!("u32(max({x}, 0i))"),
                    (DType::U32, DType::I32) => format!("i32(min({x}, 2147483647u))"),
                    _ => format!("{ty}({x})"),
                };
                self.bind_result(dtype, ty, e)
            }
            Op::Reduce { .. } | Op::Matmul | Op::AffineSample => {
                panic!("codegen: node {i} ({:?}) must be materialized", node.op())
            }
        }
    }
}
