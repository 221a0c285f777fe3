//! Elementwise ops: Unary, Binary, Where and Cast. Inputs already have the node's shape (the
//! graph makes broadcasting explicit with Expand).
//!
//! Each function returns exact f64 results; the caller rounds them to the node's dtype, which
//! is also what makes integer arithmetic saturate at the type's range (the GPU wraps instead;
//! the two agree wherever nothing overflows).
//!
//! NaN: `Relu`, `Maximum` and `Minimum` propagate NaN (as PyTorch does): relu(NaN) = NaN and
//! max(NaN, x) = max(x, NaN) = NaN. Comparisons with NaN are false except `Ne`.

use crate::dtype::DType;
use crate::op::{BinaryOp, UnaryOp};

/// Applies `op` to every element.
pub(super) fn unary(op: UnaryOp, x: &[f64]) -> Vec<f64> {
    let f: fn(f64) -> f64 = match op {
        UnaryOp::Neg => |x| -x,
        UnaryOp::Abs => f64::abs,
        UnaryOp::Exp => f64::exp,
        UnaryOp::Log => f64::ln,
        UnaryOp::Sqrt => f64::sqrt,
        UnaryOp::Rsqrt => |x| 1.0 / x.sqrt(),
        UnaryOp::Recip => |x| 1.0 / x,
        UnaryOp::Sin => f64::sin,
        UnaryOp::Cos => f64::cos,
        UnaryOp::Tanh => f64::tanh,
        UnaryOp::Sigmoid => |x| 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Relu => |x| if x < 0.0 { 0.0 } else { x },
        UnaryOp::Floor => f64::floor,
        UnaryOp::Ceil => f64::ceil,
        UnaryOp::Round => f64::round_ties_even,
        UnaryOp::Not => |x| if x == 0.0 { 1.0 } else { 0.0 },
    };
    x.iter().map(|&v| f(v)).collect()
}

/// Applies `op` to every pair of elements; `dtype` is the inputs' dtype (integer division
/// truncates).
pub(super) fn binary(op: BinaryOp, a: &[f64], b: &[f64], dtype: DType) -> Vec<f64> {
    let bool_of = |c: bool| if c { 1.0 } else { 0.0 };
    let f = |a: f64, b: f64| -> f64 {
        match op {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div if dtype.is_float() => a / b,
            BinaryOp::Div => int_div(a, b),
            BinaryOp::Pow => a.powf(b),
            BinaryOp::Maximum if a.is_nan() || b.is_nan() => f64::NAN,
            BinaryOp::Maximum => a.max(b),
            BinaryOp::Minimum if a.is_nan() || b.is_nan() => f64::NAN,
            BinaryOp::Minimum => a.min(b),
            BinaryOp::Eq => bool_of(a == b),
            BinaryOp::Ne => bool_of(a != b),
            BinaryOp::Lt => bool_of(a < b),
            BinaryOp::Le => bool_of(a <= b),
            BinaryOp::Gt => bool_of(a > b),
            BinaryOp::Ge => bool_of(a >= b),
        }
    };
    a.iter().zip(b).map(|(&a, &b)| f(a, b)).collect()
}

/// Integer division truncating toward zero; division by zero gives 0. Both operands are
/// integers of at most 32 bits, so i64 holds them (and the quotient) exactly.
fn int_div(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        (a as i64 / b as i64) as f64
    }
}

/// `cond != 0 ? a : b` per element.
pub(super) fn where_(cond: &[f64], a: &[f64], b: &[f64]) -> Vec<f64> {
    cond.iter()
        .zip(a.iter().zip(b))
        .map(|(&c, (&a, &b))| if c != 0.0 { a } else { b })
        .collect()
}

/// A copy of the values: the conversion itself is the rounding to the node's dtype that follows
/// every op ([`DType::round`]: float to int truncates toward zero and saturates, NaN gives 0,
/// anything to bool is `!= 0`).
pub(super) fn cast(x: &[f64]) -> Vec<f64> {
    x.to_vec()
}

#[cfg(test)]
mod tests {
    use crate::reference::tests::dev;
    use crate::{DType, Tensor};
    use half::f16;

