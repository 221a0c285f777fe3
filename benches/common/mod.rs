//! Helpers the benchmarks share: opening the adapter they time, medians, the quick-run switch and
//! writing the JSON report under `target/kiln-bench/`.
//!
//! Each bench includes this file with `mod common;`; not every bench uses every helper.
#![allow(dead_code)]

use kiln::prelude::*;
use kiln::wgpu_backend::{adapter, WgpuBackend};
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
