//! Elementwise kernels: one output element per invocation, the whole fused expression inline.
//! Without native f16, an f16 output is stored as packed halves and each invocation computes two
//! adjacent elements and writes their word, so that no two invocations write the same word.

use super::expr::{store_conv, unravel, Emitter, KernelEnv};
use super::{flat_index, KernelSource, Workgroups};
use kiln_core::schedule::Kernel;

/// Invocations per workgroup.
const WORKGROUP: u32 = 256;

/// The kernel computing `kernel.root` at every element.
pub fn generate(env: &mut KernelEnv, kernel: &Kernel) -> KernelSource {
    let root = env.p.nodes[kernel.root].clone();
    if env.packed_f16(root.dtype()) {
        return generate_packed(env, kernel);
    }
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

/// The kernel of an f16 root without native f16: invocation `w` computes elements `2w` and
/// `2w + 1` (in f32, rounded to f16) and writes them as word `w` of the packed output.
fn generate_packed(env: &mut KernelEnv, kernel: &Kernel) -> KernelSource {
    let root = env.p.nodes[kernel.root].clone();
    let numel = root.numel() as u64;
    let words = numel.div_ceil(2);
    let mut body = vec![];
    let mut ops = 0;
    for (half, idx) in ["idx0", "idx1"].into_iter().enumerate() {
        // Each element in a block of its own: the emitters' variable names start over.
        let mut em = Emitter::new(env, None);
        let v = em.value(kernel.root, &unravel(idx, root.shape()));
        ops = em.arith_ops as u64;
        body.push(format!(
            "{{\n        {}\n        h{half} = kiln_f32_to_f16({v});\n    }}",
            em.lines.join("\n        ")
        ));
    }
    env.uses_f16 = true;
    let wgsl = format!(
        "
// Each invocation computes two adjacent elements (2w, 2w + 1) of an f16 tensor of shape {shape}
// in f32 and writes them as word w of the packed halves (the second half is 0 past the end).
@compute @workgroup_size({WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
    let w = {flat};
    if (w >= {words}u) {{ return; }}
    let idx0 = 2u * w;
    let idx1 = idx0 + 1u;
    var h0 = 0u;
    var h1 = 0u;
    {first}
    if (idx1 < {numel}u) {second}
    out_buf[w] = h0 | (h1 << 16u);
}}
",
        shape = root.shape(),
        flat = flat_index(WORKGROUP),
        first = body[0],
        second = body[1],
    );
    KernelSource {
        name: format!("elementwise {} (packed f16)", root.shape()),
        wgsl,
        workgroups: Workgroups::Flat(words.div_ceil(WORKGROUP as u64)),
        flops: numel * ops,
        bytes: 0,
    }
}
