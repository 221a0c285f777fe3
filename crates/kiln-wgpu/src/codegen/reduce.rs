//! Reduction kernels: sum, max, min, argmax, argmin over any set of axes, with the elementwise
//! prologue (the reduced expression) and epilogue (e.g. the division of a mean) fused in, and
//! the further outputs of a multi-output kernel (e.g. an optimiser's update of the bias whose
//! gradient the reduction computes) stored by the epilogue.
//!
//! Two shapes of kernel, both deterministic (a fixed order of combination, no atomics):
//! - one invocation per output element, looping over the group, when groups are small;
//! - one workgroup per output element when groups are large: each invocation strides over the
//!   group, then a tree reduction in workgroup memory combines the partial results.

use super::expr::{is_nan, literal, store_conv, unravel, value_type, Emitter, KernelEnv};
use super::{flat_index, outputs, KernelSource, Workgroups};
use kiln_core::op::{Op, ReduceOp};
use kiln_core::schedule::Kernel;
use kiln_core::{DType, Shape};

/// What one reduction kernel reduces.
struct Reduction {
    op: ReduceOp,
    axes: Vec<usize>,
    /// The reduced input node.
    x: usize,
    in_shape: Shape,
    in_dtype: DType,
    /// Output elements.
    n_out: u64,
    /// The shape of one output element's group of inputs.
    group: Shape,
    /// Elements per group.
    r_len: u64,
    /// The WGSL type values are combined in.
    acc_ty: &'static str,
    /// ArgMax or ArgMin: the position `best` is the result.
    is_arg: bool,
}

impl Reduction {
    /// The reduction of node `c`.
    fn of(p: &kiln_core::Pending, c: usize) -> Reduction {
        let node = &p.nodes[c];
        let Op::Reduce { op, axes } = node.op().clone() else {
            unreachable!()
        };
        let x = p.inputs[c][0];
        let in_shape = p.nodes[x].shape().clone();
        let in_dtype = p.nodes[x].dtype();
        let group = Shape(axes.iter().map(|&a| in_shape.dims()[a]).collect());
        Reduction {
            op,
            x,
            in_dtype,
            n_out: node.numel() as u64,
            r_len: group.numel() as u64,
            group,
            in_shape,
            acc_ty: match in_dtype {
                DType::F32 | DType::F16 => "f32",
                DType::I32 => "i32",
                _ => "u32",
            },
            is_arg: matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin),
            axes,
        }
    }
}

/// How the values of a group combine (see [`combine_steps`]), for reduction `k` of the kernel:
/// its variables are `acc{k}`, `best{k}`, `v{k}` and its workgroup arrays `sh_v{k}`, `sh_i{k}`.
struct Combine {
    /// The WGSL type values are combined in.
    acc_ty: &'static str,
    /// The declarations of the accumulator and position with their initial values.
    init: String,
    /// How the value at position `r` joins the running (acc, best).
    step: String,
    /// How workgroup slot `lid + s` joins slot `lid` in the tree reduction.
    tree: String,
    /// The workgroup arrays of the tree reduction.
    shared: String,
    /// Slot 0 of the tree reduction as the final (acc, best).
    result: String,
}

