//! Model summaries (`kiln::viz::summary`): layers found in the recorded graph, with output
//! shapes, parameter counts, multiply-adds and receptive fields worked out by hand below: LeNet-5,
//! a hand-made residual network and the CIFAR ResNet-20 of kiln-models (batch norms, option A and B
//! shortcuts).

use kiln::models::LeNet5;
use kiln::nn::{prefixed, Conv2d, Linear, Module, ParamBuilder};
use kiln::prelude::*;
use kiln::viz::{summary, LayerKind, ReceptiveField};

/// An expected row: name, kind, output shape, parameters, multiply-adds, receptive field.
type Row = (
    &'static str,
    LayerKind,
    &'static [usize],
    usize,
    u64,
    ReceptiveField,
);

fn local(size: usize, jump: usize) -> ReceptiveField {
    ReceptiveField::Local {
        size: [size, size],
        jump: Some([jump, jump]),
    }
}

#[test]
fn lenet5_summary_counts_parameters_mult_adds_and_receptive_fields() {
    let model = LeNet5::new(&ParamBuilder::new(&Device::cpu(), 0));
    let s = summary(&model, &[1, 1, 28, 28]).unwrap();
    println!("{s}");
    assert_eq!(s.total_params, 61_706);
    assert_eq!(s.trainable_params, 61_706);
    assert_eq!(s.output_shape, vec![1, 10]);
    let names: Vec<&str> = s.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["conv1", "maxpool1", "conv2", "maxpool2", "fc1", "fc2", "fc3"]
    );
    // (name, kind, output shape, params, mult-adds, receptive field), by hand:
    // conv1 5x5 pad 2: 6 x 28 x 28 outputs of 25 taps; the field is the kernel, 5 pixels, 1 apart.
    // pool 2: 5 + (2 - 1) * 1 = 6, jumps double to 2. conv2 5x5: 6 + 4 * 2 = 14, 2 apart.
    // pool 2: 14 + 1 * 2 = 16, 4 apart. fc1 after flatten sees the whole 5x5 grid of fields:
    // 16 + 4 * 4 = 32 pixels (more than the 28 of the image: the padding), no jump any more.
    let expected: [Row; 7] = [
        (
            "conv1",
            LayerKind::Conv2d,
            &[1, 6, 28, 28],
            156,
            6 * 784 * 25,
            local(5, 1),
        ),
        (
            "maxpool1",
            LayerKind::MaxPool2d,
            &[1, 6, 14, 14],
            0,
            0,
            local(6, 2),
        ),
        (
            "conv2",
            LayerKind::Conv2d,
            &[1, 16, 10, 10],
            2_416,
            16 * 100 * 150,
            local(14, 2),
        ),
        (
            "maxpool2",
            LayerKind::MaxPool2d,
            &[1, 16, 5, 5],
            0,
            0,
            local(16, 4),
        ),
        (
            "fc1",
            LayerKind::Linear,
            &[1, 120],
            48_120,
            48_000,
            ReceptiveField::Local {
                size: [32, 32],
                jump: None,
            },
        ),
        (
            "fc2",
            LayerKind::Linear,
            &[1, 84],
            10_164,
            10_080,
            ReceptiveField::Local {
                size: [32, 32],
                jump: None,
            },
        ),
        (
            "fc3",
            LayerKind::Linear,
            &[1, 10],
            850,
            840,
            ReceptiveField::Local {
                size: [32, 32],
                jump: None,
            },
        ),
    ];
    for (name, kind, shape, params, macs, rf) in expected {
        let l = s.layer(name).unwrap();
        assert_eq!(l.kind, kind, "{name}");
        assert_eq!(l.output_shape.as_deref(), Some(shape), "{name}");
        assert_eq!(l.params, params, "{name}");
        assert_eq!(l.mult_adds, macs, "{name}");
        assert_eq!(l.receptive_field, rf, "{name}");
    }
    assert_eq!(s.total_mult_adds, 416_520);
    // Multiply-adds scale with the batch; shapes carry it.
    let s8 = summary(&model, &[8, 1, 28, 28]).unwrap();
    assert_eq!(s8.total_mult_adds, 8 * 416_520);
    assert_eq!(
        s8.layer("conv2").unwrap().output_shape.as_deref(),
        Some(&[8, 16, 10, 10][..])
    );
    // The table shows the rows and the totals.
    let text = s.to_string();
    for needle in [
        "conv2 (Conv2d)",
        "[1, 16, 10, 10]",
        "14x14 / 2",
        "16x16 / 4",
        "61,706",
        "416,520",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
}

