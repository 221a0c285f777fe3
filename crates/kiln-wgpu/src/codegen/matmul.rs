//! Matmul kernels: the hand-written register-blocked tiled kernel of `shaders/matmul.wgsl` (the
//! GPU kernel family) or `shaders/matmul_cpu.wgsl` (the software family), with the region
//! between `// @kiln:generated-begin` and `// @kiln:generated-end` replaced by generated
//! constants and load/store functions. The loads fold views (a transposed operand is read in
//! place, a broadcast batch is not copied), convolution windows and elementwise prologues; plain
//! operands also get vec4 loads (`A_MODE`/`B_MODE`); the store folds the epilogue (bias,
//! activation).

use super::expr::{store_conv, unravel, Emitter, KernelEnv};
use super::{CodegenOptions, KernelSource, Workgroups};
use kiln_core::schedule::strided::{strided, Strided};
use kiln_core::schedule::Kernel;
use kiln_core::Shape;

/// The GPU kernel.
pub const MATMUL_WGSL: &str = include_str!("../../../../shaders/matmul.wgsl");
/// The kernel for software adapters (lavapipe), where a workgroup is CPU work.
pub const MATMUL_CPU_WGSL: &str = include_str!("../../../../shaders/matmul_cpu.wgsl");

const BEGIN: &str = "// @kiln:generated-begin";
const END: &str = "// @kiln:generated-end";

