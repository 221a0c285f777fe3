//! Elementwise kernels: one output element per invocation, the whole fused expression inline;
//! a multi-output kernel computes and stores each of its outputs at that element. A kernel of
//! several segments (horizontal fusion) gives each segment a consecutive range of invocations.
//! Without native f16, an f16 output is stored as packed halves and each invocation computes two
//! adjacent elements and writes their word, so that no two invocations write the same word (the
//! scheduler never puts an f16 output in a multi-output or segmented kernel).

use super::expr::{store_conv, unravel, Emitter, KernelEnv};
use super::{flat_index, outputs, KernelSource, Workgroups};
use kiln_core::schedule::Kernel;

/// Invocations per workgroup.
const WORKGROUP: u32 = 256;

/// The kernel computing `kernel`'s outputs at every element.
pub fn generate(env: &mut KernelEnv, kernel: &Kernel) -> KernelSource {
    let root = env.p.nodes[kernel.root].clone();
    if env.packed_f16(root.dtype()) {
        assert!(
            kernel.extra.is_empty() && kernel.segments.is_empty(),
            "codegen: a packed f16 output in a multi-output kernel"
        );
        return generate_packed(env, kernel);
    }
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
