//! ResNet (He et al., "Deep Residual Learning for Image Recognition", 2016): torchvision's
//! ImageNet networks (ResNet-18/34/50/101/152, same names, shapes and `state_dict` order, so
//! torchvision's weights load) and the paper's CIFAR-10 networks (ResNet-20/32/56).

use crate::blocks::{conv, BasicBlock, Bottleneck, ShortcutKind};
use crate::check_parameter;
use kiln_core::nn::{BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, Sequential};
use kiln_core::{Device, Pool2dOptions, Result, Tensor};

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
/// # use kiln_core::{Device, Tensor, nn::Module};
/// # use kiln_models::ResNet;
/// let net = ResNet::resnet20(1, 10, &Device::cpu(), 0).unwrap();
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

/// Seeds for the layers of one network, drawn in order from the network's seed.
struct Seeds(u64);

impl Seeds {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.0
    }
}

impl ResNet {
    /// torchvision's ImageNet ResNet with `blocks[i]` blocks in stage i (widths 64, 128, 256,
    /// 512 times the block's expansion): stem 7x7/2 conv, BN, ReLU, 3x3/2 max-pool; projection
    /// shortcuts where the shape changes; convolutions initialised Kaiming-normal (fan-out),
    /// batch norms to the identity, the classifier as PyTorch's `Linear`. Errors
    /// ([`kiln_core::KilnError::BufferTooLarge`]) when a weight (the stem's, which grows with
    /// `in_channels`, or the classifier's, which grows with `classes`) is larger than `device`
    /// can hold; nothing is allocated then.
    pub fn imagenet(
        block: BlockKind,
        blocks: [usize; 4],
        in_channels: usize,
        classes: usize,
        device: &Device,
        seed: u64,
    ) -> Result<ResNet> {
        check_parameter(device, "conv1.weight", &[64, in_channels, 7, 7])?;
        check_parameter(device, "fc.weight", &[classes, 512 * block.expansion()])?;
        let mut seeds = Seeds(seed);
        let conv1 = conv(in_channels, 64, 7, 2, device, seeds.next());
        let mut width = 64;
        let mut layers = vec![];
        for (i, (&n, planes)) in blocks.iter().zip([64, 128, 256, 512]).enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            let (stage, out) = stage(
                block,
                width,
                planes,
                n,
                stride,
                ShortcutKind::Projection,
                device,
                &mut seeds,
            );
            layers.push(stage);
            width = out;
        }
        Ok(ResNet {
            conv1,
            bn1: BatchNorm2d::new(64, device),
            maxpool: Some(MaxPool2d::with(Pool2dOptions::new(3).stride(2).padding(1))),
            layers,
            fc: Linear::new(width, classes, device, seeds.next()),
        })
    }

    /// ResNet-18: basic blocks [2, 2, 2, 2]; 11,689,512 parameters for 3 channels and 1000
    /// classes.
    pub fn resnet18(
        in_channels: usize,
        classes: usize,
        device: &Device,
        seed: u64,
    ) -> Result<ResNet> {
        ResNet::imagenet(
            BlockKind::Basic,
            [2, 2, 2, 2],
            in_channels,
            classes,
            device,
            seed,
        )
    }
    /// ResNet-34: basic blocks [3, 4, 6, 3]; 21,797,672 parameters for 3 channels and 1000
    /// classes.
    pub fn resnet34(
        in_channels: usize,
        classes: usize,
        device: &Device,
        seed: u64,
    ) -> Result<ResNet> {
        ResNet::imagenet(
            BlockKind::Basic,
            [3, 4, 6, 3],
            in_channels,
            classes,
            device,
            seed,
        )
    }
    /// ResNet-50: bottlenecks [3, 4, 6, 3]; 25,557,032 parameters for 3 channels and 1000
    /// classes.
    pub fn resnet50(
        in_channels: usize,
        classes: usize,
        device: &Device,
        seed: u64,
    ) -> Result<ResNet> {
        let b = BlockKind::Bottleneck;
        ResNet::imagenet(b, [3, 4, 6, 3], in_channels, classes, device, seed)
    }
    /// ResNet-101: bottlenecks [3, 4, 23, 3]; 44,549,160 parameters for 3 channels and 1000
    /// classes.
    pub fn resnet101(
        in_channels: usize,
        classes: usize,
        device: &Device,
        seed: u64,
    ) -> Result<ResNet> {
        let b = BlockKind::Bottleneck;
        ResNet::imagenet(b, [3, 4, 23, 3], in_channels, classes, device, seed)
    }
    /// ResNet-152: bottlenecks [3, 8, 36, 3]; 60,192,808 parameters for 3 channels and 1000
    /// classes.
    pub fn resnet152(
        in_channels: usize,
        classes: usize,
        device: &Device,
        seed: u64,
    ) -> Result<ResNet> {
        let b = BlockKind::Bottleneck;
        ResNet::imagenet(b, [3, 8, 36, 3], in_channels, classes, device, seed)
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
        device: &Device,
        seed: u64,
    ) -> Result<ResNet> {
        check_parameter(device, "conv1.weight", &[16, in_channels, 3, 3])?;
        check_parameter(device, "fc.weight", &[classes, 64])?;
        let mut seeds = Seeds(seed);
        let conv1 = conv(in_channels, 16, 3, 1, device, seeds.next());
        let mut width = 16;
        let mut layers = vec![];
        for (i, planes) in [16, 32, 64].into_iter().enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            let b = BlockKind::Basic;
            let (s, out) = stage(b, width, planes, n, stride, shortcut, device, &mut seeds);
            layers.push(s);
            width = out;
        }
        Ok(ResNet {
            conv1,
            bn1: BatchNorm2d::new(16, device),
            maxpool: None,
            layers,
            fc: Linear::new(width, classes, device, seeds.next()),
        })
    }

    /// ResNet-20 (3 blocks per stage) with option A shortcuts; 269,722 parameters for 3 channels
    /// and 10 classes.
    pub fn resnet20(
        in_channels: usize,
        classes: usize,
        device: &Device,
        seed: u64,
    ) -> Result<ResNet> {
        ResNet::cifar(3, in_channels, classes, ShortcutKind::ZeroPad, device, seed)
    }
    /// ResNet-32 (5 blocks per stage) with option A shortcuts.
    pub fn resnet32(
        in_channels: usize,
        classes: usize,
        device: &Device,
        seed: u64,
    ) -> Result<ResNet> {
        ResNet::cifar(5, in_channels, classes, ShortcutKind::ZeroPad, device, seed)
    }
    /// ResNet-56 (9 blocks per stage) with option A shortcuts.
    pub fn resnet56(
        in_channels: usize,
        classes: usize,
        device: &Device,
        seed: u64,
    ) -> Result<ResNet> {
        ResNet::cifar(9, in_channels, classes, ShortcutKind::ZeroPad, device, seed)
    }
}

/// One stage: `n` blocks from `inputs` channels to `planes * expansion`, the first with
/// `stride`. Returns the stage and its output width.
#[allow(clippy::too_many_arguments)]
fn stage(
    block: BlockKind,
    inputs: usize,
    planes: usize,
    n: usize,
    stride: usize,
    shortcut: ShortcutKind,
    device: &Device,
    seeds: &mut Seeds,
) -> (Sequential, usize) {
    let out = planes * block.expansion();
    let mut layer = Sequential::new();
    for i in 0..n {
        let (from, s) = if i == 0 { (inputs, stride) } else { (out, 1) };
        let seed = seeds.next();
        layer = match block {
            BlockKind::Basic => {
                layer.push(BasicBlock::new(from, planes, s, shortcut, device, seed))
            }
            BlockKind::Bottleneck => {
                layer.push(Bottleneck::new(from, planes, s, shortcut, device, seed))
            }
        };
    }
    (layer, out)
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
