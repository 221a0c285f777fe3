//! Elementwise arithmetic with NumPy broadcasting, comparisons, `where`, and casts.

use crate::dtype::DType;
use crate::op::{BinaryOp, Op, UnaryOp};
use crate::shape::Shape;
use crate::tensor::Tensor;

impl Tensor {
    #[track_caller]
    fn unary(&self, op: UnaryOp) -> Tensor {
        let float_only = !matches!(
            op,
            UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Not
        );
        assert!(
            !float_only || self.dtype().is_float(),
            "{op:?}: needs a float tensor, got {} {}",
            self.dtype(),
            self.shape()
        );
        assert!(
            (op == UnaryOp::Not) == (self.dtype() == DType::Bool),
            "{op:?}: not defined for dtype {} (shape {})",
            self.dtype(),
            self.shape()
        );
        Tensor::from_op(
            Op::Unary(op),
            vec![self.clone()],
            self.shape().clone(),
            self.dtype(),
            self.device(),
        )
    }

    #[track_caller]
    fn binary(&self, other: &Tensor, op: BinaryOp) -> Tensor {
        let name = format!("{op:?}").to_lowercase();
        let Some(shape) = Shape::broadcast(self.shape(), other.shape()) else {
            panic!(
                "{name}: shapes {} and {} do not broadcast",
                self.shape(),
                other.shape()
            );
        };
        assert!(
            self.dtype() == other.dtype(),
            "{name}: dtypes {} and {} differ (shapes {} and {}); cast one with .cast()",
            self.dtype(),
            other.dtype(),
            self.shape(),
            other.shape()
        );
        assert!(
            op != BinaryOp::Pow || self.dtype().is_float(),
            "pow: needs float tensors, got {}",
            self.dtype()
        );
        let dtype = if op.is_comparison() {
            DType::Bool
        } else {
            self.dtype()
        };
        let (a, b) = Tensor::same_device(&name, self, other);
        let (a, b) = (a.expand(&shape), b.expand(&shape));
        let device = a.device().clone();
        Tensor::from_op(Op::Binary(op), vec![a, b], shape, dtype, &device)
    }

    /// -x
    #[track_caller]
    pub fn neg(&self) -> Tensor {
        self.unary(UnaryOp::Neg)
    }
    /// |x|
    #[track_caller]
    pub fn abs(&self) -> Tensor {
        self.unary(UnaryOp::Abs)
    }
    /// e^x (float)
    #[track_caller]
    pub fn exp(&self) -> Tensor {
        self.unary(UnaryOp::Exp)
    }
    /// Natural logarithm (float).
    #[track_caller]
    pub fn log(&self) -> Tensor {
        self.unary(UnaryOp::Log)
    }
    /// Square root (float).
    #[track_caller]
    pub fn sqrt(&self) -> Tensor {
        self.unary(UnaryOp::Sqrt)
    }
    /// 1 / sqrt(x) (float).
    #[track_caller]
    pub fn rsqrt(&self) -> Tensor {
        self.unary(UnaryOp::Rsqrt)
    }
    /// 1 / x (float).
    #[track_caller]
    pub fn recip(&self) -> Tensor {
        self.unary(UnaryOp::Recip)
    }
    /// Sine (float).
    #[track_caller]
    pub fn sin(&self) -> Tensor {
        self.unary(UnaryOp::Sin)
    }
    /// Cosine (float).
    #[track_caller]
    pub fn cos(&self) -> Tensor {
        self.unary(UnaryOp::Cos)
    }
    /// Hyperbolic tangent (float).
    #[track_caller]
    pub fn tanh(&self) -> Tensor {
        self.unary(UnaryOp::Tanh)
    }
    /// 1 / (1 + e^-x) (float).
    #[track_caller]
    pub fn sigmoid(&self) -> Tensor {
        self.unary(UnaryOp::Sigmoid)
    }
    /// max(x, 0).
    #[track_caller]
    pub fn relu(&self) -> Tensor {
        self.unary(UnaryOp::Relu)
    }
    /// Rounds down (float).
    #[track_caller]
    pub fn floor(&self) -> Tensor {
        self.unary(UnaryOp::Floor)
    }
    /// Rounds up (float).
    #[track_caller]
    pub fn ceil(&self) -> Tensor {
        self.unary(UnaryOp::Ceil)
    }
    /// Rounds to nearest, ties to even (float).
    #[track_caller]
    pub fn round(&self) -> Tensor {
        self.unary(UnaryOp::Round)
    }
    /// Logical not (bool).
    #[track_caller]
    pub fn logical_not(&self) -> Tensor {
        self.unary(UnaryOp::Not)
    }

