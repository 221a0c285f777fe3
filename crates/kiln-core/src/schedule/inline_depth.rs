//! Rule 1d of the scheduler: no kernel's expression is deeper than [`MAX_INLINE_DEPTH`].

use crate::graph::Pending;

/// Longest chain of ops one kernel computes inline (rule 1d). An unrolled loop or a long
/// iterative program records chains of thousands of elementwise ops; fused into one kernel, such a
/// chain makes WGSL whose driver compile time grows faster than its length (4,000 ops took 33 s on
/// lavapipe) and whose code generation recurses once per op. Cut every `MAX_INLINE_DEPTH` ops,
/// compile time grows linearly with the chain and code generation's recursion stays bounded.
/// Real models' fused chains (an Adam update, batch norm and its epilogue, an augmentation's
/// matrices) are far shorter. (Depth, not the number of ops: an expression is a DAG whose shared
/// inline parts, like `g` in `g * g`, are emitted once, and counting them per path would grow
/// exponentially.)
pub const MAX_INLINE_DEPTH: usize = 128;

/// Rule 1d: materializes nodes until no kernel's expression is deeper than
/// [`MAX_INLINE_DEPTH`]; returns for each node the depth of its inline expression, and for a
/// materialized node the depth of its own kernel's expression.
pub(super) fn bound_inline_depth(p: &Pending, mat: &mut [bool]) -> Vec<usize> {
    let n = p.nodes.len();
    // Depth of each node's inline expression; 0 for materialized nodes (a buffer read).
    let mut depth = vec![0usize; n];
    for i in 0..n {
        if p.is_leaf(i) {
            // Generators (`Full`, `Arange`, `Rand`) are computed inline: one op each.
            depth[i] = usize::from(!mat[i]);
            continue;
        }
        let ins = &p.inputs[i];
        loop {
            let deepest = ins.iter().copied().max_by_key(|&x| depth[x]);
            let d = 1 + deepest.map_or(0, |x| depth[x]);
            match deepest {
                // Cut the deepest inline input: it becomes a kernel of its own.
                Some(x) if d > MAX_INLINE_DEPTH && !p.is_leaf(x) && !mat[x] => {
                    mat[x] = true;
                    depth[x] = 0;
                }
                _ => {
                    // A materialized node is a buffer read for its users.
                    depth[i] = if mat[i] { 0 } else { d };
                    break;
                }
            }
        }
    }
    // Users of a materialized node read its buffer: it costs them nothing. Its own kernel costs
    // its expression's depth.
    for i in 0..n {
        if mat[i] && !p.is_leaf(i) {
            let ins = &p.inputs[i];
            depth[i] = 1 + ins
                .iter()
                .map(|&x| if mat[x] { 0 } else { depth[x] })
                .max()
                .unwrap_or(0);
        } else if mat[i] {
            depth[i] = 0;
        }
    }
    depth
}
