//! ResNet (He et al., "Deep Residual Learning for Image Recognition", 2016): torchvision's
//! ImageNet networks (ResNet-18/34/50/101/152, same names, shapes and `state_dict` order, so
//! torchvision's weights load) and the paper's CIFAR-10 networks (ResNet-20/32/56).

use crate::blocks::{conv, BasicBlock, Bottleneck, ShortcutKind};
use crate::{check_parameter, check_same_device, FineTune};
use kiln_core::export::{GraphBuilder, ValueId};
use kiln_core::nn::AdaptiveAvgPool2d;
use kiln_core::nn::{BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, ParamBuilder, Sequential};
use kiln_core::{Pool2dOptions, Result, Tensor};

/// Which residual block a network is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convolutions ([`BasicBlock`]).
    Basic,
    /// 1x1, 3x3, 1x1 with four times the channels out ([`Bottleneck`]).
    Bottleneck,
}

impl BlockKind {
    /// Output channels of a block per `planes`.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => BasicBlock::EXPANSION,
            BlockKind::Bottleneck => Bottleneck::EXPANSION,
        }
    }
}

/// A residual network: a stem, stages of residual blocks (`layer1`, `layer2`, ..), global
/// average pooling and a linear classifier. `[N, in_channels, H, W] -> [N, classes]` logits for
/// any `H, W` the strides leave at least one pixel of (the pooling is adaptive).
///
/// ```
/// # use kiln_core::{Device, Tensor, nn::{Module, ParamBuilder}};
/// # use kiln_models::ResNet;
/// let net = ResNet::resnet20(1, 10, &ParamBuilder::new(&Device::cpu(), 0)).unwrap();
/// assert_eq!(net.num_parameters(), 269_722 - 16 * 9 * 2); // one input channel instead of three
/// let logits = net.forward(&Tensor::zeros([2, 1, 28, 28], &Device::cpu()));
/// assert_eq!(logits.dims(), &[2, 10]);
/// ```
pub struct ResNet {
    /// The stem's convolution: 7x7 stride 2 to 64 channels (ImageNet) or 3x3 to 16 (CIFAR).
    pub conv1: Conv2d,
    /// After `conv1`.
    pub bn1: BatchNorm2d,
    /// The ImageNet stem's 3x3 stride-2 max-pool (none in the CIFAR networks).
    pub maxpool: Option<MaxPool2d>,
    /// The stages, `layer1`, `layer2`, ..: each a chain of blocks, the first of which changes
    /// the resolution (stride 2, except in `layer1`) and the width.
    pub layers: Vec<Sequential>,
    /// The classifier on the pooled features.
    pub fc: Linear,
}

impl ResNet {
    /// torchvision's ImageNet ResNet with `blocks[i]` blocks in stage i (widths 64, 128, 256,
    /// 512 times the block's expansion): stem 7x7/2 conv, BN, ReLU, 3x3/2 max-pool; projection
    /// shortcuts where the shape changes; convolutions initialised Kaiming-normal (fan-out),
    /// batch norms to the identity, the classifier as PyTorch's `Linear`; `pb` draws the
    /// weights. Errors ([`kiln_core::KilnError::BufferTooLarge`]) when a weight (the stem's,
    /// which grows with `in_channels`, or the classifier's, which grows with `classes`) is larger
    /// than `pb`'s device can hold; nothing is allocated then.
    pub fn imagenet(
        block: BlockKind,
        blocks: [usize; 4],
        in_channels: usize,
        classes: usize,
        pb: &ParamBuilder,
    ) -> Result<ResNet> {
        check_parameter(pb, "conv1.weight", &[64, in_channels, 7, 7])?;
        check_parameter(pb, "fc.weight", &[classes, 512 * block.expansion()])?;
        let conv1 = conv(in_channels, 64, 7, 2, &pb.pp("conv1"));
        let stages = Stages {
            block,
            planes: &[64, 128, 256, 512],
            blocks: &blocks,
            shortcut: ShortcutKind::Projection,
        };
        let (layers, width) = stages.build(64, pb);
        Ok(ResNet {
            conv1,
            bn1: BatchNorm2d::new(64, &pb.pp("bn1")),
            maxpool: Some(MaxPool2d::with(Pool2dOptions::new(3).stride(2).padding(1))),
            layers,
            fc: Linear::new(width, classes, &pb.pp("fc")),
        })
    }

