//! Receptive fields, computed on the graph: for every node that depends on the input image, which
//! of its axes index input rows and columns, and how many input pixels (size) one element sees
//! along them and how far apart (jump) neighbouring elements' fields are.
//!
//! Each axis of a node is a list of factors, major to minor (a reshape can merge the output
//! rows and columns into one axis, as convolution's im2col does); a factor either follows a
//! spatial dimension of the input, with its field, or does not (channels, batch, window taps).
//! Window views compose fields (`size += dilation (K - 1) jump`, `jump *= stride`); elementwise
//! ops take the larger field of their inputs (the maximum over branches, as at a residual add);
//! reductions and matmuls that contract a spatial factor fold the whole axis into a field that
//! no axis carries any more (a linear layer after flatten sees every pixel its input saw).

use kiln_core::op::{Op, WindowGeometry};
use kiln_core::Pending;

/// The field of one spatial dimension: `size` input pixels seen, neighbours `jump` pixels apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Input pixels one element sees along the dimension.
    pub size: usize,
    /// Input pixels between the fields of neighbouring elements.
    pub jump: usize,
}

impl Span {
    fn max(self, other: Span) -> Span {
        if other.size > self.size || (other.size == self.size && other.jump > self.jump) {
            other
        } else {
            self
        }
    }
}

/// One factor of an axis.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Factor {
    extent: usize,
    /// The input's spatial dimension (0: rows, 1: columns) and the field, or `None`.
    spatial: Option<(usize, Span)>,
}

/// What is known of one node: its axes' factors, fields folded away by contractions, and
/// whether the spatial meaning of its axes was lost (a reshape that splits a spatial factor).
#[derive(Clone, Debug)]
pub(crate) struct NodeField {
    axes: Vec<Vec<Factor>>,
    folded: [Option<Span>; 2],
    unknown: bool,
}

/// A node's receptive field, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceptiveField {
    /// Each element sees `size[d]` input pixels along rows (`d = 0`) and columns (`d = 1`);
    /// `jump` is the distance between neighbouring elements' fields, `None` when no axis of the
    /// output moves along the input any more (after flatten and a linear layer, or global pooling).
    Local {
        /// Pixels seen along rows and columns.
        size: [usize; 2],
        /// Pixels between neighbours along rows and columns, if the output still has such axes.
        jump: Option<[usize; 2]>,
    },
    /// The output does not depend on the input's pixels through spatial axes (no spatial input).
    NotSpatial,
    /// The graph rearranged pixels in a way this analysis does not follow (for example a
    /// reshape splitting a spatial axis).
    Unknown,
}

fn plain(extent: usize) -> Vec<Factor> {
    if extent == 1 {
        vec![]
    } else {
        vec![Factor {
            extent,
            spatial: None,
        }]
    }
}

impl NodeField {
    /// The input image: the last two axes of a tensor of rank 3 or more are rows and columns.
    pub fn input(dims: &[usize]) -> NodeField {
        let r = dims.len();
        let axes = dims
            .iter()
            .enumerate()
            .map(|(a, &n)| {
                if r >= 3 && a >= r - 2 && n > 1 {
                    vec![Factor {
                        extent: n,
                        spatial: Some((a + 2 - r, Span { size: 1, jump: 1 })),
                    }]
                } else {
                    plain(n)
                }
            })
            .collect();
        NodeField {
            axes,
            folded: [None, None],
            unknown: false,
        }
    }

    fn plain_like(dims: &[usize], from: &[&NodeField], unknown: bool) -> NodeField {
        let mut folded = [None, None];
        for f in from {
            for (slot, &other) in folded.iter_mut().zip(&f.folded) {
                *slot = merge_opt(*slot, other);
            }
        }
        NodeField {
            axes: dims.iter().map(|&n| plain(n)).collect(),
            folded,
            unknown: unknown || from.iter().any(|f| f.unknown),
        }
    }

    /// Folds the spatial factors of `factors` (an axis contracted away) into `folded`.
    fn fold(&mut self, factors: &[Factor]) {
        for f in factors {
            if let Some((d, s)) = f.spatial {
                let whole = Span {
                    size: s.size + (f.extent - 1) * s.jump,
                    jump: s.jump,
                };
                self.folded[d] = merge_opt(self.folded[d], Some(whole));
            }
        }
    }

    /// The field as reported.
    pub fn report(&self) -> ReceptiveField {
        if self.unknown {
            return ReceptiveField::Unknown;
        }
        let mut size: [Option<Span>; 2] = self.folded;
        let mut jump: [Option<usize>; 2] = [None, None];
        for f in self.axes.iter().flatten() {
            if let Some((d, s)) = f.spatial {
                size[d] = merge_opt(size[d], Some(s));
                jump[d] = Some(jump[d].map_or(s.jump, |j: usize| j.max(s.jump)));
            }
        }
        match size {
            [None, None] => ReceptiveField::NotSpatial,
            _ => ReceptiveField::Local {
                size: size.map(|s| s.map_or(1, |s| s.size)),
                jump: match jump {
                    [Some(a), Some(b)] => Some([a, b]),
                    [Some(a), None] => Some([a, 1]),
                    [None, Some(b)] => Some([1, b]),
                    [None, None] => None,
                },
            },
        }
    }
}

