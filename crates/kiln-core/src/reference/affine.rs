//! Affine sampling ([`Op::AffineSample`](crate::op::Op::AffineSample)): bilinear sampling of
//! `[N, C, H, W]` images at per-image affine coordinates, zero outside, as a plain loop over
//! output pixels.

/// `x [N, C, H, W]` sampled at `theta [N, 2, 3] * (ox, oy, 1)` for every output pixel of
/// `out_dims = [N, C, OH, OW]`.
pub(super) fn affine_sample(
    x: &[f64],
    in_dims: &[usize],
    theta: &[f64],
    out_dims: &[usize],
) -> Vec<f64> {
    let (n, c, h, w) = (in_dims[0], in_dims[1], in_dims[2], in_dims[3]);
    let (oh, ow) = (out_dims[2], out_dims[3]);
    let mut out = vec![0.0; n * c * oh * ow];
    // The taps of one sample position: (input index within a channel, weight) of those inside.
    let taps = |sx: f64, sy: f64| -> Vec<(usize, f64)> {
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let inside = |v: f64, size: usize| v >= 0.0 && v <= size as f64 - 1.0;
        let mut t = vec![];
        for (dy, dx, weight) in [
            (0.0, 0.0, (1.0 - fx) * (1.0 - fy)),
            (0.0, 1.0, fx * (1.0 - fy)),
            (1.0, 0.0, (1.0 - fx) * fy),
            (1.0, 1.0, fx * fy),
        ] {
            // False for NaN and infinite positions: they sample nothing.
            if inside(x0 + dx, w) && inside(y0 + dy, h) {
                t.push((((y0 + dy) as usize) * w + (x0 + dx) as usize, weight));
            }
        }
        t
    };
    for b in 0..n {
        let m = &theta[b * 6..b * 6 + 6];
        for oy in 0..oh {
            for ox in 0..ow {
                let (px, py) = (ox as f64, oy as f64);
                let sx = m[0] * px + m[1] * py + m[2];
                let sy = m[3] * px + m[4] * py + m[5];
                let taps = taps(sx, sy);
                for ch in 0..c {
                    let image = &x[(b * c + ch) * h * w..(b * c + ch + 1) * h * w];
                    let v = taps.iter().fold(0.0, |acc, &(i, wt)| acc + wt * image[i]);
                    out[((b * c + ch) * oh + oy) * ow + ox] = v;
                }
            }
        }
    }
    out
}
