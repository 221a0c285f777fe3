//! The exports of kiln-core's layers: what each layer's [`Module::export_onnx`] adds to the
//! graph, mirroring its forward pass in evaluation mode.

use super::{Attr, GraphBuilder, ValueId};
use crate::error::Result;
use crate::nn::{
    Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm, Conv2d, ConvTranspose2d, Linear,
    LocalResponseNorm, MaxPool2d, Maxout, Module,
};
use crate::tensor::Tensor;
use crate::{Device, Pool2dOptions};

/// `[a, b]` as ONNX's int64 list.
fn ints(v: &[usize]) -> Attr {
    Attr::Ints(v.iter().map(|&d| d as i64).collect())
}

/// Lazy zeros of `dims` on the CPU, for the shape probes of [`GraphBuilder::node_like`].
fn zeros(dims: &[usize]) -> Tensor {
    Tensor::zeros(dims.to_vec(), &Device::cpu())
}

/// Errors unless `x` is `[N, C, H, W]`.
fn expect_4d(g: &GraphBuilder, what: &str, x: ValueId) -> Result<()> {
    match g.shape(x).len() {
        4 => Ok(()),
        _ => Err(g.unsupported(
            what,
            &format!("expects [N, C, H, W] input, got {:?}", g.shape(x)),
        )),
    }
}

/// Errors unless `x` is `[N, C, H, W]` with `channels` channels (if given) and the window of
/// `kernel` taps spaced by `dilation` fits its height and width plus `padding` (the totals of
/// both sides): the shapes kiln's ops would reject, said as an error instead of their panic.
fn expect_fit(
    g: &GraphBuilder,
    what: &str,
    x: ValueId,
    channels: Option<usize>,
    [kernel, dilation, padding]: [[usize; 2]; 3],
) -> Result<()> {
    expect_4d(g, what, x)?;
    let s = g.shape(x);
    if let Some(c) = channels.filter(|&c| c != s[1]) {
        let why = format!("expects {c} input channels, got {:?}", s);
        return Err(g.unsupported(what, &why));
    }
    for d in 0..2 {
        let span = dilation[d] * (kernel[d] - 1) + 1;
        if s[2 + d] + padding[d] < span {
            let why = format!(
                "a window of {}x{} (dilation {dilation:?}) does not fit the input {s:?} with \
                 padding {padding:?}",
                kernel[0], kernel[1]
            );
            return Err(g.unsupported(what, &why));
        }
    }
    Ok(())
}

/// `Conv`, the bias an input when there is one.
pub(crate) fn conv2d(c: &Conv2d, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
    let dims = c.weight.dims().to_vec();
    let o = c.options;
    let [(top, bottom), (left, right)] = o.padding.resolve([dims[2], dims[3]], o.dilation);
    let window = [[dims[2], dims[3]], o.dilation, [top + bottom, left + right]];
    expect_fit(g, "Conv2d", x, Some(dims[1] * o.groups), window)?;
    let mut inputs = vec![x, g.tensor("weight", &c.weight)?];
    if let Some(b) = &c.bias {
        inputs.push(g.tensor("bias", b)?);
    }
    let attrs = vec![
        ("kernel_shape", ints(&dims[2..])),
        ("strides", ints(&o.stride)),
        ("pads", ints(&[top, left, bottom, right])),
        ("dilations", ints(&o.dilation)),
        ("group", Attr::Int(o.groups as i64)),
    ];
    g.node_like("Conv", &inputs, attrs, |t| {
        t.conv2d(&zeros(&dims), None, &o)
    })
}

/// `ConvTranspose` (the weight in PyTorch's `[in, out / groups, k, k]` layout, as ONNX's).
pub(crate) fn conv_transpose2d(
    c: &ConvTranspose2d,
    g: &mut GraphBuilder,
    x: ValueId,
) -> Result<ValueId> {
    let window = [[1, 1], [1, 1], [0, 0]];
    expect_fit(g, "ConvTranspose2d", x, Some(c.weight.dims()[0]), window)?;
    let mut inputs = vec![x, g.tensor("weight", &c.weight)?];
    if let Some(b) = &c.bias {
        inputs.push(g.tensor("bias", b)?);
    }
    let dims = c.weight.dims().to_vec();
    let o = c.options;
    let [ph, pw] = o.padding;
    let attrs = vec![
        ("kernel_shape", ints(&dims[2..])),
        ("strides", ints(&o.stride)),
        ("pads", ints(&[ph, pw, ph, pw])),
        ("output_padding", ints(&o.output_padding)),
        ("dilations", ints(&o.dilation)),
        ("group", Attr::Int(o.groups as i64)),
    ];
    g.node_like("ConvTranspose", &inputs, attrs, |t| {
        t.conv_transpose2d(&zeros(&dims), None, &o)
    })
}

