//! Reduction kernels: sum, max, min, argmax, argmin over any set of axes, with the elementwise
//! prologue (the reduced expression) and epilogue (e.g. the division of a mean) fused in.
//!
//! Two shapes of kernel, both deterministic (a fixed order of combination, no atomics):
//! - one invocation per output element, looping over the group, when groups are small;
//! - one workgroup per output element when groups are large: each invocation strides over the
//!   group, then a tree reduction in workgroup memory combines the partial results.

use super::expr::{literal, store_conv, unravel, value_type, Emitter, KernelEnv};
use super::{flat_index, KernelSource, Workgroups};
use kiln_core::op::{Op, ReduceOp};
use kiln_core::schedule::Kernel;
use kiln_core::{DType, Shape};

/// The kernel of reduction node `c` (with its epilogue up to `kernel.root`).
pub fn generate(env: &mut KernelEnv, kernel: &Kernel, c: usize) -> KernelSource {
    let p = env.p;
    let node = p.nodes[c].clone();
    let Op::Reduce { op, axes } = node.op().clone() else { unreachable!() };
    let x = p.inputs[c][0];
    let in_shape = p.nodes[x].shape().clone();
    let in_dtype = p.nodes[x].dtype();
    let n_out = node.numel() as u64;
    let group = Shape(axes.iter().map(|&a| in_shape.dims()[a]).collect());
    let r_len = group.numel() as u64;
    let acc_ty = match in_dtype {
        DType::F32 | DType::F16 => "f32",
        DType::I32 => "i32",
        _ => "u32",
    };
    let is_arg = matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin);

    // load_x(o, r): the input element of output o at position r of its group.
    let out_coords = unravel("o", node.shape());
    let group_coords = unravel("r", &group);
    let mut coords = out_coords.clone();
    for (k, &a) in axes.iter().enumerate() {
        coords[a] = group_coords[k].clone();
    }
    let mut em = Emitter::new(env, None);
    let v = em.value(x, &coords);
    let load_fn = format!(
        "fn load_x(o: u32, r: u32) -> {acc_ty} {{\n    {}\n    return {acc_ty}({v});\n}}\n",
        em.lines.join("\n    ")
    );
    let prologue_ops = em.arith_ops as u64;

    // epilogue(o, acc): the kernel root's value given the reduction's value `acc`.
    let root = p.nodes[kernel.root].clone();
    let out_ty = value_type(node.dtype(), env.f16);
    let root_ty = value_type(root.dtype(), env.f16);
    let mut em = Emitter::new(env, Some((c, "core".to_string())));
    let v = em.value(kernel.root, &unravel("o", root.shape()));
    let epi_fn = format!(
        "fn epilogue(o: u32, acc: {acc_ty}, best: u32) -> {root_ty} {{\n    let core = {};\n    {}\n    return {v};\n}}\n",
        if is_arg { "i32(best)".to_string() } else { format!("{out_ty}(acc)") },
        em.lines.join("\n    ")
    );

    let big = |f: f64| literal(f, in_dtype_acc(in_dtype), false);
    let init = match op {
        ReduceOp::Sum => big(0.0),
        ReduceOp::Max | ReduceOp::ArgMax => min_value(acc_ty),
        ReduceOp::Min | ReduceOp::ArgMin => max_value(acc_ty),
    };
    // How a new value `v` at position `r` joins the running (acc, best).
    let combine = match op {
        ReduceOp::Sum => "acc = acc + v;",
        ReduceOp::Max => "acc = max(acc, v);",
        ReduceOp::Min => "acc = min(acc, v);",
        ReduceOp::ArgMax => "if (v > acc) { acc = v; best = r; }",
        ReduceOp::ArgMin => "if (v < acc) { acc = v; best = r; }",
    };
    // How workgroup slot `lid + s` joins slot `lid`.
    let tree = match op {
        ReduceOp::Sum => "sh_v[lid] = sh_v[lid] + sh_v[lid + s];".to_string(),
        ReduceOp::Max => "sh_v[lid] = max(sh_v[lid], sh_v[lid + s]);".to_string(),
        ReduceOp::Min => "sh_v[lid] = min(sh_v[lid], sh_v[lid + s]);".to_string(),
        ReduceOp::ArgMax | ReduceOp::ArgMin => {
            let cmp = if op == ReduceOp::ArgMax { ">" } else { "<" };
            format!(
                "let a = sh_v[lid]; let b = sh_v[lid + s];\n            \
                 if (b {cmp} a || (b == a && sh_i[lid + s] < sh_i[lid])) {{ sh_v[lid] = b; sh_i[lid] = sh_i[lid + s]; }}"
            )
        }
    };
    let store = store_conv(root.dtype(), "epilogue(o, acc, best)");
    let per_thread = r_len <= 64 || (n_out >= 8192 && r_len <= 2048);
    let (wgsl, workgroups) = if per_thread {
        let size = 64u32;
        (
            format!(
                "
// Each invocation reduces the {r_len} elements of one output element (of {n_out}).
@compute @workgroup_size({size})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
    let o = {flat};
    if (o >= {n_out}u) {{ return; }}
    var acc: {acc_ty} = {init};
    var best: u32 = 0u;
    for (var r = 0u; r < {r_len}u; r = r + 1u) {{
        let v = load_x(o, r);
        {combine}
    }}
    out_buf[o] = {store};
}}
",
                flat = flat_index(size)
            ),
            Workgroups::Flat(n_out.div_ceil(size as u64)),
        )
    } else {
        let size = if r_len >= 4096 { 256u32 } else { 64 };
        (
            format!(
                "
var<workgroup> sh_v: array<{acc_ty}, {size}>;
var<workgroup> sh_i: array<u32, {size}>;

// Each workgroup reduces the {r_len} elements of one output element (of {n_out}): invocations
// stride over the group, then a tree in workgroup memory combines them in a fixed order.
@compute @workgroup_size({size})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
    let o = wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
    if (o >= {n_out}u) {{ return; }}
    var acc: {acc_ty} = {init};
    var best: u32 = 0u;
    for (var r = lid; r < {r_len}u; r = r + {size}u) {{
        let v = load_x(o, r);
        {combine}
    }}
    sh_v[lid] = acc;
    sh_i[lid] = best;
    workgroupBarrier();
    for (var s = {half}u; s > 0u; s = s >> 1u) {{
        if (lid < s) {{
            {tree}
        }}
        workgroupBarrier();
    }}
    if (lid == 0u) {{
        let acc = sh_v[0];
        let best = sh_i[0];
        out_buf[o] = {store};
    }}
}}
",
                half = size / 2
            ),
            Workgroups::Flat(n_out),
        )
    };
    KernelSource {
        name: format!("reduce {op:?} {} over {axes:?}", in_shape),
        wgsl: format!("{load_fn}{epi_fn}{wgsl}"),
        workgroups,
        flops: n_out * r_len * (1 + prologue_ops),
        bytes: 0,
    }
}

fn in_dtype_acc(d: DType) -> DType {
    match d {
        DType::F16 => DType::F32,
        DType::Bool => DType::I32,
        d => d,
    }
}

fn min_value(acc_ty: &str) -> String {
    match acc_ty {
        "f32" => "bitcast<f32>(0xff800000u)".into(),
        "i32" => "i32(-2147483647 - 1)".into(),
        _ => "0u".into(),
    }
}

fn max_value(acc_ty: &str) -> String {
    match acc_ty {
        "f32" => "bitcast<f32>(0x7f800000u)".into(),
        "i32" => "2147483647i".into(),
        _ => "4294967295u".into(),
    }
}
