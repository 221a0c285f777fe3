//! The operations a graph node can hold. Every tensor method records one of these (composite
//! methods record several); the reference executor and the backends interpret them.
//!
//! Conventions shared by every interpreter of this enum:
//! - A node's output shape and dtype are stored on the node, not in the op.
//! - Elementwise ops (`Unary`, `Binary`, `Where`, `Cast`) take inputs of exactly the node's shape:
//!   broadcasting is made explicit with `Expand` when the graph is built.
//! - Views (`Reshape` .. `Cat`) move or select elements without arithmetic; backends fold them into
//!   the index arithmetic of the kernel that reads them.

use crate::dtype::DType;
use std::sync::Arc;

/// Distribution of [`Op::Rand`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RandDist {
    /// Uniform on [0, 1): the top 24 bits of Philox output word 0, times 2^-24.
    Uniform,
    /// Standard normal by Box-Muller from Philox output words 0 and 1:
    /// `u1 = (w0 >> 8 + 1) * 2^-24` (in (0, 1]), `u2 = (w1 >> 8) * 2^-24`,
    /// `sqrt(-2 ln u1) * cos(2 pi u2)`.
    Normal,
}

/// Elementwise functions of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// -x
    Neg,
    /// |x|
    Abs,
    /// e^x
    Exp,
    /// natural logarithm
    Log,
    /// square root
    Sqrt,
    /// 1 / sqrt(x)
    Rsqrt,
    /// 1 / x
    Recip,
    /// sine
    Sin,
    /// cosine
    Cos,
    /// hyperbolic tangent
    Tanh,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// max(x, 0)
    Relu,
    /// round down
    Floor,
    /// round up
    Ceil,
    /// round to nearest, ties to even (as PyTorch and WGSL do)
    Round,
    /// logical not (bool)
    Not,
}

/// Elementwise functions of two inputs of the same shape and dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b (integers: truncating; division by zero gives 0 for integers)
    Div,
    /// a^b (floats)
    Pow,
    /// max(a, b)
    Maximum,
    /// min(a, b)
    Minimum,
    /// a == b (output bool)
    Eq,
    /// a != b (output bool)
    Ne,
    /// a < b (output bool)
    Lt,
    /// a <= b (output bool)
    Le,
    /// a > b (output bool)
    Gt,
    /// a >= b (output bool)
    Ge,
}

impl BinaryOp {
    /// True for the comparisons, whose output is bool.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }
}

/// How a reduction combines the elements of each group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum (0 for an empty group).
    Sum,
    /// Maximum (-inf for an empty float group).
    Max,
    /// Minimum (+inf for an empty float group).
    Min,
    /// Index of the first maximum, as i32, counted row-major over the reduced axes.
    ArgMax,
    /// Index of the first minimum, as i32, counted row-major over the reduced axes.
    ArgMin,
}

/// The geometry of [`Op::Window`] and [`Op::Unwindow`], one entry per windowed dimension.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowGeometry {
    /// Window size per dimension.
    pub kernel: Vec<usize>,
    /// Step between windows per dimension (>= 1).
    pub stride: Vec<usize>,
    /// Step between the taps of one window per dimension (>= 1).
    pub dilation: Vec<usize>,
}

impl WindowGeometry {
    /// Number of windowed dimensions.
    pub fn rank(&self) -> usize {
        self.kernel.len()
    }
    /// Number of whole windows along dimension `j` of an input of size `size` (0 if none fits).
    pub fn windows(&self, j: usize, size: usize) -> usize {
        let span = self.dilation[j] * (self.kernel[j] - 1) + 1;
        if size < span {
            0
        } else {
            (size - span) / self.stride[j] + 1
        }
    }
}

/// Host values waiting to be uploaded, in the dtype's little-endian device layout
/// (f32/i32/u32: 4 bytes, f16: 2 bytes, bool: one u32 0 or 1).
#[derive(Debug)]
pub struct HostData {
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// One operation of the lazy graph.
#[derive(Clone, Debug)]
pub enum Op {
    // ---- leaves (no inputs) ----
    /// Already realized: the node's storage holds the values.
    Buffer,
    /// Host values to upload.
    Data(Arc<HostData>),
    /// Every element equals `value`.
    Full(f64),
    /// 1-D: element i is `start + step * i` (computed in the node's dtype).
    Arange {
        /// First value.
        start: f64,
        /// Increment.
        step: f64,
    },
    /// Seeded random numbers: element i (row-major) comes from Philox4x32-10 with key `seed` and
    /// counter `(i, 0, 0, 0)`, so every device draws the same numbers.
    Rand {
        /// The seed (Philox key).
        seed: u64,
        /// Uniform or normal.
        dist: RandDist,
    },

