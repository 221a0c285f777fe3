//! Finding a model's layers in the graph its `forward` records, without help from the layers:
//! a layer with parameters is the set of ops that combine the image's data with views of
//! parameters named `prefix.*` (`conv1.weight`, `conv1.bias` -> layer `conv1`), ending at the
//! last of them (plus reshapes and constant scalings right after); a pooling layer is a
//! reduction of a window view; a residual add is an addition of two branches that come from
//! different layers. Convolutions are linear layers whose data operand is a window view.

use crate::receptive::{fields, ReceptiveField};
use kiln_core::op::{BinaryOp, Op, ReduceOp};
use kiln_core::{Pending, Tensor};
use std::collections::HashMap;

/// What kind of layer a row of the summary is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// A matmul with a parameter whose data operand is a window view (a convolution).
    Conv2d,
    /// A matmul with a parameter (a dense layer).
    Linear,
    /// Parameters applied elementwise (batch norm, layer norm and other scale-and-shift layers).
    Norm,
    /// A max over a window view.
    MaxPool2d,
    /// A sum (and division) over a window view.
    AvgPool2d,
    /// An addition of two branches (a residual connection).
    Add,
    /// Parameters the forward pass never read.
    Unused,
}

/// One layer found in a forward graph.
#[derive(Clone, Debug)]
pub struct FoundLayer {
    /// The parameter prefix (`conv1`, `layer1.0.bn1`), or a made-up name for layers without
    /// parameters (`maxpool1`, `add1`).
    pub name: String,
    /// What it is.
    pub kind: LayerKind,
    /// Its output (`None` for unused parameters).
    pub output: Option<Tensor>,
    /// Multiply-adds of its matmuls for this input.
    pub mult_adds: u64,
    /// The receptive field of its output in input pixels.
    pub receptive_field: ReceptiveField,
}

/// The part of a parameter name before its last dot: the layer it belongs to.
pub(crate) fn layer_prefix(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(a, _)| a)
}

/// A candidate row of the summary: output node, name (empty: named later), kind, mult-adds.
type Row = (usize, String, LayerKind, u64);

/// The forward graph with what [`find_layers`] knows of each node.
struct Graph<'a> {
    p: Pending,
    /// The node of the image, if the output depends on it.
    input_at: Option<usize>,
    /// Each node's users, each once.
    users: Vec<Vec<usize>>,
    /// Whether each node depends on the image.
    data: Vec<bool>,
    /// For a node computed from one layer's parameters only, that layer's prefix.
    param: Vec<Option<String>>,
    /// The image's rank.
    rank: usize,
    params: &'a [(String, Tensor)],
}

/// The layers of the graph behind `output`, computed from `input`, in the order their outputs are
/// computed, then unused parameter prefixes.
pub fn find_layers(
    input: &Tensor,
    output: &Tensor,
    params: &[(String, Tensor)],
) -> Vec<FoundLayer> {
    let g = Graph::new(input, output, params);
    let n = g.p.nodes.len();
    let (order, ops_of) = g.ops_by_layer();
    let mut rows = g.parameter_rows(&order, &ops_of);
    let in_layer: Vec<bool> = {
        let mut v = vec![false; n];
        for ops in ops_of.values() {
            for &i in ops {
                v[i] = true;
            }
        }
        v
    };
    rows.extend(g.pool_rows(&in_layer));
    rows.sort_by_key(|r| r.0);
    for i in g.residual_adds(&rows, &in_layer) {
        rows.push((i, String::new(), LayerKind::Add, 0));
    }
    rows.sort_by_key(|r| r.0);
    name_unnamed(&mut rows);
    g.found_layers(rows, &order)
}

