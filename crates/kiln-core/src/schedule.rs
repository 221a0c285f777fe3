//! The scheduler: turns a [`Pending`] graph into a backend-neutral [`Plan`] of kernels.
//!
//! Rules, in order:
//! 1. A node gets its own buffer ("is materialized") if it is a realized leaf, host data, a
//!    target, a matmul, reduction or affine sampling, the computed matrices of an affine sampling
//!    (read once per output pixel, so computed once), or an elementwise node read by more than one
//!    user (so that it is not computed twice). Generators (`Full`, `Arange`, `Rand`) and views
//!    never get one unless they are targets: they are folded into the index arithmetic of their
//!    readers. On software adapters (`ScheduleLimits::window_operand_bytes`), a matmul operand
//!    read through a convolution's window, or through views that no strides describe (see
//!    [`strided`]), gets one too: the matmul then reads plain memory 4 values at a time.
//! 2. Each materialized non-leaf node is the root of one kernel, which computes the root's
//!    expression tree down to materialized nodes.
//! 3. Epilogues: a matmul, reduction or affine sampling whose only user is an elementwise op (or
//!    a reshape, which keeps every element's linear index) is absorbed into the kernel of the
//!    chain above it, so `relu(a.matmul(b) + bias)` is one kernel.
//! 4. A kernel never reads more buffers than the device can bind; subtrees are materialized as
//!    separate kernels until it fits (and an epilogue is given up when only it is left to cut).
//! 5. Multi-output kernels. (a) Independent reductions over the same group of inputs (a max
//!    pool's maximum and its position; batch norm's two backward sums) become one kernel with
//!    one accumulator each (see [`sibling_reductions`]). (b) An elementwise kernel joins an
//!    earlier elementwise or reduction kernel whose output has its shape when it reads that
//!    kernel's outputs only at its own element, the joined kernel binds no more buffers than the device allows, and no kernel in
//!    between needs what either moves past it (see [`multi_output`]). Adam's `m`, `v` and new
//!    parameter become one kernel, and the bias gradient's reduction writes them too. Failing
//!    that, an elementwise kernel that reads nothing an earlier elementwise kernel writes joins
//!    it as a segment of its own (horizontal fusion: several parameters' updates, one dispatch).
//!    (c) An output that replaces a realized leaf after the realize (`Pending::updates`: an
//!    optimiser's new parameter) is written into the leaf's buffer when its kernel is the last
//!    to read the leaf, and reads it only at its own element (see [`in_place`]).
//! 6. Intermediate buffers are assigned to reusable slots by liveness.

pub mod in_place;
mod inline_depth;
pub mod multi_output;
pub mod sibling_reductions;
pub mod strided;

use inline_depth::bound_inline_depth;
pub use inline_depth::MAX_INLINE_DEPTH;

use crate::graph::Pending;
use crate::op::Op;

/// What a kernel computes at its core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// One output element per invocation: the root's expression tree.
    Elementwise,
    /// A reduction node (its index in `Pending::nodes`) with its prologue and epilogue.
    Reduce(usize),
    /// A matmul node (its index in `Pending::nodes`) with its prologue and epilogue.
    Matmul(usize),
    /// An affine-sampling node (its index in `Pending::nodes`) with its image prologue and its
    /// epilogue (e.g. the normalisation after an augmentation's warp).
    AffineSample(usize),
}

impl KernelKind {
    /// The kernel kind whose core is node `c` with op `op` (a reduction, matmul or affine
    /// sampling).
    pub fn of_core(op: &Op, c: usize) -> KernelKind {
        match op {
            Op::Matmul => KernelKind::Matmul(c),
            Op::AffineSample => KernelKind::AffineSample(c),
            Op::Reduce { .. } => KernelKind::Reduce(c),
            other => panic!("scheduler: {other:?} is not a kernel core"),
        }
    }
    /// The core node, if the kernel has one (not for elementwise kernels).
    pub fn core(self) -> Option<usize> {
        match self {
            KernelKind::Elementwise => None,
            KernelKind::Reduce(c) | KernelKind::Matmul(c) | KernelKind::AffineSample(c) => Some(c),
        }
    }
}

