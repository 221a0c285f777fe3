//! Creating tensors: from host data, constants, ranges, identity, seeded random numbers.

use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::{KilnError, Result};
use crate::op::{HostData, Op, RandDist};
use crate::shape::{IntoShape, Shape};
use crate::tensor::Tensor;
use std::sync::Arc;

impl Tensor {
    /// A tensor holding `data` (row-major) with `shape`. Errors if the lengths differ.
    ///
    /// ```
    /// # use kiln_core::{Tensor, Device};
    /// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2], &Device::cpu()).unwrap();
    /// assert_eq!(t.dims(), &[2, 2]);
    /// ```
    pub fn from_vec<T: Element>(
        data: Vec<T>,
        shape: impl IntoShape,
        device: &Device,
    ) -> Result<Tensor> {
        Tensor::from_slice(&data, shape, device)
    }

    /// A tensor holding a copy of `data` (row-major) with `shape`. Errors if the lengths differ.
    pub fn from_slice<T: Element>(
        data: &[T],
        shape: impl IntoShape,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into_shape();
        if shape.numel() != data.len() {
            return Err(KilnError::DataLength {
                op: "Tensor::from_vec",
                expected: shape.numel(),
                shape: shape.0,
                got: data.len(),
            });
        }
        let mut bytes = Vec::with_capacity(data.len() * T::DTYPE.size_bytes());
        for &v in data {
            v.write_bytes(&mut bytes);
        }
        Ok(Tensor::from_op(
            Op::Data(Arc::new(HostData { bytes })),
            vec![],
            shape,
            T::DTYPE,
            device,
        ))
    }

    /// A tensor of `dtype` whose every element is `value` (rounded to the dtype).
    pub fn full_dtype(shape: impl IntoShape, value: f64, dtype: DType, device: &Device) -> Tensor {
        Tensor::from_op(
            Op::Full(dtype.round(value)),
            vec![],
            shape.into_shape(),
            dtype,
            device,
        )
    }
    /// An f32 tensor whose every element is `value`.
    pub fn full(shape: impl IntoShape, value: f32, device: &Device) -> Tensor {
        Tensor::full_dtype(shape, value as f64, DType::F32, device)
    }
    /// An f32 tensor of zeros.
    pub fn zeros(shape: impl IntoShape, device: &Device) -> Tensor {
        Tensor::full(shape, 0.0, device)
    }
    /// An f32 tensor of ones.
    pub fn ones(shape: impl IntoShape, device: &Device) -> Tensor {
        Tensor::full(shape, 1.0, device)
    }
    /// Zeros with this tensor's shape, dtype and device.
    pub fn zeros_like(&self) -> Tensor {
        Tensor::full_dtype(self.shape(), 0.0, self.dtype(), self.device())
    }
    /// Ones with this tensor's shape, dtype and device.
    pub fn ones_like(&self) -> Tensor {
        Tensor::full_dtype(self.shape(), 1.0, self.dtype(), self.device())
    }
    /// A scalar (shape `[]`) of this tensor's dtype and device.
    pub fn scalar_like(&self, value: f64) -> Tensor {
        Tensor::full_dtype((), value, self.dtype(), self.device())
    }

    /// 1-D f32 tensor `start, start + step, ...` up to but excluding `end` (as `torch.arange`).
    #[track_caller]
    pub fn arange(start: f32, end: f32, step: f32, device: &Device) -> Tensor {
        assert!(step != 0.0, "arange: step must not be 0");
        let n = ((end as f64 - start as f64) / step as f64).ceil().max(0.0) as usize;
        Tensor::from_op(
            Op::Arange {
                start: start as f64,
                step: step as f64,
            },
            vec![],
            Shape(vec![n]),
            DType::F32,
            device,
        )
    }
    /// 1-D i32 tensor `start, start + step, ...` up to but excluding `end`.
    #[track_caller]
    pub fn arange_i32(start: i32, end: i32, step: i32, device: &Device) -> Tensor {
        assert!(step != 0, "arange_i32: step must not be 0");
        let span = end as i64 - start as i64;
        let n = if (span > 0) == (step > 0) && span != 0 {
            ((span.abs() + step.abs() as i64 - 1) / step.abs() as i64) as usize
        } else {
            0
        };
        Tensor::from_op(
            Op::Arange {
                start: start as f64,
                step: step as f64,
            },
            vec![],
            Shape(vec![n]),
            DType::I32,
            device,
        )
    }
    /// 1-D f32 tensor of `steps` values evenly spaced from `start` to `end` inclusive.
    pub fn linspace(start: f32, end: f32, steps: usize, device: &Device) -> Tensor {
        let step = if steps > 1 {
            (end as f64 - start as f64) / (steps - 1) as f64
        } else {
            0.0
        };
        Tensor::from_op(
            Op::Arange {
                start: start as f64,
                step,
            },
            vec![],
            Shape(vec![steps]),
            DType::F32,
            device,
        )
    }
    /// The n x n f32 identity matrix.
    pub fn eye(n: usize, device: &Device) -> Tensor {
        let i = Tensor::arange_i32(0, n as i32, 1, device);
        i.unsqueeze(1).eq(&i.unsqueeze(0)).cast(DType::F32)
    }

    /// f32 values uniform on [0, 1), the same for the same seed on every device.
    pub fn rand(shape: impl IntoShape, seed: u64, device: &Device) -> Tensor {
        Tensor::from_op(
            Op::Rand {
                seed,
                dist: RandDist::Uniform,
            },
            vec![],
            shape.into_shape(),
            DType::F32,
            device,
        )
    }
    /// f32 values from the standard normal distribution, the same for the same seed on every
    /// device (to the last bits of the device's `log` and `cos`).
    pub fn randn(shape: impl IntoShape, seed: u64, device: &Device) -> Tensor {
        Tensor::from_op(
            Op::Rand {
                seed,
                dist: RandDist::Normal,
            },
            vec![],
            shape.into_shape(),
            DType::F32,
            device,
        )
    }
    /// f32 values uniform on [low, high).
    pub fn uniform(
        shape: impl IntoShape,
        low: f32,
        high: f32,
        seed: u64,
        device: &Device,
    ) -> Tensor {
        Tensor::rand(shape, seed, device)
            .mul_scalar((high - low) as f64)
            .add_scalar(low as f64)
    }
}
