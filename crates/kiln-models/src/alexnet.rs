//! AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
//! Neural Networks", 2012): torchvision's single-tower version for 224x224 images, and a small
//! AlexNet-style network for 28x28 and 32x32 images.

use crate::{check_parameter, check_same_device, FineTune};
use kiln_core::export::{GraphBuilder, ValueId};
use kiln_core::nn::{
    Activation, AdaptiveAvgPool2d, Conv2d, Dropout, Linear, LocalResponseNorm, MaxPool2d, Module,
    ParamBuilder, Sequential,
};
use kiln_core::{Conv2dOptions, Pool2dOptions, Result, Tensor};

/// The overlapping max-pool of AlexNet: 3x3 windows, stride 2.
fn overlapping_pool() -> MaxPool2d {
    MaxPool2d::with(Pool2dOptions::new(3).stride(2))
}

/// A `k x k` convolution with `stride` and padding `pad`, at `pb`'s prefix.
fn conv(
    inputs: usize,
    outputs: usize,
    k: usize,
    (stride, pad): (usize, usize),
    pb: &ParamBuilder,
) -> Conv2d {
    let opts = Conv2dOptions::default().stride(stride).padding(pad);
    Conv2d::new(inputs, outputs, k, opts, pb)
}

/// The features: `convs` (`(outputs, k, stride, padding)` each), each followed by a ReLU; after
/// the first two, LRN if `lrn` and an overlapping max-pool; after the last, a max-pool if
/// `last_pool`. Layers are named by position, as in torchvision's `nn.Sequential`.
fn features(
    in_channels: usize,
    convs: &[(usize, usize, usize, usize)],
    lrn: bool,
    last_pool: bool,
    pb: &ParamBuilder,
) -> Sequential {
    let mut features = Sequential::new();
    let mut inputs = in_channels;
    for (i, &(outputs, k, stride, pad)) in convs.iter().enumerate() {
        let name = features.len();
        features = features
            .push(conv(inputs, outputs, k, (stride, pad), &pb.pp(name)))
            .push(Activation::Relu);
        if i < 2 {
            if lrn {
                features = features.push(LocalResponseNorm::with(5, 1e-4, 0.75, 2.0));
            }
            features = features.push(overlapping_pool());
        }
        inputs = outputs;
    }
    if last_pool {
        features = features.push(overlapping_pool());
    }
    features
}

/// AlexNet's classifier: dropout, `inputs -> hidden`, ReLU, dropout, `hidden -> hidden`, ReLU,
/// `hidden -> classes` (`classifier.0` .. `classifier.6`); the dropout masks' seeds are those of
/// their names too.
fn classifier(inputs: usize, hidden: usize, classes: usize, pb: &ParamBuilder) -> Sequential {
    Sequential::new()
        .push(Dropout::new(0.5, pb.seed_for("0")))
        .push(Linear::new(inputs, hidden, &pb.pp(1)))
        .push(Activation::Relu)
        .push(Dropout::new(0.5, pb.seed_for("3")))
        .push(Linear::new(hidden, hidden, &pb.pp(4)))
        .push(Activation::Relu)
        .push(Linear::new(hidden, classes, &pb.pp(6)))
}

/// AlexNet: convolutional `features`, adaptive average pooling and a fully connected
/// `classifier`, `[N, C, H, W] -> [N, classes]`, with parameters named as torchvision names them
/// (`features.0.weight`, .., `classifier.6.bias`) and PyTorch's default initialisation. Two
/// constructors: [`AlexNet::new`], torchvision's network, and [`AlexNet::small`], an
/// AlexNet-style network for 28x28 and 32x32 images.
///
/// [`AlexNet::new`]: 224x224 images in the paper; any size of at least 63x63, since the features
/// are pooled adaptively to 6x6. 61,100,840 parameters for 3 channels and 1000 classes.
/// `features`: conv 11x11/4 (pad 2) to 64, ReLU, max-pool 3/2, conv 5x5 (pad 2) to 192, ReLU,
/// max-pool 3/2, conv 3x3 to 384, ReLU, conv 3x3 to 256, ReLU, conv 3x3 to 256, ReLU, max-pool
/// 3/2; adaptive average pool to 6x6; `classifier`: dropout 0.5, 9216 -> 4096, ReLU, dropout
/// 0.5, 4096 -> 4096, ReLU, 4096 -> classes.
pub struct AlexNet {
    /// The convolutional part (`features.N`).
    pub features: Sequential,
    /// Adaptive average pooling (to 6x6, or 2x2 in the small network).
    pub avgpool: AdaptiveAvgPool2d,
    /// The fully connected part (`classifier.N`).
    pub classifier: Sequential,
}