impl Graph<'_> {
    /// The graph behind `output`, which nodes depend on the image `input`, and which are
    /// computed from one layer's parameters only.
    fn new<'a>(input: &Tensor, output: &Tensor, params: &'a [(String, Tensor)]) -> Graph<'a> {
        let p = Pending::collect(&[output]);
        let n = p.nodes.len();
        let index: HashMap<u64, usize> = p
            .nodes
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id(), i))
            .collect();
        let input_at = index.get(&input.id()).copied();
        let prefix_of: HashMap<u64, String> = params
            .iter()
            .map(|(name, t)| (t.id(), layer_prefix(name).to_string()))
            .collect();
        let mut users: Vec<Vec<usize>> = vec![vec![]; n];
        for (u, ins) in p.inputs.iter().enumerate() {
            for &i in ins {
                if !users[i].contains(&u) {
                    users[i].push(u);
                }
            }
        }
        // Which nodes depend on the image, and which are computed from one layer's parameters only.
        let mut data = vec![false; n];
        let mut param: Vec<Option<String>> = vec![None; n];
        for i in 0..n {
            data[i] = Some(i) == input_at || p.inputs[i].iter().any(|&j| data[j]);
            if data[i] {
                continue;
            }
            if p.inputs[i].is_empty() {
                param[i] = prefix_of.get(&p.nodes[i].id()).cloned();
            } else {
                let mut found: Option<&String> = None;
                let mut mixed = false;
                for &j in &p.inputs[i] {
                    if let Some(pr) = &param[j] {
                        mixed |= found.is_some_and(|f| f != pr);
                        found = Some(pr);
                    }
                }
                if !mixed {
                    param[i] = found.cloned();
                }
            }
        }
        Graph {
            p,
            input_at,
            users,
            data,
            param,
            rank: input.rank(),
            params,
        }
    }

    /// True if node `i` depends neither on the image nor on parameters.
    fn constant(&self, i: usize) -> bool {
        !self.data[i] && self.param[i].is_none()
    }

    /// Extends a layer's last op by what belongs to it: reshapes right after a matmul or
    /// reduction that keep the image's rank (a convolution's output rows and columns come out
    /// of its matmul merged; a pool's reduced window axes are dropped), and scalings by
    /// constants (an average pool's division); a flatten is the next layer's business.
    fn extend(&self, mut i: usize) -> usize {
        let p = &self.p;
        let mut after_core = matches!(p.nodes[i].op(), Op::Matmul | Op::Reduce { .. });
        while self.users[i].len() == 1 && !p.targets.contains(&i) {
            let u = self.users[i][0];
            let absorbed = match p.nodes[u].op() {
                Op::Reshape => after_core && p.nodes[u].rank() >= self.rank,
                Op::Binary(op) => {
                    matches!(op, BinaryOp::Mul | BinaryOp::Div)
                        && p.inputs[u].iter().all(|&j| j == i || self.constant(j))
                }
                _ => false,
            };
            if !absorbed {
                break;
            }
            after_core &= matches!(p.nodes[u].op(), Op::Reshape);
            i = u;
        }
        i
    }

    /// The ops of each parameter layer: the prefixes in first-seen order, and each one's ops
    /// (the ops that combine the image's data with its parameters).
    fn ops_by_layer(&self) -> (Vec<String>, HashMap<String, Vec<usize>>) {
        let mut order: Vec<String> = vec![];
        let mut ops_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, ins) in self.p.inputs.iter().enumerate() {
            if !self.data[i] {
                continue;
            }
            if let Some(pr) = ins.iter().find_map(|&j| self.param[j].clone()) {
                if !ops_of.contains_key(&pr) {
                    order.push(pr.clone());
                }
                ops_of.entry(pr).or_default().push(i);
            }
        }
        (order, ops_of)
    }

    /// The rows of the parameter layers: kind (convolution, dense or norm) and mult-adds from
    /// their matmuls, output at their last op (extended).
    fn parameter_rows(&self, order: &[String], ops_of: &HashMap<String, Vec<usize>>) -> Vec<Row> {
        let p = &self.p;
        let mut rows: Vec<Row> = vec![];
        for pr in order {
            let ops = &ops_of[pr];
            let last = *ops.iter().max().expect("a layer has ops");
            let mut kind = LayerKind::Norm;
            let mut macs = 0u64;
            for &i in ops {
                if matches!(p.nodes[i].op(), Op::Matmul) {
                    let a = p.nodes[p.inputs[i][0]].dims();
                    macs += (p.nodes[i].numel() * a[a.len() - 1]) as u64;
                    let windowed = p.inputs[i]
                        .iter()
                        .any(|&j| self.data[j] && reaches_window(p, j));
                    kind = if windowed || kind == LayerKind::Conv2d {
                        LayerKind::Conv2d
                    } else {
                        LayerKind::Linear
                    };
                }
            }
            let name = if pr.is_empty() {
                format!("{kind:?}").to_lowercase()
            } else {
                pr.clone()
            };
            rows.push((self.extend(last), name, kind, macs));
        }
        rows
    }

    /// The rows of the pooling layers: reductions of the image's data over a window view, in
    /// no parameter layer (named later).
    fn pool_rows(&self, in_layer: &[bool]) -> Vec<Row> {
        let p = &self.p;
        let mut rows = vec![];
        for (i, node) in p.nodes.iter().enumerate() {
            if let Op::Reduce { op, .. } = node.op() {
                if self.data[i] && !in_layer[i] && reaches_window(p, p.inputs[i][0]) {
                    let kind = match op {
                        ReduceOp::Max => LayerKind::MaxPool2d,
                        _ => LayerKind::AvgPool2d,
                    };
                    rows.push((self.extend(i), String::new(), kind, 0));
                }
            }
        }
        rows
    }

    /// Residual adds: in computation order, the adds (in no parameter layer) of two branches
    /// whose latest layers (rows, sorted by output) differ.
    fn residual_adds(&self, rows: &[Row], in_layer: &[bool]) -> Vec<usize> {
        let p = &self.p;
        let n = p.nodes.len();
        let row_at: HashMap<usize, usize> =
            rows.iter().enumerate().map(|(k, r)| (r.0, k)).collect();
        let mut latest: Vec<Option<usize>> = vec![None; n];
        let mut adds: Vec<usize> = vec![];
        for i in 0..n {
            if let Some(&k) = row_at.get(&i) {
                latest[i] = Some(k * 2 + 1);
                continue;
            }
            let ins: Vec<usize> = p.inputs[i]
                .iter()
                .copied()
                .filter(|&j| self.data[j])
                .collect();
            let is_residual = matches!(p.nodes[i].op(), Op::Binary(BinaryOp::Add))
                && ins.len() == 2
                && latest[ins[0]] != latest[ins[1]];
            if is_residual && !in_layer[i] {
                adds.push(i);
                // A fresh source, distinct from every row's (rows use odd numbers).
                latest[i] = Some(2 * n + 2 * adds.len());
            } else {
                latest[i] = ins.iter().filter_map(|&j| latest[j]).max();
            }
        }
        adds
    }

    /// The found layers of `rows`, with their receptive fields, then the prefixes of
    /// parameters the forward pass never read (`order` lists those it read).
    fn found_layers(&self, rows: Vec<Row>, order: &[String]) -> Vec<FoundLayer> {
        let field = fields(&self.p, self.input_at);
        let mut found: Vec<FoundLayer> = rows
            .into_iter()
            .map(|(i, name, kind, mult_adds)| FoundLayer {
                name,
                kind,
                output: Some(self.p.nodes[i].clone()),
                mult_adds,
                receptive_field: field[i]
                    .as_ref()
                    .map_or(ReceptiveField::NotSpatial, |f| f.report()),
            })
            .collect();
        let mut seen: Vec<&str> = order.iter().map(|s| s.as_str()).collect();
        for (name, _) in self.params {
            let pr = layer_prefix(name);
            if !seen.contains(&pr) {
                seen.push(pr);
                found.push(FoundLayer {
                    name: pr.to_string(),
                    kind: LayerKind::Unused,
                    output: None,
                    mult_adds: 0,
                    receptive_field: ReceptiveField::NotSpatial,
                });
            }
        }
        found
    }
}

/// Names the layers without parameters (`maxpool1`, `add2`), counted per kind.
fn name_unnamed(rows: &mut [Row]) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in rows.iter_mut().filter(|r| r.1.is_empty()) {
        let base = match r.2 {
            LayerKind::MaxPool2d => "maxpool",
            LayerKind::AvgPool2d => "avgpool",
            _ => "add",
        };
        let c = counts.entry(base.to_string()).or_default();
        *c += 1;
        r.1 = format!("{base}{c}");
    }
}

/// True if node `i` is, or is a view chain over, a window view.
fn reaches_window(p: &Pending, mut i: usize) -> bool {
    loop {
        let op = p.nodes[i].op();
        if matches!(op, Op::Window(_)) {
            return true;
        }
        if !op.is_view() || p.inputs[i].len() != 1 {
            return false;
        }
        i = p.inputs[i][0];
    }
}