/// A per-channel scale and shift (`x * weight + bias`), as batch norm is in evaluation mode.
struct Affine {
    weight: Tensor,
    bias: Tensor,
}

impl Affine {
    fn new(c: usize, dev: &Device) -> Affine {
        let weight = kiln::nn::parameter(Tensor::ones([c], dev));
        let bias = kiln::nn::parameter(Tensor::zeros([c], dev));
        Affine { weight, bias }
    }
}

impl Module for Affine {
    fn forward(&self, x: &Tensor) -> Tensor {
        let c = self.weight.numel();
        x.mul(&self.weight.reshape([1, c, 1, 1]))
            .add(&self.bias.reshape([1, c, 1, 1]))
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }
}

/// stem (3x3) -> bn -> one residual block (3x3 stride 2, 3x3; a 1x1 stride-2 shortcut) ->
/// global average pool -> fc.
struct TinyResNet {
    stem: Conv2d,
    bn: Affine,
    conv_a: Conv2d,
    conv_b: Conv2d,
    shortcut: Conv2d,
    fc: Linear,
}

impl TinyResNet {
    fn new(dev: &Device) -> TinyResNet {
        let o = Conv2dOptions::default();
        TinyResNet {
            stem: Conv2d::new(3, 8, 3, o.padding(1), &ParamBuilder::new(dev, 1)),
            bn: Affine::new(8, dev),
            conv_a: Conv2d::new(8, 8, 3, o.stride(2).padding(1), &ParamBuilder::new(dev, 2)),
            conv_b: Conv2d::new(8, 8, 3, o.padding(1), &ParamBuilder::new(dev, 3)),
            shortcut: Conv2d::new(8, 8, 1, o.stride(2), &ParamBuilder::new(dev, 4)),
            fc: Linear::new(8, 10, &ParamBuilder::new(dev, 5)),
        }
    }
}

impl Module for TinyResNet {
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.bn.forward(&self.stem.forward(x)).relu();
        let main = self.conv_b.forward(&self.conv_a.forward(&x).relu());
        let y = (main + self.shortcut.forward(&x)).relu(); // [N, 8, 8, 8]
        let pooled = y.avg_pool2d(&Pool2dOptions::new(8)).flatten(1, 3);
        self.fc.forward(&pooled)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![];
        for (name, layer) in [
            ("stem", &self.stem as &dyn Module),
            ("bn", &self.bn),
            ("block.conv_a", &self.conv_a),
            ("block.conv_b", &self.conv_b),
            ("block.shortcut", &self.shortcut),
            ("fc", &self.fc),
        ] {
            v.extend(prefixed(name, layer));
        }
        v
    }
}

