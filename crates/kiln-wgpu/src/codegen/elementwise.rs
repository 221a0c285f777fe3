//! Elementwise kernels: one output element per invocation, the whole fused expression inline;
//! a multi-output kernel computes and stores each of its outputs at that element. A kernel of
//! several segments (horizontal fusion) gives each segment a consecutive range of invocations.

use super::expr::{store_conv, unravel, Emitter, KernelEnv};
use super::{flat_index, outputs, KernelSource, Workgroups};
use kiln_core::schedule::Kernel;

/// Invocations per workgroup.
const WORKGROUP: u32 = 256;

/// The kernel computing `kernel`'s outputs at every element.
pub fn generate(env: &mut KernelEnv, kernel: &Kernel) -> KernelSource {
    let p = env.p;
    let segments = kernel.segment_outputs();
    let mut bodies = vec![];
    let mut names = vec![];
    let (mut offset, mut flops) = (0u64, 0u64);
    for (s, outs) in segments.iter().enumerate() {
        let first = p.nodes[outs[0]].clone();
        let numel = first.numel() as u64;
        let lin = if s == 0 {
            "idx".to_string()
        } else {
            format!("i{s}")
        };
        let mut em = Emitter::new(env, None);
        let mut stores = vec![];
        if s == 0 {
            let v = em.value(kernel.root, &unravel(&lin, first.shape()));
            stores.push(format!("out_buf[idx] = {};", store_conv(first.dtype(), &v)));
        }
        stores.extend(outputs::stores(&mut em, p, kernel, outs, &lin));
        flops += numel * em.arith_ops as u64;
        let mut body = em.lines;
        body.extend(stores);
        bodies.push((offset, numel, lin, body));
        names.push(if outs.len() > 1 {
            format!("{} x{}", first.shape(), outs.len())
        } else {
            format!("{}", first.shape())
        });
        offset += numel;
    }
    let code = if bodies.len() == 1 {
        bodies[0].3.join("\n    ")
    } else {
        let mut code = String::new();
        for (s, (start, numel, lin, body)) in bodies.iter().enumerate() {
            let head = if s == 0 { "if" } else { " else if" };
            code.push_str(&format!("{head} (idx < {}u) {{\n", start + numel));
            if s > 0 {
                code.push_str(&format!("        let {lin}: u32 = idx - {start}u;\n"));
            }
            for line in body {
                code.push_str(&format!("        {line}\n"));
            }
            code.push_str("    }");
        }
        code
    };
    let total = offset;
    let wgsl = format!(
        "
// Each invocation computes one element of {what}.
@compute @workgroup_size({WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
    let idx = {flat};
    if (idx >= {total}u) {{ return; }}
    {code}
}}
",
        what = if bodies.len() == 1 {
            format!("a tensor of shape {}", p.nodes[kernel.root].shape())
        } else {
            format!("one of {} segments: {}", bodies.len(), names.join(", "))
        },
        flat = flat_index(WORKGROUP),
    );
    KernelSource {
        name: format!("elementwise {}", names.join(" | ")),
        wgsl,
        workgroups: Workgroups::Flat(total.div_ceil(WORKGROUP as u64)),
        flops,
        bytes: 0,
    }
}
