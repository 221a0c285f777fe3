//! Saliency maps: how much each input pixel moves a class score, from the gradient that kiln's
//! autodiff builds (`Tensor::grad_wrt`), shown as a heat map beside the image.

use crate::grid::host_values;
use crate::picture::{blank, draw_text, hot, min_max, range_gray, Anchor, Picture, Rect};
use image::Rgb;
use kiln_core::nn::Module;
use kiln_core::{no_grad, KilnError, Result, Tensor};
use std::path::Path;

/// The saliency map of `model` for `class` at `image` (`[C, H, W]` or `[1, C, H, W]`): the
/// gradient of the class's logit with respect to the input, `|d logit[class] / d x|`, taking the
/// largest over the channels of each pixel; a realized f32 `[H, W]` tensor on the model's device.
/// The model runs in evaluation mode and is put back in the mode it was in afterwards. Errors (not
/// panics) for an image of another rank or batch size, a model whose output is not `[1, classes]`,
/// or a class out of range.
pub fn saliency(model: &dyn Module, image: &Tensor, class: usize) -> Result<Tensor> {
    let x = match image.dims() {
        [_, _, _] => image.unsqueeze(0),
        [1, _, _, _] => image.clone(),
        _ => {
            return Err(KilnError::Data(format!(
                "saliency needs one image [C, H, W] or [1, C, H, W], got {}",
                image.shape()
            )))
        }
    };
    // The input must be a node of the graph the gradient is taken in: a host image meeting GPU
    // parameters would otherwise be copied into a new node, whose gradient is not `x`'s.
    let x = match model.parameters().first() {
        Some(p) => x.to_device(p.device())?,
        None => x,
    };
    let (h, w) = (x.dims()[2], x.dims()[3]);
    let was_training = model.is_training().unwrap_or(true);
    model.set_training(false);
    let result = (|| {
        let logits = model.forward(&x);
        if logits.rank() != 2 || logits.dims()[0] != 1 {
            return Err(KilnError::Data(format!(
                "saliency needs a model whose output is [1, classes] for one image, got {}",
                logits.shape()
            )));
        }
        let classes = logits.dims()[1];
        if class >= classes {
            return Err(KilnError::Data(format!(
                "saliency: class {class} is out of range for a model with {classes} outputs"
            )));
        }
        let score = logits.narrow(1, class, 1).sum();
        let grad = score.grad_wrt(&[&x]).remove(0);
        no_grad(|| grad.abs().max_axes(&[1]).reshape([h, w]).detach())
    })();
    model.set_training(was_training);
    result
}

/// Pixels of each panel of a saliency picture along its longer side.
const PANEL: usize = 168;

/// A picture of `map` (`[H, W]`) beside `image` (`[C, H, W]` or `[1, C, H, W]`, the same `H` and
/// `W`) in three panels, left to right: the image (gray, min to max; RGB when it has 3 channels;
/// the channel mean otherwise), the map in the "hot" colour map (black 0, red, yellow, white at
/// its maximum), and the image with the map laid over it. `title` is drawn above. The regions are
/// the three panels, in that order.
pub fn saliency_picture(image: &Tensor, map: &Tensor, title: &str) -> Result<Picture> {
    let (c, h, w) = match image.dims() {
        [c, h, w] | [1, c, h, w] => (*c, *h, *w),
        _ => {
            return Err(KilnError::Data(format!(
                "saliency picture: the image must be [C, H, W] or [1, C, H, W], got {}",
                image.shape()
            )))
        }
    };
    if map.dims() != [h, w] || c == 0 || h == 0 || w == 0 {
        return Err(KilnError::Data(format!(
            "saliency picture: the map must be [{h}, {w}] for image {}, got {}",
            image.shape(),
            map.shape()
        )));
    }
    let pixels = host_values(image)?;
    let heat = host_values(map)?;
    let (lo, hi) = min_max(&pixels);
    let peak = heat.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let rgb = |r: usize, col: usize| -> [u8; 3] {
        let at = |ch: usize| pixels[(ch * h + r) * w + col];
        if c == 3 {
            [0, 1, 2].map(|ch| range_gray(at(ch), lo, hi))
        } else {
            let mean = (0..c).map(at).sum::<f32>() / c as f32;
            let g = range_gray(mean, lo, hi);
            [g, g, g]
        }
    };
    let heat_at = |r: usize, col: usize| {
        if peak > 0.0 {
            heat[r * w + col].abs() / peak
        } else {
            0.0
        }
    };
    let scale = (PANEL.div_ceil(h.max(w))).max(1) as u32;
    let (pw, ph) = (w as u32 * scale, h as u32 * scale);
    let (margin, gap, top) = (10u32, 12u32, 56u32);
    let width = (2 * margin + 3 * pw + 2 * gap).max(420);
    let mut out = blank(width, top + ph + margin);
    draw_text(
        &mut out,
        title,
        (width as i32 / 2, 14),
        15.0,
        [0, 0, 0],
        Anchor::Center,
        false,
    );
    let captions = ["input", "saliency |d score / d pixel|", "overlay"];
    let mut regions = vec![];
    for (k, caption) in captions.iter().enumerate() {
        let rect = Rect {
            x: margin + k as u32 * (pw + gap),
            y: top,
            w: pw,
            h: ph,
        };
        for y in 0..ph {
            for x in 0..pw {
                let (r, col) = ((y / scale) as usize, (x / scale) as usize);
                let p = match k {
                    0 => rgb(r, col),
                    1 => hot(heat_at(r, col)),
                    _ => {
                        let (base, t) = (rgb(r, col), heat_at(r, col));
                        let tint = hot(t);
                        [0, 1, 2].map(|i| {
                            ((1.0 - t) * base[i] as f32 * 0.6 + t * tint[i] as f32).round() as u8
                        })
                    }
                };
                out.put_pixel(rect.x + x, rect.y + y, Rgb(p));
            }
        }
        draw_text(
            &mut out,
            caption,
            ((rect.x + pw / 2) as i32, top as i32 - 14),
            12.0,
            [0, 0, 0],
            Anchor::Center,
            false,
        );
        regions.push(rect);
    }
    Ok(Picture {
        image: out,
        regions,
    })
}

/// Writes [`saliency_picture`] of `image` and `map` as a PNG at `path`; returns the picture.
pub fn save_saliency(
    image: &Tensor,
    map: &Tensor,
    title: &str,
    path: impl AsRef<Path>,
) -> Result<Picture> {
    let picture = saliency_picture(image, map, title)?;
    picture.save(path)?;
    Ok(picture)
}
