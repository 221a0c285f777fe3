//! The pending subgraph behind some tensors, in a canonical order, with its structural signature.

use crate::tensor::Tensor;
use std::collections::HashMap;
use std::fmt::Write;

/// The unrealized work behind a set of target tensors.
///
/// `nodes` lists every node reachable from the targets without passing through a realized node,
/// inputs before users (a topological order that depends only on the graph's structure). Realized
/// nodes appear as leaves: their inputs are not listed.
pub struct Pending {
    /// The nodes, inputs first.
    pub nodes: Vec<Tensor>,
    /// For each node, the positions of its inputs in `nodes` (empty for leaves).
    pub inputs: Vec<Vec<usize>>,
    /// For each target tensor, its position in `nodes`.
    pub targets: Vec<usize>,
    /// The graph's structure as text: ops (without runtime scalars), shapes, dtypes, wiring, and
    /// which nodes are realized leaves. Two graphs with the same signature compile to the same plan.
    pub signature: String,
    /// Assignments that follow this realize, as `(target, leaf)` positions in `nodes`: the
    /// target's values replace the realized leaf's (an optimiser's new parameter replacing the
    /// old one; see [`Tensor::realize_assign`]). A backend may write the target straight into
    /// the leaf's buffer when nothing else reads the leaf afterwards (`schedule::in_place`).
    pub updates: Vec<(usize, usize)>,
}

impl Pending {
    /// Collects the pending graph behind `targets`.
    pub fn collect(targets: &[&Tensor]) -> Pending {
        let mut p = Pending {
            nodes: vec![],
            inputs: vec![],
            targets: vec![],
            signature: String::new(),
            updates: vec![],
        };
        let mut index: HashMap<u64, usize> = HashMap::new();
        for t in targets {
            let i = p.visit(t, &mut index);
            p.targets.push(i);
        }
        let _ = write!(p.signature, "targets {:?}", p.targets);
        p
    }

    /// Records that each `(value, dest)` of `assign` is an assignment following this realize
    /// (see [`Pending::updates`]); pairs whose value is not a target, or whose destination is
    /// not a realized leaf of the graph of its shape and dtype, are left out. The signature
    /// says which, so the plan cache keeps plans with and without them apart.
    pub fn with_updates(mut self, assign: &[(&Tensor, &Tensor)]) -> Pending {
        let index: HashMap<u64, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id(), i))
            .collect();
        for (value, dest) in assign {
            let (Some(&t), Some(&l)) = (index.get(&value.id()), index.get(&dest.id())) else {
                continue;
            };
            let fits = self.nodes[l].is_realized()
                && self.nodes[l].shape() == self.nodes[t].shape()
                && self.nodes[l].dtype() == self.nodes[t].dtype();
            let taken = self.updates.iter().any(|&(a, b)| a == t || b == l);
            if t != l && fits && !taken && self.targets.contains(&t) {
                self.updates.push((t, l));
            }
        }
        if !self.updates.is_empty() {
            let _ = write!(self.signature, " updates {:?}", self.updates);
        }
        self
    }

    /// True if node `i` is a leaf of this pending graph (realized, or an op without inputs).
    pub fn is_leaf(&self, i: usize) -> bool {
        self.inputs[i].is_empty()
    }

    /// Number of users of each node inside the pending graph (a user counted once however many
    /// times it reads the node), plus one for each time the node is a target.
    pub fn user_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.nodes.len()];
        for ins in &self.inputs {
            let mut seen: Vec<usize> = ins.clone();
            seen.sort_unstable();
            seen.dedup();
            for i in seen {
                counts[i] += 1;
            }
        }
        for &t in &self.targets {
            counts[t] += 1;
        }
        counts
    }

    fn visit(&mut self, t: &Tensor, index: &mut HashMap<u64, usize>) -> usize {
        if let Some(&i) = index.get(&t.id()) {
            return i;
        }
        // Iterative post-order walk: deep graphs (long training runs) must not overflow the stack.
        let mut stack: Vec<(Tensor, bool)> = vec![(t.clone(), false)];
        while let Some((node, expanded)) = stack.pop() {
            if index.contains_key(&node.id()) {
                continue;
            }
            let realized = node.is_realized();
            if !expanded && !realized {
                stack.push((node.clone(), true));
                for inp in node.inputs().iter().rev() {
                    if !index.contains_key(&inp.id()) {
                        stack.push((inp.clone(), false));
                    }
                }
                continue;
            }
            let ins: Vec<usize> = if realized {
                vec![]
            } else {
                node.inputs().iter().map(|x| index[&x.id()]).collect()
            };
            let i = self.nodes.len();
            let key = if realized {
                "Buffer".to_string()
            } else {
                node.op().signature_key()
            };
            let _ = writeln!(
                self.signature,
                "{i}:{key}:{}:{}:{:?}",
                node.dtype(),
                node.shape(),
                ins
            );
            index.insert(node.id(), i);
            self.nodes.push(node);
            self.inputs.push(ins);
        }
        index[&t.id()]
    }
}