impl AlexNet {
    /// torchvision's AlexNet for `in_channels`-channel images and `classes` classes; `pb` draws
    /// the weights and the dropout masks' seeds. Errors
    /// ([`kiln_core::KilnError::BufferTooLarge`]) when a weight is larger than `pb`'s device can
    /// hold in one buffer (its first classifier weight is 151 MB; the last grows with
    /// `classes`).
    pub fn new(in_channels: usize, classes: usize, pb: &ParamBuilder) -> Result<AlexNet> {
        check_parameter(pb, "features.0.weight", &[64, in_channels, 11, 11])?;
        check_parameter(pb, "classifier.1.weight", &[4096, 256 * 6 * 6])?;
        check_parameter(pb, "classifier.6.weight", &[classes, 4096])?;
        let convs = [
            (64, 11, 4, 2),
            (192, 5, 1, 2),
            (384, 3, 1, 1),
            (256, 3, 1, 1),
            (256, 3, 1, 1),
        ];
        Ok(AlexNet {
            features: features(in_channels, &convs, false, true, &pb.pp("features")),
            avgpool: AdaptiveAvgPool2d::new([6, 6]),
            classifier: classifier(256 * 6 * 6, 4096, classes, &pb.pp("classifier")),
        })
    }

    /// An AlexNet-style network for small images (28x28 digits, 32x32 CIFAR): what AlexNet
    /// changed from LeNet, at that scale. A large first kernel with a stride, many more
    /// channels, ReLU, overlapping max-pooling (3x3, stride 2), local response normalisation
    /// after the first two convolutions if `lrn` (size 5, alpha 1e-4, beta 0.75, k 2, as the
    /// paper), and dropout in a three-layer classifier. Widths are those of one of the paper's
    /// two GPU towers (48, 128, 192, 192, 128). `[N, C, 28, 28]` or `[N, C, 32, 32] ->
    /// [N, classes]` (larger images work too: the features are pooled adaptively to 2x2).
    ///
    /// `features`: conv 5x5/2 (pad 2) to 48, ReLU, (LRN), max-pool 3/2, conv 3x3 (pad 1) to 128,
    /// ReLU, (LRN), max-pool 3/2, conv 3x3 to 192, ReLU, conv 3x3 to 192, ReLU, conv 3x3 to 128,
    /// ReLU; adaptive average pool to 2x2; `classifier`: dropout 0.5, 512 -> 512, ReLU, dropout
    /// 0.5, 512 -> 512, ReLU, 512 -> classes. 1,361,770 parameters for 1 channel and 10
    /// classes. Errors as [`AlexNet::new`] does.
    ///
    /// ```
    /// # use kiln_core::{Device, nn::{Module, ParamBuilder}};
    /// let pb = ParamBuilder::new(&Device::cpu(), 0);
    /// let net = kiln_models::AlexNet::small(1, 10, false, &pb).unwrap();
    /// assert_eq!(net.num_parameters(), 1_361_770);
    /// ```
    pub fn small(
        in_channels: usize,
        classes: usize,
        lrn: bool,
        pb: &ParamBuilder,
    ) -> Result<AlexNet> {
        check_parameter(pb, "features.0.weight", &[48, in_channels, 5, 5])?;
        check_parameter(pb, "classifier.6.weight", &[classes, 512])?;
        let convs = [
            (48, 5, 2, 2),
            (128, 3, 1, 1),
            (192, 3, 1, 1),
            (192, 3, 1, 1),
            (128, 3, 1, 1),
        ];
        Ok(AlexNet {
            features: features(in_channels, &convs, lrn, false, &pb.pp("features")),
            avgpool: AdaptiveAvgPool2d::new([2, 2]),
            classifier: classifier(128 * 2 * 2, 512, classes, &pb.pp("classifier")),
        })
    }

    /// The classifier's last layer, `classifier.6`: its weight `[classes, hidden]`.
    fn head_weight(&self) -> Tensor {
        let named = self.classifier.named_parameters();
        let (_, w) = named
            .into_iter()
            .find(|(n, _)| n == "6.weight")
            .expect("AlexNet's classifier ends with the linear layer 6");
        w
    }

    /// Replaces the classifier's last layer `classifier.6` with a new `hidden -> classes` layer
    /// drawn by `pb` (the model's builder: the values of the same network built for `classes`
    /// classes), as `model.classifier[6] = nn.Linear(4096, classes)` does in PyTorch. Errors as
    /// [`FineTune::replace_head`] says.
    pub fn replace_head(&mut self, classes: usize, pb: &ParamBuilder) -> Result<()> {
        let old = self.head_weight();
        let hidden = old.dims()[1];
        check_same_device(pb, &old)?;
        check_parameter(pb, "classifier.6.weight", &[classes, hidden])?;
        let head = Linear::new(hidden, classes, &pb.pp("classifier").pp(6));
        self.classifier.replace("6", head);
        Ok(())
    }
}

impl FineTune for AlexNet {
    fn head_name(&self) -> &'static str {
        "classifier.6"
    }
    fn classes(&self) -> usize {
        self.head_weight().dims()[0]
    }
    fn replace_head(&mut self, classes: usize, pb: &ParamBuilder) -> Result<()> {
        AlexNet::replace_head(self, classes, pb)
    }
}

impl Module for AlexNet {
    /// `[N, C, H, W]` images -> `[N, classes]` logits: features, adaptive average pooling,
    /// flatten, classifier.
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.avgpool.forward(&self.features.forward(x));
        self.classifier.forward(&x.flatten(1, 3))
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        let x = g.child("features", &self.features, x)?;
        let x = g.child("avgpool", &self.avgpool, x)?;
        let x = g.flatten(x);
        g.child("classifier", &self.classifier, x)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![
            ("features".into(), &self.features),
            ("classifier".into(), &self.classifier),
        ]
    }
}