/// One kernel of a plan.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// Elementwise, reduce or matmul.
    pub kind: KernelKind,
    /// The node whose values this kernel writes.
    pub root: usize,
    /// Further nodes this kernel writes (a multi-output kernel), in order: one may use the values
    /// of the outputs before it in its segment at its own element.
    pub extra: Vec<usize>,
    /// Where the second and later segments of a horizontally fused elementwise kernel start, as
    /// positions in [`Kernel::outputs`] (empty: one segment). A segment's outputs share its
    /// first output's shape and are computed at one element index; the segments are
    /// independent and take consecutive ranges of the kernel's invocations.
    pub segments: Vec<usize>,
    /// Further reductions a reduction kernel computes alongside its core, over the same group
    /// of inputs (see [`sibling_reductions`]); their epilogues' roots are among
    /// [`Kernel::extra`]. Empty for every other kernel.
    pub siblings: Vec<usize>,
    /// Outputs written into the buffer of a realized leaf they replace, as `(output, leaf)`
    /// (see [`in_place`]): the kernel reads the leaf through that output's binding, and the
    /// leaf is not among [`Kernel::reads`].
    pub in_place: Vec<(usize, usize)>,
    /// Materialized nodes the kernel reads, each once, in first-use order.
    pub reads: Vec<usize>,
    /// Nodes with runtime scalars (`Op::scalar_words`) that the kernel's expression uses.
    pub scalars: Vec<usize>,
}

/// Where a materialized node's values live during a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferRole {
    /// Not materialized: computed inline by its readers.
    None,
    /// A realized leaf: its storage.
    Realized,
    /// Host data uploaded by this plan into a buffer the node then keeps.
    Upload,
    /// A target: a new buffer the node keeps.
    Target,
    /// An intermediate: reusable slot `n` of the plan.
    Slot(usize),
}

/// A backend-neutral plan: kernels in execution order and where each node's values live.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Kernels in execution order.
    pub kernels: Vec<Kernel>,
    /// For each node of the pending graph, where its values live.
    pub buffers: Vec<BufferRole>,
    /// Size in bytes of each intermediate slot.
    pub slot_bytes: Vec<u64>,
    /// For each node, whether it has a buffer (`buffers[i] != BufferRole::None`), computed once
    /// for code generation.
    pub materialized: Vec<bool>,
}

impl Kernel {
    /// Every node this kernel writes: the root, then the extra outputs.
    pub fn outputs(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.root).chain(self.extra.iter().copied())
    }
    /// Storage buffers the kernel binds: its outputs and its reads.
    pub fn bindings(&self) -> usize {
        1 + self.extra.len() + self.reads.len()
    }
    /// The outputs of each segment (one segment unless horizontally fused).
    pub fn segment_outputs(&self) -> Vec<Vec<usize>> {
        let outs: Vec<usize> = self.outputs().collect();
        let mut bounds = vec![0];
        bounds.extend(&self.segments);
        bounds.push(outs.len());
        bounds
            .windows(2)
            .map(|w| outs[w[0]..w[1]].to_vec())
            .collect()
    }
}

impl Plan {
    /// True if node `i` has a buffer.
    pub fn is_materialized(&self, i: usize) -> bool {
        self.buffers[i] != BufferRole::None
    }
}

/// Device facts the scheduler needs.
#[derive(Clone, Copy, Debug)]
pub struct ScheduleLimits {
    /// Storage buffers one kernel may bind, its output included.
    pub max_storage_buffers: usize,
    /// A matmul operand that reads through a `Window` view (a convolution's im2col) is
    /// materialized by a copy kernel first when it takes at most this many bytes; 0 never does.
    /// Worth it on software adapters, where the window's index arithmetic, re-evaluated for
    /// every load of the matmul's K loop, costs more than one pass that writes it out.
    pub window_operand_bytes: u64,
    /// A convolution's input gradient whose col2im product (`[N, C KH KW, OH OW]`) has more
    /// elements than this is computed as a transposed convolution instead (the rewrite rule
    /// [`crate::rewrite`]'s `transposed_conv_input_gradient`); 0: always.
    pub col2im_product_limit: usize,
    /// Rewrite rules turned off: bit `i` for [`crate::rewrite::RULES`]`[i]` (see
    /// [`crate::rewrite::rules_mask`]); 0 runs them all.
    pub disabled_rules: u64,
}

/// Above this many elements, a convolution's input gradient is computed as a transposed
/// convolution rather than as the `[N, C KH KW, OH OW]` product and col2im: 2^24 f32 values are
/// 64 MiB, half of the smallest storage binding kiln meets (lavapipe's 128 MiB). The default of
/// [`ScheduleLimits::col2im_product_limit`].
pub const COL2IM_PRODUCT_LIMIT: usize = 1 << 24;

