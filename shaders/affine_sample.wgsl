// affine_sample.wgsl — bilinear sampling of a batch of images, each at its own affine-transformed
// coordinates, zero outside the image: the kernel of kiln's Op::AffineSample (data augmentation:
// flips, crops, rotations and scalings of a whole batch in one warp).
//
//   (sx, sy) = theta[n] * (ox, oy, 1)       theta[n] = [[t0, t1, t2], [t3, t4, t5]]
//   out[n, c, oy, ox] = (1-fx)(1-fy) x[n, c, y0, x0] + fx(1-fy) x[n, c, y0, x0+1]
//                     + (1-fx) fy   x[n, c, y0+1, x0] + fx fy   x[n, c, y0+1, x0+1]
//   with x0 = floor(sx), fx = sx - x0, y0 = floor(sy), fy = sy - y0.
//
// Coordinates are in input pixels, pixel (i, j) centred at (x = j, y = i). A tap outside the
// input adds nothing (PyTorch's grid_sample padding_mode="zeros"); a NaN or infinite position
// samples nothing. Integer positions give the weights 1, 0, 0, 0, so a flip or an integer shift
// copies exactly.
//
// Generated region (between the @kiln:generated markers; the code generator replaces it):
//   const N, C, H, W, OH, OW: u32      batch, channels, input and output height and width
//   bindings                           whatever the loads and the store need (the default region
//                                      uses @group(0) @binding(0) out_buf (read_write),
//                                      @binding(1) x_buf (read), @binding(2) theta_buf (read),
//                                      all array<f32>, row-major, contiguous)
//   fn load_x(n, c, y, x) -> f32       x[n, c, y, x]; only called with y < H, x < W
//   fn load_theta(n, k) -> f32         entry k (row-major, k < 6) of image n's matrix
//   fn store_out(n, c, oy, ox, v)      writes out[n, c, oy, ox]; the generator folds an
//                                      elementwise epilogue (a normalisation, say) into it
//
// Workgroup shape: @workgroup_size(64), dispatched as a flat count of ceil(N * OH * OW / 64)
// workgroups that the host spreads over x, y and z (at most 65,535 each); the kernel folds the
// three workgroup ids back into one index.
// Each invocation computes one output position (n, oy, ox): it reads the six entries of theta[n],
// computes the sample position and the four weights once, then loops over the C channels (C
// iterations; lavapipe stops any loop at 65,535), reading up to four input pixels and writing
// out[n, c, oy, ox] for each.

// @kiln:generated-begin
const N: u32 = 2u;
const C: u32 = 3u;
const H: u32 = 5u;
const W: u32 = 7u;
const OH: u32 = 4u;
const OW: u32 = 6u;
@group(0) @binding(0) var<storage, read_write> out_buf: array<f32>;
@group(0) @binding(1) var<storage, read> x_buf: array<f32>;
@group(0) @binding(2) var<storage, read> theta_buf: array<f32>;
// x[n, c, y, x]; called only with y < H, x < W.
fn load_x(n: u32, c: u32, y: u32, x: u32) -> f32 { return x_buf[((n * C + c) * H + y) * W + x]; }
// Entry k (row-major) of image n's 2x3 matrix.
fn load_theta(n: u32, k: u32) -> f32 { return theta_buf[n * 6u + k]; }
// Writes out[n, c, oy, ox].
fn store_out(n: u32, c: u32, oy: u32, ox: u32, v: f32) { out_buf[((n * C + c) * OH + oy) * OW + ox] = v; }
// @kiln:generated-end

// True if tap coordinate `t` (a whole number, or NaN/infinite) lies inside 0..size-1.
fn inside(t: f32, size: u32) -> bool {
    return t >= 0.0 && t <= f32(size) - 1.0;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y) * 64u + lid;
    if (idx >= N * OH * OW) { return; }
    let ox = idx % OW;
    let oy = (idx / OW) % OH;
    let n = idx / (OW * OH);

    let px = f32(ox);
    let py = f32(oy);
    let sx = load_theta(n, 0u) * px + load_theta(n, 1u) * py + load_theta(n, 2u);
    let sy = load_theta(n, 3u) * px + load_theta(n, 4u) * py + load_theta(n, 5u);
    let x0 = floor(sx);
    let y0 = floor(sy);
    let fx = sx - x0;
    let fy = sy - y0;
    let x1 = x0 + 1.0;
    let y1 = y0 + 1.0;
    // The comparisons are false for NaN, so such taps are never read.
    let in_x0 = inside(x0, W);
    let in_x1 = inside(x1, W);
    let in_y0 = inside(y0, H);
    let in_y1 = inside(y1, H);
    // Indices of the taps; only used when inside, where the float is a whole number in range.
    let ix0 = u32(select(0.0, x0, in_x0));
    let ix1 = u32(select(0.0, x1, in_x1));
    let iy0 = u32(select(0.0, y0, in_y0));
    let iy1 = u32(select(0.0, y1, in_y1));
    let w00 = (1.0 - fx) * (1.0 - fy);
    let w01 = fx * (1.0 - fy);
    let w10 = (1.0 - fx) * fy;
    let w11 = fx * fy;

    for (var c = 0u; c < C; c++) {
        var v = 0.0;
        if (in_x0 && in_y0) { v = v + w00 * load_x(n, c, iy0, ix0); }
        if (in_x1 && in_y0) { v = v + w01 * load_x(n, c, iy0, ix1); }
        if (in_x0 && in_y1) { v = v + w10 * load_x(n, c, iy1, ix0); }
        if (in_x1 && in_y1) { v = v + w11 * load_x(n, c, iy1, ix1); }
        store_out(n, c, oy, ox, v);
    }
}