/// Reads `const NAME: u32 = 64u;` from a template.
pub fn template_const(template: &str, name: &str) -> u32 {
    let pat = format!("const {name}: u32 = ");
    let start = template
        .find(&pat)
        .unwrap_or_else(|| panic!("matmul template lacks `{pat}`"))
        + pat.len();
    let digits: String = template[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().expect("tile size is a number")
}

/// Replaces the generated region of `template` with `region`.
pub fn fill_template(template: &str, region: &str) -> String {
    let b = template
        .find(BEGIN)
        .expect("matmul template lacks the generated-begin marker");
    let e = template
        .find(END)
        .expect("matmul template lacks the generated-end marker")
        + END.len();
    format!("{}{BEGIN}\n{region}{END}{}", &template[..b], &template[e..])
}

/// The sizes of a matmul `[.., m, k] x [.., k, n]`.
struct Dims {
    /// The batch dimensions (all but the last two of the output).
    batch_shape: Shape,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    /// The output's rank.
    rank: usize,
}

impl Dims {
    /// The sizes of matmul node `c`.
    fn of(p: &kiln_core::Pending, c: usize) -> Dims {
        let dims = p.nodes[c].dims().to_vec();
        let rank = dims.len();
        let batch_shape = Shape(dims[..rank - 2].to_vec());
        Dims {
            batch: batch_shape.numel(),
            batch_shape,
            m: dims[rank - 2],
            n: dims[rank - 1],
            k: p.nodes[p.inputs[c][0]].dims()[rank - 1],
            rank,
        }
    }
}

/// One operand of the matmul: its node, the body of its scalar load and the arithmetic ops of
/// its prologue.
struct Operand {
    node: usize,
    load: String,
    ops: usize,
}

/// The epilogue up to the kernel's root, applied to the dot product `core` at output index `o`.
struct Epilogue {
    /// The accumulator `acc` as the core's value.
    core: String,
    /// The stored dot product `out_buf[o]` as the core's value (for the epilogue pass).
    core_raw: String,
    /// The epilogue's statements.
    lines: String,
    /// Its arithmetic ops.
    ops: usize,
    /// The stored value.
    store: String,
}

/// The kernel of matmul node `c` (with its epilogue up to `kernel.root`).
pub fn generate(
    env: &mut KernelEnv,
    kernel: &Kernel,
    c: usize,
    opts: CodegenOptions,
) -> KernelSource {
    let p = env.p;
    let d = Dims::of(p, c);
    let (m, n, k, batch) = (d.m, d.n, d.k, d.batch);
    let mut a = operand(env, &d, p.inputs[c][0], "row", "k");
    let mut b = operand(env, &d, p.inputs[c][1], "k", "col");
    let root = p.nodes[kernel.root].clone();
    let epilogue = epilogue(env, kernel, c);
    let modes = vec4_modes(env, kernel.root, &d, &a, &b, &epilogue.lines, opts);
    let vec4 = vec4_fns(env, &d, modes, &mut a, &mut b);
    let template = if opts.software() {
        MATMUL_CPU_WGSL
    } else {
        MATMUL_WGSL
    };
    // The software template takes its per-invocation block from the shape; the GPU one has
    // fixed tiles.
    let block = if opts.software() {
        let CpuBlock { rm, rn, wg_x, wg_y } = cpu_block(m, n);
        format!(
            "const RM: u32 = {rm}u;\nconst RN: u32 = {rn}u;\nconst WG_X: u32 = {wg_x}u;\nconst WG_Y: u32 = {wg_y}u;\n"
        )
    } else {
        String::new()
    };
    // On software adapters a fused epilogue runs in a second, rolled pass over the stored dot
    // products (see matmul_cpu.wgsl); that needs an f32 output to hold them. Inside the
    // unrolled store loop even a bias + ReLU epilogue, compiled RM x RN times with a gather per
    // copy, cost LLVM ~2 s per kernel: a LeNet-5 step's first run took 14.5 s instead of 5.5 s,
    // for ~5% faster steps afterwards.
    let epilogue_pass =
        opts.software() && kernel.root != c && root.dtype() == kiln_core::DType::F32;
    let store_fns = store_fns(&epilogue, epilogue_pass, opts.software());
    let (tm, tn) = tile_size(template, &d, opts);
    let (col_tiles, row_tiles) = ((n as u32).div_ceil(tn), (m as u32).div_ceil(tm));
    let tiles = col_tiles as u64 * row_tiles as u64;
    let (load_a, load_b) = (&a.load, &b.load);
    let region = format!(
        "const BATCH: u32 = {batch}u;
const M: u32 = {m}u;
const N: u32 = {n}u;
const K: u32 = {k}u;
{block}{vec4}// The tile of workgroup `wg` of a grid of `nwg`: (column tile, row tile, batch), from the flat
// workgroup index (the host spreads the {col_tiles} x {row_tiles} x BATCH tiles over x, y and z
// within the per-dimension limit of 65,535); a batch >= BATCH is past the end.
fn tile_of(wg: vec3<u32>, nwg: vec3<u32>) -> vec3<u32> {{
    let f = wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
    return vec3<u32>(f % {col_tiles}u, (f / {col_tiles}u) % {row_tiles}u, f / {tiles}u);
}}
// A[batch, row, k]; called only with row < M, k < K.
fn load_a(batch: u32, row: u32, k: u32) -> f32 {{
{load_a}
}}
// B[batch, k, col]; called only with k < K, col < N.
fn load_b(batch: u32, k: u32, col: u32) -> f32 {{
{load_b}
}}
{store_fns}"
    );
    let wgsl = fill_template(template, &region);
    let (m, n, k, batch) = (m as u64, n as u64, k as u64, batch as u64);
    let (ops_a, ops_b, epi_ops) = (a.ops, b.ops, epilogue.ops);
    KernelSource {
        name: format!(
            "matmul {}{m}x{n}x{k}{}",
            if batch > 1 {
                format!("{batch}x ")
            } else {
                String::new()
            },
            if kernel.root != c { " +epilogue" } else { "" }
        ),
        wgsl,
        workgroups: Workgroups::Flat(tiles * batch),
        flops: batch * (2 * m * n * k + (ops_a + ops_b) as u64 * m * k + epi_ops as u64 * m * n),
        bytes: 0,
    }
}

/// Prologue: operand `x` read at matrix coordinates (`i`, `j`) of batch `batch`, its views and
/// elementwise prologue folded in (the body of a scalar load).
fn operand(env: &mut KernelEnv, d: &Dims, x: usize, i: &str, j: &str) -> Operand {
    let mut coords = unravel("batch", &d.batch_shape);
    coords.push(i.to_string());
    coords.push(j.to_string());
    let mut em = Emitter::new(env, None);
    let v = em.value(x, &coords);
    Operand {
        node: x,
        load: format!("    {}\n    return f32({v});", em.lines.join("\n    ")),
        ops: em.arith_ops,
    }
}

/// The epilogue of matmul node `c` up to `kernel.root` (none when the matmul is the root).
fn epilogue(env: &mut KernelEnv, kernel: &Kernel, c: usize) -> Epilogue {
    let p = env.p;
    let (dtype, root) = (p.nodes[c].dtype(), &p.nodes[kernel.root]);
    let core = env.to_value(dtype, "acc");
    let core_raw = env.to_value(dtype, "out_buf[o]");
    let mut em = Emitter::new(env, Some((c, "core".to_string())));
    let v = em.value(kernel.root, &unravel("o", root.shape()));
    Epilogue {
        core,
        core_raw,
        lines: em.lines.join("\n    "),
        ops: em.arith_ops,
        store: store_conv(root.dtype(), &v),
    }
}

/// Which operands are read 4 values at a time, and how (both families): f32 buffers read
/// through views only (no broadcast of the row/column, no prologue), not read by the epilogue,
/// with stride 1 along one of the two matrix dimensions (row-major or transposed) and 4-aligned
/// otherwise. The software kernel reads 4 rows (A) or 4 columns (B) at a time only where its
/// block has at least 4 of them; the GPU kernel's 64 x 64 tile always has. Returns each
/// operand's strides and mode (`A_MODE`, `B_MODE`; 0: scalar loads).
fn vec4_modes(
    env: &KernelEnv,
    root: usize,
    d: &Dims,
    a: &Operand,
    b: &Operand,
    epilogue: &str,
    opts: CodegenOptions,
) -> [(Option<Strided>, usize); 2] {
    let (p, rank, m, n, k) = (env.p, d.rank, d.m, d.n, d.k);
    let (rows4, cols4) = if opts.software() {
        let CpuBlock { rm, rn, .. } = cpu_block(m, n);
        (rm >= 4, rn >= 4)
    } else {
        (true, true)
    };
    // The buffer's binding is declared `array<vec4<f32>>`, so nothing else in the kernel may
    // read it as scalars: not the epilogue, not the other operand (`x.matmul(x.narrow(..))`).
    let view = |x: usize, other_load: &str| -> Option<Strided> {
        let s = strided(p, env.materialized, root, x)?;
        let base = &p.nodes[s.base];
        let read = format!("{}[", env.bindings[&s.base]);
        let ok = base.dtype() == kiln_core::DType::F32
            && base.shape().numel().is_multiple_of(4)
            && !epilogue.contains(&read)
            && !other_load.contains(&read);
        ok.then_some(s)
    };
    let (va, vb) = (view(a.node, &b.load), view(b.node, &a.load));
    // Stride 1 along matrix dimension `unit` (0: rows, 1: columns), 4-aligned elsewhere.
    let aligned = |s: &Strided, unit: usize| {
        s.strides[..rank - 2].iter().all(|v| v.is_multiple_of(4))
            && s.strides[rank - 2 + (1 - unit)].is_multiple_of(4)
            && s.strides[rank - 2 + unit] == 1
    };
    // A: 1 = 4 k-steps of a row (stride 1 along k), 2 = 4 rows at one k (stride 1 along rows).
    let a_mode = match &va {
        Some(s) if k.is_multiple_of(4) && aligned(s, 1) => 1,
        Some(s) if m.is_multiple_of(4) && rows4 && aligned(s, 0) => 2,
        _ => 0,
    };
    // B: 1 = 4 columns at one k (stride 1 along columns), 2 = 4 k-steps of a column.
    let b_mode = match &vb {
        Some(s) if n.is_multiple_of(4) && cols4 && aligned(s, 1) => 1,
        Some(s) if k.is_multiple_of(4) && aligned(s, 0) => 2,
        _ => 0,
    };
    [(va, a_mode), (vb, b_mode)]
}

/// The vec4 part of the generated region: `A_MODE`, `B_MODE` and the four grouped loads. An
/// operand read through its vec4 binding gets its scalar load rewritten to read it too.
fn vec4_fns(
    env: &mut KernelEnv,
    d: &Dims,
    modes: [(Option<Strided>, usize); 2],
    a: &mut Operand,
    b: &mut Operand,
) -> String {
    let [(va, a_mode), (vb, b_mode)] = modes;
    let mut fns = format!("const A_MODE: u32 = {a_mode}u;\nconst B_MODE: u32 = {b_mode}u;\n");
    let mut a4 = unused_vec4_loads();
    if let (Some(s), true) = (&va, a_mode > 0) {
        let a_groups = [["row", "4u * k4"], ["4u * r4", "k"]];
        (a.load, a4) = vec_loads(env, d, s, a_mode, ["row", "k"], a_groups);
    }
    let mut b4 = unused_vec4_loads();
    if let (Some(s), true) = (&vb, b_mode > 0) {
        let b_groups = [["k", "4u * c4"], ["4u * k4", "col"]];
        (b.load, b4) = vec_loads(env, d, s, b_mode, ["k", "col"], b_groups);
    }
    let [a4, a4m] = a4;
    let [b4, b4k] = b4;
    fns.push_str(&format!(
        "fn load_a4(batch: u32, row: u32, k4: u32) -> vec4<f32> {a4}\n\
         fn load_a4m(batch: u32, r4: u32, k: u32) -> vec4<f32> {a4m}\n\
         fn load_b4(batch: u32, k: u32, c4: u32) -> vec4<f32> {b4}\n\
         fn load_b4k(batch: u32, col: u32, k4: u32) -> vec4<f32> {b4k}\n"
    ));
    fns
}

/// The bodies of an operand's two grouped loads when it has none.
fn unused_vec4_loads() -> [String; 2] {
    [
        "{ return vec4<f32>(); }".to_string(),
        "{ return vec4<f32>(); }".into(),
    ]
}

/// The element offset of (`row`, `col`) of batch `batch` in an operand with strides `s`.
fn strided_offset(d: &Dims, s: &Strided, row: &str, col: &str) -> String {
    let rank = d.rank;
    let mut terms: Vec<String> = unravel("batch", &d.batch_shape)
        .into_iter()
        .zip(&s.strides)
        .filter(|(_, &st)| st != 0)
        .map(|(c, st)| format!("{c} * {st}u"))
        .collect();
    terms.push(format!("{row} * {}u", s.strides[rank - 2]));
    terms.push(format!("{col} * {}u", s.strides[rank - 1]));
    terms.join(" + ")
}

/// An operand read through its vec4 binding: the scalar load at (row, col) named `at`, and the
/// bodies of its two grouped loads (mode 1, mode 2; the unused one returns 0) whose first
/// element is at `grouped[mode - 1]`.
fn vec_loads(
    env: &mut KernelEnv,
    d: &Dims,
    s: &Strided,
    mode: usize,
    at: [&str; 2],
    grouped: [[&str; 2]; 2],
) -> (String, [String; 2]) {
    let buf = env.bindings[&s.base].clone();
    env.vec4_reads.insert(s.base);
    let load = format!(
        "    let i = {};\n    return {buf}[i / 4u][i % 4u];",
        strided_offset(d, s, at[0], at[1])
    );
    let mut bodies = unused_vec4_loads();
    if mode > 0 {
        let [r, c] = grouped[mode - 1];
        bodies[mode - 1] = format!(
            "{{\n    return {buf}[({}) / 4u];\n}}",
            strided_offset(d, s, r, c)
        );
    }
    (load, bodies)
}

/// Epilogue and stores: `store_out` (and, on software adapters, `finish_out` and
/// `EPILOGUE_PASS`; with `epilogue_pass` the epilogue runs in `finish_out`, over the stored
/// dot products).
fn store_fns(epilogue: &Epilogue, epilogue_pass: bool, software: bool) -> String {
    let Epilogue {
        core,
        core_raw,
        lines: epilogue,
        store,
        ..
    } = epilogue;
    if epilogue_pass {
        format!(
            "// Writes the raw dot product out[batch, row, col] = acc; finish_out applies the epilogue.
fn store_out(batch: u32, row: u32, col: u32, acc: f32) {{
    out_buf[(batch * M + row) * N + col] = acc;
}}
const EPILOGUE_PASS: bool = true;
// out[batch, row, col] = epilogue(out[batch, row, col]); called only with row < M, col < N.
fn finish_out(batch: u32, row: u32, col: u32) {{
    let o = (batch * M + row) * N + col;
    let core = {core_raw};
    {epilogue}
    out_buf[o] = {store};
}}
"
        )
    } else {
        let finish = if software {
            "const EPILOGUE_PASS: bool = false;\nfn finish_out(batch: u32, row: u32, col: u32) {}\n"
        } else {
            ""
        };
        format!(
            "// Writes out[batch, row, col] = epilogue(acc); called only with row < M, col < N.
fn store_out(batch: u32, row: u32, col: u32, acc: f32) {{
    let o = (batch * M + row) * N + col;
    let core = {core};
    {epilogue}
    out_buf[o] = {store};
}}
{finish}"
        )
    }
}

/// The output rows and columns one workgroup covers.
fn tile_size(template: &str, d: &Dims, opts: CodegenOptions) -> (u32, u32) {
    if opts.software() {
        let b = cpu_block(d.m, d.n);
        (b.wg_y * b.rm, b.wg_x * b.rn)
    } else {
        (
            template_const(template, "TILE_M"),
            template_const(template, "TILE_N"),
        )
    }
}

/// How `shaders/matmul_cpu.wgsl` covers an output: each invocation computes `rm x rn` outputs,
/// a workgroup is `wg_x` invocations along columns by `wg_y` along rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuBlock {
    /// Output rows per invocation (a power of two, at most 16).
    pub rm: u32,
    /// Output columns per invocation (a power of two, at most 16).
    pub rn: u32,
    /// Invocations along columns (8: one llvmpipe subgroup).
    pub wg_x: u32,
    /// Invocations along rows (4: one subgroup each).
    pub wg_y: u32,
}

/// The block of `shaders/matmul_cpu.wgsl` for an `m x n` output: the smallest powers of two (at
/// most 16) with which one workgroup covers the output, so that e.g. a 6 x 25 convolution-weight
/// gradient computes an 8 x 32 block rather than a 64 x 128 one of which 98% is clamped and
/// thrown away. A workgroup is 4 subgroups of 8 lanes stacked along rows (8 x 4). Side by side
/// along columns (32 x 1, so that a 16-row output keeps RM = 16) was measured slower on
/// llvmpipe: ResNet-20's 16 x 144 x 784 weight gradient took 130 ms instead of 86 ms.
pub fn cpu_block(m: usize, n: usize) -> CpuBlock {
    let fit =
        |len: usize, lanes: usize| (len.div_ceil(lanes).max(1).next_power_of_two()).min(16) as u32;
    let (wg_x, wg_y) = (8, 4);
    CpuBlock {
        rm: fit(m, wg_y as usize),
        rn: fit(n, wg_x as usize),
        wg_x,
        wg_y,
    }
}