impl ScheduleLimits {
    /// The limits of a device that binds `max_storage_buffers` storage buffers per kernel, with
    /// the defaults elsewhere: no matmul operand written out first, and
    /// [`COL2IM_PRODUCT_LIMIT`].
    pub fn new(max_storage_buffers: usize) -> ScheduleLimits {
        ScheduleLimits {
            max_storage_buffers,
            window_operand_bytes: 0,
            col2im_product_limit: COL2IM_PRODUCT_LIMIT,
            disabled_rules: 0,
        }
    }
}

/// Bytes a node's values take in a device buffer.
pub fn node_bytes(p: &Pending, i: usize) -> u64 {
    let t = &p.nodes[i];
    (t.numel() * t.dtype().size_bytes()) as u64
}

/// Schedules `p` into kernels.
pub fn schedule(p: &Pending, limits: ScheduleLimits) -> Plan {
    let users = p.user_counts();
    let mut mat = materialize(p, &users, limits);
    // Rule 1d: no kernel's expression is deeper than MAX_INLINE_DEPTH.
    let depth = bound_inline_depth(p, &mut mat);
    let mut absorbed_into = absorb_epilogues(p, &users, &mut mat);
    let kernels = fit_kernels(p, &mut mat, &mut absorbed_into, limits);
    // Rule 5a: sibling reductions share a kernel; 5b: multi-output elementwise kernels.
    let kernels = sibling_reductions::join(p, kernels, limits.max_storage_buffers);
    let mut kernels = multi_output::merge(p, &mat, &depth, kernels, limits.max_storage_buffers);
    // Rule 5c: assignments that follow the realize write into the leaf they replace.
    in_place::assign(p, &mat, &mut kernels);
    let (buffers, slot_bytes) = assign_slots(p, &mat, &kernels);
    let materialized = buffers.iter().map(|b| *b != BufferRole::None).collect();
    Plan {
        kernels,
        buffers,
        slot_bytes,
        materialized,
    }
}

/// True if node `i` is one of the plan's targets.
fn is_target(p: &Pending, i: usize) -> bool {
    p.targets.contains(&i)
}

/// True if node `i` is computed by a kernel's core: a matmul, reduction or affine sampling.
fn is_core(p: &Pending, i: usize) -> bool {
    !p.is_leaf(i) && p.nodes[i].op().is_core()
}

/// Rules 1 to 1c: which nodes get a buffer of their own before epilogues are absorbed.
fn materialize(p: &Pending, users: &[usize], limits: ScheduleLimits) -> Vec<bool> {
    let n = p.nodes.len();
    // Rule 1.
    let mut mat = vec![false; n];
    for i in 0..n {
        let t = &p.nodes[i];
        mat[i] = if p.is_leaf(i) {
            t.is_realized() || matches!(t.op(), Op::Data(_)) || is_target(p, i)
        } else {
            is_target(p, i) || is_core(p, i) || (t.op().is_elementwise() && users[i] > 1)
        };
    }
    // Rule 1b: where the device asks for it (software adapters), a matmul operand read through
    // a window (a convolution's im2col), or one that only permutes, reshapes and broadcasts one
    // buffer in a way no strides describe (a weight gradient's `[B, M, N]` seen as `[M, B N]`),
    // is written out first, so that the matmul reads plain memory 4 values at a time rather than
    // recomputing a gather's index arithmetic for every element of its K loop.
    if limits.window_operand_bytes > 0 {
        for c in 0..n {
            if p.is_leaf(c) || !matches!(p.nodes[c].op(), Op::Matmul) {
                continue;
            }
            for &x in &p.inputs[c] {
                if mat[x] || node_bytes(p, x) > limits.window_operand_bytes {
                    continue;
                }
                if reads_through_window(p, &mat, x)
                    || (only_views(p, &mat, x)
                        && strided::strided(p, &mat, usize::MAX, x).is_none())
                {
                    mat[x] = true;
                }
            }
        }
    }
    // Rule 1c: an affine sample's computed matrices get a buffer of their own.
    for i in 0..n {
        if matches!(p.nodes[i].op(), Op::AffineSample) && !p.is_leaf(i) {
            let theta = p.inputs[i][1];
            // A leaf is a buffer already, or a generator cheap enough to compute inline.
            if !p.is_leaf(theta) {
                mat[theta] = true;
            }
        }
    }
    mat
}