    // ---- views (one input, except Cat) ----
    /// Same elements in row-major order, new shape.
    Reshape,
    /// Output dimension d is input dimension `perm[d]`.
    Permute(Vec<usize>),
    /// Input dimensions of size 1 are repeated to the node's shape (same rank).
    Expand,
    /// Output coordinate c of dimension d reads input coordinate `start[d] + step[d] * c`
    /// (step may be negative, which reverses).
    Slice {
        /// First input coordinate per dimension.
        start: Vec<i64>,
        /// Input step per output step, per dimension (non-zero).
        step: Vec<i64>,
    },
    /// Constant padding: output coordinate c reads input coordinate `c - before[d]` when that is
    /// inside the input, else `value`.
    Pad {
        /// Elements added before each dimension (those after follow from the node's shape).
        before: Vec<usize>,
        /// The fill value.
        value: f64,
    },
    /// The inputs joined along `axis`, in order.
    Cat {
        /// The joining dimension.
        axis: usize,
    },
    /// Sliding windows over the last `k = kernel.len()` dimensions (im2col as a view):
    /// `[.., S1..Sk] -> [.., K1..Kk, O1..Ok]`, where output `(.., k.., o..)` reads input
    /// `(.., o_j * stride_j + k_j * dilation_j)`. Every read is inside the input: callers pad
    /// first. `O_j = (S_j - dilation_j * (K_j - 1) - 1) / stride_j + 1`.
    Window(WindowGeometry),
    /// The transpose of [`Op::Window`] before its sum (col2im, one window position at a time):
    /// `[.., K1..Kk, O1..Ok] -> [.., K1..Kk, S1..Sk]`, where output `(.., k.., s..)` reads input
    /// `(.., k.., (s_j - k_j * dilation_j) / stride_j)` when every such division is exact and
    /// inside `O_j`, else 0. Summing its output over the `K` axes gives the gradient of a window.
    Unwindow(WindowGeometry),

    // ---- elementwise ----
    /// A function of one input.
    Unary(UnaryOp),
    /// A function of two inputs.
    Binary(BinaryOp),
    /// `cond ? a : b` with inputs (cond: bool, a, b).
    Where,
    /// Conversion to the node's dtype (float to int truncates toward zero; to bool is `!= 0`).
    Cast(DType),

    // ---- reductions and contractions ----
    /// Reduces `axes` of the input; the output keeps them as size-1 dimensions.
    Reduce {
        /// How to combine.
        op: ReduceOp,
        /// Reduced dimensions, sorted, distinct.
        axes: Vec<usize>,
    },
    /// `[B.., M, K] x [B.., K, N] -> [B.., M, N]`; both inputs have the same batch dimensions.
    Matmul,

    // ---- data-dependent sampling ----
    /// Bilinear sampling of images at per-image affine coordinates, zero outside: inputs
    /// `x [N, C, H, W]` (float) and `theta [N, 2, 3]` (f32), output `[N, C, OH, OW]` (the node's
    /// shape). Output pixel `(oy, ox)` of image n samples `x[n]` at
    /// `(sx, sy) = theta[n] * (ox, oy, 1)`, in pixel coordinates where pixel `(i, j)` has its
    /// centre at `x = j, y = i`. With `x0 = floor(sx)`, `fx = sx - x0` (likewise y) the four taps
    /// `(x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)` weigh `(1 - fx)(1 - fy)`,
    /// `fx (1 - fy)`, `(1 - fx) fy`, `fx fy`, summed in that order; a tap outside the input adds
    /// nothing (PyTorch's `grid_sample(mode="bilinear", padding_mode="zeros")`). Integer
    /// coordinates copy exactly (weights 1, 0, 0, 0). See `Tensor::affine_sample`.
    AffineSample,

    // ---- host calls ----
    /// A function computed on the host from the input's values (one f32 input), with its own
    /// gradient rule: see [`crate::host_call`]. Graphs run their host calls in stages before the
    /// backend sees them, so no kernel ever computes one.
    HostCall(crate::host_call::HostCall),
}

impl Op {
    /// True for leaves that exist only as a formula of the element index (Full, Arange, Rand).
    pub fn is_generator(&self) -> bool {
        matches!(self, Op::Full(_) | Op::Arange { .. } | Op::Rand { .. })
    }
    /// True for view ops (including Pad and Cat, which only select elements).
    pub fn is_view(&self) -> bool {
        matches!(
            self,
            Op::Reshape
                | Op::Permute(_)
                | Op::Expand
                | Op::Slice { .. }
                | Op::Pad { .. }
                | Op::Cat { .. }
                | Op::Window(_)
                | Op::Unwindow(_)
        )
    }
    /// True for ops that get a kernel of their own, with elementwise prologues and epilogues
    /// fused in: reductions, matmul and affine sampling.
    pub fn is_core(&self) -> bool {
        matches!(self, Op::Reduce { .. } | Op::Matmul | Op::AffineSample)
    }
    /// True for elementwise arithmetic.
    pub fn is_elementwise(&self) -> bool {
        matches!(self, Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast(_))
    }

    /// The runtime scalars of this op, as 32-bit words of the node's dtype (f16 values are passed
    /// as f32 bits). They are not part of the plan signature: a cached plan is replayed with new
    /// values. Full: `[value]`; Arange: `[start, step]`; Rand: `[seed low, seed high]`; Pad: `[value]`.
    pub fn scalar_words(&self, dtype: DType) -> Vec<u32> {
        let word = |v: f64| -> u32 {
            match dtype {
                DType::F32 | DType::F16 => (v as f32).to_bits(),
                DType::I32 => (v as i32) as u32,
                DType::U32 => v as u32,
                DType::Bool => (v != 0.0) as u32,
            }
        };
        match self {
            Op::Full(v) => vec![word(*v)],
            Op::Arange { start, step } => vec![word(*start), word(*step)],
            Op::Rand { seed, .. } => vec![*seed as u32, (*seed >> 32) as u32],
            Op::Pad { value, .. } => vec![word(*value)],
            _ => vec![],
        }
    }

    /// A key for the plan signature: the op and its structural parameters, without the runtime
    /// scalars of [`Op::scalar_words`].
    pub fn signature_key(&self) -> String {
        match self {
            Op::Data(_) => "Data".into(),
            Op::Full(_) => "Full".into(),
            Op::Arange { .. } => "Arange".into(),
            Op::Rand { dist, .. } => format!("Rand({dist:?})"),
            Op::Pad { before, .. } => format!("Pad({before:?})"),
            other => format!("{other:?}"),
        }
    }
}
