//! Every WGSL source kiln runs is parsed and validated by naga, without a GPU: the hand-written
//! files of `shaders/` and the generated kernels of a representative set of fused graphs, with
//! and without native f16 (without it, by a validator that lacks the f16 capability), for GPU
//! and software adapters.

use kiln::prelude::*;
use kiln::schedule::{schedule, ScheduleLimits};
use kiln::wgpu_backend::codegen::{f16::pack_kernel, generate, writes_f32_scratch, CodegenOptions};
use kiln::{KernelFamily, Pending};

/// The software family if `software`, else the GPU family.
fn family_of(software: bool) -> KernelFamily {
    if software {
        KernelFamily::Software
    } else {
        KernelFamily::Gpu
    }
}

fn validate(name: &str, src: &str) {
    validate_with(name, src, true);
}

/// Parses and validates `src`; without `native_f16` the validator lacks `SHADER_FLOAT16`, as on an
/// adapter without `SHADER_F16`.
fn validate_with(name: &str, src: &str, native_f16: bool) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name} does not parse:\n{}\n{src}", e.emit_to_string(src)));
    let mut caps = naga::valid::Capabilities::all();
    if !native_f16 {
        caps.remove(naga::valid::Capabilities::SHADER_FLOAT16);
    }
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name} does not validate: {e:?}\n{src}"));
}

#[test]
fn every_hand_written_shader_validates() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            // None of them needs native f16.
            validate_with(
                &path.display().to_string(),
                &std::fs::read_to_string(&path).unwrap(),
                false,
            );
            count += 1;
        }
    }
    assert!(
        count >= 5,
        "expected matmul, matmul_cpu, philox, f16 and affine_sample shaders, found {count}"
    );
}

/// Graphs that exercise every kind of generated code.
fn representative_graphs(dev: &Device) -> Vec<(&'static str, Tensor)> {
    let a = Tensor::from_vec(vec![0.5f32; 6 * 8], [6, 8], dev).unwrap();
    let b = Tensor::from_vec(vec![0.25f32; 8 * 5], [8, 5], dev).unwrap();
    let bias = Tensor::from_vec(vec![1.0f32; 5], [5], dev).unwrap();
    let h = Tensor::from_vec(vec![half::f16::ONE; 12], [3, 4], dev).unwrap();
    let i = Tensor::arange_i32(0, 12, 1, dev).reshape([3, 4]);
    let images = a
        .reshape([2, 1, 4, 6])
        .pad(&[(0, 0), (0, 0), (1, 1), (0, 0)], 0.0);
    let theta = Tensor::rand([2, 6], 3, dev).reshape([2, 2, 3]).cos();
    vec![
        (
            "elementwise chain",
            (a.exp() * 2.0 + 1.0).sqrt().tanh().sigmoid().relu(),
        ),
        (
            "views",
            a.t()
                .slice(0, 1, 7, 2)
                .flip(&[1])
                .pad(&[(1, 2), (0, 1)], -1.0)
                .unsqueeze(0),
        ),
        (
            "cat and where",
            Tensor::cat(&[&a, &a.neg(), &a.abs()], 1)
                .gt(&a.sum_axes_keepdim(&[1]))
                .where_cond(&a.repeat_cols(3), &a.repeat_cols(3).neg()),
        ),
        (
            "random",
            Tensor::rand([4, 4], 1, dev) + Tensor::randn([4, 4], 2, dev),
        ),
        ("reduce prologue and epilogue", a.exp().sum_axes(&[1]).log()),
        ("argmax", a.argmax(1)),
        ("var", a.var_axes_keepdim(&[0])),
        ("matmul epilogue", (a.matmul(&b) + &bias).relu()),
        (
            "matmul transposed and batched",
            a.unsqueeze(0).expand([3, 6, 8]).matmul(&a.t()),
        ),
        (
            "pow and casts",
            a.pow_scalar(1.5)
                .cast(DType::I32)
                .cast(DType::F32)
                .lt(&a)
                .cast(DType::U32),
        ),
        ("f16", (h.exp() + h.clone()).sum_axes(&[0]).cast(DType::F32)),
        ("f16 matmul output", (h.matmul(&h.t()) + 1.0).relu()),
        (
            "f16 reduction outputs",
            h.max_axes_keepdim(&[1])
                + h.sum_axes_keepdim(&[1])
                + h.argmax_keepdim(1).cast(DType::F16),
        ),
        (
            "f16 affine sample epilogue",
            images
                .affine_sample(&theta, [5, 3])
                .unwrap()
                .cast(DType::F16),
        ),
        (
            "f16 odd length",
            Tensor::cat(&[&h.reshape([12]), &h.reshape([12]).slice(0, 0, 1, 1)], 0).exp(),
        ),
        (
            "affine sample with prologue, computed matrices and epilogue",
            images
                .exp()
                .affine_sample(&theta, [5, 3])
                .unwrap()
                .sub_scalar(0.5)
                .div_scalar(0.25),
        ),
        (
            "integers",
            (&i / &Tensor::arange_i32(-2, 2, 1, dev)).max_axes(&[1]),
        ),
    ]
}

