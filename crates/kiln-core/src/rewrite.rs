//! The rewrite pass: where kiln decides how to compute a graph faster, between
//! [`Pending::collect`] and [`crate::schedule::schedule`].
//!
//! The front end records the plain graph: autodiff applies one vector-Jacobian rule per op and
//! knows nothing of devices, and an op records what it means, not how a GPU should compute it.
//! A backend that schedules kernels runs [`rewrite`] on the pending graph first: an ordered list
//! of [`RULES`], each a small graph-to-graph function that recognises a subgraph by its ops and
//! shapes and replaces it with one that computes the same values faster (fewer dispatches, more
//! parallel work, buffers that fit a binding). Each rule's doc comment says what it matches, what
//! it produces, why, and which [`ScheduleLimits`] it reads.
//!
//! The pass walks the graph once, inputs first. At each node the rules are tried in order and
//! the first that matches replaces the node; nodes above a replaced one are rebuilt on the new
//! inputs. A rule reads the *original* graph (its ops, shapes and user counts) and builds its
//! replacement from the rewritten versions of the nodes it keeps, so rules compose without
//! seeing each other's output. The rewritten graph is collected again, and its structural
//! signature is what the plan cache is keyed by: it follows from the original graph and the
//! limits, the rules' only inputs, so a plan is never reused for a graph the rules would treat
//! differently. The reference executor never rewrites: it is the meaning the rules preserve,
//! and each rule's tests compare the two.
//!
//! `KILN_LOG=plan` prints, with each newly compiled plan, the rules that fired and how often.

mod fold_batch;
mod transposed_conv;
mod two_stage_sum;

use crate::graph::Pending;
use crate::op::{Op, ReduceOp};
use crate::schedule::ScheduleLimits;
use crate::tensor::Tensor;

pub use fold_batch::SMALL_GRADIENT;
pub use two_stage_sum::{SPLIT_CHUNK, SPLIT_GROUP, SPLIT_OUTPUTS};

/// One rule of the pass: a name for logs and a function that, given the graph and a node,
/// returns the node's replacement (same shape and dtype) or `None` if the rule does not apply.
pub struct Rule {
    /// A short name, as `KILN_LOG=plan` prints it.
    pub name: &'static str,
    /// Tries the rule at one node.
    pub apply: fn(&Context, usize) -> Option<Tensor>,
}

/// The rules, in the order they are tried at each node.
pub const RULES: &[Rule] = &[
    Rule {
        name: "transposed_conv_input_gradient",
        apply: transposed_conv::transposed_conv_input_gradient,
    },
    Rule {
        name: "fold_summed_batch_into_contraction",
        apply: fold_batch::fold_summed_batch_into_contraction,
    },
    Rule {
        name: "two_stage_sum",
        apply: two_stage_sum::two_stage_sum,
    },
];

/// What a rule sees: the original graph with its user counts, the device's limits, and the
/// rewritten version of every node before the one being tried.
pub struct Context<'a> {
    /// The graph as recorded.
    pub graph: &'a Pending,
    /// For each node of `graph`, its users in the graph (plus one per time it is a target).
    pub users: Vec<usize>,
    /// The device's limits.
    pub limits: &'a ScheduleLimits,
    rewritten: Vec<Tensor>,
}

impl Context<'_> {
    /// The rewritten version of node `i` (which must come before the node being tried): the
    /// node itself when nothing under it changed.
    pub fn rewritten(&self, i: usize) -> &Tensor {
        &self.rewritten[i]
    }
    /// The original node `i`.
    pub fn node(&self, i: usize) -> &Tensor {
        &self.graph.nodes[i]
    }
    /// The positions of node `i`'s inputs.
    pub fn inputs(&self, i: usize) -> &[usize] {
        &self.graph.inputs[i]
    }
    /// The summed axes when node `i` is a sum (`Reduce { Sum }`), else `None`.
    pub fn summed_axes(&self, i: usize) -> Option<&[usize]> {
        match self.node(i).op() {
            Op::Reduce {
                op: ReduceOp::Sum,
                axes,
            } => Some(axes),
            _ => None,
        }
    }
    /// True if node `i` is computed here (not a realized or generator leaf) and is read by one
    /// user only, so that a rule replacing that user may drop it.
    pub fn has_one_user(&self, i: usize) -> bool {
        !self.graph.is_leaf(i) && self.users[i] == 1
    }
}

