//! Weight initialisers, as `torch.nn.init` defines them. Each returns a seeded lazy tensor (the
//! same numbers on every device); layers wrap it with [`super::parameter`].

use crate::device::Device;
use crate::tensor::Tensor;

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