fn merge_opt(a: Option<Span>, b: Option<Span>) -> Option<Span> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Merges the factor lists of one axis from several inputs of an elementwise op.
fn merge_axis(lists: &[&Vec<Factor>]) -> Option<Vec<Factor>> {
    let spatial = |l: &Vec<Factor>| l.iter().filter(|f| f.spatial.is_some()).count();
    let best = lists.iter().max_by_key(|l| spatial(l))?;
    let mut out = (*best).clone();
    for l in lists {
        if spatial(l) == 0 {
            continue;
        }
        if l.len() != out.len() || l.iter().zip(&out).any(|(a, b)| a.extent != b.extent) {
            return None;
        }
        for (o, f) in out.iter_mut().zip(l.iter()) {
            o.spatial = match (o.spatial, f.spatial) {
                (Some((d, a)), Some((_, b))) => Some((d, a.max(b))),
                (a, None) => a,
                (None, b) => b,
            };
        }
    }
    Some(out)
}

/// The fields of every node of `p` that depends on node `input` (others get `None`).
pub(crate) fn fields(p: &Pending, input: Option<usize>) -> Vec<Option<NodeField>> {
    let mut out: Vec<Option<NodeField>> = vec![None; p.nodes.len()];
    for i in 0..p.nodes.len() {
        if Some(i) == input {
            out[i] = Some(NodeField::input(p.nodes[i].dims()));
            continue;
        }
        let ins: Vec<(usize, &NodeField)> = p.inputs[i]
            .iter()
            .enumerate()
            .filter_map(|(k, &j)| out[j].as_ref().map(|f| (k, f)))
            .collect();
        if ins.is_empty() {
            continue;
        }
        out[i] = Some(transfer(p, i, &ins));
    }
    out
}

/// The field of node `i` from those of its inputs that depend on the image (`(position, field)`).
fn transfer(p: &Pending, i: usize, ins: &[(usize, &NodeField)]) -> NodeField {
    let node = &p.nodes[i];
    let dims = node.dims();
    let first = ins[0].1;
    let in_dims = |k: usize| p.nodes[p.inputs[i][k]].dims();
    let fields: Vec<&NodeField> = ins.iter().map(|(_, f)| *f).collect();
    match node.op() {
        Op::Reshape => reshape(first, dims),
        Op::Permute(perm) => NodeField {
            axes: perm.iter().map(|&a| first.axes[a].clone()).collect(),
            ..first.clone()
        },
        Op::Expand => {
            let src = in_dims(0);
            NodeField {
                axes: (0..dims.len())
                    .map(|a| {
                        if src[a] == dims[a] {
                            first.axes[a].clone()
                        } else {
                            plain(dims[a])
                        }
                    })
                    .collect(),
                ..first.clone()
            }
        }
        Op::Slice { step, .. } => {
            resized(first, in_dims(0), dims, |a| step[a].unsigned_abs() as usize)
        }
        Op::Pad { .. } => resized(first, in_dims(0), dims, |_| 1),
        Op::Cat { axis } => {
            let mut merged = elementwise(dims, &fields, Some(*axis));
            let mut best: Option<(usize, Span)> = None;
            for f in &fields {
                for fac in &f.axes[*axis] {
                    if let Some((d, s)) = fac.spatial {
                        best = Some(best.map_or((d, s), |(d0, b)| (d0, b.max(s))));
                    }
                }
            }
            merged.axes[*axis] = match best {
                Some(sp) if dims[*axis] > 1 => vec![Factor {
                    extent: dims[*axis],
                    spatial: Some(sp),
                }],
                _ => plain(dims[*axis]),
            };
            merged
        }
        Op::Window(g) => window(first, g, dims),
        Op::Unwindow(_) => NodeField::plain_like(dims, &fields, true),
        Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast(_) => elementwise(dims, &fields, None),
        Op::Reduce { axes, .. } => {
            let mut f = first.clone();
            for &a in axes {
                let factors = std::mem::take(&mut f.axes[a]);
                f.fold(&factors);
            }
            f
        }
        Op::Matmul => {
            let r = dims.len();
            let mut f = NodeField::plain_like(dims, &fields, false);
            for &(k, inp) in ins {
                // Batch axes follow either operand; M from the left, N from the right; K is
                // contracted.
                for a in 0..r - 2 {
                    if inp.axes[a].iter().any(|x| x.spatial.is_some()) {
                        f.axes[a] = inp.axes[a].clone();
                    }
                }
                let (kept, contracted) = if k == 0 {
                    (r - 2, r - 1)
                } else {
                    (r - 1, r - 2)
                };
                if inp.axes[kept].iter().any(|x| x.spatial.is_some()) {
                    f.axes[kept] = inp.axes[kept].clone();
                }
                f.fold(&inp.axes[contracted]);
            }
            f
        }
        // Leaves have no inputs; anything else new is not followed.
        _ => NodeField::plain_like(dims, &fields, true),
    }
}

