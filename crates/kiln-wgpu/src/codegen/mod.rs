//! WGSL generation: one source per kernel of a plan. `expr` emits expressions; `elementwise`,
//! `reduce`, `matmul` and `affine` wrap them in a kernel with its bindings and entry point;
//! `f16` holds the kernel that packs an f32 scratch output into f16 without native f16; `types`,
//! `index` and `helpers` hold the small pieces they share.
//! `outputs` adds the further outputs of a multi-output kernel. Bindings: the root's buffer
//! (0), the reads (1..), the further outputs, then the uniform of runtime scalars.

pub mod affine;
pub mod elementwise;
pub mod expr;
pub mod f16;
pub mod helpers;
pub mod index;
pub mod matmul;
pub mod outputs;
pub mod reduce;
pub mod types;
pub mod windows;

use expr::{storage_type, KernelEnv};
use kiln_core::schedule::{Kernel, KernelKind, Plan};
use kiln_core::{KernelFamily, Pending};
use std::collections::HashMap;

/// How many workgroups a kernel needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workgroups {
    /// A flat count; the runner spreads it over x, y and z when it exceeds the per-dimension
    /// limit, and the kernel folds the three ids back into one.
    Flat(u64),
    /// An explicit (x, y, z) grid.
    Grid([u32; 3]),
}

/// A generated kernel, ready to compile.
#[derive(Clone, Debug)]
pub struct KernelSource {
    /// Short description for logs and profiles, e.g. "matmul 64x64x64 +epilogue".
    pub name: String,
    /// The full WGSL source.
    pub wgsl: String,
    /// Workgroups to dispatch.
    pub workgroups: Workgroups,
    /// Floating-point operations (for GFLOP/s).
    pub flops: u64,
    /// Fewest bytes the kernel must move (reads of each input once, plus its output).
    pub bytes: u64,
}

/// Device facts codegen needs.
#[derive(Clone, Copy, Debug)]
pub struct CodegenOptions {
    /// Native f16.
    pub f16: bool,
    /// The kernel family to generate: `Software` picks the CPU-friendly matmul
    /// (`shaders/matmul_cpu.wgsl`) and vec4 elementwise kernels, `Gpu` the tiled GPU matmul.
    pub family: KernelFamily,
}

impl CodegenOptions {
    /// True for the software family.
    pub fn software(&self) -> bool {
        self.family == KernelFamily::Software
    }
}

/// Generates the WGSL of `kernel`.
pub fn generate(p: &Pending, plan: &Plan, kernel: &Kernel, opts: CodegenOptions) -> KernelSource {
    let mut env = KernelEnv {
        p,
        materialized: &plan.materialized,
        root: kernel.root,
        f16: opts.f16,
        bindings: HashMap::new(),
        scalar_word: HashMap::new(),
        uses_philox: false,
        uses_pow: false,
        uses_f16: false,
        vec4_reads: Default::default(),
        direct: None,
        out_vec4: false,
    };
    for (k, &r) in kernel.reads.iter().enumerate() {
        env.bindings.insert(r, format!("in{}", k + 1));
    }
    // A leaf written over in place is read through the output binding that replaces it.
    for &(t, l) in &kernel.in_place {
        env.bindings.insert(l, outputs::binding_of(kernel, t));
    }
    let mut words = 0;
    for &s in &kernel.scalars {
        env.scalar_word.insert(s, words);
        words += p.nodes[s].op().scalar_words(p.nodes[s].dtype()).len();
    }
    let mut src = match kernel.kind {
        KernelKind::Elementwise => elementwise::generate(&mut env, kernel, opts),
        KernelKind::Reduce(c) => reduce::generate(&mut env, kernel, c),
        KernelKind::Matmul(c) => matmul::generate(&mut env, kernel, c, opts),
        KernelKind::AffineSample(c) => affine::generate(&mut env, kernel, c),
    };
    let mut header = String::new();
    let root = &p.nodes[kernel.root];
    // An f16 output without native f16 is written as f32 into a scratch buffer (packed by
    // `f16::pack_kernel` afterwards), except by elementwise kernels, which pack it themselves.
    let out_ty = if env.out_vec4 {
        "vec4<f32>"
    } else if writes_f32_scratch(p, kernel, opts) {
        "f32"
    } else {
        storage_type(root.dtype(), opts.f16)
    };
    header.push_str(&format!(
        "@group(0) @binding(0) var<storage, read_write> out_buf: array<{out_ty}>;\n"
    ));
    for (k, &r) in kernel.reads.iter().enumerate() {
        header.push_str(&format!(
            "@group(0) @binding({}) var<storage, read> in{}: array<{}>;\n",
            k + 1,
            k + 1,
            if env.vec4_reads.contains(&r) {
                "vec4<f32>"
            } else {
                storage_type(p.nodes[r].dtype(), opts.f16)
            }
        ));
    }
    header.push_str(&outputs::declarations(p, kernel, opts.f16));
    if words > 0 {
        header.push_str(&format!(
            "@group(0) @binding({}) var<uniform> params: array<vec4<u32>, {}>;\n",
            kernel.bindings(),
            words.div_ceil(4)
        ));
    }
    let body = std::mem::take(&mut src.wgsl);
    let mut wgsl = format!("// kiln kernel: {}\n", src.name);
    if opts.f16 && (header.contains("f16") || body.contains("f16")) {
        wgsl.push_str("enable f16;\n");
    }
    wgsl.push_str(&header);
    wgsl.push_str(&expr::helpers(&env));
    wgsl.push_str(&body);
    src.wgsl = wgsl;
    src.bytes = kernel
        .reads
        .iter()
        .chain(kernel.in_place.iter().map(|(_, l)| l))
        .map(|&r| kiln_core::schedule::node_bytes(p, r))
        .sum::<u64>()
        + kernel
            .outputs()
            .map(|o| kiln_core::schedule::node_bytes(p, o))
            .sum::<u64>();
    src
}

/// Whether `kernel` writes its f16 output as f32 into a scratch buffer that
/// [`f16::pack_kernel`] then packs into the output: without native f16, for every kernel but
/// elementwise ones (which write two adjacent outputs per invocation as one packed word).
pub fn writes_f32_scratch(p: &Pending, kernel: &Kernel, opts: CodegenOptions) -> bool {
    expr::packed_f16(p.nodes[kernel.root].dtype(), opts.f16)
        && !matches!(kernel.kind, KernelKind::Elementwise)
}

/// Number of 32-bit params words `kernel` needs.
pub fn params_words(p: &Pending, kernel: &Kernel) -> usize {
    kernel
        .scalars
        .iter()
        .map(|&s| p.nodes[s].op().scalar_words(p.nodes[s].dtype()).len())
        .sum()
}

/// The flat invocation index of a kernel dispatched as `Workgroups::Flat` with `size` invocations
/// per workgroup, as WGSL.
pub fn flat_index(size: u32) -> String {
    format!("(wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y) * {size}u + lid")
}
