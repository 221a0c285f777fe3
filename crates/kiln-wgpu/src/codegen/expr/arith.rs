//! Arithmetic: unary and binary ops and casts, as WGSL that matches the reference's results
//! (NaN propagation, saturating casts, f16 rounding).

use super::{is_nan, literal, value_type, Emitter};
use kiln_core::op::{BinaryOp, UnaryOp};
use kiln_core::DType;

impl Emitter<'_, '_> {
    /// Unary op `u` of node `i` at `coords`.
    pub(super) fn unary(&mut self, i: usize, u: UnaryOp, coords: &[String]) -> String {
        let p = self.env.p;
        let dtype = p.nodes[i].dtype();
        let ty = value_type(dtype, self.env.f16);
        let ins = &p.inputs[i];
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

    /// Binary op `b` of node `i` at `coords`.
    pub(super) fn binary(&mut self, i: usize, b: BinaryOp, coords: &[String]) -> String {
        let p = self.env.p;
        let dtype = p.nodes[i].dtype();
        let ty = value_type(dtype, self.env.f16);
        let ins = &p.inputs[i];
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
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Minimum if in_dtype == DType::Bool => {
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
                let f = if b == BinaryOp::Maximum { "max" } else { "min" };
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

    /// Cast of node `i` (to `to`, its dtype) at `coords`.
    pub(super) fn cast(&mut self, i: usize, to: DType, coords: &[String]) -> String {
        let p = self.env.p;
        let dtype = p.nodes[i].dtype();
        let ty = value_type(dtype, self.env.f16);
        let ins = &p.inputs[i];
        let x = self.value(ins[0], coords);
        let from = p.nodes[ins[0]].dtype();
        let e = match (from, to) {
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
}
