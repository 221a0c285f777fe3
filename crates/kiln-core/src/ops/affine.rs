//! Affine sampling: every image of a batch warped by its own 2x3 matrix with bilinear
//! interpolation, in one kernel (the op behind the rotations, scalings, crops and flips of data
//! augmentation, `kiln_data::Augment`).

use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::{is_grad_enabled, Tensor};

fn invalid(msg: String) -> KilnError {
    KilnError::InvalidInput {
        op: "affine_sample",
        msg,
    }
}

/// Checks that `theta` is f32 `[n, 2, 3]`.
fn check_theta(theta: &Tensor, n: usize) -> Result<()> {
    if theta.dims() != [n, 2, 3] || theta.dtype() != DType::F32 {
        return Err(invalid(format!(
            "the matrices must be f32 [{n}, 2, 3] (one 2x3 matrix per image), got {} {}",
            theta.dtype(),
            theta.shape()
        )));
    }
    Ok(())
}

impl Tensor {
    /// Samples each image of this f32 `[N, C, H, W]` batch at affine-transformed coordinates,
    /// with bilinear interpolation and zero outside the image: output `[N, C, OH, OW]`, where
    /// `[OH, OW] = out_hw`.
    ///
    /// `theta` is f32 `[N, 2, 3]`, one matrix per image, mapping output pixel centres to input
    /// pixel coordinates: output pixel `(oy, ox)` of image n reads the input at
    /// `sx = t00 ox + t01 oy + t02`, `sy = t10 ox + t11 oy + t12`, where pixel `(i, j)` has its
    /// centre at `x = j, y = i`. So `[[1, 0, 0], [0, 1, 0]]` is the identity,
    /// `[[-1, 0, W - 1], [0, 1, 0]]` a horizontal flip and `[[1, 0, -2], [0, 1, 3]]` moves the
    /// content 2 pixels right and 3 up. The four pixels around `(sx, sy)` are mixed with the
    /// bilinear weights; one outside the image adds nothing, as in PyTorch's
    /// `grid_sample(.., mode="bilinear", padding_mode="zeros")`. Integer positions copy exactly.
    ///
    /// PyTorch's `affine_grid(t, size, align_corners=False)` takes matrices in normalised
    /// coordinates instead (-1 and 1 are the outer edges of the image);
    /// [`Tensor::affine_from_normalized`] converts them, after which this op computes what
    /// `grid_sample(x, affine_grid(t, ..), align_corners=False)` does.
    ///
    /// The matrices get their own small kernel (they are read for every output pixel); the
    /// sampling is one kernel that also computes an elementwise epilogue such as a normalisation.
    /// They are a tensor input, so new matrices (new random angles each batch) replay the same
    /// plan.
    ///
    /// Not differentiable: errors if `self` or `theta` requires a gradient (outside
    /// [`crate::no_grad`]), rather than silently giving none. Errors too if `self` is not a 4-D
    /// f32 tensor or `theta` not f32 `[N, 2, 3]`.
    ///
    /// ```
    /// # use kiln_core::{Device, Tensor};
    /// let dev = Device::cpu();
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 1, 4], &dev).unwrap();
    /// // Half a pixel to the right: each output is the mean of two neighbours (zero past the end).
    /// let t = Tensor::from_vec(vec![1.0f32, 0.0, 0.5, 0.0, 1.0, 0.0], [1, 2, 3], &dev).unwrap();
    /// let y = x.affine_sample(&t, [1, 4]).unwrap();
    /// assert_eq!(y.to_vec::<f32>().unwrap(), vec![1.5, 2.5, 3.5, 2.0]);
    /// ```
    pub fn affine_sample(&self, theta: &Tensor, out_hw: [usize; 2]) -> Result<Tensor> {
        if self.rank() != 4 || self.dtype() != DType::F32 {
            return Err(invalid(format!(
                "the images must be an f32 [N, C, H, W] batch, got {} {}",
                self.dtype(),
                self.shape()
            )));
        }
        let n = self.dims()[0];
        check_theta(theta, n)?;
        if is_grad_enabled() && (self.requires_grad() || theta.requires_grad()) {
            return Err(invalid(
                "affine_sample has no gradient, and an input requires one; detach it or build \
                 the sampling inside no_grad"
                    .into(),
            ));
        }
        let (x, theta) = Tensor::same_device("affine_sample", self, theta);
        let shape = Shape(vec![n, self.dims()[1], out_hw[0], out_hw[1]]);
        Ok(Tensor::from_op(
            Op::AffineSample,
            vec![x.clone(), theta],
            shape,
            DType::F32,
            x.device(),
        ))
    }

    /// Converts PyTorch's normalised affine matrices (`affine_grid(theta, size,
    /// align_corners=False)`: coordinates from -1 to 1 across the outer edges of the image) to
    /// the pixel matrices of [`Tensor::affine_sample`], for input size `in_hw = [H, W]` and output
    /// size `out_hw = [OH, OW]`: `M = P_in [theta; 0 0 1] P_out^-1`, where `P` maps normalised
    /// to pixel coordinates, `x_pixel = ((x_norm + 1) W - 1) / 2`. `theta`: f32 `[N, 2, 3]`;
    /// returns f32 `[N, 2, 3]`. Errors if `theta` has another shape.
    pub fn affine_from_normalized(
        theta: &Tensor,
        in_hw: [usize; 2],
        out_hw: [usize; 2],
    ) -> Result<Tensor> {
        if theta.rank() != 3 {
            return Err(invalid(format!(
                "the matrices must be f32 [N, 2, 3], got {} {}",
                theta.dtype(),
                theta.shape()
            )));
        }
        check_theta(theta, theta.dims()[0])?;
        let dev = theta.device();
        let ([h, w], [oh, ow]) = (in_hw.map(|v| v as f32), out_hw.map(|v| v as f32));
        // P_out^-1 maps output pixels to normalised coordinates: x_norm = (2 x + 1) / OW - 1.
        let to_norm = Tensor::from_vec(
            vec![
                2.0 / ow,
                0.0,
                1.0 / ow - 1.0,
                0.0,
                2.0 / oh,
                1.0 / oh - 1.0,
                0.0,
                0.0,
                1.0,
            ],
            [3, 3],
            dev,
        )?;
        let scale = Tensor::from_vec(vec![w / 2.0, h / 2.0], [2, 1], dev)?;
        let offset = Tensor::from_vec(
            vec![0.0, 0.0, (w - 1.0) / 2.0, 0.0, 0.0, (h - 1.0) / 2.0],
            [2, 3],
            dev,
        )?;
        Ok(theta.matmul(&to_norm).mul(&scale).add(&offset))
    }
}
