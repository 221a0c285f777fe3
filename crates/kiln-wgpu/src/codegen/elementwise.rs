//! Elementwise kernels: one output element per invocation, the whole fused expression inline.

use super::expr::{store_conv, unravel, Emitter, KernelEnv};
use super::{flat_index, KernelSource, Workgroups};
use kiln_core::schedule::Kernel;

/// Invocations per workgroup.
const WORKGROUP: u32 = 256;

/// The kernel computing `kernel.root` at every element.
pub fn generate(env: &mut KernelEnv, kernel: &Kernel) -> KernelSource {
    let root = env.p.nodes[kernel.root].clone();
    let numel = root.numel() as u64;
    let coords = unravel("idx", root.shape());
    let mut em = Emitter::new(env, None);
    let v = em.value(kernel.root, &coords);
    let lines = em.lines.join("\n    ");
    let ops = em.arith_ops as u64;
    let store = store_conv(root.dtype(), &v);
    let wgsl = format!(
        "
// Each invocation computes one element of a tensor of shape {shape}.
@compute @workgroup_size({WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
    let idx = {flat};
    if (idx >= {numel}u) {{ return; }}
    {lines}
    out_buf[idx] = {store};
}}
",
        shape = root.shape(),
        flat = flat_index(WORKGROUP),
    );
    KernelSource {
        name: format!("elementwise {}", root.shape()),
        wgsl,
        workgroups: Workgroups::Flat(numel.div_ceil(WORKGROUP as u64)),
        flops: numel * ops,
        bytes: 0,
    }
}
