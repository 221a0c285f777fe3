//! The residual blocks of ResNet (He et al., 2016): the two-convolution `BasicBlock`, the
//! 1x1-3x3-1x1 `Bottleneck`, and the shortcuts that match a block's input to its output when the
//! shape changes. Names follow torchvision (`conv1`, `bn1`, .., `downsample.0`, `downsample.1`).

use kiln_core::export::{GraphBuilder, ValueId};
use kiln_core::nn::{BatchNorm2d, Conv2d, Init, Module, ParamBuilder};
use kiln_core::{Conv2dOptions, Result, Tensor};

/// A convolution without a bias, initialised as torchvision initialises ResNet's
/// (Kaiming normal, fan-out mode): `k x k`, `stride`, padding `k / 2`; its `weight` under `pb`'s
/// prefix.
pub(crate) fn conv(
    inputs: usize,
    outputs: usize,
    k: usize,
    stride: usize,
    pb: &ParamBuilder,
) -> Conv2d {
    let shape = [outputs, inputs, k, k];
    Conv2d {
        weight: pb.param("weight", &shape, Init::KaimingNormalFanOut),
        bias: None,
        options: Conv2dOptions::default().stride(stride).padding(k / 2),
    }
}

/// How a block's input reaches its output when the residual branch changes the shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortcutKind {
    /// Option A of the paper (its CIFAR-10 networks): no parameters; the input is subsampled by
    /// the stride (`x[:, :, ::s, ::s]`) and zero channels are added on both sides.
    ZeroPad,
    /// Option B: a projection, a strided 1x1 convolution and a batch norm (torchvision's
    /// `downsample`).
    Projection,
}

/// The shortcut of a residual block: `[N, C, H, W] -> [N, C', H / s, W / s]`.
pub enum Shortcut {
    /// The input itself (the shape does not change).
    Identity,
    /// Option A: subsample by `stride`, then `before` and `after` zero channels.
    ZeroPad {
        /// Subsampling step of the height and width.
        stride: usize,
        /// Zero channels added before the input's.
        before: usize,
        /// Zero channels added after the input's.
        after: usize,
    },
    /// Option B: `0` is a 1x1 convolution with the block's stride, `1` a batch norm
    /// (`downsample.0`, `downsample.1`).
    Projection(Conv2d, BatchNorm2d),
}

impl Shortcut {
    /// The shortcut from `inputs` to `outputs` channels with `stride`: the identity if nothing
    /// changes, else of `kind`. `pb` is the builder of the block's `downsample` (a projection's
    /// layers are `0` and `1` under it).
    pub fn new(
        inputs: usize,
        outputs: usize,
        stride: usize,
        kind: ShortcutKind,
        pb: &ParamBuilder,
    ) -> Shortcut {
        if stride == 1 && inputs == outputs {
            return Shortcut::Identity;
        }
        match kind {
            ShortcutKind::ZeroPad => {
                assert!(
                    outputs >= inputs,
                    "a zero-padding shortcut cannot go from {inputs} to fewer ({outputs}) channels"
                );
                let extra = outputs - inputs;
                Shortcut::ZeroPad {
                    stride,
                    before: extra / 2,
                    after: extra - extra / 2,
                }
            }
            ShortcutKind::Projection => Shortcut::Projection(
                conv(inputs, outputs, 1, stride, &pb.pp(0)),
                BatchNorm2d::new(outputs, &pb.pp(1)),
            ),
        }
    }
}