/// `BatchNormalization` with the running statistics (evaluation mode); a layer without its
/// affine parameters gets scale ones and shift zeros.
pub(crate) fn batch_norm(bn: &BatchNorm, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
    let c = bn.channels();
    if g.shape(x).len() < 2 || g.shape(x)[1] != c {
        let why = format!("expects [N, {c}, ..] input, got {:?}", g.shape(x));
        return Err(g.unsupported("BatchNorm", &why));
    }
    let Some((mean, var)) = bn.running_stats() else {
        return Err(g.unsupported(
            "BatchNorm",
            "keeps no running statistics (track_running_stats is off), so its inference uses \
             each batch's statistics, which ONNX's BatchNormalization does not compute",
        ));
    };
    let scale = match &bn.weight {
        Some(w) => g.tensor("weight", w)?,
        None => g.floats("weight", &[c], vec![1.0; c])?,
    };
    let shift = match &bn.bias {
        Some(b) => g.tensor("bias", b)?,
        None => g.floats("bias", &[c], vec![0.0; c])?,
    };
    let (mean, var) = (
        g.tensor("running_mean", &mean)?,
        g.tensor("running_var", &var)?,
    );
    let attrs = vec![("epsilon", Attr::Float(bn.options.eps as f32))];
    let shape = g.shape(x).to_vec();
    Ok(g.node(
        "BatchNormalization",
        &[x, scale, shift, mean, var],
        attrs,
        shape,
    ))
}

/// `Gemm` (`x Wᵀ + b`) for `[N, in]`; `MatMul` with the transposed weight (and `Add`) for other
/// ranks.
pub(crate) fn linear(l: &Linear, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
    let [outputs, inputs] = [l.weight.dims()[0], l.weight.dims()[1]];
    let s = g.shape(x).to_vec();
    if s.last() != Some(&inputs) {
        let why = format!("expects [.., {inputs}] input, got {s:?}");
        return Err(g.unsupported("Linear", &why));
    }
    let w = g.tensor("weight", &l.weight)?;
    let b = match &l.bias {
        Some(b) => Some(g.tensor("bias", b)?),
        None => None,
    };
    let mut out = s.clone();
    *out.last_mut().expect("checked above") = outputs;
    if s.len() == 2 {
        let mut args = vec![x, w];
        args.extend(b);
        let attrs = vec![("transB", Attr::Int(1))];
        return Ok(g.node("Gemm", &args, attrs, out));
    }
    let wt = g.node(
        "Transpose",
        &[w],
        vec![("perm", ints(&[1, 0]))],
        vec![inputs, outputs],
    );
    let y = g.node("MatMul", &[x, wt], vec![], out);
    match b {
        Some(b) => g.add(y, b),
        None => Ok(y),
    }
}

/// `Gemm`, `Reshape` to `[N, out, pieces]` and `ReduceMax` over the pieces.
pub(crate) fn maxout(m: &Maxout, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
    if g.shape(x).len() != 2 {
        let why = format!("exports [N, in] input only, got {:?}", g.shape(x));
        return Err(g.unsupported("Maxout", &why));
    }
    let y = g.scoped("linear", |g| linear(&m.linear, g, x))?;
    let [n, total] = [g.shape(y)[0], g.shape(y)[1]];
    let outputs = total / m.pieces;
    // 0 copies the batch dimension, so the graph takes any batch size.
    let shape = g.ints("maxout_shape", &[0, outputs as i64, m.pieces as i64])?;
    let grouped = g.node("Reshape", &[y, shape], vec![], vec![n, outputs, m.pieces]);
    let attrs = vec![("axes", ints(&[2])), ("keepdims", Attr::Int(0))];
    Ok(g.node("ReduceMax", &[grouped], attrs, vec![n, outputs]))
}

/// The activation's ONNX operator; GELU (erf form) as `x (1 + erf(x / √2)) / 2`.
pub(crate) fn activation(a: Activation, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
    let alpha = |a: f64| vec![("alpha", Attr::Float(a as f32))];
    let shape = g.shape(x).to_vec();
    Ok(match a {
        Activation::Relu => g.unary("Relu", x),
        Activation::Sigmoid => g.unary("Sigmoid", x),
        Activation::Tanh => g.unary("Tanh", x),
        Activation::LeakyRelu(slope) => g.node("LeakyRelu", &[x], alpha(slope), shape),
        Activation::Elu(a) => g.node("Elu", &[x], alpha(a), shape),
        Activation::Softmax => g.node("Softmax", &[x], vec![("axis", Attr::Int(1))], shape),
        Activation::Gelu => {
            let sqrt2 = g.floats("gelu_sqrt2", &[], vec![std::f32::consts::SQRT_2])?;
            let one = g.floats("gelu_one", &[], vec![1.0])?;
            let half = g.floats("gelu_half", &[], vec![0.5])?;
            let scaled = g.node("Div", &[x, sqrt2], vec![], shape.clone());
            let erf = g.unary("Erf", scaled);
            let gate = g.add(erf, one)?;
            let y = g.node("Mul", &[x, gate], vec![], shape.clone());
            g.node("Mul", &[y, half], vec![], shape)
        }
    })
}

