//! Graphviz DOT of a graph and of the plan it compiles to: the ops (parameters by name), drawn
//! inside boxes for the fused kernels that compute them, and the kernels with the buffers they
//! read. `dot -Tsvg graph.dot -o graph.svg` renders them where Graphviz is installed.

use kiln_core::op::{Op, ReduceOp};
use kiln_core::rewrite::rewrite;
use kiln_core::schedule::{schedule, Kernel, KernelKind, Plan, ScheduleLimits};
use kiln_core::{Pending, Tensor};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The scheduler limits of the device the targets live on (the backend's own, else the 8 storage
/// buffers per kernel that every wgpu adapter allows).
fn limits_of(targets: &[&Tensor]) -> ScheduleLimits {
    targets
        .first()
        .and_then(|t| t.device().backend().schedule_limits())
        .unwrap_or(ScheduleLimits::new(8))
}

/// A short name for an op: `matmul`, `relu`, `window 5x5 /1`, `reduce max (2, 3)`, `reshape`.
pub fn op_label(op: &Op) -> String {
    match op {
        Op::Buffer => "buffer".into(),
        Op::Data(_) => "data".into(),
        Op::Full(v) => format!("full {v}"),
        Op::Arange { .. } => "arange".into(),
        Op::Rand { dist, .. } => format!("rand {dist:?}").to_lowercase(),
        Op::Reshape => "reshape".into(),
        Op::Permute(p) => format!("permute {p:?}"),
        Op::Expand => "expand".into(),
        Op::Slice { .. } => "slice".into(),
        Op::Pad { .. } => "pad".into(),
        Op::Cat { axis } => format!("cat {axis}"),
        Op::Window(g) | Op::Unwindow(g) => {
            let k: Vec<String> = g.kernel.iter().map(|k| k.to_string()).collect();
            let s: Vec<String> = g.stride.iter().map(|k| k.to_string()).collect();
            let name = if matches!(op, Op::Window(_)) {
                "window"
            } else {
                "unwindow"
            };
            format!("{name} {} /{}", k.join("x"), s.join("x"))
        }
        Op::Unary(u) => format!("{u:?}").to_lowercase(),
        Op::Binary(b) => format!("{b:?}").to_lowercase(),
        Op::Where => "where".into(),
        Op::AffineSample => "affine sample".into(),
        Op::HostCall(f) => format!("host: {}", f.0.name()),
        Op::Cast(d) => format!("cast {d}"),
        Op::Reduce { op, axes } => {
            let name = match op {
                ReduceOp::Sum => "sum",
                ReduceOp::Max => "max",
                ReduceOp::Min => "min",
                ReduceOp::ArgMax => "argmax",
                ReduceOp::ArgMin => "argmin",
            };
            format!("reduce {name} {axes:?}")
        }
        Op::Matmul => "matmul".into(),
    }
}

/// The nodes a kernel computes inline: from its outputs down to (not into) materialized nodes.
fn members(p: &Pending, plan: &Plan, kernel: &Kernel) -> Vec<usize> {
    let mut seen = vec![false; p.nodes.len()];
    let mut out = vec![];
    let mut stack: Vec<usize> = kernel.outputs().collect();
    while let Some(i) = stack.pop() {
        let written = kernel.outputs().any(|o| o == i);
        if std::mem::replace(&mut seen[i], true) || (!written && plan.is_materialized(i)) {
            continue;
        }
        out.push(i);
        stack.extend(p.inputs[i].iter().copied());
    }
    out.sort_unstable();
    out
}

/// A kernel's name: its core and output shape, then the arithmetic fused into it, e.g.
/// `matmul [64, 120]: add, relu` or `elementwise [64, 6, 28, 28]: add, relu`.
pub fn kernel_name(p: &Pending, plan: &Plan, k: usize) -> String {
    let kernel = &plan.kernels[k];
    let (core, core_node) = match kernel.kind {
        KernelKind::Elementwise => ("elementwise".to_string(), None),
        KernelKind::Matmul(c) => ("matmul".to_string(), Some(c)),
        KernelKind::AffineSample(c) => ("affine sample".to_string(), Some(c)),
        KernelKind::Reduce(c) => {
            // Sibling reductions computed alongside: `sum+sum`, `max+argmax`.
            let ops: Vec<String> = std::iter::once(c)
                .chain(kernel.siblings.iter().copied())
                .map(|r| op_label(p.nodes[r].op()))
                .collect();
            (ops.join("+"), Some(c))
        }
    };
    let mut fused: Vec<String> = vec![];
    for i in members(p, plan, kernel) {
        let op = p.nodes[i].op();
        let core = Some(i) == core_node || kernel.siblings.contains(&i);
        if core || op.is_view() || p.inputs[i].is_empty() {
            continue;
        }
        let l = op_label(op);
        if !fused.contains(&l) {
            fused.push(l);
        }
    }
    let shape = p.nodes[kernel.root].shape();
    if fused.is_empty() {
        format!("{core} {shape}")
    } else {
        format!("{core} {shape}: {}", fused.join(", "))
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Parameter names by node id.
fn name_map(names: &[(String, Tensor)]) -> HashMap<u64, &str> {
    names.iter().map(|(n, t)| (t.id(), n.as_str())).collect()
}

/// The pending graph behind `targets` as DOT: one node per op, labelled with its op, shape and
/// dtype (parameters in `names` by their name), an edge from each input to its user, and one
/// box (`cluster_K`, labelled `kernel K: name`) per kernel of the plan the scheduler makes of
/// it (after the rewrite pass, [`kiln_core::rewrite`]), around the ops that kernel computes inline (an op inlined by several kernels is drawn in
/// the first). Materialized results have a bold outline; leaves are drawn outside the boxes:
/// parameters green, host data blue, other realized buffers gray, generators dashed.
pub fn graph_dot(targets: &[&Tensor], names: &[(String, Tensor)]) -> String {
    let collected = Pending::collect(targets);
    let limits = limits_of(targets);
    let rewritten = rewrite(&collected, &limits);
    let p = rewritten.pending();
    let plan = schedule(p, limits);
    let names = name_map(names);
    let mut owner: Vec<Option<usize>> = vec![None; p.nodes.len()];
    let mut clusters: Vec<Vec<usize>> = vec![];
    for k in 0..plan.kernels.len() {
        let mut mine = vec![];
        for i in members(p, &plan, &plan.kernels[k]) {
            if owner[i].is_none() && !(p.inputs[i].is_empty() && plan.is_materialized(i)) {
                owner[i] = Some(k);
                mine.push(i);
            }
        }
        clusters.push(mine);
    }
    let mut out = String::from(
        "digraph kiln_graph {\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fillcolor=white, fontname=\"sans-serif\", fontsize=10];\n  edge [color=gray40];\n",
    );
    let node_line = |i: usize| -> String {
        let t = &p.nodes[i];
        let label = match names.get(&t.id()) {
            Some(n) => format!("{n}\\n{} {}", t.shape(), t.dtype()),
            None => format!(
                "{}\\n{} {}",
                escape(&op_label(t.op())),
                t.shape(),
                t.dtype()
            ),
        };
        let mut attrs = format!("label=\"{label}\"");
        if names.contains_key(&t.id()) {
            attrs.push_str(", fillcolor=\"#c7e9c0\"");
        } else if matches!(t.op(), Op::Data(_)) {
            attrs.push_str(", fillcolor=\"#c6dbef\"");
        } else if t.is_realized() {
            attrs.push_str(", fillcolor=\"#d9d9d9\"");
        } else if t.op().is_generator() {
            attrs.push_str(", style=\"rounded,dashed\"");
        }
        if plan.is_materialized(i) && !p.inputs[i].is_empty() {
            attrs.push_str(", penwidth=2.5");
        }
        if p.targets.contains(&i) {
            attrs.push_str(", peripheries=2");
        }
        format!("n{i} [{attrs}];\n")
    };
    for (k, mine) in clusters.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_{k} {{\n    label=\"kernel {k}: {}\";\n    style=\"rounded\";\n    color=\"#3182bd\";\n    fontname=\"sans-serif\";\n    fontsize=11;",
            escape(&kernel_name(p, &plan, k))
        );
        for &i in mine {
            out.push_str("    ");
            out.push_str(&node_line(i));
        }
        out.push_str("  }\n");
    }
    for i in (0..p.nodes.len()).filter(|&i| owner[i].is_none()) {
        out.push_str("  ");
        out.push_str(&node_line(i));
    }
    for (u, ins) in p.inputs.iter().enumerate() {
        for &i in ins {
            let _ = writeln!(out, "  n{i} -> n{u};");
        }
    }
    out.push_str("}\n");
    out
}

/// The plan the scheduler makes of the graph behind `targets`, as DOT: one node per kernel in
/// execution order (`kK`, labelled `kernel K: name` with its output shape), one per buffer a
/// kernel reads that no kernel writes (`bN`: parameters by their name, uploaded data, realized
/// tensors), and an edge from each buffer or kernel to the kernels that read it. Kernels whose
/// results are targets have a double outline.
pub fn plan_dot(targets: &[&Tensor], names: &[(String, Tensor)]) -> String {
    let collected = Pending::collect(targets);
    let limits = limits_of(targets);
    let rewritten = rewrite(&collected, &limits);
    let p = rewritten.pending();
    let plan = schedule(p, limits);
    let names = name_map(names);
    let writer: HashMap<usize, usize> = plan
        .kernels
        .iter()
        .enumerate()
        .flat_map(|(k, kern)| kern.outputs().map(move |o| (o, k)))
        .collect();
    let mut out = String::from(
        "digraph kiln_plan {\n  rankdir=TB;\n  node [fontname=\"sans-serif\", fontsize=10];\n  edge [color=gray40];\n",
    );
    let mut buffers: Vec<usize> = vec![];
    for (k, kern) in plan.kernels.iter().enumerate() {
        let extra = if p.targets.contains(&kern.root) {
            ", peripheries=2"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  k{k} [shape=box, style=\"rounded,filled\", fillcolor=\"#deebf7\", label=\"kernel {k}\\n{}\"{extra}];",
            escape(&kernel_name(p, &plan, k))
        );
        for &r in &kern.reads {
            match writer.get(&r) {
                Some(&w) => {
                    let _ = writeln!(out, "  k{w} -> k{k};");
                }
                None => {
                    if !buffers.contains(&r) {
                        buffers.push(r);
                    }
                    let _ = writeln!(out, "  b{r} -> k{k};");
                }
            }
        }
    }
    for &b in &buffers {
        let t = &p.nodes[b];
        let (label, color) = match names.get(&t.id()) {
            Some(n) => (n.to_string(), "#c7e9c0"),
            None if matches!(t.op(), Op::Data(_)) => ("data".to_string(), "#c6dbef"),
            None => (op_label(t.op()), "#d9d9d9"),
        };
        let _ = writeln!(
            out,
            "  b{b} [shape=note, style=filled, fillcolor=\"{color}\", label=\"{}\\n{} {}\"];",
            escape(&label),
            t.shape(),
            t.dtype()
        );
    }
    out.push_str("}\n");
    out
}

/// Writes DOT text to `path` and, where Graphviz's `dot` is on the PATH, renders it next to it
/// as `format` (`svg`, `png`); returns the rendered file, or `None` when `dot` is not installed
/// or fails (the DOT file is written either way). Errors name the file that could not be written.
pub fn save_dot(
    dot: &str,
    path: impl AsRef<Path>,
    format: &str,
) -> kiln_core::Result<Option<PathBuf>> {
    let path = path.as_ref();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| kiln_core::KilnError::Io {
            msg: format!("{}: cannot create the directory: {e}", dir.display()),
            source: e,
        })?;
    }
    std::fs::write(path, dot).map_err(|e| kiln_core::KilnError::Io {
        msg: format!("{}: cannot write: {e}", path.display()),
        source: e,
    })?;
    let rendered = path.with_extension(format);
    let ok = std::process::Command::new("dot")
        .arg(format!("-T{format}"))
        .arg(path)
        .arg("-o")
        .arg(&rendered)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    Ok(ok.then_some(rendered))
}