/// The kernel of reduction node `c` and of its siblings (`kernel.siblings`, reductions over
/// the same group of inputs), with their epilogues up to `kernel.root` and `kernel.extra`.
pub fn generate(env: &mut KernelEnv, kernel: &Kernel, c: usize) -> KernelSource {
    let cores: Vec<usize> = std::iter::once(c)
        .chain(kernel.siblings.iter().copied())
        .collect();
    let reductions: Vec<Reduction> = cores.iter().map(|&c| Reduction::of(env.p, c)).collect();
    let mut loads = String::new();
    let mut flops = 0;
    for (k, r) in reductions.iter().enumerate() {
        let (load, prologue_ops) = load_fn(env, cores[k], r, k);
        loads.push_str(&load);
        flops += r.n_out * r.r_len * (1 + prologue_ops);
    }
    let epi_fn = epilogue_fn(env, kernel, &cores, &reductions);
    let combines: Vec<Combine> = reductions
        .iter()
        .enumerate()
        .map(|(k, r)| combine_steps(r, k))
        .collect();
    let root_dtype = env.p.nodes[kernel.root].dtype();
    let args: Vec<String> = (0..cores.len())
        .map(|k| format!("acc{k}, best{k}"))
        .collect();
    let store = store_conv(root_dtype, &format!("epilogue(o, {})", args.join(", ")));
    let r = &reductions[0];
    let (n_out, r_len) = (r.n_out, r.r_len);
    let per_thread = r_len <= 64 || (n_out >= 8192 && r_len <= 2048);
    let (wgsl, workgroups) = if per_thread {
        main_per_invocation(r, &combines, &store)
    } else {
        main_per_workgroup(r, &combines, &store)
    };
    let ops: Vec<String> = reductions.iter().map(|r| format!("{:?}", r.op)).collect();
    let (axes, in_shape) = (&r.axes, &r.in_shape);
    let mut name = format!("reduce {} {in_shape} over {axes:?}", ops.join("+"));
    if !kernel.extra.is_empty() {
        name.push_str(&format!(" x{}", kernel.extra.len() + 1));
    }
    KernelSource {
        name,
        wgsl: format!("{loads}{epi_fn}{wgsl}"),
        workgroups,
        flops,
        bytes: 0,
    }
}

/// Prologue: `load_x{k}(o, r)`, the input element of output `o` at position `r` of its group,
/// with the reduced expression folded in; and its arithmetic ops.
fn load_fn(env: &mut KernelEnv, c: usize, r: &Reduction, k: usize) -> (String, u64) {
    let acc_ty = r.acc_ty;
    let out_coords = unravel("o", env.p.nodes[c].shape());
    let group_coords = unravel("r", &r.group);
    let mut coords = out_coords.clone();
    for (g, &a) in r.axes.iter().enumerate() {
        coords[a] = group_coords[g].clone();
    }
    let mut em = Emitter::new(env, None);
    let v = em.value(r.x, &coords);
    let load_fn = format!(
        "fn load_x{k}(o: u32, r: u32) -> {acc_ty} {{\n    {}\n    return {acc_ty}({v});\n}}\n",
        em.lines.join("\n    ")
    );
    (load_fn, em.arith_ops as u64)
}

/// Epilogue: `epilogue(o, acc0, best0, acc1, best1, ...)`, the kernel root's value given each
/// reduction's value `acc{k}` (or position `best{k}`); a multi-output kernel's further outputs
/// (sibling reductions' epilogues among them) are computed and stored here too.
fn epilogue_fn(
    env: &mut KernelEnv,
    kernel: &Kernel,
    cores: &[usize],
    reductions: &[Reduction],
) -> String {
    let p = env.p;
    let root = p.nodes[kernel.root].clone();
    let root_ty = value_type(root.dtype(), env.f16);
    let mut params = vec![];
    let mut lets = vec![];
    let mut named = vec![];
    for (k, (&c, r)) in cores.iter().zip(reductions).enumerate() {
        params.push(format!("acc{k}: {}, best{k}: u32", r.acc_ty));
        let core = if r.is_arg {
            format!("i32(best{k})")
        } else {
            env.to_value(p.nodes[c].dtype(), &format!("acc{k}"))
        };
        lets.push(format!("let core{k} = {core};"));
        named.push((c, format!("core{k}")));
    }
    let mut em = Emitter::with_cores(env, named);
    let v = em.value(kernel.root, &unravel("o", root.shape()));
    assert!(kernel.segments.is_empty(), "a reduction has one segment");
    let extra = outputs::stores(&mut em, p, kernel, &kernel.extra, "o");
    em.lines.extend(extra);
    format!(
        "fn epilogue(o: u32, {}) -> {root_ty} {{\n    {}\n    {}\n    return {v};\n}}\n",
        params.join(", "),
        lets.join("\n    "),
        em.lines.join("\n    ")
    )
}

