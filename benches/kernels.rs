//! Kernel-level benchmarks: matmul (square, skinny, and the shapes of a LeNet-5 step),
//! reductions, fused elementwise chains and a batch's augmentation, timed on the GPU with
//! timestamp queries where the adapter has them (else wall time around a synchronised
//! submission), beside the host CPU's own single-precision GEMM (`matrixmultiply`, one thread)
//! measured in the same run.
//!
//! `cargo bench --bench kernels` prints a table and writes it to
//! `target/kiln-bench/kernels.json`. `KILN_BENCH_QUICK=1` runs fewer, smaller shapes. A last
//! matmul row runs the GPU kernel family's 1024^3 product on the same adapter (on lavapipe a
//! correctness-and-cost row: the kernels a real GPU runs, checked against the host GEMM), and
//! on adapters that are not software a 4096^3 square product is timed too.

mod common;

use common::{median, open_device, quick, write_json};
use kiln::prelude::*;
use kiln::wgpu_backend::WgpuBackend;
use std::sync::Arc;
use std::time::Instant;

/// A graph to time, built anew for each run.
type MakeGraph<'a> = Box<dyn Fn() -> Tensor + 'a>;

struct Row {
    kernel: String,
    shape: String,
    ms: f64,
    gflops: f64,
    gbps: f64,
    host_gemm_gflops: Option<f64>,
}

struct Bench {
    backend: Arc<WgpuBackend>,
    timestamps: bool,
    reps: usize,
}

impl Bench {
    /// Median GPU seconds of the kernels of realizing `make()` (built anew each time, so the plan
    /// cache is exercised), with FLOP and bytes of those kernels, and the first call's wall time.
    fn time(&self, make: &dyn Fn() -> Tensor) -> (f64, u64, u64, f64) {
        let t0 = Instant::now();
        make().realize().unwrap();
        let first = t0.elapsed().as_secs_f64();
        let mut times = vec![];
        let (mut flops, mut bytes) = (0, 0);
        for _ in 0..self.reps {
            let t = make();
            let start = Instant::now();
            t.realize().unwrap();
            if self.timestamps {
                let prof = self.backend.last_profile();
                flops = prof.iter().map(|k| k.flops).sum();
                bytes = prof.iter().map(|k| k.bytes).sum();
                times.push(prof.iter().map(|k| k.seconds).sum::<f64>());
            } else {
                // realize returns once submitted; a readback of one element waits for the queue.
                let _ = t.reshape([t.numel()]).slice(0, 0, 1, 1).to_vec::<f32>();
                times.push(start.elapsed().as_secs_f64());
            }
        }
        (median(&mut times), flops, bytes, first)
    }
}