    /// ResNet-18: basic blocks [2, 2, 2, 2]; 11,689,512 parameters for 3 channels and 1000
    /// classes.
    pub fn resnet18(in_channels: usize, classes: usize, pb: &ParamBuilder) -> Result<ResNet> {
        let b = BlockKind::Basic;
        ResNet::imagenet(b, [2, 2, 2, 2], in_channels, classes, pb)
    }
    /// ResNet-34: basic blocks [3, 4, 6, 3]; 21,797,672 parameters for 3 channels and 1000
    /// classes.
    pub fn resnet34(in_channels: usize, classes: usize, pb: &ParamBuilder) -> Result<ResNet> {
        let b = BlockKind::Basic;
        ResNet::imagenet(b, [3, 4, 6, 3], in_channels, classes, pb)
    }
    /// ResNet-50: bottlenecks [3, 4, 6, 3]; 25,557,032 parameters for 3 channels and 1000
    /// classes.
    pub fn resnet50(in_channels: usize, classes: usize, pb: &ParamBuilder) -> Result<ResNet> {
        let b = BlockKind::Bottleneck;
        ResNet::imagenet(b, [3, 4, 6, 3], in_channels, classes, pb)
    }
    /// ResNet-101: bottlenecks [3, 4, 23, 3]; 44,549,160 parameters for 3 channels and 1000
    /// classes.
    pub fn resnet101(in_channels: usize, classes: usize, pb: &ParamBuilder) -> Result<ResNet> {
        let b = BlockKind::Bottleneck;
        ResNet::imagenet(b, [3, 4, 23, 3], in_channels, classes, pb)
    }
    /// ResNet-152: bottlenecks [3, 8, 36, 3]; 60,192,808 parameters for 3 channels and 1000
    /// classes.
    pub fn resnet152(in_channels: usize, classes: usize, pb: &ParamBuilder) -> Result<ResNet> {
        let b = BlockKind::Bottleneck;
        ResNet::imagenet(b, [3, 8, 36, 3], in_channels, classes, pb)
    }

    /// The paper's CIFAR-10 ResNet of depth `6 n + 2`: a 3x3 convolution to 16 channels, BN,
    /// ReLU (no max-pool), three stages of `n` basic blocks with 16, 32 and 64 channels (the
    /// last two starting with stride 2), global average pooling and a linear classifier.
    /// `shortcut` chooses option A (zero padding, no parameters, as the paper) or B
    /// (projections) where the shape changes. Names as torchvision's (`conv1`, `bn1`,
    /// `layer1.0.conv1`, .., `fc`). Errors as [`ResNet::imagenet`] does.
    pub fn cifar(
        n: usize,
        in_channels: usize,
        classes: usize,
        shortcut: ShortcutKind,
        pb: &ParamBuilder,
    ) -> Result<ResNet> {
        check_parameter(pb, "conv1.weight", &[16, in_channels, 3, 3])?;
        check_parameter(pb, "fc.weight", &[classes, 64])?;
        let conv1 = conv(in_channels, 16, 3, 1, &pb.pp("conv1"));
        let stages = Stages {
            block: BlockKind::Basic,
            planes: &[16, 32, 64],
            blocks: &[n; 3],
            shortcut,
        };
        let (layers, width) = stages.build(16, pb);
        Ok(ResNet {
            conv1,
            bn1: BatchNorm2d::new(16, &pb.pp("bn1")),
            maxpool: None,
            layers,
            fc: Linear::new(width, classes, &pb.pp("fc")),
        })
    }

    /// ResNet-20 (3 blocks per stage) with option A shortcuts; 269,722 parameters for 3 channels
    /// and 10 classes.
    pub fn resnet20(in_channels: usize, classes: usize, pb: &ParamBuilder) -> Result<ResNet> {
        ResNet::cifar(3, in_channels, classes, ShortcutKind::ZeroPad, pb)
    }
    /// ResNet-32 (5 blocks per stage) with option A shortcuts.
    pub fn resnet32(in_channels: usize, classes: usize, pb: &ParamBuilder) -> Result<ResNet> {
        ResNet::cifar(5, in_channels, classes, ShortcutKind::ZeroPad, pb)
    }
    /// ResNet-56 (9 blocks per stage) with option A shortcuts.
    pub fn resnet56(in_channels: usize, classes: usize, pb: &ParamBuilder) -> Result<ResNet> {
        ResNet::cifar(9, in_channels, classes, ShortcutKind::ZeroPad, pb)
    }