/// The result of [`rewrite`]: the graph to schedule and the rules that fired.
pub struct Rewritten<'a> {
    original: &'a Pending,
    rewritten: Option<Pending>,
    /// Each rule that fired and how many times, in [`RULES`] order.
    pub fired: Vec<(&'static str, usize)>,
}

impl Rewritten<'_> {
    /// The graph to schedule: the rewritten one, or the original where no rule fired.
    pub fn pending(&self) -> &Pending {
        self.rewritten.as_ref().unwrap_or(self.original)
    }
    /// After the rewritten graph is realized: gives each original target whose node was
    /// replaced the storage its replacement received.
    pub fn hand_back(&self) {
        let Some(q) = &self.rewritten else { return };
        for (&t, &u) in self.original.targets.iter().zip(&q.targets) {
            let (orig, new) = (&self.original.nodes[t], &q.nodes[u]);
            if !orig.same(new) {
                if let Some(s) = new.storage() {
                    orig.set_storage(s);
                }
            }
        }
    }
    /// The fired rules as text (`"fold_summed_batch_into_contraction x3, split_k x1"`), or
    /// `"none"`.
    pub fn fired_summary(&self) -> String {
        if self.fired.is_empty() {
            return "none".into();
        }
        let parts: Vec<String> = self
            .fired
            .iter()
            .map(|(name, n)| format!("{name} x{n}"))
            .collect();
        parts.join(", ")
    }
}

/// The mask of [`ScheduleLimits::disabled_rules`] that turns off the rules named in `names`
/// (`"all"` turns every rule off), for comparing a rule's effect in one run. Errors with the
/// known names if one is not a rule.
pub fn rules_mask(names: &[&str]) -> std::result::Result<u64, String> {
    let mut mask = 0;
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if name == "all" {
            mask = u64::MAX;
        } else if let Some(i) = RULES.iter().position(|r| r.name == name) {
            mask |= 1 << i;
        } else {
            let known: Vec<&str> = RULES.iter().map(|r| r.name).collect();
            return Err(format!(
                "{name:?} is not a rewrite rule (known: all, {})",
                known.join(", ")
            ));
        }
    }
    Ok(mask)
}

/// Applies [`RULES`] (those [`ScheduleLimits::disabled_rules`] leaves on) to `p` for a device
/// with `limits`.
pub fn rewrite<'a>(p: &'a Pending, limits: &ScheduleLimits) -> Rewritten<'a> {
    let mut cx = Context {
        graph: p,
        users: p.user_counts(),
        limits,
        rewritten: Vec::with_capacity(p.nodes.len()),
    };
    let mut counts = vec![0usize; RULES.len()];
    for i in 0..p.nodes.len() {
        let node = &p.nodes[i];
        let changed = p.inputs[i]
            .iter()
            .any(|&x| !cx.rewritten[x].same(&p.nodes[x]));
        let mut t = if changed {
            let inputs = p.inputs[i].iter().map(|&x| cx.rewritten[x].clone());
            Tensor::from_op(
                node.op().clone(),
                inputs.collect(),
                node.shape().clone(),
                node.dtype(),
                node.device(),
            )
        } else {
            node.clone()
        };
        if !p.is_leaf(i) {
            for (r, rule) in RULES.iter().enumerate() {
                if limits.disabled_rules & (1 << r) != 0 {
                    continue;
                }
                if let Some(new) = (rule.apply)(&cx, i) {
                    debug_assert_eq!(new.shape(), node.shape(), "rule {}", rule.name);
                    debug_assert_eq!(new.dtype(), node.dtype(), "rule {}", rule.name);
                    counts[r] += 1;
                    t = new;
                    break;
                }
            }
        }
        cx.rewritten.push(t);
    }
    let fired: Vec<(&'static str, usize)> = RULES
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.name, n))
        .collect();
    let rewritten = (!fired.is_empty()).then(|| {
        let targets: Vec<&Tensor> = p.targets.iter().map(|&t| &cx.rewritten[t]).collect();
        // The assignments follow their targets (leaves are never rewritten).
        let updates: Vec<(&Tensor, &Tensor)> = p
            .updates
            .iter()
            .map(|&(t, l)| (&cx.rewritten[t], &p.nodes[l]))
            .collect();
        Pending::collect(&targets).with_updates(&updates)
    });
    Rewritten {
        original: p,
        rewritten,
        fired,
    }
}