/// How the values of reduction `k`'s group combine: the initial value, one invocation's step
/// and the workgroup tree's step.
fn combine_steps(r: &Reduction, k: usize) -> Combine {
    let (op, acc_ty, is_arg) = (r.op, r.acc_ty, r.is_arg);
    let big = |f: f64| literal(f, in_dtype_acc(r.in_dtype), false);
    let init = match op {
        ReduceOp::Sum => big(0.0),
        ReduceOp::Max | ReduceOp::ArgMax => min_value(acc_ty),
        ReduceOp::Min | ReduceOp::ArgMin => max_value(acc_ty),
    };
    let (acc, best, v) = (format!("acc{k}"), format!("best{k}"), format!("v{k}"));
    let (sh_v, sh_i) = (format!("sh_v{k}"), format!("sh_i{k}"));
    // How a new value `v` at position `r` joins the running (acc, best). Float max and min
    // follow the reference: a NaN wins over everything and stays (WGSL's max and min may drop
    // it); the arg reductions then point at the first NaN.
    let float = acc_ty == "f32";
    let nan = |x: &str| {
        if float {
            is_nan(x, DType::F32)
        } else {
            "false".to_string()
        }
    };
    let (cmp, takes) = match op {
        ReduceOp::Max | ReduceOp::ArgMax => (">", true),
        ReduceOp::Min | ReduceOp::ArgMin => ("<", true),
        ReduceOp::Sum => ("", false),
    };
    let set_best = if is_arg {
        format!(" {best} = r;")
    } else {
        String::new()
    };
    let load = format!("let {v} = load_x{k}(o, r);");
    let step = if !takes {
        format!("{load} {acc} = {acc} + {v};")
    } else if float {
        format!(
            "{load} if (!{} && ({v} {cmp} {acc} || {})) {{ {acc} = {v};{set_best} }}",
            nan(&acc),
            nan(&v)
        )
    } else {
        format!("{load} if ({v} {cmp} {acc}) {{ {acc} = {v};{set_best} }}")
    };
    // How workgroup slot `lid + s` (b) joins slot `lid` (a): the better value wins, a NaN over
    // any number, and of equal values (or two NaNs) the one at the smaller position.
    let tree = if !takes {
        format!("{sh_v}[lid] = {sh_v}[lid] + {sh_v}[lid + s];")
    } else {
        let (na, nb) = (nan("a"), nan("b"));
        let earlier = if is_arg {
            format!("{sh_i}[lid + s] < {sh_i}[lid]")
        } else {
            "false".to_string()
        };
        let copy_i = if is_arg {
            format!(" {sh_i}[lid] = {sh_i}[lid + s];")
        } else {
            String::new()
        };
        format!(
            "{{\n            let a = {sh_v}[lid]; let b = {sh_v}[lid + s];\n            \
             let b_nan = {nb}; let a_nan = {na};\n            \
             let better = select(b {cmp} a || (b == a && {earlier}), a_nan && b_nan && {earlier}, b_nan || a_nan);\n            \
             if (better || (b_nan && !a_nan)) {{ {sh_v}[lid] = b;{copy_i} }}\n            }}"
        )
    };
    Combine {
        acc_ty,
        init: format!("var {acc}: {acc_ty} = {init};\n    var {best}: u32 = 0u;"),
        step,
        tree,
        shared: format!("{sh_v}[lid] = {acc};\n    {sh_i}[lid] = {best};"),
        result: format!("let {acc} = {sh_v}[0];\n        let {best} = {sh_i}[0];"),
    }
}

/// The pieces of every reduction of a kernel, joined by `sep`.
fn each(combines: &[Combine], piece: fn(&Combine) -> &String, sep: &str) -> String {
    combines
        .iter()
        .map(piece)
        .cloned()
        .collect::<Vec<_>>()
        .join(sep)
}