trait RepeatCols {
    fn repeat_cols(&self, n: usize) -> Tensor;
}
impl RepeatCols for Tensor {
    fn repeat_cols(&self, n: usize) -> Tensor {
        let parts: Vec<&Tensor> = std::iter::repeat_n(self, n).collect();
        Tensor::cat(&parts, 1)
    }
}

#[test]
fn every_generated_kernel_of_representative_graphs_validates() {
    let dev = Device::cpu();
    let mut kernels = 0;
    let mut scratch_outputs = 0;
    for (name, t) in representative_graphs(&dev) {
        let p = Pending::collect(&[&t]);
        let plan = schedule(
            &p,
            ScheduleLimits {
                max_storage_buffers: 8,
                window_operand_bytes: 0,
                col2im_product_limit: kiln::schedule::COL2IM_PRODUCT_LIMIT,
                disabled_rules: 0,
            },
        );
        assert!(!plan.kernels.is_empty(), "{name}: no kernels");
        for f16 in [true, false] {
            for software in [true, false] {
                for k in &plan.kernels {
                    let opts = CodegenOptions {
                        f16,
                        family: family_of(software),
                    };
                    let src = generate(&p, &plan, k, opts);
                    let what = format!("{name} / {} (f16 {f16}, software {software})", src.name);
                    validate_with(&what, &src.wgsl, f16);
                    if !f16 {
                        assert!(!src.wgsl.contains("enable f16"), "{what}");
                    }
                    if writes_f32_scratch(&p, k, opts) {
                        let numel = p.nodes[k.root].numel() as u64;
                        validate_with(&format!("{what} + pack"), &pack_kernel(numel).wgsl, false);
                        scratch_outputs += 1;
                    }
                    kernels += 1;
                }
            }
        }
    }
    assert!(kernels >= 64, "validated {kernels} kernels");
    // matmul, two reductions and affine sample with f16 outputs, each for GPU and software.
    assert!(
        scratch_outputs >= 8,
        "{scratch_outputs} f16 outputs through scratch"
    );
}

