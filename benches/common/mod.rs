//! Helpers the benchmarks share: opening the adapter they time, medians, the quick-run switch,
//! per-kernel GPU time and writing the JSON report under `target/kiln-bench/`.
//!
//! Each bench includes this file with `mod common;`; not every bench uses every helper.
#![allow(dead_code)]

use kiln::prelude::*;
use kiln::wgpu_backend::{adapter, KernelTiming, WgpuBackend};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// True when `KILN_BENCH_QUICK` is set (any value): fewer, smaller runs.
pub fn quick() -> bool {
    std::env::var("KILN_BENCH_QUICK").is_ok()
}

/// Opens the adapter named by `KILN_ADAPTER` (else the best one) as a fresh backend and device:
/// its counters start at zero and its pipeline cache is empty. Exits with the driver install
/// hint, naming `bench`, when there is no adapter.
pub fn open_device(bench: &str) -> (Arc<WgpuBackend>, Device) {
    let instance = adapter::instance();
    let name = std::env::var("KILN_ADAPTER").ok();
    let Some(chosen) = adapter::pick(&instance, name.as_deref()).expect("adapter") else {
        eprintln!("{bench} bench: {}", kiln::wgpu_backend::INSTALL_HINT);
        std::process::exit(1);
    };
    let backend = Arc::new(WgpuBackend::new(&chosen).expect("open adapter"));
    let dev = Device::from_backend(backend.clone());
    (backend, dev)
}

/// The median of `v` (the upper one of an even count); sorts `v`. Panics if `v` is empty.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Writes `value` as pretty JSON to `target/kiln-bench/<name>` and returns the path.
pub fn write_json(name: &str, value: &serde_json::Value) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kiln-bench");
    std::fs::create_dir_all(&dir).expect("create target/kiln-bench");
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).expect("JSON")).expect("write");
    path
}

/// The GPU time of one profiled run, by kernel kind (the first word of a kernel's name:
/// `matmul`, `reduce`, `elementwise`, ..) and kernel by kernel, slowest first.
pub struct KernelProfile {
    /// Seconds per kernel kind.
    pub by_kind: BTreeMap<String, f64>,
    /// Every kernel, slowest first.
    pub slowest: Vec<KernelTiming>,
}

impl KernelProfile {
    /// Groups `kernels` (from [`WgpuBackend::last_profile`]).
    pub fn new(mut kernels: Vec<KernelTiming>) -> KernelProfile {
        let mut by_kind: BTreeMap<String, f64> = BTreeMap::new();
        for k in &kernels {
            let kind = k.name.split_whitespace().next().unwrap_or("?");
            *by_kind.entry(kind.to_string()).or_default() += k.seconds;
        }
        kernels.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        KernelProfile {
            by_kind,
            slowest: kernels,
        }
    }
    /// Total GPU seconds.
    pub fn total(&self) -> f64 {
        self.by_kind.values().sum()
    }
    /// Prints the time by kind and the `top` slowest kernels, indented by `indent`.
    pub fn print(&self, indent: &str, top: usize) {
        let total = self.total();
        println!("{indent}GPU time {:.2} ms, by kernel kind:", total * 1e3);
        for (k, s) in &self.by_kind {
            println!(
                "{indent}  {k:12} {:9.2} ms {:5.1}%",
                s * 1e3,
                100.0 * s / total
            );
        }
        println!("{indent}slowest kernels:");
        for k in self.slowest.iter().take(top) {
            println!(
                "{indent}  {:9.2} ms {:6.2} GFLOP/s  {}",
                k.seconds * 1e3,
                k.flops as f64 / k.seconds / 1e9,
                k.name
            );
        }
    }
    /// Milliseconds per kernel kind, for the JSON reports.
    pub fn ms_by_kind(&self) -> BTreeMap<String, f64> {
        self.by_kind
            .iter()
            .map(|(k, s)| (k.clone(), s * 1e3))
            .collect()
    }
}
