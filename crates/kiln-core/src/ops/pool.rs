//! 2-D pooling: max and average over sliding windows, and their adaptive forms, composed from
//! padding, [`Tensor::window`] and a reduction over the window axes (one fused reduction kernel;
//! gradients follow from the primitives' rules).

use crate::ops::conv::batched;
use crate::tensor::Tensor;

/// Options of [`Tensor::max_pool2d`] and [`Tensor::avg_pool2d`], as PyTorch's `MaxPool2d` and
/// `AvgPool2d`; all pairs are `[height, width]`.
///
/// ```
/// # use kiln_core::Pool2dOptions;
/// let opts = Pool2dOptions::new(3).stride(2).padding(1);
/// assert_eq!((opts.kernel, opts.stride, opts.padding), ([3, 3], [2, 2], [1, 1]));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dOptions {
    /// Window size.
    pub kernel: [usize; 2],
    /// Step between windows.
    pub stride: [usize; 2],
    /// Implicit padding on each side (at most half the kernel): `-inf` for max, zeros for
    /// average.
    pub padding: [usize; 2],
    /// Spacing between window taps (max pooling only).
    pub dilation: [usize; 2],
    /// Round the output size up instead of down: a last, partial window is kept when it starts
    /// inside the input or the left padding.
    pub ceil_mode: bool,
    /// Average pooling: whether padding zeros count in the divisor (the part of a window beyond
    /// the padding, which only `ceil_mode` makes, never counts).
    pub count_include_pad: bool,
}

impl Pool2dOptions {
    /// A `k x k` window moving by `k`: no padding, dilation 1, floor mode, padding counted.
    pub fn new(k: usize) -> Self {
        Pool2dOptions {
            kernel: [k, k],
            stride: [k, k],
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad: true,
        }
    }
    /// The same stride in both dimensions.
    pub fn stride(self, s: usize) -> Self {
        Pool2dOptions {
            stride: [s, s],
            ..self
        }
    }
    /// The same padding in both dimensions.
    pub fn padding(self, p: usize) -> Self {
        Pool2dOptions {
            padding: [p, p],
            ..self
        }
    }
    /// The same dilation in both dimensions.
    pub fn dilation(self, d: usize) -> Self {
        Pool2dOptions {
            dilation: [d, d],
            ..self
        }
    }
    /// Round output sizes up (`true`) or down.
    pub fn ceil_mode(self, on: bool) -> Self {
        Pool2dOptions {
            ceil_mode: on,
            ..self
        }
    }
    /// Whether average pooling divides by the window size including padding.
    pub fn count_include_pad(self, on: bool) -> Self {
        Pool2dOptions {
            count_include_pad: on,
            ..self
        }
    }
}

/// The windows of one spatial dimension: input size `n`, padding `pad` on each side, and the
/// length `len` that the padded input must have for the window view to give exactly the output
/// size (longer than `n + 2 pad` by the ceil mode's overhang, or shorter when the last rows are
/// never read).
#[derive(Clone, Copy, Debug)]
struct Span {
    n: usize,
    pad: usize,
    len: usize,
}

impl Pool2dOptions {
    /// The windows of both spatial dimensions of `x` (`[N, C, H, W]`), as PyTorch computes them.
    #[track_caller]
    fn spans(&self, op: &str, x: &Tensor) -> [Span; 2] {
        [0, 1].map(|j| {
            let (n, k, s, p, d) = (
                x.dims()[2 + j],
                self.kernel[j],
                self.stride[j],
                self.padding[j],
                self.dilation[j],
            );
            assert!(
                k >= 1 && s >= 1 && d >= 1,
                "{op}: kernel {:?}, stride {:?} and dilation {:?} must be >= 1",
                self.kernel,
                self.stride,
                self.dilation
            );
            assert!(
                p <= k / 2,
                "{op}: padding {:?} must be at most half the kernel {:?}",
                self.padding,
                self.kernel
            );
            let span = d * (k - 1) + 1;
            assert!(
                n + 2 * p >= span,
                "{op}: a window of {k} taps with dilation {d} and padding {p} does not fit in \
                 size {n} of {}",
                x.shape()
            );
            let room = n + 2 * p - span;
            let mut out = if self.ceil_mode {
                room.div_ceil(s)
            } else {
                room / s
            } + 1;
            // The last window must start inside the input or the left padding.
            if self.ceil_mode && (out - 1) * s >= n + p {
                out -= 1;
            }
            Span {
                n,
                pad: p,
                len: (out - 1) * s + span,
            }
        })
    }
}

