//! Affine-sampling kernels: the hand-written `shaders/affine_sample.wgsl`, with the region between
//! the `@kiln:generated` markers replaced by the problem size and generated load/store functions.
//! The image load folds views and elementwise prologues (a padded or sliced batch is read in
//! place); the matrices are always a buffer of their own (the scheduler materializes them); the
//! store folds the epilogue (the normalisation after an augmentation's warp).

use super::expr::{store_conv, unravel, Emitter, KernelEnv};
use super::matmul::fill_template;
use super::{KernelSource, Workgroups};
use kiln_core::schedule::Kernel;

/// The kernel template.
pub const AFFINE_SAMPLE_WGSL: &str = include_str!("../../../../shaders/affine_sample.wgsl");

/// Invocations per workgroup in the template (`@workgroup_size(64)`).
const WORKGROUP: u64 = 64;

/// The kernel of affine-sampling node `c` (with its epilogue up to `kernel.root`).
pub fn generate(env: &mut KernelEnv, kernel: &Kernel, c: usize) -> KernelSource {
    let p = env.p;
    let node = p.nodes[c].clone();
    let (x, theta) = (p.inputs[c][0], p.inputs[c][1]);
    let [n, ch, h, w] = <[usize; 4]>::try_from(p.nodes[x].dims()).expect("4-D images");
    let (oh, ow) = (node.dims()[2], node.dims()[3]);

    let mut em = Emitter::new(env, None);
    let v = em.value(x, &["n".into(), "c".into(), "y".into(), "x".into()]);
    let load_x = format!("    {}\n    return f32({v});", em.lines.join("\n    "));
    let prologue_ops = em.arith_ops as u64;

    let mut em = Emitter::new(env, None);
    let v = em.value(theta, &["n".into(), "(k / 3u)".into(), "(k % 3u)".into()]);
    let load_theta = format!("    {}\n    return f32({v});", em.lines.join("\n    "));

    let root = p.nodes[kernel.root].clone();
    let mut em = Emitter::new(env, Some((c, "core".to_string())));
    let v = em.value(kernel.root, &unravel("o", root.shape()));
    let epilogue = em.lines.join("\n    ");
    let epi_ops = em.arith_ops as u64;
    let store = store_conv(root.dtype(), &v);

    let region = format!(
        "const N: u32 = {n}u;
const C: u32 = {ch}u;
const H: u32 = {h}u;
const W: u32 = {w}u;
const OH: u32 = {oh}u;
const OW: u32 = {ow}u;
// x[n, c, y, x]; called only with y < H, x < W.
fn load_x(n: u32, c: u32, y: u32, x: u32) -> f32 {{
{load_x}
}}
// Entry k (row-major) of image n's 2x3 matrix.
fn load_theta(n: u32, k: u32) -> f32 {{
{load_theta}
}}
// Writes out[n, c, oy, ox] = epilogue(v).
fn store_out(n: u32, c: u32, oy: u32, ox: u32, v: f32) {{
    let o = ((n * C + c) * OH + oy) * OW + ox;
    let core = f32(v);
    {epilogue}
    out_buf[o] = {store};
}}
"
    );
    let positions = (n * oh * ow) as u64;
    let outputs = positions * ch as u64;
    KernelSource {
        name: format!(
            "affine_sample {n}x{ch}x{h}x{w} -> {oh}x{ow}{}",
            if kernel.root != c { " +epilogue" } else { "" }
        ),
        wgsl: fill_template(AFFINE_SAMPLE_WGSL, &region),
        workgroups: Workgroups::Flat(positions.div_ceil(WORKGROUP)),
        // Per position: two 3-term dot products, floors and four weights (~20); per output:
        // four multiply-adds, the loads' prologue four times and the epilogue.
        flops: positions * 20 + outputs * (8 + 4 * prologue_ops + epi_ops),
        bytes: 0,
    }
}
