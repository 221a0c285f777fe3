//! Elementwise kernels: one output element per invocation, the whole fused expression inline;
//! a multi-output kernel computes and stores each of its outputs at that element.

use super::expr::{store_conv, unravel, Emitter, KernelEnv};
use super::{flat_index, outputs, KernelSource, Workgroups};
use kiln_core::schedule::Kernel;

/// Invocations per workgroup.
const WORKGROUP: u32 = 256;

/// The kernel computing `kernel.root` at every element.
pub fn generate(env: &mut KernelEnv, kernel: &Kernel) -> KernelSource {
    let p = env.p;
    let root = p.nodes[kernel.root].clone();
    let numel = root.numel() as u64;
    let coords = unravel("idx", root.shape());
    let mut em = Emitter::new(env, None);
    let v = em.value(kernel.root, &coords);
    let mut stores = vec![format!("out_buf[idx] = {};", store_conv(root.dtype(), &v))];
    stores.extend(outputs::stores(&mut em, p, kernel, "idx"));
    let lines = em.lines.join("\n    ");
    let ops = em.arith_ops as u64;
    let stores = stores.join("\n    ");
    let wgsl = format!(
        "
// Each invocation computes one element of a tensor of shape {shape}.
@compute @workgroup_size({WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
    let idx = {flat};
    if (idx >= {numel}u) {{ return; }}
    {lines}
    {stores}
}}
",
        shape = root.shape(),
        flat = flat_index(WORKGROUP),
    );
    KernelSource {
        name: if kernel.extra.is_empty() {
            format!("elementwise {}", root.shape())
        } else {
            format!("elementwise {} x{}", root.shape(), kernel.extra.len() + 1)
        },
        wgsl,
        workgroups: Workgroups::Flat(numel.div_ceil(WORKGROUP as u64)),
        flops: numel * ops,
        bytes: 0,
    }
}