/// `x` (`[.., H, W]`) padded by `pad` on each side with `pad_value`, then extended with
/// `overhang_value` or cut at the end to each span's `len`.
fn frame(x: &Tensor, spans: &[Span; 2], pad_value: f64, overhang_value: f64) -> Tensor {
    let lead = x.rank() - 2;
    let mut pads = vec![(0, 0); x.rank()];
    let mut over = vec![(0, 0); x.rank()];
    for (j, sp) in spans.iter().enumerate() {
        pads[lead + j] = (sp.pad, sp.pad);
        over[lead + j] = (0, sp.len.saturating_sub(sp.n + 2 * sp.pad));
    }
    let mut t = x.pad(&pads, pad_value).pad(&over, overhang_value);
    for (j, sp) in spans.iter().enumerate() {
        t = t.narrow(lead + j, 0, sp.len);
    }
    t
}

/// `x` averaged along `dim` to `out` segments, segment `i` covering `floor(i n / out)` up to
/// `ceil((i + 1) n / out)` as in PyTorch: a reshape when `out` divides the size, else one slice
/// per segment, joined with `cat`.
fn adaptive_mean_dim(x: &Tensor, dim: usize, out: usize) -> Tensor {
    let n = x.dims()[dim];
    if n.is_multiple_of(out) {
        let mut dims = x.dims().to_vec();
        dims.splice(dim..=dim, [out, n / out]);
        return x.reshape(dims).mean_axes(&[dim + 1]);
    }
    let parts: Vec<Tensor> = (0..out)
        .map(|i| {
            let (start, end) = adaptive_segment(n, out, i);
            x.narrow(dim, start, end - start).mean_axes_keepdim(&[dim])
        })
        .collect();
    Tensor::cat(&parts.iter().collect::<Vec<_>>(), dim)
}

/// Segment `i` of `out` over a size `n`, as PyTorch's adaptive pools cut it:
/// `floor(i n / out)..ceil((i + 1) n / out)`.
fn adaptive_segment(n: usize, out: usize, i: usize) -> (usize, usize) {
    (i * n / out, ((i + 1) * n).div_ceil(out))
}

/// `x` with dimension `dim` (size `n`) laid out as `out` consecutive bins of `k` elements, bin
/// `i` holding segment `i` (see [`adaptive_segment`]) followed by `-inf` up to the longest
/// segment's length `k`; returns the view and `k`. A size that `out` divides is its own layout.
/// Only views (narrow, pad, cat): a window of `k` with stride `k` over the result then sees each
/// segment as one window, so adaptive max pooling is max pooling and has its gradient.
fn adaptive_bins(x: &Tensor, dim: usize, out: usize) -> (Tensor, usize) {
    let n = x.dims()[dim];
    if n.is_multiple_of(out) {
        return (x.clone(), n / out);
    }
    let k = (0..out)
        .map(|i| adaptive_segment(n, out, i))
        .map(|(start, end)| end - start)
        .max()
        .unwrap_or(1);
    let parts: Vec<Tensor> = (0..out)
        .map(|i| {
            let (start, end) = adaptive_segment(n, out, i);
            let mut pads = vec![(0, 0); x.rank()];
            pads[dim] = (0, k - (end - start));
            x.narrow(dim, start, end - start)
                .pad(&pads, f64::NEG_INFINITY)
        })
        .collect();
    (Tensor::cat(&parts.iter().collect::<Vec<_>>(), dim), k)
}