/// The loop for small groups: each invocation reduces one output element's group.
fn main_per_invocation(r: &Reduction, c: &[Combine], store: &str) -> (String, Workgroups) {
    let (r_len, n_out) = (r.r_len, r.n_out);
    let init = each(c, |c| &c.init, "\n    ");
    let combine = each(c, |c| &c.step, "\n        ");
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
    {init}
    for (var r = 0u; r < {r_len}u; r = r + 1u) {{
        {combine}
    }}
    out_buf[o] = {store};
}}
",
            flat = flat_index(size)
        ),
        Workgroups::Flat(n_out.div_ceil(size as u64)),
    )
}

/// The loop for large groups: each workgroup reduces one output element's group, its
/// invocations striding over the group, then a tree in workgroup memory combining them.
fn main_per_workgroup(r: &Reduction, c: &[Combine], store: &str) -> (String, Workgroups) {
    let (r_len, n_out) = (r.r_len, r.n_out);
    let size = if r_len >= 4096 { 256u32 } else { 64 };
    let arrays: String = c
        .iter()
        .enumerate()
        .map(|(k, c)| {
            format!(
                "var<workgroup> sh_v{k}: array<{}, {size}>;\nvar<workgroup> sh_i{k}: array<u32, {size}>;\n",
                c.acc_ty
            )
        })
        .collect();
    let init = each(c, |c| &c.init, "\n    ");
    let strided = strided_loop(r_len, size as u64, &each(c, |c| &c.step, "\n        "));
    let shared = each(c, |c| &c.shared, "\n    ");
    let tree = each(c, |c| &c.tree, "\n            ");
    let result = each(c, |c| &c.result, "\n        ");
    (
        format!(
            "
{arrays}
// Each workgroup reduces the {r_len} elements of one output element (of {n_out}): invocations
// stride over the group, then a tree in workgroup memory combines them in a fixed order.
@compute @workgroup_size({size})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
    let o = wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
    if (o >= {n_out}u) {{ return; }}
    {init}
    {strided}
    {shared}
    workgroupBarrier();
    for (var s = {half}u; s > 0u; s = s >> 1u) {{
        if (lid < s) {{
            {tree}
        }}
        workgroupBarrier();
    }}
    if (lid == 0u) {{
        {result}
        out_buf[o] = {store};
    }}
}}
",
            half = size / 2
        ),
        Workgroups::Flat(n_out),
    )
}

/// Loop iterations one invocation may run. lavapipe (Mesa's llvmpipe) stops every invocation
/// after 65,535 loop iterations in total, silently, so a longer loop computes a wrong result;
/// stay well below that.
const MAX_LOOP_ITERATIONS: u64 = 16_384;

/// The loop in which invocation `lid` combines positions `lid, lid + size, lid + 2 size, ...`
/// of its group, in that order. Long groups take several positions per iteration (the loop
/// body unrolled), so that no invocation loops more than [`MAX_LOOP_ITERATIONS`] times; the
/// order of combination, and so the result, is the same either way.
fn strided_loop(r_len: u64, size: u64, combine: &str) -> String {
    let unroll = r_len.div_ceil(size).div_ceil(MAX_LOOP_ITERATIONS).max(1);
    if unroll == 1 {
        return format!(
            "for (var r = lid; r < {r_len}u; r = r + {size}u) {{
        {combine}
    }}"
        );
    }
    let mut body = format!(
        "{{
            let r = r0;
            {combine}
        }}"
    );
    for k in 1..unroll {
        body.push_str(&format!(
            "
        if (r0 + {off}u < {r_len}u) {{
            let r = r0 + {off}u;
            {combine}
        }}",
            off = k * size
        ));
    }
    format!(
        "// {unroll} positions per iteration: at most {MAX_LOOP_ITERATIONS} iterations.
    for (var r0 = lid; r0 < {r_len}u; r0 = r0 + {step}u) {{
        {body}
    }}",
        step = unroll * size
    )
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
