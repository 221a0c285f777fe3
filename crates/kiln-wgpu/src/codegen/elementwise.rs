//! Elementwise kernels: one output element per invocation, the whole fused expression inline;
//! a multi-output kernel computes and stores each of its outputs at that element. A kernel of
//! several segments (horizontal fusion) gives each segment a consecutive range of invocations.
//! Without native f16, an f16 output is stored as packed halves and each invocation computes two
//! adjacent elements and writes their word, so that no two invocations write the same word (the
//! scheduler never puts an f16 output in a multi-output or segmented kernel).

use super::expr::{store_conv, unravel, DirectReads, Emitter, KernelEnv};
use super::{flat_index, outputs, CodegenOptions, KernelSource, Workgroups};
use kiln_core::schedule::Kernel;
use kiln_core::DType;

/// Invocations per workgroup.
const WORKGROUP: u32 = 256;

/// The kernel computing `kernel`'s outputs at every element.
pub fn generate(env: &mut KernelEnv, kernel: &Kernel, opts: CodegenOptions) -> KernelSource {
    let root = env.p.nodes[kernel.root].clone();
    let single = kernel.extra.is_empty() && kernel.segments.is_empty();
    if opts.software()
        && single
        && root.dtype() == DType::F32
        && root.numel() >= 4
        && root.numel().is_multiple_of(4)
    {
        return generate_vec4(env, kernel);
    }
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

/// The kernel of a single f32 output on a software adapter: invocation `w` computes elements
/// `4w .. 4w + 3` and writes them as one vec4; inputs of the output's shape and dtype are
/// declared `array<vec4<f32>>` too and read 4 values at a time where the expression reads them at
/// the element itself. llvmpipe turns every load or store whose address differs between lanes
/// into one scalar access per lane, so a vec4 moves 4 values for the price of one.
fn generate_vec4(env: &mut KernelEnv, kernel: &Kernel) -> KernelSource {
    let p = env.p;
    let root = p.nodes[kernel.root].clone();
    let numel = root.numel() as u64;
    let vectors = numel / 4;
    let in_place = kernel.in_place.iter().map(|(_, l)| l);
    for &r in kernel.reads.iter().chain(in_place) {
        if p.nodes[r].dtype() == DType::F32 && p.nodes[r].shape() == root.shape() {
            env.vec4_reads.insert(r);
        }
    }
    env.out_vec4 = true;
    let mut blocks = vec![];
    let mut ops = 0;
    let mut used = std::collections::BTreeSet::new();
    for lane in 0..4 {
        let idx = format!("i{lane}");
        let coords = unravel(&idx, root.shape());
        env.direct = Some(DirectReads {
            coords: coords.clone(),
            lane,
            shape: root.shape().clone(),
            used: Default::default(),
        });
        // Each element in a block of its own: the emitters' variable names start over.
        let mut em = Emitter::new(env, None);
        let v = em.value(kernel.root, &coords);
        ops = em.arith_ops as u64;
        blocks.push(format!(
            "{{\n        let {idx}: u32 = 4u * w + {lane}u;\n        {}\n        r[{lane}] = {v};\n    }}",
            em.lines.join("\n        ")
        ));
        used.extend(env.direct.take().expect("set above").used);
    }
    let preload: Vec<String> = used
        .iter()
        .map(|i| format!("let d_{b} = {b}[w];", b = env.bindings[i]))
        .collect();
    let wgsl = format!(
        "
// Each invocation computes 4 adjacent elements (4w .. 4w + 3) of a tensor of shape {shape}
// and writes them as vec4 w of the output.
@compute @workgroup_size({WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
    let w = {flat};
    if (w >= {vectors}u) {{ return; }}
    {preload}
    var r: vec4<f32>;
    {blocks}
    out_buf[w] = r;
}}
",
        shape = root.shape(),
        flat = flat_index(WORKGROUP),
        preload = preload.join("\n    "),
        blocks = blocks.join("\n    "),
    );
    KernelSource {
        name: format!("elementwise {}", root.shape()),
        wgsl,
        workgroups: Workgroups::Flat(vectors.div_ceil(WORKGROUP as u64)),
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
