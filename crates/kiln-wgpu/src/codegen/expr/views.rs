//! Views: ops that read their input at rewritten coordinates instead of copying it.

use super::{ravel, unravel, value_type, Emitter};
use kiln_core::op::{Op, WindowGeometry};
use kiln_core::DType;

impl Emitter<'_, '_> {
    /// A view that only rewrites the coordinates its input is read at (`Reshape`, `Permute`,
    /// `Expand`, `Slice`, `Window`): node `i`'s value at `coords`.
    pub(super) fn remap(&mut self, i: usize, coords: &[String]) -> String {
        let p = self.env.p;
        let node = &p.nodes[i];
        let ins = &p.inputs[i];
        let in_shape = |k: usize| p.nodes[ins[k]].shape().clone();
        match node.op() {
            Op::Reshape => {
                let lin = self.bind("u32", ravel(coords, node.shape()));
                let c = unravel(&lin, &in_shape(0));
                self.value(ins[0], &c)
            }
            Op::Permute(perm) => {
                let mut c = vec![String::new(); perm.len()];
                for (d, &pd) in perm.iter().enumerate() {
                    c[pd] = coords[d].clone();
                }
                self.value(ins[0], &c)
            }
            Op::Expand => {
                let s = in_shape(0);
                let c: Vec<String> = s
                    .dims()
                    .iter()
                    .zip(coords)
                    .map(|(&n, c)| if n == 1 { "0u".to_string() } else { c.clone() })
                    .collect();
                self.value(ins[0], &c)
            }
            Op::Slice { start, step } => {
                let c: Vec<String> = coords
                    .iter()
                    .zip(start.iter().zip(step))
                    .map(|(c, (&s, &st))| match (s, st) {
                        (0, 1) => c.clone(),
                        (s, 1) => format!("({c} + {s}u)"),
                        (s, st) if st > 0 => format!("({s}u + {c} * {st}u)"),
                        (s, st) => format!("({s}u - {c} * {}u)", -st),
                    })
                    .collect();
                let c = self.coords_var(c);
                self.value(ins[0], &c)
            }
            Op::Window(g) => {
                let r = g.rank();
                let lead = coords.len() - 2 * r;
                let mut c = coords[..lead].to_vec();
                for j in 0..r {
                    let (k, o) = (&coords[lead + j], &coords[lead + r + j]);
                    c.push(format!(
                        "({o} * {}u + {k} * {}u)",
                        g.stride[j], g.dilation[j]
                    ));
                }
                let c = self.coords_var(c);
                self.value(ins[0], &c)
            }
            other => unreachable!("codegen: {other:?} is not a coordinate remap"),
        }
    }

    /// `Pad` with `before` elements before each dimension: node `i`'s value at `coords`, its
    /// fill value outside the input.
    pub(super) fn pad(&mut self, i: usize, before: &[usize], coords: &[String]) -> String {
        let p = self.env.p;
        let node = &p.nodes[i];
        let dtype = node.dtype();
        let ty = value_type(dtype, self.env.f16);
        let ins = &p.inputs[i];
        let s = p.nodes[ins[0]].shape().clone();
        let mut conds = vec![];
        let mut c = vec![];
        for ((coord, &b), &n) in coords.iter().zip(before).zip(s.dims()) {
            if b == 0 && n == node.shape().dims()[c.len()] {
                c.push(coord.clone());
                continue;
            }
            let ok = self.bind("bool", format!("{coord} >= {b}u && {coord} < {}u", b + n));
            c.push(self.bind("u32", format!("select(0u, {coord} - {b}u, {ok})")));
            conds.push(ok);
        }
        let inner = self.value(ins[0], &c);
        if conds.is_empty() {
            return inner;
        }
        let fill = self.scalar_value(i, 0, dtype);
        self.bind(
            ty,
            format!("select({fill}, {inner}, {})", conds.join(" && ")),
        )
    }

    /// `Unwindow` (the adjoint of `Window`, a convolution's input gradient): node `i`'s value
    /// at `coords`, zero where no window reads it.
    pub(super) fn unwindow(&mut self, i: usize, g: &WindowGeometry, coords: &[String]) -> String {
        let p = self.env.p;
        let node = &p.nodes[i];
        let dtype = node.dtype();
        let ty = value_type(dtype, self.env.f16);
        let ins = &p.inputs[i];
        let r = g.rank();
        let lead = coords.len() - 2 * r;
        let o_dims = p.nodes[ins[0]].shape().dims()[lead + r..].to_vec();
        let mut c = coords[..lead + r].to_vec();
        let mut conds = vec![];
        for j in 0..r {
            let (k, s) = (&coords[lead + j], &coords[lead + r + j]);
            let tap = self.bind("u32", format!("{k} * {}u", g.dilation[j]));
            let rel = self.bind("u32", format!("select(0u, {s} - {tap}, {s} >= {tap})"));
            let st = g.stride[j];
            let o = if st == 1 {
                rel.clone()
            } else {
                self.bind("u32", format!("{rel} / {st}u"))
            };
            let mut ok = format!("{s} >= {tap} && {o} < {}u", o_dims[j]);
            if st != 1 {
                ok += &format!(" && {rel} % {st}u == 0u");
            }
            conds.push(self.bind("bool", ok));
            c.push(self.bind("u32", format!("select(0u, {o}, {})", conds[j])));
        }
        let inner = self.value(ins[0], &c);
        let zero = match dtype {
            DType::Bool => "false".to_string(),
            _ => format!("{ty}(0)"),
        };
        self.bind(
            ty,
            format!("select({zero}, {inner}, {})", conds.join(" && ")),
        )
    }

    /// `Cat` along `axis`: node `i`'s value at `coords`, from the input whose range holds it.
    pub(super) fn cat(&mut self, i: usize, axis: usize, coords: &[String]) -> String {
        let p = self.env.p;
        let ty = value_type(p.nodes[i].dtype(), self.env.f16);
        let ins = &p.inputs[i];
        let mut offset = 0usize;
        let mut parts = vec![];
        for &inp in ins {
            let n = p.nodes[inp].shape().dims()[axis];
            let a = &coords[axis];
            let mut c = coords.to_vec();
            c[axis] = self.bind(
                "u32",
                format!(
                    "select(0u, {a} - {offset}u, {a} >= {offset}u && {a} < {}u)",
                    offset + n
                ),
            );
            let v = self.value(inp, &c);
            offset += n;
            parts.push((v, offset));
        }
        let mut acc = parts.last().unwrap().0.clone();
        for (v, end) in parts.iter().rev().skip(1) {
            acc = self.bind(ty, format!("select({acc}, {v}, {} < {end}u)", coords[axis]));
        }
        acc
    }
}