#[test]
fn fusion_keeps_chains_in_one_kernel() {
    let dev = Device::cpu();
    let a = Tensor::from_vec(vec![0.5f32; 6 * 8], [6, 8], &dev).unwrap();
    let b = Tensor::from_vec(vec![0.25f32; 8 * 5], [8, 5], &dev).unwrap();
    let bias = Tensor::from_vec(vec![1.0f32; 5], [5], &dev).unwrap();
    let count = |t: &Tensor| {
        let p = Pending::collect(&[t]);
        schedule(
            &p,
            ScheduleLimits {
                max_storage_buffers: 8,
                window_operand_bytes: 0,
                col2im_product_limit: kiln::schedule::COL2IM_PRODUCT_LIMIT,
                disabled_rules: 0,
            },
        )
        .kernels
        .len()
    };
    assert_eq!(
        count(&(a.exp() * 2.0 + 1.0).sqrt().t().relu()),
        1,
        "elementwise chain with a view"
    );
    assert_eq!(
        count(&(a.matmul(&b) + &bias).relu()),
        1,
        "bias and activation fold into matmul"
    );
    assert_eq!(
        count(&a.exp().matmul(&b)),
        1,
        "an elementwise prologue folds into matmul"
    );
    assert_eq!(
        count(&a.exp().sum_axes(&[1]).log()),
        1,
        "prologue and epilogue fold into the reduction"
    );
    assert_eq!(
        count(&a.mean_axes(&[0, 1])),
        1,
        "mean is one reduction kernel"
    );
    let x = a.exp();
    assert_eq!(
        count(&(&x + &x.t().sum_axes_keepdim(&[0]).t())),
        3,
        "a node read by two kernels is stored once"
    );
}

#[test]
fn software_adapters_write_a_convolutions_window_out_before_its_matmul() {
    let dev = Device::cpu();
    let x = Tensor::randn([2, 3, 9, 9], 1, &dev);
    let w = Tensor::randn([4, 3, 3, 3], 2, &dev);
    let y = x.conv2d(&w, None, &Conv2dOptions::default().padding(1));
    let p = Pending::collect(&[&y]);
    let plan = |window_operand_bytes| {
        schedule(
            &p,
            ScheduleLimits {
                max_storage_buffers: 8,
                window_operand_bytes,

                col2im_product_limit: kiln::schedule::COL2IM_PRODUCT_LIMIT,

                disabled_rules: 0,
            },
        )
    };
    let (gpu, software, capped) = (plan(0), plan(1 << 20), plan(16));
    assert_eq!(
        gpu.kernels.len(),
        1,
        "GPU: the window folds into the matmul's loads"
    );
    assert_eq!(
        software.kernels.len(),
        2,
        "software: one copy kernel writes the im2col matrix, then the matmul"
    );
    assert_eq!(
        capped.kernels.len(),
        1,
        "a window larger than the cap stays folded"
    );
    for (name, plan) in [("gpu", &gpu), ("software", &software)] {
        for k in &plan.kernels {
            let opts = CodegenOptions {
                f16: false,
                family: family_of(name == "software"),
            };
            validate(name, &generate(&p, plan, k, opts).wgsl);
        }
    }
}

#[test]
fn software_adapters_write_out_an_operand_that_no_strides_describe() {
    // A weight gradient's [B, M, N] seen as [M, B N]: a permute then a reshape that merges
    // dimensions which are not adjacent in memory.
    let dev = Device::cpu();
    let g = Tensor::from_vec(vec![0.5f32; 4 * 8 * 12], [4, 8, 12], &dev).unwrap();
    let x = Tensor::from_vec(vec![0.25f32; 48 * 16], [48, 16], &dev).unwrap();
    let merged = g.permute(&[1, 0, 2]).reshape([8, 48]).matmul(&x);
    // A transpose alone has strides: it stays folded into the matmul's loads.
    let transposed = g.reshape([32, 12]).t().matmul(&x.narrow(0, 0, 32));
    let kernels = |t: &Tensor, window_operand_bytes| {
        let p = Pending::collect(&[t]);
        let limits = ScheduleLimits {
            max_storage_buffers: 8,
            window_operand_bytes,

            col2im_product_limit: kiln::schedule::COL2IM_PRODUCT_LIMIT,

            disabled_rules: 0,
        };
        schedule(&p, limits).kernels.len()
    };
    assert_eq!(
        kernels(&merged, 0),
        1,
        "GPU: the gather folds into the loads"
    );
    assert_eq!(
        kernels(&merged, 1 << 20),
        2,
        "software: a copy, then the matmul"
    );
    assert_eq!(
        kernels(&merged, 16),
        1,
        "an operand over the cap stays folded"
    );
    assert_eq!(kernels(&transposed, 1 << 20), 1);
    assert!(
        last_kernel_source(&merged, true).contains("const A_MODE: u32 = 0u;"),
        "without the copy the gathered operand is read one value at a time"
    );
}