    /// a + b, broadcasting.
    #[track_caller]
    pub fn add(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Add)
    }
    /// a - b, broadcasting.
    #[track_caller]
    pub fn sub(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Sub)
    }
    /// a * b, broadcasting.
    #[track_caller]
    pub fn mul(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Mul)
    }
    /// a / b, broadcasting (integers truncate; integer division by 0 gives 0).
    #[track_caller]
    pub fn div(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Div)
    }
    /// a ^ b, broadcasting (float).
    #[track_caller]
    pub fn pow(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Pow)
    }
    /// Elementwise maximum, broadcasting.
    #[track_caller]
    pub fn maximum(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Maximum)
    }
    /// Elementwise minimum, broadcasting.
    #[track_caller]
    pub fn minimum(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Minimum)
    }
    /// a == b (bool), broadcasting.
    #[track_caller]
    pub fn eq(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Eq)
    }
    /// a != b (bool), broadcasting.
    #[track_caller]
    pub fn ne(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Ne)
    }
    /// a < b (bool), broadcasting.
    #[track_caller]
    pub fn lt(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Lt)
    }
    /// a <= b (bool), broadcasting.
    #[track_caller]
    pub fn le(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Le)
    }
    /// a > b (bool), broadcasting.
    #[track_caller]
    pub fn gt(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Gt)
    }
    /// a >= b (bool), broadcasting.
    #[track_caller]
    pub fn ge(&self, other: &Tensor) -> Tensor {
        self.binary(other, BinaryOp::Ge)
    }

    /// a + s.
    #[track_caller]
    pub fn add_scalar(&self, s: f64) -> Tensor {
        self.add(&self.scalar_like(s))
    }
    /// a - s.
    #[track_caller]
    pub fn sub_scalar(&self, s: f64) -> Tensor {
        self.sub(&self.scalar_like(s))
    }
    /// a * s.
    #[track_caller]
    pub fn mul_scalar(&self, s: f64) -> Tensor {
        self.mul(&self.scalar_like(s))
    }
    /// a / s.
    #[track_caller]
    pub fn div_scalar(&self, s: f64) -> Tensor {
        self.div(&self.scalar_like(s))
    }
    /// a ^ s (float).
    #[track_caller]
    pub fn pow_scalar(&self, s: f64) -> Tensor {
        self.pow(&self.scalar_like(s))
    }
    /// max(a, s), e.g. `clamp_min`.
    #[track_caller]
    pub fn maximum_scalar(&self, s: f64) -> Tensor {
        self.maximum(&self.scalar_like(s))
    }
    /// min(a, s).
    #[track_caller]
    pub fn minimum_scalar(&self, s: f64) -> Tensor {
        self.minimum(&self.scalar_like(s))
    }
    /// x * x.
    #[track_caller]
    pub fn square(&self) -> Tensor {
        self.mul(self)
    }

    /// `self ? a : b` elementwise; `self` is bool; all three broadcast together.
    #[track_caller]
    pub fn where_cond(&self, a: &Tensor, b: &Tensor) -> Tensor {
        assert!(
            self.dtype() == DType::Bool,
            "where: the condition must be bool, got {}",
            self.dtype()
        );
        assert!(
            a.dtype() == b.dtype(),
            "where: branches have dtypes {} and {}",
            a.dtype(),
            b.dtype()
        );
        let shape = Shape::broadcast(self.shape(), a.shape())
            .and_then(|s| Shape::broadcast(&s, b.shape()))
            .unwrap_or_else(|| {
                panic!(
                    "where: shapes {}, {} and {} do not broadcast",
                    self.shape(),
                    a.shape(),
                    b.shape()
                )
            });
        let (a, b) = Tensor::same_device("where", a, b);
        let (cond, a) = Tensor::same_device("where", self, &a);
        let (cond, b) = Tensor::same_device("where", &cond, &b);
        let inputs = vec![cond.expand(&shape), a.expand(&shape), b.expand(&shape)];
        Tensor::from_op(Op::Where, inputs, shape, a.dtype(), cond.device())
    }

    /// Converts to `dtype` (float to int truncates toward zero; to bool is `!= 0`).
    pub fn cast(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        Tensor::from_op(
            Op::Cast(dtype),
            vec![self.clone()],
            self.shape().clone(),
            dtype,
            self.device(),
        )
    }
}