/// ONNX's `LRN`, which sums the same channels as kiln's (and PyTorch's) for odd sizes.
pub(crate) fn lrn(l: &LocalResponseNorm, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
    if l.size.is_multiple_of(2) {
        return Err(g.unsupported(
            "LocalResponseNorm",
            &format!(
                "size {} is even; ONNX's LRN centres an even window on other channels than \
                 PyTorch's, so only odd sizes export",
                l.size
            ),
        ));
    }
    let attrs = vec![
        ("size", Attr::Int(l.size as i64)),
        ("alpha", Attr::Float(l.alpha as f32)),
        ("beta", Attr::Float(l.beta as f32)),
        ("bias", Attr::Float(l.k as f32)),
    ];
    let shape = g.shape(x).to_vec();
    Ok(g.node("LRN", &[x], attrs, shape))
}

/// The attributes every pooling operator shares.
fn pool_attrs(o: &Pool2dOptions) -> Vec<(&'static str, Attr)> {
    let [ph, pw] = o.padding;
    vec![
        ("kernel_shape", ints(&o.kernel)),
        ("strides", ints(&o.stride)),
        ("pads", ints(&[ph, pw, ph, pw])),
        ("ceil_mode", Attr::Int(o.ceil_mode as i64)),
    ]
}

/// `MaxPool`.
pub(crate) fn max_pool(p: &MaxPool2d, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
    let o = p.options;
    let window = [o.kernel, o.dilation, o.padding.map(|p| 2 * p)];
    expect_fit(g, "MaxPool2d", x, None, window)?;
    let mut attrs = pool_attrs(&o);
    attrs.push(("dilations", ints(&o.dilation)));
    g.node_like("MaxPool", &[x], attrs, |t| t.max_pool2d(&o))
}

/// `AveragePool`.
pub(crate) fn avg_pool(p: &AvgPool2d, g: &mut GraphBuilder, x: ValueId) -> Result<ValueId> {
    let o = p.options;
    let window = [o.kernel, o.dilation, o.padding.map(|p| 2 * p)];
    expect_fit(g, "AvgPool2d", x, None, window)?;
    if o.dilation != [1, 1] {
        return Err(g.unsupported(
            "AvgPool2d",
            "a dilated average pool has no ONNX opset 13 form",
        ));
    }
    let mut attrs = pool_attrs(&o);
    attrs.push(("count_include_pad", Attr::Int(o.count_include_pad as i64)));
    g.node_like("AveragePool", &[x], attrs, |t| t.avg_pool2d(&o))
}

/// `GlobalAveragePool` for a 1x1 output, `AveragePool` when the output size divides the input
/// size (the windows are then equal and disjoint, as kiln computes them); other sizes are an
/// error.
pub(crate) fn adaptive_avg_pool(
    p: &AdaptiveAvgPool2d,
    g: &mut GraphBuilder,
    x: ValueId,
) -> Result<ValueId> {
    expect_4d(g, "AdaptiveAvgPool2d", x)?;
    let s = g.shape(x).to_vec();
    let out = p.output;
    let shape = vec![s[0], s[1], out[0], out[1]];
    if out == [1, 1] {
        return Ok(g.node("GlobalAveragePool", &[x], vec![], shape));
    }
    if !(s[2].is_multiple_of(out[0]) && s[3].is_multiple_of(out[1])) {
        let why = format!(
            "pooling {}x{} to {}x{} needs windows of different sizes, which ONNX's pooling \
             cannot express; export with an input size that is a multiple of {}x{}",
            s[2], s[3], out[0], out[1], out[0], out[1]
        );
        return Err(g.unsupported("AdaptiveAvgPool2d", &why));
    }
    let mut o = Pool2dOptions::new(1);
    o.kernel = [s[2] / out[0], s[3] / out[1]];
    o.stride = o.kernel;
    let mut attrs = pool_attrs(&o);
    attrs.push(("count_include_pad", Attr::Int(1)));
    Ok(g.node("AveragePool", &[x], attrs, shape))
}

/// `Flatten` from dimension 1 (nothing for a rank-1 input, as kiln's `Flatten`).
pub(crate) fn flatten(g: &mut GraphBuilder, x: ValueId) -> ValueId {
    if g.shape(x).len() <= 1 {
        return x;
    }
    g.flatten(x)
}

/// The children in order, each applied to the last one's output (a [`crate::nn::Sequential`]).
pub(crate) fn chain(
    children: Vec<(String, &dyn Module)>,
    g: &mut GraphBuilder,
    x: ValueId,
) -> Result<ValueId> {
    children
        .into_iter()
        .try_fold(x, |h, (name, layer)| g.child(&name, layer, h))
}