impl Tensor {
    /// Checks a pooling input (`[N, C, H, W]` or `[C, H, W]`, float) and batches it.
    #[track_caller]
    fn pool_input(&self, op: &str) -> (Tensor, bool) {
        assert!(
            self.dtype().is_float(),
            "{op}: needs a float tensor, got {} {}",
            self.dtype(),
            self.shape()
        );
        batched(op, self)
    }

    /// 2-D max pooling, as PyTorch's `max_pool2d`: `[N, C, H, W] -> [N, C, OH, OW]` (or the same
    /// without `N`), each output the largest input in its window. Padding is `-inf`; with
    /// `ceil_mode` a partial last window is kept when it starts inside the input or the left
    /// padding. A window's gradient goes to its first maximum in row-major order of the taps, as in
    /// PyTorch (ties are not shared; see `autodiff`'s rule for a max over a window's taps).
    ///
    /// ```
    /// # use kiln_core::{Device, Pool2dOptions, Tensor};
    /// let x = Tensor::arange(0.0, 9.0, 1.0, &Device::cpu()).reshape([1, 1, 3, 3]);
    /// let y = x.max_pool2d(&Pool2dOptions::new(2).stride(1));
    /// assert_eq!(y.to_vec::<f32>().unwrap(), vec![4.0, 5.0, 7.0, 8.0]);
    /// ```
    #[track_caller]
    pub fn max_pool2d(&self, opts: &Pool2dOptions) -> Tensor {
        let (x, unbatch) = self.pool_input("max_pool2d");
        let spans = opts.spans("max_pool2d", &x);
        let framed = frame(&x, &spans, f64::NEG_INFINITY, f64::NEG_INFINITY);
        let y = framed
            .window(&opts.kernel, &opts.stride, &opts.dilation) // [N, C, KH, KW, OH, OW]
            .max_axes(&[2, 3]);
        if unbatch {
            y.squeeze(0)
        } else {
            y
        }
    }

    /// 2-D average pooling, as PyTorch's `avg_pool2d`: `[N, C, H, W] -> [N, C, OH, OW]` (or the
    /// same without `N`), each output the sum of its window divided by its count: the window's
    /// taps inside the input, plus those in the padding when `count_include_pad` (the `ceil_mode`
    /// overhang beyond the padding never counts). Dilation must be 1.
    ///
    /// ```
    /// # use kiln_core::{Device, Pool2dOptions, Tensor};
    /// let x = Tensor::arange(0.0, 9.0, 1.0, &Device::cpu()).reshape([1, 1, 3, 3]);
    /// let y = x.avg_pool2d(&Pool2dOptions::new(2).stride(1));
    /// assert_eq!(y.to_vec::<f32>().unwrap(), vec![2.0, 3.0, 5.0, 6.0]);
    /// ```
    #[track_caller]
    pub fn avg_pool2d(&self, opts: &Pool2dOptions) -> Tensor {
        let (x, unbatch) = self.pool_input("avg_pool2d");
        assert!(
            opts.dilation == [1, 1],
            "avg_pool2d: dilation must be 1 (as in PyTorch), got {:?}",
            opts.dilation
        );
        let spans = opts.spans("avg_pool2d", &x);
        let sum = frame(&x, &spans, 0.0, 0.0)
            .window(&opts.kernel, &opts.stride, &opts.dilation)
            .sum_axes(&[2, 3]);
        // Every window counts its full size unless some of it lies outside what counts.
        let counted = |sp: &Span| {
            let reach = if opts.count_include_pad {
                sp.n + 2 * sp.pad
            } else {
                sp.n
            };
            sp.len <= reach && (opts.count_include_pad || sp.pad == 0)
        };
        let y = if spans.iter().all(counted) {
            sum.div_scalar((opts.kernel[0] * opts.kernel[1]) as f64)
        } else {
            // The counts, [OH, OW]: the same windows summed over ones (1 where a tap counts).
            let (h, w) = (spans[0].n, spans[1].n);
            let ones = Tensor::full_dtype([h, w], 1.0, x.dtype(), x.device());
            let pad_value = if opts.count_include_pad { 1.0 } else { 0.0 };
            let count = frame(&ones, &spans, pad_value, 0.0)
                .window(&opts.kernel, &opts.stride, &opts.dilation)
                .sum_axes(&[0, 1]);
            sum.div(&count)
        };
        if unbatch {
            y.squeeze(0)
        } else {
            y
        }
    }