impl Module for Shortcut {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Shortcut::Identity => x.clone(),
            Shortcut::ZeroPad {
                stride,
                before,
                after,
            } => {
                let (h, w) = (x.dims()[2], x.dims()[3]);
                x.slice(2, 0, h, *stride)
                    .slice(3, 0, w, *stride)
                    .pad(&[(0, 0), (*before, *after)], 0.0)
            }
            Shortcut::Projection(conv, bn) => bn.forward(&conv.forward(x)),
        }
    }
    /// The identity adds no node; option A is a strided `Slice` and a `Pad` of the channels;
    /// option B a convolution and a batch norm (`0`, `1`).
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        match self {
            Shortcut::Identity => Ok(x),
            Shortcut::ZeroPad {
                stride,
                before,
                after,
            } => {
                let s = g.shape(x).to_vec();
                let starts = g.ints("slice_starts", &[0, 0])?;
                let ends = g.ints("slice_ends", &[s[2] as i64, s[3] as i64])?;
                let axes = g.ints("slice_axes", &[2, 3])?;
                let steps = g.ints("slice_steps", &[*stride as i64; 2])?;
                let (before, after) = (*before, *after);
                let stride = *stride;
                let sub = g.node_like("Slice", &[x, starts, ends, axes, steps], vec![], |t| {
                    t.slice(2, 0, s[2], stride).slice(3, 0, s[3], stride)
                })?;
                let pads = g.ints("pads", &[0, before as i64, 0, 0, 0, after as i64, 0, 0])?;
                g.node_like("Pad", &[sub, pads], vec![], |t| {
                    t.pad(&[(0, 0), (before, after)], 0.0)
                })
            }
            Shortcut::Projection(conv, bn) => {
                let y = g.child("0", conv, x)?;
                g.child("1", bn, y)
            }
        }
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        match self {
            Shortcut::Projection(conv, bn) => vec![("0".into(), conv), ("1".into(), bn)],
            _ => vec![],
        }
    }
}

/// The block of ResNet-18/34 and of the CIFAR ResNets: two 3x3 convolutions, each followed by a
/// batch norm, the first with the block's stride and a ReLU; the shortcut is added before the
/// last ReLU. `[N, C, H, W] -> [N, planes, H / stride, W / stride]`.
pub struct BasicBlock {
    /// 3x3, `C -> planes`, stride.
    pub conv1: Conv2d,
    /// After `conv1`.
    pub bn1: BatchNorm2d,
    /// 3x3, `planes -> planes`.
    pub conv2: Conv2d,
    /// After `conv2`.
    pub bn2: BatchNorm2d,
    /// Identity, or a projection named `downsample`, or option A's zero padding.
    pub shortcut: Shortcut,
}

impl BasicBlock {
    /// Output channels per input channel of the last convolution (1).
    pub const EXPANSION: usize = 1;

    /// A block from `inputs` to `planes` channels, its tensors under `pb`'s prefix.
    pub fn new(
        inputs: usize,
        planes: usize,
        stride: usize,
        shortcut: ShortcutKind,
        pb: &ParamBuilder,
    ) -> BasicBlock {
        BasicBlock {
            conv1: conv(inputs, planes, 3, stride, &pb.pp("conv1")),
            bn1: BatchNorm2d::new(planes, &pb.pp("bn1")),
            conv2: conv(planes, planes, 3, 1, &pb.pp("conv2")),
            bn2: BatchNorm2d::new(planes, &pb.pp("bn2")),
            shortcut: Shortcut::new(inputs, planes, stride, shortcut, &pb.pp("downsample")),
        }
    }
}

impl Module for BasicBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        let out = self.bn1.forward(&self.conv1.forward(x)).relu();
        let out = self.bn2.forward(&self.conv2.forward(&out));
        (out + self.shortcut.forward(x)).relu()
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        let out = export_stack(g, &[(&self.conv1, &self.bn1), (&self.conv2, &self.bn2)], x)?;
        let short = g.scoped("downsample", |g| self.shortcut.export_onnx(g, x))?;
        let sum = g.add(out, short)?;
        Ok(g.unary("Relu", sum))
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        let mut v: Vec<(String, &dyn Module)> = vec![
            ("conv1".into(), &self.conv1),
            ("bn1".into(), &self.bn1),
            ("conv2".into(), &self.conv2),
            ("bn2".into(), &self.bn2),
        ];
        if let Shortcut::Projection(..) = self.shortcut {
            v.push(("downsample".into(), &self.shortcut));
        }
        v
    }
}