#[test]
fn a_kernel_never_binds_more_buffers_than_allowed() {
    let dev = Device::cpu();
    let parts: Vec<Tensor> = (0..20)
        .map(|i| Tensor::from_vec(vec![i as f32; 4], [4], &dev).unwrap())
        .collect();
    let mut sum = parts[0].clone();
    for p in &parts[1..] {
        sum = &sum + p;
    }
    let p = Pending::collect(&[&sum]);
    let plan = schedule(
        &p,
        ScheduleLimits {
            max_storage_buffers: 8,
            window_operand_bytes: 0,
            col2im_product_limit: kiln::schedule::COL2IM_PRODUCT_LIMIT,
            disabled_rules: 0,
        },
    );
    assert!(
        plan.kernels.len() >= 3,
        "20 inputs need several kernels under 8 bindings"
    );
    for k in &plan.kernels {
        assert!(
            k.reads.len() < 8,
            "a kernel reads {} buffers",
            k.reads.len()
        );
    }
}

/// The validated WGSL of the last kernel of `t`'s plan (8 storage buffers, no window copies).
fn last_kernel_source(t: &Tensor, software: bool) -> String {
    let p = Pending::collect(&[t]);
    let limits = ScheduleLimits {
        max_storage_buffers: 8,
        window_operand_bytes: 0,
        col2im_product_limit: kiln::schedule::COL2IM_PRODUCT_LIMIT,
        disabled_rules: 0,
    };
    let plan = schedule(&p, limits);
    let k = plan.kernels.last().expect("a kernel");
    let opts = CodegenOptions {
        f16: false,
        family: family_of(software),
    };
    let src = generate(&p, &plan, k, opts);
    validate(&src.name, &src.wgsl);
    src.wgsl
}

#[test]
fn software_matmul_runs_its_epilogue_in_a_rolled_second_pass() {
    let dev = Device::cpu();
    let a = Tensor::randn([2, 16, 27], 1, &dev);
    let b = Tensor::randn([27, 50], 2, &dev);
    let (mean, var, w, beta) = (
        Tensor::randn([50], 3, &dev),
        Tensor::rand([50], 4, &dev) + 0.5,
        Tensor::randn([50], 5, &dev),
        Tensor::randn([50], 6, &dev),
    );
    let mm = a.matmul(&b);
    let short = (&mm + &beta).relu();
    let long = ((&mm - &mean) * (&var + 1e-5).rsqrt() * &w + &beta).relu();
    assert!(last_kernel_source(&long, true).contains("const EPILOGUE_PASS: bool = true;"));
    assert!(last_kernel_source(&short, true).contains("const EPILOGUE_PASS: bool = true;"));
    assert!(last_kernel_source(&mm, true).contains("const EPILOGUE_PASS: bool = false;"));
    assert!(!last_kernel_source(&long, false).contains("EPILOGUE_PASS"));
}

#[test]
fn software_matmul_reads_plain_operands_as_vec4() {
    let dev = Device::cpu();
    let a = Tensor::from_vec(vec![0.5f32; 64 * 24], [64, 24], &dev).unwrap();
    let b = Tensor::from_vec(vec![0.25f32; 24 * 64], [24, 64], &dev).unwrap();
    let plain = last_kernel_source(&a.matmul(&b), true);
    assert!(
        plain.contains("const A_MODE: u32 = 1u;") && plain.contains("const B_MODE: u32 = 1u;"),
        "{plain}"
    );
    assert!(plain.contains("array<vec4<f32>>"));
    // A transposed operand is read 4 values at a time along its other dimension.
    let at = Tensor::from_vec(vec![0.5f32; 24 * 32], [24, 32], &dev).unwrap();
    let bt = Tensor::from_vec(vec![0.25f32; 64 * 24], [64, 24], &dev).unwrap();
    let transposed = last_kernel_source(&at.t().matmul(&bt.t()).relu(), true);
    assert!(
        transposed.contains("const A_MODE: u32 = 2u;")
            && transposed.contains("const B_MODE: u32 = 2u;"),
        "{transposed}"
    );
    let twice = last_kernel_source(&a.t().t().matmul(&b.t().t()), true);
    assert!(twice.contains("const A_MODE: u32 = 1u;"), "{twice}");
    // An operand the epilogue reads too is read element by element.
    let shared = last_kernel_source(&(a.matmul(&b.narrow(1, 0, 24)) + &a), true);
    assert!(shared.contains("const A_MODE: u32 = 0u;"), "{shared}");
}