    /// Adaptive 2-D average pooling, as PyTorch's `adaptive_avg_pool2d`: `[N, C, H, W] ->
    /// [N, C, out[0], out[1]]` (or the same without `N`); output row `i` averages input rows
    /// `floor(i H / OH)` up to `ceil((i + 1) H / OH)`, and likewise for columns.
    ///
    /// When `OH` divides `H` and `OW` divides `W` this is a plain [`Tensor::avg_pool2d`] with a
    /// `H/OH x W/OW` kernel and stride. Otherwise each dimension is reduced on its own (the
    /// average of row averages is the window's average, every row segment being equally long):
    /// a dimension that divides evenly by a reshape, one that does not by one slice per output
    /// index, joined with `cat`.
    #[track_caller]
    pub fn adaptive_avg_pool2d(&self, out: [usize; 2]) -> Tensor {
        let op = "adaptive_avg_pool2d";
        let (x, unbatch) = self.adaptive_input(op, out);
        let (h, w) = (x.dims()[2], x.dims()[3]);
        let y = if h.is_multiple_of(out[0]) && w.is_multiple_of(out[1]) {
            let mut opts = Pool2dOptions::new(1);
            opts.kernel = [h / out[0], w / out[1]];
            opts.stride = opts.kernel;
            x.avg_pool2d(&opts)
        } else {
            let rows = adaptive_mean_dim(&x, 2, out[0]);
            adaptive_mean_dim(&rows, 3, out[1])
        };
        if unbatch {
            y.squeeze(0)
        } else {
            y
        }
    }

    /// Adaptive 2-D max pooling, as PyTorch's `adaptive_max_pool2d`: `[N, C, H, W] ->
    /// [N, C, out[0], out[1]]` (or the same without `N`); output `(i, j)` is the largest input in
    /// rows `floor(i H / OH)..ceil((i + 1) H / OH)` and the matching columns. Its windows are laid
    /// out as views (each row and column segment padded with `-inf` to the longest) and pooled
    /// by one max over a window, so a gradient goes to the window's first maximum in row-major
    /// order, as in PyTorch.
    #[track_caller]
    pub fn adaptive_max_pool2d(&self, out: [usize; 2]) -> Tensor {
        let (x, unbatch) = self.adaptive_input("adaptive_max_pool2d", out);
        let (rows, kh) = adaptive_bins(&x, 2, out[0]);
        let (grid, kw) = adaptive_bins(&rows, 3, out[1]);
        let y = grid
            .window(&[kh, kw], &[kh, kw], &[1, 1]) // [N, C, KH, KW, OH, OW]
            .max_axes(&[2, 3]);
        if unbatch {
            y.squeeze(0)
        } else {
            y
        }
    }

    /// Checks an adaptive pool's input and output size, and batches the input.
    #[track_caller]
    fn adaptive_input(&self, op: &str, out: [usize; 2]) -> (Tensor, bool) {
        let (x, unbatch) = self.pool_input(op);
        let (h, w) = (x.dims()[2], x.dims()[3]);
        assert!(
            out[0] >= 1 && out[1] >= 1 && h >= 1 && w >= 1,
            "{op}: output size {out:?} and input {} must be non-empty",
            self.shape()
        );
        (x, unbatch)
    }
}