/// Rule 3: absorbs cores into the epilogue chain above them. A node belongs to at most one
/// chain: in `(x.sum_axes(..) + x.max_axes(..)) * 2` the sum's chain takes the add and the
/// mul, and the max's chain stops below the add (its reshape becomes the max kernel's root),
/// so that no kernel's expression meets a core it does not compute. Returns, for the top of
/// each chain, the core it absorbed.
fn absorb_epilogues(p: &Pending, users: &[usize], mat: &mut [bool]) -> Vec<Option<usize>> {
    let n = p.nodes.len();
    let mut user_of: Vec<Vec<usize>> = vec![vec![]; n];
    for (u, ins) in p.inputs.iter().enumerate() {
        for &i in ins {
            if !user_of[i].contains(&u) {
                user_of[i].push(u);
            }
        }
    }
    let mut absorbed_into: Vec<Option<usize>> = vec![None; n];
    let mut claimed = vec![false; n];
    for c in 0..n {
        if !is_core(p, c) || is_target(p, c) {
            continue;
        }
        let mut top = c;
        loop {
            if users[top] != 1 || (top != c && mat[top]) {
                break;
            }
            let u = user_of[top][0];
            let op = p.nodes[u].op();
            let fusable = op.is_elementwise() || matches!(op, Op::Reshape);
            if !fusable || p.inputs[u].iter().filter(|&&x| x == top).count() != 1 || claimed[u] {
                break;
            }
            top = u;
            claimed[u] = true;
        }
        if top != c {
            mat[top] = true;
            mat[c] = false;
            absorbed_into[top] = Some(c);
        }
    }
    absorbed_into
}

/// Rules 2 and 4: one kernel per materialized non-leaf node, in node order, each reading no
/// more buffers than the device can bind (materializing more nodes, or giving epilogues up,
/// until every kernel fits).
fn fit_kernels(
    p: &Pending,
    mat: &mut [bool],
    absorbed_into: &mut [Option<usize>],
    limits: ScheduleLimits,
) -> Vec<Kernel> {
    let n = p.nodes.len();
    let max_reads = limits.max_storage_buffers.saturating_sub(1).max(2);
    let mut kernels = Vec::new();
    let mut i = 0;
    while i < n {
        let stored = p.nodes[i].is_realized() || matches!(p.nodes[i].op(), Op::Data(_));
        if !mat[i] || stored {
            i += 1;
            continue;
        }
        let kind = if is_core(p, i) {
            KernelKind::of_core(p.nodes[i].op(), i)
        } else if let Some(c) = absorbed_into[i] {
            KernelKind::of_core(p.nodes[c].op(), c)
        } else {
            KernelKind::Elementwise
        };
        let (reads, scalars) = kernel_inputs(p, mat, i, kind);
        if reads.len() > max_reads {
            // Materialize the inline subtree that reads the most buffers, then start over: the
            // kernels found so far are dropped and every kernel is found again from node 0.
            cut_kernel(p, mat, absorbed_into, i, kind);
            i = 0;
            kernels.clear();
            continue;
        }
        kernels.push(Kernel {
            kind,
            root: i,
            extra: vec![],
            segments: vec![],
            siblings: vec![],
            in_place: vec![],
            reads,
            scalars,
        });
        i += 1;
    }
    kernels
}

/// Rule 4's cut: materializes one more node under the kernel rooted at `root` (or gives its
/// epilogue up) so that it reads fewer buffers.
fn cut_kernel(
    p: &Pending,
    mat: &mut [bool],
    absorbed_into: &mut [Option<usize>],
    root: usize,
    kind: KernelKind,
) {
    match heaviest_inline_child(p, mat, root, kind) {
        // A subtree reading two or more buffers becomes one read.
        Some((n, pick)) if n > 1 => mat[pick] = true,
        // Left: subtrees of one buffer each along an epilogue chain
        // (`((core + x0) + x1) + ...`), whose nodes cannot be cut without the core. Give
        // the epilogue up: the core gets its own kernel, and the chain becomes an
        // elementwise kernel, which can be cut anywhere.
        other => {
            if let Some(c) = absorbed_into[root].take() {
                mat[c] = true;
            } else if let Some((_, pick)) = other {
                mat[pick] = true;
            } else {
                panic!("scheduler: a single op reads more buffers than the device can bind");
            }
        }
    }
}