/// Elementwise merge of inputs of the node's shape (`skip`: an axis the caller sets itself).
fn elementwise(dims: &[usize], fields: &[&NodeField], skip: Option<usize>) -> NodeField {
    let mut f = NodeField::plain_like(dims, fields, false);
    for a in 0..dims.len() {
        if Some(a) == skip {
            continue;
        }
        let lists: Vec<&Vec<Factor>> = fields.iter().map(|x| &x.axes[a]).collect();
        match merge_axis(&lists) {
            Some(l) => f.axes[a] = l,
            None => f.unknown = true,
        }
    }
    f
}

/// A view that changes extents in place (slice, pad): a single spatial factor keeps its field
/// (its jump multiplied by `step(axis)`), with the new extent.
fn resized(
    first: &NodeField,
    src: &[usize],
    dims: &[usize],
    step: impl Fn(usize) -> usize,
) -> NodeField {
    let mut f = first.clone();
    for a in 0..dims.len() {
        if src[a] == dims[a] && step(a) == 1 {
            continue;
        }
        f.axes[a] = match first.axes[a].as_slice() {
            [Factor {
                spatial: Some((d, s)),
                ..
            }] if dims[a] > 1 => vec![Factor {
                extent: dims[a],
                spatial: Some((
                    *d,
                    Span {
                        size: s.size,
                        jump: s.jump * step(a),
                    },
                )),
            }],
            list => {
                if list.len() > 1 && list.iter().any(|x| x.spatial.is_some()) {
                    f.unknown = true;
                }
                plain(dims[a])
            }
        };
    }
    f
}

/// Sliding windows over the last `k` axes: `[.., S..] -> [.., K.., O..]`.
fn window(first: &NodeField, g: &WindowGeometry, dims: &[usize]) -> NodeField {
    let k = g.rank();
    let lead = dims.len() - 2 * k;
    let mut f = NodeField {
        axes: first.axes[..lead].to_vec(),
        ..first.clone()
    };
    let mut outs = vec![];
    for j in 0..k {
        f.axes.push(plain(g.kernel[j]));
        let o = dims[lead + k + j];
        outs.push(match first.axes[lead + j].as_slice() {
            [Factor {
                spatial: Some((d, s)),
                ..
            }] => {
                let grown = Span {
                    size: s.size + g.dilation[j] * (g.kernel[j] - 1) * s.jump,
                    jump: s.jump * g.stride[j],
                };
                if o > 1 {
                    vec![Factor {
                        extent: o,
                        spatial: Some((*d, grown)),
                    }]
                } else {
                    // One window: the field is folded (nothing moves along this axis any more).
                    f.folded[*d] = merge_opt(f.folded[*d], Some(grown));
                    vec![]
                }
            }
            list => {
                if list.len() > 1 && list.iter().any(|x| x.spatial.is_some()) {
                    f.unknown = true;
                }
                plain(o)
            }
        });
    }
    f.axes.extend(outs);
    f
}

/// A reshape: the factors, in row-major order, regrouped into the new axes. A factor that must
/// be split is split when it is not spatial; splitting a spatial factor loses the field.
fn reshape(first: &NodeField, dims: &[usize]) -> NodeField {
    let mut queue: std::collections::VecDeque<Factor> =
        first.axes.iter().flatten().copied().collect();
    let mut f = NodeField {
        axes: vec![],
        ..first.clone()
    };
    for &d in dims {
        let mut axis = vec![];
        let mut prod = 1usize;
        while prod < d {
            let Some(c) = queue.pop_front() else {
                f.unknown = true;
                break;
            };
            if d.is_multiple_of(prod * c.extent) {
                prod *= c.extent;
                axis.push(c);
            } else if d.is_multiple_of(prod) && c.extent.is_multiple_of(d / prod) {
                let part = d / prod;
                if c.spatial.is_some() {
                    f.unknown = true;
                }
                axis.push(Factor {
                    extent: part,
                    spatial: None,
                });
                queue.push_front(Factor {
                    extent: c.extent / part,
                    spatial: None,
                });
                prod = d;
            } else {
                f.unknown = true;
                prod = d;
            }
        }
        f.axes.push(axis);
    }
    f
}