#[test]
fn residual_network_summary_takes_the_larger_field_at_the_add() {
    let model = TinyResNet::new(&Device::cpu());
    let s = summary(&model, &[2, 3, 16, 16]).unwrap();
    println!("{s}");
    assert_eq!(s.total_params, 224 + 16 + 584 + 584 + 72 + 90);
    let names: Vec<&str> = s.layers.iter().map(|l| l.name.as_str()).collect();
    for n in [
        "stem",
        "bn",
        "block.conv_a",
        "block.conv_b",
        "block.shortcut",
        "add1",
        "avgpool1",
        "fc",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert_eq!(names.len(), 8, "{names:?}");
    let pos = |n: &str| names.iter().position(|&x| x == n).unwrap();
    assert!(pos("stem") < pos("bn") && pos("bn") < pos("block.conv_a"));
    assert!(pos("block.conv_b") < pos("add1") && pos("block.shortcut") < pos("add1"));
    assert!(pos("add1") < pos("avgpool1") && pos("avgpool1") < pos("fc"));
    // (name, kind, shape, params, mult-adds for batch 2, field):
    // stem 3x3: 3 pixels, 1 apart; bn keeps it. conv_a 3x3 stride 2: 3 + 2 * 1 = 5, 2 apart.
    // conv_b 3x3: 5 + 2 * 2 = 9, 2 apart. shortcut 1x1 stride 2: 3, 2 apart. The add sees the
    // larger, 9. The 8x8 average pool covers the whole map: 9 + 7 * 2 = 23, no jump left.
    let rows: [Row; 8] = [
        (
            "stem",
            LayerKind::Conv2d,
            &[2, 8, 16, 16],
            224,
            2 * 2048 * 27,
            local(3, 1),
        ),
        ("bn", LayerKind::Norm, &[2, 8, 16, 16], 16, 0, local(3, 1)),
        (
            "block.conv_a",
            LayerKind::Conv2d,
            &[2, 8, 8, 8],
            584,
            2 * 512 * 72,
            local(5, 2),
        ),
        (
            "block.conv_b",
            LayerKind::Conv2d,
            &[2, 8, 8, 8],
            584,
            2 * 512 * 72,
            local(9, 2),
        ),
        (
            "block.shortcut",
            LayerKind::Conv2d,
            &[2, 8, 8, 8],
            72,
            2 * 512 * 8,
            local(3, 2),
        ),
        ("add1", LayerKind::Add, &[2, 8, 8, 8], 0, 0, local(9, 2)),
        (
            "avgpool1",
            LayerKind::AvgPool2d,
            &[2, 8, 1, 1],
            0,
            0,
            ReceptiveField::Local {
                size: [23, 23],
                jump: None,
            },
        ),
        (
            "fc",
            LayerKind::Linear,
            &[2, 10],
            90,
            2 * 80,
            ReceptiveField::Local {
                size: [23, 23],
                jump: None,
            },
        ),
    ];
    for (name, kind, shape, params, macs, rf) in rows {
        let l = s.layer(name).unwrap();
        assert_eq!(l.kind, kind, "{name}");
        assert_eq!(l.output_shape.as_deref(), Some(shape), "{name}");
        assert_eq!(l.params, params, "{name}");
        assert_eq!(l.mult_adds, macs, "{name}");
        assert_eq!(l.receptive_field, rf, "{name}");
    }
}

#[test]
fn dilated_and_strided_fields_and_unused_parameters() {
    // conv 3x3 dilation 2 (field 5), then conv 3x3 stride 2 (5 + 2 = 7, 2 apart), then a
    // max pool 3 stride 2 (7 + 2 * 2 = 11, 4 apart); a layer never called is listed as unused.
    struct Net {
        a: Conv2d,
        b: Conv2d,
        spare: Linear,
    }
    impl Module for Net {
        fn forward(&self, x: &Tensor) -> Tensor {
            let y = self.b.forward(&self.a.forward(x));
            y.max_pool2d(&Pool2dOptions::new(3).stride(2))
        }
        fn named_parameters(&self) -> Vec<(String, Tensor)> {
            let mut v = prefixed("a", &self.a);
            v.extend(prefixed("b", &self.b));
            v.extend(prefixed("spare", &self.spare));
            v
        }
    }
    let dev = Device::cpu();
    let o = Conv2dOptions::default();
    let net = Net {
        a: Conv2d::new(1, 2, 3, o.dilation(2), &ParamBuilder::new(&dev, 1)),
        b: Conv2d::new(2, 2, 3, o.stride(2), &ParamBuilder::new(&dev, 2)),
        spare: Linear::new(3, 3, &ParamBuilder::new(&dev, 3)),
    };
    let s = summary(&net, &[1, 1, 32, 32]).unwrap();
    println!("{s}");
    assert_eq!(s.layer("a").unwrap().receptive_field, local(5, 1));
    assert_eq!(s.layer("b").unwrap().receptive_field, local(7, 2));
    assert_eq!(s.layer("maxpool1").unwrap().receptive_field, local(11, 4));
    let spare = s.layer("spare").unwrap();
    assert_eq!(spare.kind, LayerKind::Unused);
    assert_eq!(spare.output_shape, None);
    assert_eq!(spare.params, 12);
    assert_eq!(s.total_params, 20 + 38 + 12);
    // A bad shape is an error, not a panic.
    assert!(summary(&net, &[]).is_err());
    assert!(summary(&net, &[1, 0, 3, 3]).is_err());
}

#[test]
fn cifar_resnet20_summary_lists_batch_norms_residual_adds_and_the_field_of_each_stage() {
    use kiln::models::{ResNet, ShortcutKind};
    let model = ResNet::resnet20(3, 10, &ParamBuilder::new(&Device::cpu(), 0)).unwrap();
    assert_eq!(model.is_training(), Some(true));
    let s = summary(&model, &[1, 3, 32, 32]).unwrap();
    println!("{s}");
    assert_eq!(
        model.is_training(),
        Some(true),
        "the summary leaves the mode as it was"
    );
    model.set_training(false);
    summary(&model, &[1, 3, 32, 32]).unwrap();
    assert_eq!(
        model.is_training(),
        Some(false),
        "an evaluating model stays evaluating"
    );
    model.set_training(true);
    // Parameters by hand (3x3 convolutions without bias; a batch norm has 2 C; option A
    // shortcuts have none):
    //   stem     conv 3->16: 432, bn: 32                                         =     464
    //   layer1   3 blocks x (2 convs 16->16: 2 x 2,304 + 2 bns: 64)              =  14,016
    //   layer2   16->32: 4,608 + 32->32: 9,216 + 128; 2 x (2 x 9,216 + 128)      =  51,072
    //   layer3   32->64: 18,432 + 64->64: 36,864 + 256; 2 x (2 x 36,864 + 256)   = 203,520
    //   fc       64 x 10 + 10                                                    =     650
    //                                                                              269,722
    // (272,474, sometimes quoted for ResNet-20, is option B: its two projections add
    // 16 x 32 + 64 and 32 x 64 + 128, 2,752 parameters.)
    assert_eq!(s.total_params, 269_722);
    assert_eq!(s.total_params, model.num_parameters());
    assert_eq!(s.trainable_params, 269_722);
    let option_b = ResNet::cifar(
        3,
        3,
        10,
        ShortcutKind::Projection,
        &ParamBuilder::new(&Device::cpu(), 0),
    )
    .unwrap();
    assert_eq!(option_b.num_parameters(), 272_474);
    assert_eq!(s.output_shape, vec![1, 10]);

    // One row per convolution and batch norm (19 each: the stem and 2 per block), one per
    // residual add (9 blocks), the global average pool and fc: 49 rows, in computation order.
    // Option A's shortcuts (slice and zero padding) have no row of their own.
    assert_eq!(s.layers.len(), 19 + 19 + 9 + 2, "{s}");
    let count = |k: LayerKind| s.layers.iter().filter(|l| l.kind == k).count();
    assert_eq!(count(LayerKind::Conv2d), 19);
    assert_eq!(count(LayerKind::Norm), 19);
    assert_eq!(count(LayerKind::Add), 9);
    assert_eq!(count(LayerKind::AvgPool2d), 1);
    assert_eq!(count(LayerKind::Linear), 1);
    let names: Vec<&str> = s.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names[..8],
        [
            "conv1",
            "bn1",
            "layer1.0.conv1",
            "layer1.0.bn1",
            "layer1.0.conv2",
            "layer1.0.bn2",
            "add1",
            "layer1.1.conv1"
        ]
    );
    assert_eq!(names[names.len() - 3..], ["add9", "avgpool1", "fc"]);
    // A batch norm (in evaluation mode, a per-channel scale and shift) has its 2 C parameters
    // (its running statistics are buffers, not counted), no multiply-adds, the shape and field
    // of its input.
    let bn = s.layer("layer3.2.bn2").unwrap();
    assert_eq!(
        (bn.kind, bn.params, bn.mult_adds),
        (LayerKind::Norm, 128, 0)
    );
    assert_eq!(bn.output_shape.as_deref(), Some(&[1, 64, 8, 8][..]));
    // The stage shapes; the last add is the final feature map before pooling.
    let shape = |n: &str| s.layer(n).unwrap().output_shape.clone().unwrap();
    assert_eq!(shape("add3"), [1, 16, 32, 32]);
    assert_eq!(shape("add4"), [1, 32, 16, 16]);
    assert_eq!(shape("add6"), [1, 32, 16, 16]);
    assert_eq!(shape("add9"), [1, 64, 8, 8]);
    assert_eq!(shape("avgpool1"), [1, 64, 1, 1]);
    assert_eq!(shape("fc"), [1, 10]);
    let add = s.layer("add4").unwrap();
    assert_eq!((add.params, add.mult_adds), (0, 0));

    // Receptive fields by hand, along the longest path (every 3x3 convolution adds
    // 2 x jump; a stride-2 one doubles the jump after growing; option A's subsampling shortcut
    // keeps the field of the block's input with twice the jump, smaller than the convolutions'
    // branch, which the add keeps):
    //   conv1 3 / 1; layer1: 6 convs, 3 + 6 x 2 = 15 / 1 (add1: 7, add2: 11, add3: 15)
    //   layer2.0.conv1 (stride 2): 15 + 2 = 17 / 2; conv2: 21 / 2 (add4); then 25, 29 (add5),
    //   33, 37 (add6) / 2
    //   layer3.0.conv1 (stride 2): 37 + 2 x 2 = 41 / 4; conv2: 49 (add7); 57, 65 (add8);
    //   73, 81 (add9) / 4: the last stage's field is 81 pixels (more than the 32 of the image:
    //   the zero padding), 4 apart.
    //   avgpool over the 8x8 map: 81 + 7 x 4 = 109, no jump left; fc the same.
    for (name, size, jump) in [
        ("conv1", 3, 1),
        ("bn1", 3, 1),
        ("add1", 7, 1),
        ("add3", 15, 1),
        ("layer2.0.conv1", 17, 2),
        ("add4", 21, 2),
        ("add6", 37, 2),
        ("layer3.0.conv1", 41, 4),
        ("add7", 49, 4),
        ("add8", 65, 4),
        ("layer3.2.conv2", 81, 4),
        ("add9", 81, 4),
    ] {
        assert_eq!(
            s.layer(name).unwrap().receptive_field,
            local(size, jump),
            "{name}"
        );
    }
    let global = ReceptiveField::Local {
        size: [109, 109],
        jump: None,
    };
    assert_eq!(s.layer("avgpool1").unwrap().receptive_field, global);
    assert_eq!(s.layer("fc").unwrap().receptive_field, global);

    // Multiply-adds (C_out x H x W x 9 C_in per convolution):
    //   stem 16 x 1024 x 27 = 442,368; layer1 6 x 16 x 1024 x 144 = 14,155,776;
    //   layer2 32 x 256 x 144 + 5 x 32 x 256 x 288 = 12,976,128; layer3 the same,
    //   64 x 64 x 288 + 5 x 64 x 64 x 576 = 12,976,128; fc 640. Total 40,551,040.
    assert_eq!(s.layer("conv1").unwrap().mult_adds, 442_368);
    assert_eq!(s.layer("layer2.0.conv1").unwrap().mult_adds, 1_179_648);
    assert_eq!(s.total_mult_adds, 40_551_040);
    let text = s.to_string();
    for needle in [
        "layer3.2.bn2 (Norm)",
        "add9 (Add)",
        "[1, 64, 8, 8]",
        "81x81 / 4",
        "269,722",
        "40,551,040",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }

    // Option B: the projection (`downsample.0`, a 1x1 stride-2 convolution, and its batch norm
    // `downsample.1`) has rows of its own; it sees the block input's 15 pixels, now 2 apart.
    let s = summary(&option_b, &[1, 3, 32, 32]).unwrap();
    assert_eq!(s.total_params, 272_474);
    let proj = s.layer("layer2.0.downsample.0").unwrap();
    assert_eq!((proj.kind, proj.params), (LayerKind::Conv2d, 512));
    assert_eq!(proj.mult_adds, 32 * 256 * 16);
    assert_eq!(proj.receptive_field, local(15, 2));
    let proj_bn = s.layer("layer2.0.downsample.1").unwrap();
    assert_eq!((proj_bn.kind, proj_bn.params), (LayerKind::Norm, 64));
    assert_eq!(s.layer("add9").unwrap().receptive_field, local(81, 4));
}