#[test]
fn software_elementwise_kernels_compute_four_elements_per_invocation() {
    let dev = Device::cpu();
    let a = Tensor::from_vec(vec![0.5f32; 8 * 12], [8, 12], &dev).unwrap();
    let b = Tensor::from_vec(vec![0.25f32; 8 * 12], [8, 12], &dev).unwrap();
    let bias = Tensor::from_vec(vec![1.0f32; 12], [12], &dev).unwrap();
    // a and b are read at the element itself: one vec4 load each; a is also read transposed
    // through a view (one value of its vec4 binding); the bias is broadcast (scalar reads).
    let t = (&a + &b.relu() + &bias) * a.reshape([12, 8]).t().reshape([8, 12]);
    let soft = last_kernel_source(&t, true);
    assert!(soft.contains("out_buf: array<vec4<f32>>"), "{soft}");
    assert_eq!(soft.matches("let d").count(), 2, "{soft}");
    assert!(soft.contains("out_buf[w] = r;"), "{soft}");
    assert!(
        soft.contains(" / 4u][") && soft.contains(" % 4u]"),
        "{soft}"
    );
    let gpu = last_kernel_source(&t, false);
    assert!(gpu.contains("out_buf: array<f32>"), "{gpu}");
    // 6 elements are not a whole number of vec4s: one element per invocation.
    let odd = Tensor::from_vec(vec![1.0f32; 6], [6], &dev).unwrap();
    assert!(last_kernel_source(&(&odd + 1.0).exp(), true).contains("out_buf: array<f32>"));
}

#[test]
fn gpu_matmul_stages_plain_operands_as_vec4_and_folds_its_epilogue_into_the_store() {
    let dev = Device::cpu();
    let a = Tensor::from_vec(vec![0.5f32; 70 * 24], [70, 24], &dev).unwrap();
    let b = Tensor::from_vec(vec![0.25f32; 24 * 68], [24, 68], &dev).unwrap();
    let bias = Tensor::from_vec(vec![1.0f32; 68], [68], &dev).unwrap();
    let plain = last_kernel_source(&(a.matmul(&b) + &bias).relu(), false);
    assert!(
        plain.contains("const A_MODE: u32 = 1u;") && plain.contains("const B_MODE: u32 = 1u;"),
        "{plain}"
    );
    assert!(plain.contains("var<workgroup> smem") && !plain.contains("EPILOGUE_PASS"));
    // Transposed operands: 4 rows of A at one k, 4 k-steps of a column of B.
    let transposed = last_kernel_source(&b.t().matmul(&a.t()), false);
    assert!(
        transposed.contains("const A_MODE: u32 = 2u;")
            && transposed.contains("const B_MODE: u32 = 2u;"),
        "{transposed}"
    );
    // Sizes that are not multiples of 4 stage one value at a time.
    let odd = Tensor::from_vec(vec![0.5f32; 7 * 5], [7, 5], &dev).unwrap();
    let scalar = last_kernel_source(&odd.matmul(&odd.t()), false);
    assert!(
        scalar.contains("const A_MODE: u32 = 0u;") && scalar.contains("const B_MODE: u32 = 0u;"),
        "{scalar}"
    );
}
