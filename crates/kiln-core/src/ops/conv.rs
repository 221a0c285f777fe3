//! 2-D convolution and transposed convolution, composed from views and one batched matmul.
//!
//! Forward convolution is an implicit GEMM: [`Tensor::window`] presents the padded input as its
//! im2col matrix without copying it, and the matmul reads that view in place. The output comes out
//! NCHW, so a following bias or activation fuses into the matmul's epilogue. Gradients follow
//! from the primitives' rules (window's gradient is col2im).

use crate::autodiff::spread;
use crate::tensor::Tensor;

/// Padding of a 2-D convolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    /// Pad so that the output has the input's size (stride 1 only, as in PyTorch): a total of
    /// `dilation * (kernel - 1)` per dimension, the smaller half before and the larger after.
    Same,
    /// No padding.
    #[default]
    Valid,
    /// Zeros added on each side of the image.
    Explicit {
        /// Rows above.
        top: usize,
        /// Rows below.
        bottom: usize,
        /// Columns on the left.
        left: usize,
        /// Columns on the right.
        right: usize,
    },
}

impl Padding {
    /// `ph` rows above and below, `pw` columns left and right.
    pub fn symmetric(ph: usize, pw: usize) -> Padding {
        Padding::Explicit {
            top: ph,
            bottom: ph,
            left: pw,
            right: pw,
        }
    }

    /// The `(before, after)` padding of the height and width for a kernel of `kernel` taps with
    /// `dilation`.
    pub(crate) fn resolve(&self, kernel: [usize; 2], dilation: [usize; 2]) -> [(usize, usize); 2] {
        match *self {
            Padding::Valid => [(0, 0); 2],
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => [(top, bottom), (left, right)],
            Padding::Same => [0, 1].map(|j| {
                let total = dilation[j] * (kernel[j] - 1);
                (total / 2, total - total / 2)
            }),
        }
    }
}

/// Options of [`Tensor::conv2d`]. `Conv2dOptions::default()` is stride 1, no padding, dilation 1,
/// one group; the builders set both dimensions at once.
///
/// ```
/// # use kiln_core::{Conv2dOptions, Padding};
/// let opts = Conv2dOptions::default().stride(2).padding(1);
/// assert_eq!(opts.padding, Padding::symmetric(1, 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between windows, `[height, width]`.
    pub stride: [usize; 2],
    /// Zero padding of the input.
    pub padding: Padding,
    /// Spacing between kernel taps, `[height, width]` (1: adjacent).
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels are split into `groups` independent
    /// convolutions (`groups == channels` is a depthwise convolution).
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: [1, 1],
            padding: Padding::Valid,
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dOptions {
    /// The same stride in both dimensions.
    pub fn stride(self, s: usize) -> Self {
        Conv2dOptions {
            stride: [s, s],
            ..self
        }
    }
    /// `p` zeros on every side.
    pub fn padding(self, p: usize) -> Self {
        Conv2dOptions {
            padding: Padding::symmetric(p, p),
            ..self
        }
    }
    /// The same dilation in both dimensions.
    pub fn dilation(self, d: usize) -> Self {
        Conv2dOptions {
            dilation: [d, d],
            ..self
        }
    }
    /// `g` channel groups.
    pub fn groups(self, g: usize) -> Self {
        Conv2dOptions { groups: g, ..self }
    }
    /// [`Padding::Same`].
    pub fn same(self) -> Self {
        Conv2dOptions {
            padding: Padding::Same,
            ..self
        }
    }
}

/// Options of [`Tensor::conv_transpose2d`], as PyTorch's `ConvTranspose2d`. The default is stride
/// 1, no padding, no output padding, dilation 1, one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dOptions {
    /// Step between the input's positions in the output, `[height, width]`.
    pub stride: [usize; 2],
    /// Rows/columns removed from each side of the full output, `[height, width]`.
    pub padding: [usize; 2],
    /// Rows/columns added at the bottom/right of the output (less than the stride or the
    /// dilation), to pick one of the sizes that a strided convolution maps to the same size.
    pub output_padding: [usize; 2],
    /// Spacing between kernel taps, `[height, width]`.
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
}

