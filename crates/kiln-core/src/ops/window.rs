//! Sliding windows as views: the building block of convolution (im2col, never materialised:
//! backends fold the window into the matmul's loads) and of pooling (a reduction over the window
//! axes), and its transpose, which the gradient of a window sums.

use crate::op::{Op, WindowGeometry};
use crate::shape::Shape;
use crate::tensor::Tensor;

impl Tensor {
    /// Sliding windows over the last `kernel.len()` dimensions: `[.., S..] -> [.., K.., O..]`,
    /// with `O_j = (S_j - dilation_j (K_j - 1) - 1) / stride_j + 1`; output `(.., k.., o..)` is
    /// input `(.., o_j stride_j + k_j dilation_j)`. Pad first for padded windows.
    ///
    /// ```
    /// # use kiln_core::{Device, Tensor};
    /// let x = Tensor::arange(0.0, 5.0, 1.0, &Device::cpu());          // [0, 1, 2, 3, 4]
    /// let w = x.window(&[2], &[2], &[1]);                             // [K=2, O=2]
    /// assert_eq!(w.to_vec::<f32>().unwrap(), vec![0.0, 2.0, 1.0, 3.0]);
    /// ```
    #[track_caller]
    pub fn window(&self, kernel: &[usize], stride: &[usize], dilation: &[usize]) -> Tensor {
        let r = kernel.len();
        assert!(
            r >= 1 && stride.len() == r && dilation.len() == r && self.rank() >= r,
            "window: kernel {kernel:?}, stride {stride:?}, dilation {dilation:?} do not fit {}",
            self.shape()
        );
        assert!(
            kernel.iter().chain(stride).chain(dilation).all(|&v| v >= 1),
            "window: kernel {kernel:?}, stride {stride:?} and dilation {dilation:?} must be >= 1"
        );
        let g = WindowGeometry {
            kernel: kernel.to_vec(),
            stride: stride.to_vec(),
            dilation: dilation.to_vec(),
        };
        let lead = self.rank() - r;
        let spatial = &self.dims()[lead..];
        for j in 0..r {
            assert!(
                g.windows(j, spatial[j]) >= 1,
                "window: a window of {} taps with dilation {} does not fit in size {} of {}",
                kernel[j],
                dilation[j],
                spatial[j],
                self.shape()
            );
        }
        let mut dims = self.dims()[..lead].to_vec();
        dims.extend_from_slice(kernel);
        dims.extend((0..r).map(|j| g.windows(j, spatial[j])));
        Tensor::from_op(
            Op::Window(g),
            vec![self.clone()],
            Shape(dims),
            self.dtype(),
            self.device(),
        )
    }

    /// The transpose of [`Tensor::window`] before its sum: `[.., K.., O..] -> [.., K.., S..]`
    /// (`size` gives `S`), output `(.., k.., s..)` being input `(.., k.., (s_j - k_j
    /// dilation_j) / stride_j)` when each division is exact and inside `O`, else 0. Summing the
    /// `K` axes of the result is col2im, the gradient of `window`.
    #[track_caller]
    pub fn unwindow(&self, size: &[usize], stride: &[usize], dilation: &[usize]) -> Tensor {
        let r = size.len();
        assert!(
            r >= 1 && stride.len() == r && dilation.len() == r && self.rank() >= 2 * r,
            "unwindow: size {size:?}, stride {stride:?}, dilation {dilation:?} do not fit {}",
            self.shape()
        );
        let lead = self.rank() - 2 * r;
        let kernel = self.dims()[lead..lead + r].to_vec();
        let g = WindowGeometry {
            kernel,
            stride: stride.to_vec(),
            dilation: dilation.to_vec(),
        };
        let mut dims = self.dims()[..lead + r].to_vec();
        dims.extend_from_slice(size);
        Tensor::from_op(
            Op::Unwindow(g),
            vec![self.clone()],
            Shape(dims),
            self.dtype(),
            self.device(),
        )
    }
}