/// Rule 6: each materialized node's role, intermediates assigned to reusable slots by
/// liveness (in kernel order); returns the roles and each slot's size in bytes.
fn assign_slots(p: &Pending, mat: &[bool], kernels: &[Kernel]) -> (Vec<BufferRole>, Vec<u64>) {
    let n = p.nodes.len();
    let mut buffers = vec![BufferRole::None; n];
    let mut last_use = vec![0usize; n];
    for (k, kern) in kernels.iter().enumerate() {
        for &r in &kern.reads {
            last_use[r] = k;
        }
    }
    let mut slot_bytes: Vec<u64> = vec![];
    let mut free: Vec<usize> = vec![];
    for i in 0..n {
        if !mat[i] {
            continue;
        }
        buffers[i] = if p.nodes[i].is_realized() {
            BufferRole::Realized
        } else if p.is_leaf(i) && matches!(p.nodes[i].op(), Op::Data(_)) {
            BufferRole::Upload
        } else if is_target(p, i) || p.is_leaf(i) {
            BufferRole::Target
        } else {
            BufferRole::None // assigned below, in kernel order
        };
    }
    for (k, kern) in kernels.iter().enumerate() {
        for r in kern.outputs() {
            if buffers[r] != BufferRole::None {
                continue;
            }
            let bytes = node_bytes(p, r).max(4);
            let pos = free.iter().position(|&s| slot_bytes[s] >= bytes);
            let s = match pos {
                Some(pos) => free.remove(pos),
                None => {
                    slot_bytes.push(bytes);
                    slot_bytes.len() - 1
                }
            };
            buffers[r] = BufferRole::Slot(s);
        }
        for &x in &kern.reads {
            if let BufferRole::Slot(s) = buffers[x] {
                if last_use[x] == k {
                    free.push(s);
                }
            }
        }
    }
    (buffers, slot_bytes)
}

/// Walks the expression of the kernel rooted at `root`: the materialized nodes it reads and the
/// nodes whose runtime scalars it uses, each once, in first-use order.
pub fn kernel_inputs(
    p: &Pending,
    mat: &[bool],
    root: usize,
    kind: KernelKind,
) -> (Vec<usize>, Vec<usize>) {
    let core = kind.core();
    // A set, not a vector of every node: a long chain has many small kernels.
    let (mut reads, mut scalars) = (vec![], vec![]);
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![root];
    while let Some(i) = stack.pop() {
        if !seen.insert(i) {
            continue;
        }
        if i != root && mat[i] && Some(i) != core {
            reads.push(i);
            continue;
        }
        if !p.nodes[i].op().scalar_words(p.nodes[i].dtype()).is_empty() {
            scalars.push(i);
        }
        for &x in p.inputs[i].iter().rev() {
            stack.push(x);
        }
    }
    (reads, scalars)
}

/// The inline (not materialized) node under `root` whose subtree reads the most buffers, and
/// how many it reads; `None` if there is no such node. Nodes whose expression contains the
/// kernel's core (its epilogue chain) are not candidates.
fn heaviest_inline_child(
    p: &Pending,
    mat: &[bool],
    root: usize,
    kind: KernelKind,
) -> Option<(usize, usize)> {
    let core = kind.core();
    let mut best: Option<(usize, usize)> = None;
    let mut stack = p.inputs[root].clone();
    let mut seen = vec![false; p.nodes.len()];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) || mat[i] && Some(i) != core {
            continue;
        }
        // A node above the core (on its epilogue chain) cannot become an elementwise kernel:
        // its expression would contain the core.
        let above_core = core.is_some_and(|c| reaches(p, mat, i, c));
        if Some(i) != core && !p.is_leaf(i) && !above_core {
            let (reads, _) = kernel_inputs(p, mat, i, KernelKind::Elementwise);
            if best.is_none_or(|(n, _)| reads.len() > n) {
                best = Some((reads.len(), i));
            }
        }
        stack.extend(p.inputs[i].iter().copied());
    }
    best
}

/// True if `x` is a chain of reshapes, permutes and expands down to one materialized node.
fn only_views(p: &Pending, mat: &[bool], x: usize) -> bool {
    let mut i = x;
    while !mat[i] {
        if p.is_leaf(i) || !matches!(p.nodes[i].op(), Op::Reshape | Op::Permute(_) | Op::Expand) {
            return false;
        }
        i = p.inputs[i][0];
    }
    i != x
}

/// True if the inline expression of `x` contains a `Window` view.
fn reads_through_window(p: &Pending, mat: &[bool], x: usize) -> bool {
    let mut stack = vec![x];
    let mut seen = vec![false; p.nodes.len()];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) || (i != x && mat[i]) {
            continue;
        }
        if matches!(p.nodes[i].op(), Op::Window(_)) {
            return true;
        }
        stack.extend(p.inputs[i].iter().copied());
    }
    false
}

/// True if `target` is in the inline expression of `from` (reached without passing through a
/// materialized node other than `target`).
fn reaches(p: &Pending, mat: &[bool], from: usize, target: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = vec![false; p.nodes.len()];
    while let Some(i) = stack.pop() {
        if i == target {
            return true;
        }
        if std::mem::replace(&mut seen[i], true) || (i != from && mat[i]) {
            continue;
        }
        stack.extend(p.inputs[i].iter().copied());
    }
    false
}