    /// Replaces the classifier `fc` with a new layer from the pooled features to `classes`,
    /// drawn by `pb` (the model's builder: the values of the same network built for `classes`
    /// classes), as torchvision's recipe sets `model.fc = nn.Linear(512, classes)`. Errors as
    /// [`FineTune::replace_head`] says.
    pub fn replace_head(&mut self, classes: usize, pb: &ParamBuilder) -> Result<()> {
        let width = self.fc.weight.dims()[1];
        check_same_device(pb, &self.fc.weight)?;
        check_parameter(pb, "fc.weight", &[classes, width])?;
        self.fc = Linear::new(width, classes, &pb.pp("fc"));
        Ok(())
    }
}

impl FineTune for ResNet {
    fn head_name(&self) -> &'static str {
        "fc"
    }
    fn classes(&self) -> usize {
        self.fc.weight.dims()[0]
    }
    fn replace_head(&mut self, classes: usize, pb: &ParamBuilder) -> Result<()> {
        ResNet::replace_head(self, classes, pb)
    }
}

/// The stages of a residual network: stage i (`layer{i + 1}`) has `blocks[i]` blocks of kind
/// `block` with `planes[i]` planes; every stage but the first starts with stride 2; `shortcut`
/// where a block changes the shape.
struct Stages<'a> {
    block: BlockKind,
    planes: &'a [usize],
    blocks: &'a [usize],
    shortcut: ShortcutKind,
}

impl Stages<'_> {
    /// The stages from `inputs` channels, named `layer1`, `layer2`, .. under `pb`'s prefix,
    /// and their output width.
    fn build(&self, inputs: usize, pb: &ParamBuilder) -> (Vec<Sequential>, usize) {
        let mut width = inputs;
        let mut layers = vec![];
        for (i, (&planes, &n)) in self.planes.iter().zip(self.blocks).enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            let stage_pb = pb.pp(format!("layer{}", i + 1));
            layers.push(self.stage(width, planes, n, stride, &stage_pb));
            width = planes * self.block.expansion();
        }
        (layers, width)
    }

    /// One stage: `n` blocks from `inputs` channels to `planes * expansion`, the first with
    /// `stride`, named `0`, `1`, .. under `pb`'s prefix.
    fn stage(
        &self,
        inputs: usize,
        planes: usize,
        n: usize,
        stride: usize,
        pb: &ParamBuilder,
    ) -> Sequential {
        let out = planes * self.block.expansion();
        let mut layer = Sequential::new();
        for i in 0..n {
            let (from, s) = if i == 0 { (inputs, stride) } else { (out, 1) };
            let (shortcut, pb) = (self.shortcut, &pb.pp(i));
            layer = match self.block {
                BlockKind::Basic => layer.push(BasicBlock::new(from, planes, s, shortcut, pb)),
                BlockKind::Bottleneck => layer.push(Bottleneck::new(from, planes, s, shortcut, pb)),
            };
        }
        layer
    }
}

impl Module for ResNet {
    /// `[N, C, H, W]` images -> `[N, classes]` logits.
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.bn1.forward(&self.conv1.forward(x)).relu();
        let x = match &self.maxpool {
            Some(pool) => pool.forward(&x),
            None => x,
        };
        let x = self.layers.iter().fold(x, |x, stage| stage.forward(&x));
        let x = x.adaptive_avg_pool2d([1, 1]).flatten(1, 3);
        self.fc.forward(&x)
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        let x = g.child("conv1", &self.conv1, x)?;
        let x = g.child("bn1", &self.bn1, x)?;
        let mut x = g.unary("Relu", x);
        if let Some(pool) = &self.maxpool {
            x = g.child("maxpool", pool, x)?;
        }
        for (i, stage) in self.layers.iter().enumerate() {
            x = g.child(&format!("layer{}", i + 1), stage, x)?;
        }
        let x = g.child("avgpool", &AdaptiveAvgPool2d::new([1, 1]), x)?;
        let x = g.flatten(x);
        g.child("fc", &self.fc, x)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        let mut v: Vec<(String, &dyn Module)> =
            vec![("conv1".into(), &self.conv1), ("bn1".into(), &self.bn1)];
        for (i, stage) in self.layers.iter().enumerate() {
            v.push((format!("layer{}", i + 1), stage));
        }
        v.push(("fc".into(), &self.fc));
        v
    }
}