    fn f32s(v: &[f32], dims: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), dims, &dev()).unwrap()
    }
    fn i32s(v: &[i32]) -> Tensor {
        Tensor::from_vec(v.to_vec(), [v.len()], &dev()).unwrap()
    }

    #[test]
    fn broadcasting_add() {
        // [2,3] + [3] and [2,1] + [1,3].
        let a = f32s(&[0., 1., 2., 3., 4., 5.], &[2, 3]);
        let b = f32s(&[10., 20., 30.], &[3]);
        assert_eq!(
            a.add(&b).to_vec::<f32>().unwrap(),
            vec![10., 21., 32., 13., 24., 35.]
        );
        let col = f32s(&[1., 2.], &[2, 1]);
        let row = f32s(&[10., 20., 30.], &[1, 3]);
        let s = &col + &row;
        assert_eq!(s.dims(), &[2, 3]);
        assert_eq!(
            s.to_vec::<f32>().unwrap(),
            vec![11., 21., 31., 12., 22., 32.]
        );
        assert_eq!((&a * 2.0 - 1.0).to_vec::<f32>().unwrap()[5], 9.0);
    }

    #[test]
    fn unary_functions() {
        let x = f32s(&[-1.5, 0.0, 2.0], &[3]);
        let v = |t: Tensor| t.to_vec::<f32>().unwrap();
        assert_eq!(v(x.neg()), vec![1.5, -0.0, -2.0]);
        assert_eq!(v(x.abs()), vec![1.5, 0.0, 2.0]);
        assert_eq!(v(x.relu()), vec![0.0, 0.0, 2.0]);
        assert_eq!(v(x.floor()), vec![-2.0, 0.0, 2.0]);
        assert_eq!(v(x.ceil()), vec![-1.0, 0.0, 2.0]);
        assert_eq!(v(x.exp())[2], 2f64.exp() as f32);
        assert_eq!(v(x.sigmoid())[1], 0.5);
        assert_eq!(v(x.tanh())[1], 0.0);
        let p = f32s(&[4.0, 0.25], &[2]);
        assert_eq!(v(p.sqrt()), vec![2.0, 0.5]);
        assert_eq!(v(p.rsqrt()), vec![0.5, 2.0]);
        assert_eq!(v(p.recip()), vec![0.25, 4.0]);
        assert_eq!(v(p.log())[0], 4f64.ln() as f32);
        assert_eq!(v(f32s(&[0.0], &[1]).cos()), vec![1.0]);
        assert_eq!(v(f32s(&[0.0], &[1]).sin()), vec![0.0]);
        assert!(v(f32s(&[f32::NAN], &[1]).relu())[0].is_nan());
    }

    #[test]
    fn round_is_ties_to_even() {
        let x = f32s(&[0.5, 1.5, 2.5, -0.5, -1.5, 2.6], &[6]);
        assert_eq!(
            x.round().to_vec::<f32>().unwrap(),
            vec![0.0, 2.0, 2.0, -0.0, -2.0, 3.0]
        );
    }

    #[test]
    fn binary_functions_and_nan() {
        let a = f32s(&[1.0, -2.0, f32::NAN], &[3]);
        let b = f32s(&[3.0, -4.0, 0.0], &[3]);
        let v = |t: Tensor| t.to_vec::<f32>().unwrap();
        assert_eq!(v(a.sub(&b))[..2], [-2.0, 2.0]);
        assert_eq!(v(a.div(&b))[..2], [(1.0f64 / 3.0) as f32, 0.5]);
        let mx = v(a.maximum(&b));
        assert_eq!(mx[..2], [3.0, -2.0]);
        assert!(mx[2].is_nan());
        let mn = v(b.minimum(&a));
        assert_eq!(mn[..2], [1.0, -4.0]);
        assert!(mn[2].is_nan());
        let p = f32s(&[2.0, 9.0], &[2]).pow(&f32s(&[10.0, 0.5], &[2]));
        assert_eq!(v(p), vec![1024.0, 3.0]);
    }

    #[test]
    fn comparisons_output_bool() {
        let a = f32s(&[1.0, 2.0, f32::NAN], &[3]);
        let b = f32s(&[2.0, 2.0, f32::NAN], &[3]);
        let v = |t: Tensor| {
            assert_eq!(t.dtype(), DType::Bool);
            t.to_vec::<bool>().unwrap()
        };
        assert_eq!(v(a.eq(&b)), vec![false, true, false]);
        assert_eq!(v(a.ne(&b)), vec![true, false, true]);
        assert_eq!(v(a.lt(&b)), vec![true, false, false]);
        assert_eq!(v(a.le(&b)), vec![true, true, false]);
        assert_eq!(v(a.gt(&b)), vec![false, false, false]);
        assert_eq!(v(a.ge(&b)), vec![false, true, false]);
        assert_eq!(v(a.lt(&b).logical_not()), vec![false, true, true]);
    }

    #[test]
    fn integer_division_truncates_and_divide_by_zero_is_zero() {
        let a = i32s(&[7, -7, 7, -7, 5]);
        let b = i32s(&[2, 2, -2, -2, 0]);
        assert_eq!(a.div(&b).to_vec::<i32>().unwrap(), vec![3, -3, -3, 3, 0]);
        assert_eq!(
            a.mul(&b).add(&a).to_vec::<i32>().unwrap(),
            vec![21, -21, -7, 7, 5]
        );
        assert_eq!(a.abs().to_vec::<i32>().unwrap(), vec![7, 7, 7, 7, 5]);
        assert_eq!(a.relu().to_vec::<i32>().unwrap(), vec![7, 0, 7, 0, 5]);
    }

    #[test]
    fn where_selects_per_element_with_broadcasting() {
        let x = f32s(&[-1.0, 2.0, -3.0, 4.0], &[2, 2]);
        let zero = f32s(&[0.0], &[1]);
        let cond = x.gt(&zero);
        let w = cond.where_cond(&x, &f32s(&[10.0, 20.0], &[2]));
        assert_eq!(w.to_vec::<f32>().unwrap(), vec![10.0, 2.0, 10.0, 4.0]);
    }

    #[test]
    fn casts_truncate_saturate_and_test_nonzero() {
        let x = f32s(&[-1.7, 1.7, 2.5, f32::NAN, 3e9, -3e9, 0.0], &[7]);
        assert_eq!(
            x.cast(DType::I32).to_vec::<i32>().unwrap(),
            vec![-1, 1, 2, 0, i32::MAX, i32::MIN, 0]
        );
        assert_eq!(
            x.cast(DType::U32).to_vec::<u32>().unwrap(),
            vec![0, 1, 2, 0, 3_000_000_000, 0, 0]
        );
        assert_eq!(
            x.cast(DType::Bool).to_vec::<bool>().unwrap(),
            vec![true, true, true, true, true, true, false]
        );
        let b = Tensor::from_vec(vec![true, false], [2], &dev()).unwrap();
        assert_eq!(b.cast(DType::F32).to_vec::<f32>().unwrap(), vec![1.0, 0.0]);
        let i = i32s(&[-3, 16_777_217]);
        assert_eq!(
            i.cast(DType::F32).to_vec::<f32>().unwrap(),
            vec![-3.0, 16_777_216.0]
        );
    }

    #[test]
    fn f16_results_are_rounded_to_f16() {
        let x = f32s(&[1.0, 1.0 / 3.0, 70000.0], &[3]).cast(DType::F16);
        let h = x.to_vec::<f16>().unwrap();
        assert_eq!(h[0], f16::ONE);
        assert_eq!(h[1], f16::from_f64(1.0 / 3.0));
        assert!(h[2].is_infinite());
        // 1 + 2^-11 is not an f16: the sum rounds (ties to even) back to 1.
        let one = Tensor::full_dtype([1], 1.0, DType::F16, &dev());
        let tiny = Tensor::full_dtype([1], 2f64.powi(-11), DType::F16, &dev());
        assert_eq!(one.add(&tiny).to_vec::<f16>().unwrap(), vec![f16::ONE]);
        // In f32 the same sum is exact.
        let s = f32s(&[1.0], &[1]).add(&f32s(&[2f32.powi(-11)], &[1]));
        assert_eq!(s.to_vec::<f32>().unwrap(), vec![1.0 + 2f32.powi(-11)]);
    }
}
