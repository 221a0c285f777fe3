//! AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
//! Neural Networks", 2012): torchvision's single-tower version for 224x224 images, and a small
//! AlexNet-style network for 28x28 and 32x32 images.

use crate::check_parameter;
use kiln_core::nn::{
    Activation, AdaptiveAvgPool2d, Conv2d, Dropout, Linear, LocalResponseNorm, MaxPool2d, Module,
    Sequential,
};
use kiln_core::{Conv2dOptions, Device, Pool2dOptions, Result, Tensor};

/// The overlapping max-pool of AlexNet: 3x3 windows, stride 2.
fn overlapping_pool() -> MaxPool2d {
    MaxPool2d::with(Pool2dOptions::new(3).stride(2))
}

fn conv(
    inputs: usize,
    outputs: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> impl Fn(&Device, u64) -> Conv2d {
    move |device, seed| {
        let opts = Conv2dOptions::default().stride(stride).padding(pad);
        Conv2d::new(inputs, outputs, k, opts, device, seed)
    }
}

/// AlexNet's classifier: dropout, `inputs -> hidden`, ReLU, dropout, `hidden -> hidden`, ReLU,
/// `hidden -> classes`. `seeds` are those of the five layers in order.
fn classifier(
    inputs: usize,
    hidden: usize,
    classes: usize,
    device: &Device,
    seeds: [u64; 5],
) -> Sequential {
    Sequential::new()
        .push(Dropout::new(0.5, seeds[0]))
        .push(Linear::new(inputs, hidden, device, seeds[1]))
        .push(Activation::Relu)
        .push(Dropout::new(0.5, seeds[2]))
        .push(Linear::new(hidden, hidden, device, seeds[3]))
        .push(Activation::Relu)
        .push(Linear::new(hidden, classes, device, seeds[4]))
}

/// Both networks' forward: features, adaptive average pooling, flatten, classifier.
fn forward(
    features: &Sequential,
    avgpool: &AdaptiveAvgPool2d,
    classifier: &Sequential,
    x: &Tensor,
) -> Tensor {
    let x = avgpool.forward(&features.forward(x));
    classifier.forward(&x.flatten(1, 3))
}

/// torchvision's AlexNet: `[N, C, H, W] -> [N, classes]` (224x224 in the paper; any size of at
/// least 63x63, since the features are pooled adaptively to 6x6). 61,100,840 parameters for 3
/// channels and 1000 classes, named as torchvision names them (`features.0.weight`, ..,
/// `classifier.6.bias`), PyTorch's default initialisation.
///
/// `features`: conv 11x11/4 (pad 2) to 64, ReLU, max-pool 3/2, conv 5x5 (pad 2) to 192, ReLU,
/// max-pool 3/2, conv 3x3 to 384, ReLU, conv 3x3 to 256, ReLU, conv 3x3 to 256, ReLU, max-pool
/// 3/2; adaptive average pool to 6x6; `classifier`: dropout 0.5, 9216 -> 4096, ReLU, dropout
/// 0.5, 4096 -> 4096, ReLU, 4096 -> classes.
pub struct AlexNet {
    /// The convolutional part (`features.N`).
    pub features: Sequential,
    /// Adaptive average pooling to 6x6.
    pub avgpool: AdaptiveAvgPool2d,
    /// The fully connected part (`classifier.N`).
    pub classifier: Sequential,
}

impl AlexNet {
    /// A fresh AlexNet for `in_channels`-channel images and `classes` classes; `seed` draws the
    /// weights and the dropout masks. Errors ([`kiln_core::KilnError::BufferTooLarge`]) when a
    /// weight is larger than `device` can hold in one buffer (its first classifier weight is
    /// 151 MB; the last grows with `classes`).
    pub fn new(in_channels: usize, classes: usize, device: &Device, seed: u64) -> Result<AlexNet> {
        check_parameter(device, "features.0.weight", &[64, in_channels, 11, 11])?;
        check_parameter(device, "classifier.1.weight", &[4096, 256 * 6 * 6])?;
        check_parameter(device, "classifier.6.weight", &[classes, 4096])?;
        let s = |k: u64| seed.wrapping_mul(64).wrapping_add(k);
        let features = Sequential::new()
            .push(conv(in_channels, 64, 11, 4, 2)(device, s(0)))
            .push(Activation::Relu)
            .push(overlapping_pool())
            .push(conv(64, 192, 5, 1, 2)(device, s(3)))
            .push(Activation::Relu)
            .push(overlapping_pool())
            .push(conv(192, 384, 3, 1, 1)(device, s(6)))
            .push(Activation::Relu)
            .push(conv(384, 256, 3, 1, 1)(device, s(8)))
            .push(Activation::Relu)
            .push(conv(256, 256, 3, 1, 1)(device, s(10)))
            .push(Activation::Relu)
            .push(overlapping_pool());
        let seeds = [s(20), s(21), s(23), s(24), s(26)];
        let classifier = classifier(256 * 6 * 6, 4096, classes, device, seeds);
        Ok(AlexNet {
            features,
            avgpool: AdaptiveAvgPool2d::new([6, 6]),
            classifier,
        })
    }
}

impl Module for AlexNet {
    /// `[N, C, H, W]` images -> `[N, classes]` logits.
    fn forward(&self, x: &Tensor) -> Tensor {
        forward(&self.features, &self.avgpool, &self.classifier, x)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![
            ("features".into(), &self.features),
            ("classifier".into(), &self.classifier),
        ]
    }
}

/// An AlexNet-style network for small images (28x28 digits, 32x32 CIFAR): what AlexNet changed
/// from LeNet, at that scale. A large first kernel with a stride, many more channels, ReLU,
/// overlapping max-pooling (3x3, stride 2), optionally local response normalisation after the
/// first two convolutions (size 5, alpha 1e-4, beta 0.75, k 2, as the paper), and dropout in a
/// three-layer classifier. Widths are those of one of the paper's two GPU towers (48, 128, 192,
/// 192, 128). `[N, C, 28, 28]` or `[N, C, 32, 32] -> [N, classes]` (larger images work too:
/// the features are pooled adaptively to 2x2).
///
/// `features`: conv 5x5/2 (pad 2) to 48, ReLU, (LRN), max-pool 3/2, conv 3x3 (pad 1) to 128,
/// ReLU, (LRN), max-pool 3/2, conv 3x3 to 192, ReLU, conv 3x3 to 192, ReLU, conv 3x3 to 128,
/// ReLU; adaptive average pool to 2x2; `classifier`: dropout 0.5, 512 -> 512, ReLU, dropout
/// 0.5, 512 -> 512, ReLU, 512 -> classes. 1,361,770 parameters for 1 channel and 10 classes.
pub struct SmallAlexNet {
    /// The convolutional part (`features.N`).
    pub features: Sequential,
    /// Adaptive average pooling to 2x2.
    pub avgpool: AdaptiveAvgPool2d,
    /// The fully connected part (`classifier.N`).
    pub classifier: Sequential,
}

impl SmallAlexNet {
    /// A fresh network for `in_channels`-channel images and `classes` classes, with local
    /// response normalisation if `lrn`; `seed` draws the weights and the dropout masks.
    pub fn new(
        in_channels: usize,
        classes: usize,
        lrn: bool,
        device: &Device,
        seed: u64,
    ) -> Result<SmallAlexNet> {
        check_parameter(device, "features.0.weight", &[48, in_channels, 5, 5])?;
        check_parameter(device, "classifier.6.weight", &[classes, 512])?;
        let s = |k: u64| seed.wrapping_mul(64).wrapping_add(k);
        let norm = || LocalResponseNorm::with(5, 1e-4, 0.75, 2.0);
        let mut features = Sequential::new()
            .push(conv(in_channels, 48, 5, 2, 2)(device, s(0)))
            .push(Activation::Relu);
        if lrn {
            features = features.push(norm());
        }
        features = features
            .push(overlapping_pool())
            .push(conv(48, 128, 3, 1, 1)(device, s(1)))
            .push(Activation::Relu);
        if lrn {
            features = features.push(norm());
        }
        features = features
            .push(overlapping_pool())
            .push(conv(128, 192, 3, 1, 1)(device, s(2)))
            .push(Activation::Relu)
            .push(conv(192, 192, 3, 1, 1)(device, s(3)))
            .push(Activation::Relu)
            .push(conv(192, 128, 3, 1, 1)(device, s(4)))
            .push(Activation::Relu);
        let seeds = [s(5), s(6), s(7), s(8), s(9)];
        let classifier = classifier(128 * 2 * 2, 512, classes, device, seeds);
        Ok(SmallAlexNet {
            features,
            avgpool: AdaptiveAvgPool2d::new([2, 2]),
            classifier,
        })
    }
}

impl Module for SmallAlexNet {
    /// `[N, C, H, W]` images -> `[N, classes]` logits.
    fn forward(&self, x: &Tensor) -> Tensor {
        forward(&self.features, &self.avgpool, &self.classifier, x)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![
            ("features".into(), &self.features),
            ("classifier".into(), &self.classifier),
        ]
    }
}