/// `a (m x k) * b (k x n)` on the host (`matrixmultiply`, one thread), row-major.
fn host_sgemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, n: usize, k: usize) {
    // SAFETY: the pointers and strides describe row-major m x k, k x n and m x n buffers, whose
    // lengths the slices guarantee.
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

fn host_sgemm_gflops(m: usize, n: usize, k: usize, reps: usize) -> f64 {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let mut times = vec![];
    for _ in 0..reps.max(3) {
        let t = Instant::now();
        host_sgemm(&a, &b, &mut c, m, n, k);
        times.push(t.elapsed().as_secs_f64());
    }
    2.0 * (m * n * k) as f64 / median(&mut times) / 1e9
}

/// The GPU kernel family's `size`^3 matmul on the adapter the bench runs on (a device of its
/// own with `kernels: Some(Gpu)`): its row, and the largest difference from the host GEMM of the
/// same values relative to the largest magnitude of the result.
fn gpu_family_matmul(size: usize, reps: usize) -> (Row, f64) {
    let instance = kiln::wgpu_backend::adapter::instance();
    let name = std::env::var("KILN_ADAPTER").ok();
    let adapter = kiln::wgpu_backend::adapter::pick(&instance, name.as_deref())
        .expect("adapter")
        .expect("an adapter (the main rows found one)");
    let opts = kiln::wgpu_backend::WgpuOptions {
        kernels: Some(kiln::KernelFamily::Gpu),
        ..kiln::wgpu_backend::WgpuOptions::from_env().expect("KILN_KERNELS")
    };
    let backend = Arc::new(WgpuBackend::with_options(&adapter, &opts).expect("open adapter"));
    let dev = Device::from_backend(backend.clone());
    let timestamps = backend.set_profiling(true);
    let bench = Bench {
        backend,
        timestamps,
        reps,
    };
    let a = Tensor::randn([size, size], 11, &dev);
    let b = Tensor::randn([size, size], 12, &dev);
    Tensor::realize_all(&[&a, &b]).unwrap();
    let (s, _, _, _) = bench.time(&|| a.matmul(&b));
    let got = a.matmul(&b).to_vec::<f32>().unwrap();
    let (av, bv) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let mut want = vec![0.0f32; size * size];
    let t = Instant::now();
    host_sgemm(&av, &bv, &mut want, size, size, size);
    let host = 2.0 * (size as f64).powi(3) / t.elapsed().as_secs_f64() / 1e9;
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
    let err = got
        .iter()
        .zip(&want)
        .fold(0.0f64, |m, (g, w)| m.max((g - w).abs() as f64))
        / scale;
    let flops = 2.0 * (size as f64).powi(3);
    let row = Row {
        kernel: "matmul gpu family".into(),
        shape: format!("{size}x{size}x{size}"),
        ms: s * 1e3,
        gflops: flops / s / 1e9,
        gbps: 12.0 * (size * size) as f64 / s / 1e9,
        host_gemm_gflops: Some(host),
    };
    (row, err)
}

fn main() {
    let quick = quick();
    let (backend, dev) = open_device("kernels");
    let timestamps = backend.set_profiling(true);
    println!("kiln kernels bench on {}", dev.name());
    println!(
        "timing: {}",
        if timestamps {
            "GPU timestamp queries"
        } else {
            "wall time around a synchronised submission"
        }
    );
    let bench = Bench {
        backend,
        timestamps,
        reps: if quick { 3 } else { 5 },
    };
    let mut rows: Vec<Row> = vec![];

    // Matmul: square, skinny, and the LeNet-5 step's (batch 64, convolutions as implicit GEMM).
    let mut shapes: Vec<(&str, usize, usize, usize)> = vec![
        ("square", 256, 256, 256),
        ("square", 512, 512, 512),
        ("square", 1024, 1024, 1024),
    ];
    if !quick {
        shapes.extend([
            ("square", 2048, 2048, 2048),
            ("skinny", 4096, 64, 1024),
            ("skinny", 64, 4096, 1024),
            ("skinny", 4096, 4096, 16),
        ]);
    }
    if !quick && dev.kind() != kiln::DeviceKind::SoftwareGpu {
        shapes.push(("square", 4096, 4096, 4096));
    }
    shapes.extend([
        ("lenet5 conv1 fwd", 64 * 28 * 28, 6, 25),
        ("lenet5 conv2 fwd", 64 * 10 * 10, 16, 150),
        ("lenet5 conv2 wgrad", 150, 16, 64 * 10 * 10),
        ("lenet5 fc1 fwd", 64, 120, 400),
        ("lenet5 fc1 dgrad", 64, 400, 120),
        ("lenet5 fc1 wgrad", 400, 120, 64),
        ("lenet5 fc2 fwd", 64, 84, 120),
        ("lenet5 fc3 fwd", 64, 10, 84),
    ]);
    for (what, m, n, k) in shapes {
        let a = Tensor::randn([m, k], 1, &dev);
        let b = Tensor::randn([k, n], 2, &dev);
        Tensor::realize_all(&[&a, &b]).unwrap();
        let (s, _, _, first) = bench.time(&|| a.matmul(&b));
        let flops = 2.0 * (m * n * k) as f64;
        let bytes = 4.0 * (m * k + k * n + m * n) as f64;
        let host = host_sgemm_gflops(m, n, k, 3);
        let shape = format!("{m}x{n}x{k}");
        if what == "square" && m == 1024 {
            println!(
                "first call of matmul {shape} (pipeline compile included): {:.1} ms",
                first * 1e3
            );
        }
        rows.push(Row {
            kernel: format!("matmul {what}"),
            shape,
            ms: s * 1e3,
            gflops: flops / s / 1e9,
            gbps: bytes / s / 1e9,
            host_gemm_gflops: Some(host),
        });
    }

    // The GPU family's 1024^3 product, checked: on a GPU the same kernel as the square row above,
    // on lavapipe the kernels a GPU would run.
    let (row, err) = gpu_family_matmul(1024, bench.reps);
    println!(
        "matmul gpu family 1024^3: {:.2} GFLOP/s, largest difference from the host GEMM {err:.2e} of the largest output",
        row.gflops
    );
    assert!(
        err < 1e-4,
        "the GPU family's 1024^3 matmul differs from the host GEMM by {err:.2e}"
    );
    rows.push(row);

    // Reductions.
    let n_big = if quick { 4 << 20 } else { 16 << 20 };
    let x = Tensor::rand([4096, 1024], 3, &dev);
    let big = Tensor::rand([n_big], 4, &dev);
    let cols = Tensor::rand([1024, 4096], 5, &dev);
    Tensor::realize_all(&[&x, &big, &cols]).unwrap();
    let reductions: Vec<(&str, String, MakeGraph)> = vec![
        (
            "reduce sum rows",
            "4096x1024 -> 4096".into(),
            Box::new(|| x.sum_axes(&[1])),
        ),
        (
            "reduce max rows",
            "4096x1024 -> 4096".into(),
            Box::new(|| x.max_axes(&[1])),
        ),
        (
            "reduce argmax rows",
            "4096x1024 -> 4096".into(),
            Box::new(|| x.argmax(1)),
        ),
        (
            "reduce sum columns",
            "1024x4096 -> 4096".into(),
            Box::new(|| cols.sum_axes(&[0])),
        ),
        (
            "reduce sum all",
            format!("{n_big} -> 1"),
            Box::new(|| big.sum()),
        ),
        (
            "softmax rows (3 kernels)",
            "4096x1024".into(),
            Box::new(|| {
                let e = (&x - &x.max_axes_keepdim(&[1])).exp();
                &e / &e.sum_axes_keepdim(&[1])
            }),
        ),
    ];
    for (name, shape, make) in &reductions {
        let (s, flops, bytes, _) = bench.time(make.as_ref());
        rows.push(Row {
            kernel: name.to_string(),
            shape: shape.clone(),
            ms: s * 1e3,
            gflops: flops as f64 / s / 1e9,
            gbps: bytes as f64 / s / 1e9,
            host_gemm_gflops: None,
        });
    }

    // Fused elementwise chains.
    let v = Tensor::rand([n_big], 6, &dev);
    let w = Tensor::rand([n_big], 7, &dev);
    Tensor::realize_all(&[&v, &w]).unwrap();
    let chains: Vec<(&str, MakeGraph)> = vec![
        ("elementwise add", Box::new(|| &v + &w)),
        (
            "fused chain of 8 ops",
            Box::new(|| ((&v * 2.0 + &w).exp().sqrt() - 1.0).relu().tanh() * 3.0),
        ),
        (
            "fused sigmoid-gelu-like",
            Box::new(|| &v * (&v * 1.702).sigmoid() + &w),
        ),
    ];
    for (name, make) in &chains {
        let (s, flops, bytes, _) = bench.time(make.as_ref());
        rows.push(Row {
            kernel: name.to_string(),
            shape: format!("{n_big}"),
            ms: s * 1e3,
            gflops: flops as f64 / s / 1e9,
            gbps: bytes as f64 / s / 1e9,
            host_gemm_gflops: None,
        });
    }

    // Augmentation of a CIFAR-sized batch: matrices drawn on the device, one warp with the
    // normalisation fused in (2 kernels).
    let images = Tensor::rand([256, 3, 32, 32], 8, &dev);
    images.realize().unwrap();
    let aug = kiln::data::Augment::new(1)
        .horizontal_flip(0.5)
        .random_crop(4)
        .rotation(15.0)
        .scale(0.9, 1.1)
        .normalize(&[0.49, 0.48, 0.45], &[0.25, 0.24, 0.26]);
    let (s, flops, bytes, _) = bench.time(&|| aug.apply(&images).unwrap());
    rows.push(Row {
        kernel: "augment (2 kernels)".into(),
        shape: "256x3x32x32".into(),
        ms: s * 1e3,
        gflops: flops as f64 / s / 1e9,
        gbps: bytes as f64 / s / 1e9,
        host_gemm_gflops: None,
    });

    println!(
        "{:<28} {:>20} {:>10} {:>9} {:>8} {:>10} {:>7}",
        "kernel", "shape", "ms", "GFLOP/s", "GB/s", "host GEMM", "ratio"
    );
    for r in &rows {
        let (host, ratio) = match r.host_gemm_gflops {
            Some(h) => (format!("{h:.1}"), format!("{:.1}%", 100.0 * r.gflops / h)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<28} {:>20} {:>10.3} {:>9.2} {:>8.2} {:>10} {:>7}",
            r.kernel, r.shape, r.ms, r.gflops, r.gbps, host, ratio
        );
    }
    println!("{}", dev.stats());
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "kernel": r.kernel, "shape": r.shape, "ms": r.ms, "gflops": r.gflops, "gbps": r.gbps,
                "host_gemm_gflops": r.host_gemm_gflops, "device": dev.name(),
                "timing": if timestamps { "gpu-timestamps" } else { "wall" },
            })
        })
        .collect();
    let path = write_json("kernels.json", &serde_json::Value::Array(json));
    println!("wrote {}", path.display());
}