impl Default for ConvTranspose2dOptions {
    fn default() -> Self {
        ConvTranspose2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            output_padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl ConvTranspose2dOptions {
    /// The same stride in both dimensions.
    pub fn stride(self, s: usize) -> Self {
        ConvTranspose2dOptions {
            stride: [s, s],
            ..self
        }
    }
    /// The same padding in both dimensions.
    pub fn padding(self, p: usize) -> Self {
        ConvTranspose2dOptions {
            padding: [p, p],
            ..self
        }
    }
    /// The same output padding in both dimensions.
    pub fn output_padding(self, p: usize) -> Self {
        ConvTranspose2dOptions {
            output_padding: [p, p],
            ..self
        }
    }
    /// The same dilation in both dimensions.
    pub fn dilation(self, d: usize) -> Self {
        ConvTranspose2dOptions {
            dilation: [d, d],
            ..self
        }
    }
    /// `g` channel groups.
    pub fn groups(self, g: usize) -> Self {
        ConvTranspose2dOptions { groups: g, ..self }
    }
}

/// The output size of a convolution or pooling along one dimension:
/// `floor((input + padding_total - dilation (kernel - 1) - 1) / stride) + 1`.
///
/// ```
/// # use kiln_core::conv_output_size;
/// assert_eq!(conv_output_size(7, 3, 2, 0, 1), 3);
/// assert_eq!(conv_output_size(32, 5, 1, 4, 1), 32);
/// ```
#[track_caller]
pub fn conv_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding_total: usize,
    dilation: usize,
) -> usize {
    assert!(
        kernel >= 1 && stride >= 1 && dilation >= 1,
        "conv_output_size: kernel {kernel}, stride {stride} and dilation {dilation} must be >= 1"
    );
    let span = dilation * (kernel - 1) + 1;
    assert!(
        input + padding_total >= span,
        "conv_output_size: a kernel spanning {span} does not fit in {input} + {padding_total} padding"
    );
    (input + padding_total - span) / stride + 1
}

/// `x` as a batch: `[C, H, W]` becomes `[1, C, H, W]`; the flag says to drop the batch again.
#[track_caller]
pub(crate) fn batched(op: &str, x: &Tensor) -> (Tensor, bool) {
    match x.rank() {
        4 => (x.clone(), false),
        3 => (x.unsqueeze(0), true),
        _ => panic!(
            "{op}: the input must be [N, C, H, W] or [C, H, W], got {}",
            x.shape()
        ),
    }
}

impl Tensor {
    /// 2-D convolution (cross-correlation, as PyTorch's `conv2d`): input `[N, C, H, W]` (or
    /// `[C, H, W]`), weight `[O, C / groups, KH, KW]`, optional bias `[O]`; output
    /// `[N, O, OH, OW]` with `OH = conv_output_size(H, KH, stride, top + bottom, dilation)`.
    ///
    /// The padded input is windowed into its im2col view `[N, G, (C/G) KH KW, OH OW]` (never
    /// materialised) and multiplied by the weight as `[G, O/G, (C/G) KH KW]`.
    ///
    /// ```
    /// # use kiln_core::{Device, Tensor, Conv2dOptions};
    /// let dev = Device::cpu();
    /// let x = Tensor::arange(0.0, 9.0, 1.0, &dev).reshape([1, 1, 3, 3]);
    /// let w = Tensor::from_vec(vec![0.0f32, 1.0, 2.0, 3.0], [1, 1, 2, 2], &dev).unwrap();
    /// let y = x.conv2d(&w, None, &Conv2dOptions::default());
    /// assert_eq!(y.to_vec::<f32>().unwrap(), vec![19.0, 25.0, 37.0, 43.0]);
    /// ```
    #[track_caller]
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, opts: &Conv2dOptions) -> Tensor {
        let (x, unbatch) = batched("conv2d", self);
        let (n, c, h, w) = (x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]);
        let g = opts.groups;
        assert!(
            weight.rank() == 4,
            "conv2d: the weight must be [O, C / groups, KH, KW], got {}",
            weight.shape()
        );
        let (o, cg, kh, kw) = (
            weight.dims()[0],
            weight.dims()[1],
            weight.dims()[2],
            weight.dims()[3],
        );
        assert!(
            g >= 1 && c % g == 0 && o % g == 0 && cg == c / g.max(1),
            "conv2d: input {} and weight {} do not fit {g} group(s) \
             (the weight must be [O, C / groups, KH, KW] with C and O divisible by groups)",
            self.shape(),
            weight.shape()
        );
        assert!(
            opts.stride.iter().chain(&opts.dilation).all(|&v| v >= 1) && kh >= 1 && kw >= 1,
            "conv2d: stride {:?}, dilation {:?} and kernel {}x{} must be >= 1",
            opts.stride,
            opts.dilation,
            kh,
            kw
        );
        assert!(
            x.dtype().is_float() && weight.dtype() == x.dtype(),
            "conv2d: needs a float input and weight of one dtype, got {} {} and {} {}",
            x.dtype(),
            self.shape(),
            weight.dtype(),
            weight.shape()
        );
        assert!(
            opts.padding != Padding::Same || opts.stride == [1, 1],
            "conv2d: padding Same needs stride 1 (as in PyTorch), got stride {:?}",
            opts.stride
        );
        if let Some(b) = bias {
            assert!(
                b.dims() == [o],
                "conv2d: the bias must be [{o}] for weight {}, got {}",
                weight.shape(),
                b.shape()
            );
        }
        let [(top, bottom), (left, right)] = opts.padding.resolve([kh, kw], opts.dilation);
        let (ph, pw) = (h + top + bottom, w + left + right);
        for (size, k, d, what) in [
            (ph, kh, opts.dilation[0], "height"),
            (pw, kw, opts.dilation[1], "width"),
        ] {
            assert!(
                size > d * (k - 1),
                "conv2d: the kernel {}x{} with dilation {:?} does not fit the padded {what} {size} \
                 of input {}",
                kh,
                kw,
                opts.dilation,
                self.shape()
            );
        }
        let padded = x.pad(&[(0, 0), (0, 0), (top, bottom), (left, right)], 0.0);
        let cols = padded.window(&[kh, kw], &opts.stride, &opts.dilation); // [N, C, KH, KW, OH, OW]
        let (oh, ow) = (cols.dims()[4], cols.dims()[5]);
        let cols = cols.reshape([n, g, cg * kh * kw, oh * ow]);
        let kernel = weight.reshape([g, o / g, cg * kh * kw]);
        let mut y = kernel.matmul(&cols).reshape([n, o, oh, ow]);
        if let Some(b) = bias {
            y = y.add(&b.reshape([1, o, 1, 1]));
        }
        if unbatch {
            y.squeeze(0)
        } else {
            y
        }
    }

    /// 2-D transposed convolution (PyTorch's `conv_transpose2d`, the gradient of `conv2d` with
    /// respect to its input): input `[N, Cin, H, W]` (or `[Cin, H, W]`), weight
    /// `[Cin, Cout / groups, KH, KW]`, optional bias `[Cout]`; output `[N, Cout, OH, OW]` with
    /// `OH = (H - 1) stride - 2 padding + dilation (KH - 1) + output_padding + 1`.
    ///
    /// Input element `(ih, iw)` adds `x * w[.., kh, kw]` to output `(ih stride - padding + kh
    /// dilation, ..)`. Computed as a stride-1 convolution: the input is spread out by the stride
    /// (zeros between), padded by `dilation (K - 1) - padding` (plus the output padding after;
    /// cropped where negative), and convolved with the spatially flipped kernel whose in and out
    /// channels are swapped within each group.
    #[track_caller]
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: &ConvTranspose2dOptions,
    ) -> Tensor {
        let (x, unbatch) = batched("conv_transpose2d", self);
        let c_in = x.dims()[1];
        let g = opts.groups;
        assert!(
            weight.rank() == 4,
            "conv_transpose2d: the weight must be [Cin, Cout / groups, KH, KW], got {}",
            weight.shape()
        );
        let (wc, cog, kh, kw) = (
            weight.dims()[0],
            weight.dims()[1],
            weight.dims()[2],
            weight.dims()[3],
        );
        assert!(
            g >= 1 && wc == c_in && c_in % g == 0,
            "conv_transpose2d: input {} and weight {} do not fit {g} group(s) \
             (the weight must be [Cin, Cout / groups, KH, KW] with Cin divisible by groups)",
            self.shape(),
            weight.shape()
        );
        assert!(
            opts.stride.iter().chain(&opts.dilation).all(|&v| v >= 1) && kh >= 1 && kw >= 1,
            "conv_transpose2d: stride {:?}, dilation {:?} and kernel {kh}x{kw} must be >= 1",
            opts.stride,
            opts.dilation
        );
        for j in 0..2 {
            assert!(
                opts.output_padding[j] < opts.stride[j].max(opts.dilation[j]),
                "conv_transpose2d: output padding {:?} must be smaller than the stride {:?} or \
                 the dilation {:?}",
                opts.output_padding,
                opts.stride,
                opts.dilation
            );
        }
        let c_out = cog * g;
        if let Some(b) = bias {
            assert!(
                b.dims() == [c_out],
                "conv_transpose2d: the bias must be [{c_out}] for weight {} and {g} group(s), got {}",
                weight.shape(),
                b.shape()
            );
        }
        // Spread by the stride, then pad (or crop) so that a stride-1 convolution gives the
        // scatter's output.
        let mut t = x;
        for (j, k) in [kh, kw].into_iter().enumerate() {
            let dim = 2 + j;
            if opts.stride[j] > 1 {
                t = spread(&t, dim, opts.stride[j]);
            }
            let size = t.dims()[dim] as i64;
            let before = (opts.dilation[j] * (k - 1)) as i64 - opts.padding[j] as i64;
            let after = before + opts.output_padding[j] as i64;
            let len = size + before + after;
            assert!(
                len > (opts.dilation[j] * (k - 1)) as i64,
                "conv_transpose2d: padding {:?} leaves no output for input {} and weight {}",
                opts.padding,
                self.shape(),
                weight.shape()
            );
            let mut pads = [(0, 0); 4];
            pads[dim] = (before.max(0) as usize, after.max(0) as usize);
            t = t.pad(&pads, 0.0);
            t = t.narrow(dim, (-before).max(0) as usize, len as usize);
        }
        // [Cin, Cout/G, KH, KW] -> [G, Cin/G, Cout/G, ..] -> [Cout, Cin/G, KH, KW], flipped.
        let kernel = weight
            .reshape([g, c_in / g, cog, kh, kw])
            .permute(&[0, 2, 1, 3, 4])
            .reshape([c_out, c_in / g, kh, kw])
            .flip(&[2, 3]);
        let conv = Conv2dOptions {
            stride: [1, 1],
            padding: Padding::Valid,
            dilation: opts.dilation,
            groups: g,
        };
        let y = t.conv2d(&kernel, bias, &conv);
        if unbatch {
            y.squeeze(0)
        } else {
            y
        }
    }
}