/// The block of ResNet-50/101/152: a 1x1 convolution down to `planes` channels, a 3x3 with the
/// block's stride (torchvision's "ResNet v1.5" places the stride here), and a 1x1 up to
/// `4 planes`, each followed by a batch norm; ReLU after the first two and after the shortcut is
/// added. `[N, C, H, W] -> [N, 4 planes, H / stride, W / stride]`.
pub struct Bottleneck {
    /// 1x1, `C -> planes`.
    pub conv1: Conv2d,
    /// After `conv1`.
    pub bn1: BatchNorm2d,
    /// 3x3, `planes -> planes`, stride.
    pub conv2: Conv2d,
    /// After `conv2`.
    pub bn2: BatchNorm2d,
    /// 1x1, `planes -> 4 planes`.
    pub conv3: Conv2d,
    /// After `conv3`.
    pub bn3: BatchNorm2d,
    /// Identity, or a projection named `downsample`.
    pub shortcut: Shortcut,
}

impl Bottleneck {
    /// Output channels per `planes` (4).
    pub const EXPANSION: usize = 4;

    /// A block from `inputs` to `4 planes` channels, its tensors under `pb`'s prefix.
    pub fn new(
        inputs: usize,
        planes: usize,
        stride: usize,
        shortcut: ShortcutKind,
        pb: &ParamBuilder,
    ) -> Bottleneck {
        let outputs = planes * Bottleneck::EXPANSION;
        Bottleneck {
            conv1: conv(inputs, planes, 1, 1, &pb.pp("conv1")),
            bn1: BatchNorm2d::new(planes, &pb.pp("bn1")),
            conv2: conv(planes, planes, 3, stride, &pb.pp("conv2")),
            bn2: BatchNorm2d::new(planes, &pb.pp("bn2")),
            conv3: conv(planes, outputs, 1, 1, &pb.pp("conv3")),
            bn3: BatchNorm2d::new(outputs, &pb.pp("bn3")),
            shortcut: Shortcut::new(inputs, outputs, stride, shortcut, &pb.pp("downsample")),
        }
    }
}

impl Module for Bottleneck {
    fn forward(&self, x: &Tensor) -> Tensor {
        let out = self.bn1.forward(&self.conv1.forward(x)).relu();
        let out = self.bn2.forward(&self.conv2.forward(&out)).relu();
        let out = self.bn3.forward(&self.conv3.forward(&out));
        (out + self.shortcut.forward(x)).relu()
    }
    fn export_onnx(&self, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
        let stack = [
            (&self.conv1, &self.bn1),
            (&self.conv2, &self.bn2),
            (&self.conv3, &self.bn3),
        ];
        let out = export_stack(g, &stack, x)?;
        let short = g.scoped("downsample", |g| self.shortcut.export_onnx(g, x))?;
        let sum = g.add(out, short)?;
        Ok(g.unary("Relu", sum))
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        let mut v: Vec<(String, &dyn Module)> = vec![
            ("conv1".into(), &self.conv1),
            ("bn1".into(), &self.bn1),
            ("conv2".into(), &self.conv2),
            ("bn2".into(), &self.bn2),
            ("conv3".into(), &self.conv3),
            ("bn3".into(), &self.bn3),
        ];
        if let Shortcut::Projection(..) = self.shortcut {
            v.push(("downsample".into(), &self.shortcut));
        }
        v
    }
}

/// The residual branch of a block: each convolution and its batch norm (named `conv1`, `bn1`,
/// `conv2`, .. as in the block), a ReLU after each pair but the last.
fn export_stack(
    g: &mut GraphBuilder,
    stack: &[(&Conv2d, &BatchNorm2d)],
    x: ValueId,
) -> Result<ValueId> {
    let mut y = x;
    for (i, (conv, bn)) in stack.iter().enumerate() {
        y = g.child(&format!("conv{}", i + 1), *conv, y)?;
        y = g.child(&format!("bn{}", i + 1), *bn, y)?;
        if i + 1 < stack.len() {
            y = g.unary("Relu", y);
        }
    }
    Ok(y)
}
