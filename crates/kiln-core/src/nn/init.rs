//! Weight initialisers, as `torch.nn.init` defines them. Each returns a seeded lazy tensor (the
//! same numbers on every device); [`Init`] names one of them for
//! [`super::ParamBuilder::param`], which draws its seed from the parameter's name.

use crate::device::Device;
use crate::tensor::Tensor;

/// How a parameter's first values are drawn: one of this module's initialisers, named for
/// [`super::ParamBuilder::param`] (which supplies the shape, the seed and the device).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Every element the same value (batch norm's weight 1 and bias 0).
    Const(f64),
    /// Uniform on `[-bound, bound)` ([`uniform`]).
    Uniform(f64),
    /// PyTorch's default for `Linear` and `Conv2d` weights ([`kaiming_uniform_default`]).
    KaimingUniformDefault,
    /// PyTorch's default bias of a layer whose weight has `fan_in` inputs per output
    /// ([`bias_default`]).
    BiasDefault {
        /// The fan-in of the layer's weight.
        fan_in: usize,
    },
    /// Kaiming (He) uniform for ReLU layers ([`kaiming_uniform`]).
    KaimingUniform,
    /// Kaiming (He) normal for ReLU layers ([`kaiming_normal`]).
    KaimingNormal,
    /// Kaiming (He) normal in fan-out mode, torchvision's ResNet convolutions
    /// ([`kaiming_normal_fan_out`]).
    KaimingNormalFanOut,
    /// Xavier (Glorot) uniform ([`xavier_uniform`]).
    XavierUniform,
    /// Xavier (Glorot) normal ([`xavier_normal`]).
    XavierNormal,
}

impl Init {
    /// The lazy f32 tensor of `shape` this scheme draws from `seed` on `device` (`Const`
    /// ignores the seed).
    pub fn tensor(self, shape: &[usize], seed: u64, device: &Device) -> Tensor {
        match self {
            Init::Const(v) => Tensor::full(shape, v as f32, device),
            Init::Uniform(bound) => uniform(shape, bound, seed, device),
            Init::KaimingUniformDefault => kaiming_uniform_default(shape, seed, device),
            Init::BiasDefault { fan_in } => {
                uniform(shape, 1.0 / (fan_in.max(1) as f64).sqrt(), seed, device)
            }
            Init::KaimingUniform => kaiming_uniform(shape, seed, device),
            Init::KaimingNormal => kaiming_normal(shape, seed, device),
            Init::KaimingNormalFanOut => kaiming_normal_fan_out(shape, seed, device),
            Init::XavierUniform => xavier_uniform(shape, seed, device),
            Init::XavierNormal => xavier_normal(shape, seed, device),
        }
    }
}

/// `(fan_in, fan_out)` of a weight: `[out, in]` for a dense layer, `[out, in, kh, kw]` for a
/// convolution (both multiplied by the receptive field `kh * kw`).
pub fn fans(shape: &[usize]) -> (usize, usize) {
    let field: usize = shape.iter().skip(2).product();
    let fan_in = shape.get(1).copied().unwrap_or(1) * field;
    let fan_out = shape.first().copied().unwrap_or(1) * field;
    (fan_in, fan_out)
}

/// Uniform on `[-bound, bound)`.
pub fn uniform(shape: &[usize], bound: f64, seed: u64, device: &Device) -> Tensor {
    Tensor::uniform(shape, -bound as f32, bound as f32, seed, device)
}

/// PyTorch's default for `Linear` and `Conv2d` weights: Kaiming-uniform with `a = sqrt(5)`,
/// i.e. uniform on `±sqrt(6 / ((1 + a²) fan_in)) = ±1 / sqrt(fan_in)`.
pub fn kaiming_uniform_default(shape: &[usize], seed: u64, device: &Device) -> Tensor {
    let (fan_in, _) = fans(shape);
    uniform(shape, 1.0 / (fan_in as f64).sqrt(), seed, device)
}

/// PyTorch's default bias: uniform on `±1 / sqrt(fan_in)` of the layer's weight.
pub fn bias_default(size: usize, fan_in: usize, seed: u64, device: &Device) -> Tensor {
    uniform(&[size], 1.0 / (fan_in.max(1) as f64).sqrt(), seed, device)
}

/// Kaiming (He) uniform for ReLU layers: `±sqrt(6 / fan_in)` (gain sqrt 2, fan-in mode).
pub fn kaiming_uniform(shape: &[usize], seed: u64, device: &Device) -> Tensor {
    let (fan_in, _) = fans(shape);
    uniform(shape, (6.0 / fan_in as f64).sqrt(), seed, device)
}

/// Kaiming (He) normal for ReLU layers: standard deviation `sqrt(2 / fan_in)`.
pub fn kaiming_normal(shape: &[usize], seed: u64, device: &Device) -> Tensor {
    let (fan_in, _) = fans(shape);
    Tensor::randn(shape, seed, device).mul_scalar((2.0 / fan_in as f64).sqrt())
}

/// Kaiming (He) normal in fan-out mode, as torchvision initialises ResNet's convolutions
/// (`kaiming_normal_(w, mode="fan_out", nonlinearity="relu")`): standard deviation
/// `sqrt(2 / fan_out)`.
pub fn kaiming_normal_fan_out(shape: &[usize], seed: u64, device: &Device) -> Tensor {
    let (_, fan_out) = fans(shape);
    Tensor::randn(shape, seed, device).mul_scalar((2.0 / fan_out as f64).sqrt())
}

/// Xavier (Glorot) uniform: `±sqrt(6 / (fan_in + fan_out))`.
pub fn xavier_uniform(shape: &[usize], seed: u64, device: &Device) -> Tensor {
    let (fan_in, fan_out) = fans(shape);
    uniform(
        shape,
        (6.0 / (fan_in + fan_out) as f64).sqrt(),
        seed,
        device,
    )
}

/// Xavier (Glorot) normal: standard deviation `sqrt(2 / (fan_in + fan_out))`.
pub fn xavier_normal(shape: &[usize], seed: u64, device: &Device) -> Tensor {
    let (fan_in, fan_out) = fans(shape);
    Tensor::randn(shape, seed, device).mul_scalar((2.0 / (fan_in + fan_out) as f64).sqrt())
}
