//! f16 without native f16: the kernel that packs an f32 scratch buffer into f16 halves.
//!
//! Matmul, reduction and affine-sampling kernels whose output is f16 write it as f32 into a
//! scratch buffer (their invocations store single elements, and two invocations must not write
//! the halves of one word); this kernel, dispatched right after, rounds each value to f16 and
//! writes two per word into the real output. See `shaders/f16.wgsl` for the layout.

use super::expr::F16_WGSL;
use super::{flat_index, KernelSource, Workgroups};

/// Invocations per workgroup.
const WORKGROUP: u32 = 256;

/// The kernel packing the `numel` f32 values of binding 1 into the f16 halves of binding 0.
pub fn pack_kernel(numel: u64) -> KernelSource {
    let words = numel.div_ceil(2);
    let wgsl = format!(
        "// kiln kernel: pack f16 [{numel}]
@group(0) @binding(0) var<storage, read_write> out_buf: array<u32>;
@group(0) @binding(1) var<storage, read> in1: array<f32>;
{F16_WGSL}
// Each invocation rounds elements 2w and 2w + 1 (of {numel}) of the f32 scratch buffer to f16
// and writes them as word w of the output (the second half is 0 past the end).
@compute @workgroup_size({WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
    let w = {flat};
    if (w >= {words}u) {{ return; }}
    var h1 = 0u;
    if (2u * w + 1u < {numel}u) {{ h1 = kiln_f32_to_f16(in1[2u * w + 1u]); }}
    out_buf[w] = kiln_f32_to_f16(in1[2u * w]) | (h1 << 16u);
}}
",
        flat = flat_index(WORKGROUP),
    );
    KernelSource {
        name: format!("pack f16 [{numel}]"),
        wgsl,
        workgroups: Workgroups::Flat(words.div_ceil(WORKGROUP as u64)),
        flops: 0,
        bytes: numel * 6,
    }
}
