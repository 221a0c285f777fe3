//! Kernel profiles: the GPU time of every kernel, accumulated over the realizes run while
//! profiling is on ([`crate::Device::set_profiling`]), with each kernel's work (FLOP, bytes) and
//! what it achieved. A backend fills a [`ProfileRecorder`]; [`crate::Device::take_profile`]
//! hands the result over as a [`Profile`], which prints as a table and writes itself as JSON.

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;

/// One kernel's totals over the profiled realizes. Kernels are told apart by name (which holds
/// their kind and shapes), so identical kernels of different plans add up.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelStats {
    /// The kernel's description, e.g. "matmul 64x120x400 +epilogue".
    pub name: String,
    /// Times it ran.
    pub calls: u64,
    /// GPU time over all calls, in seconds.
    pub seconds: f64,
    /// Floating-point operations over all calls.
    pub flops: u64,
    /// Fewest bytes moved over all calls (each input read once, the output written once).
    pub bytes: u64,
}

impl KernelStats {
    /// Mean GPU time per call in seconds.
    pub fn mean_seconds(&self) -> f64 {
        self.seconds / self.calls.max(1) as f64
    }
    /// FLOP per call.
    pub fn flops_per_call(&self) -> f64 {
        self.flops as f64 / self.calls.max(1) as f64
    }
    /// Bytes per call.
    pub fn bytes_per_call(&self) -> f64 {
        self.bytes as f64 / self.calls.max(1) as f64
    }
    /// Achieved GFLOP/s (0 when no time was measured).
    pub fn gflops(&self) -> f64 {
        if self.seconds > 0.0 {
            self.flops as f64 / self.seconds / 1e9
        } else {
            0.0
        }
    }
    /// Achieved GB/s of the fewest bytes moved (0 when no time was measured).
    pub fn gbytes_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e9
        } else {
            0.0
        }
    }
}

/// The kernels of the realizes run while profiling, slowest (most total time) first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// The device's name.
    pub device: String,
    /// Per-kernel totals, most total time first.
    pub kernels: Vec<KernelStats>,
    /// Profiled realizes (queue submissions).
    pub submissions: u64,
    /// GPU time of the profiled submissions: for each, from the start of its first kernel to the
    /// end of its last, summed. The kernels' times add up to this less the gaps between kernels.
    pub gpu_seconds: f64,
}

impl Profile {
    /// The kernels' GPU time added up, in seconds.
    pub fn kernel_seconds(&self) -> f64 {
        self.kernels.iter().map(|k| k.seconds).sum()
    }
    /// Share of the kernels' total time spent in `k`, in [0, 1].
    pub fn share(&self, k: &KernelStats) -> f64 {
        let total = self.kernel_seconds();
        if total > 0.0 {
            k.seconds / total
        } else {
            0.0
        }
    }

    /// The profile as JSON: `{"device", "submissions", "gpu_seconds", "kernel_seconds",
    /// "kernels": [{"name", "calls", "total_ms", "mean_us", "flop_per_call", "bytes_per_call",
    /// "gflop_per_s", "gb_per_s", "share"}]}`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\n");
        let _ = writeln!(out, "  \"device\": {},", json_string(&self.device));
        let _ = writeln!(out, "  \"submissions\": {},", self.submissions);
        let _ = writeln!(out, "  \"gpu_seconds\": {},", json_number(self.gpu_seconds));
        let _ = writeln!(
            out,
            "  \"kernel_seconds\": {},",
            json_number(self.kernel_seconds())
        );
        out.push_str("  \"kernels\": [");
        for (i, k) in self.kernels.iter().enumerate() {
            let _ = write!(
                out,
                "{}\n    {{\"name\": {}, \"calls\": {}, \"total_ms\": {}, \"mean_us\": {}, \"flop_per_call\": {}, \"bytes_per_call\": {}, \"gflop_per_s\": {}, \"gb_per_s\": {}, \"share\": {}}}",
                if i == 0 { "" } else { "," },
                json_string(&k.name),
                k.calls,
                json_number(k.seconds * 1e3),
                json_number(k.mean_seconds() * 1e6),
                json_number(k.flops_per_call()),
                json_number(k.bytes_per_call()),
                json_number(k.gflops()),
                json_number(k.gbytes_per_s()),
                json_number(self.share(k))
            );
        }
        out.push_str(if self.kernels.is_empty() {
            "]\n}\n"
        } else {
            "\n  ]\n}\n"
        });
        out
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

impl fmt::Display for Profile {
    /// A table, slowest kernel first: calls, total and mean GPU time, MFLOP and MB per call,
    /// achieved GFLOP/s and GB/s, share of the kernels' time; then the totals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name_w = self
            .kernels
            .iter()
            .map(|k| k.name.chars().count())
            .max()
            .unwrap_or(6)
            .clamp(6, 60);
        writeln!(
            f,
            "kernel profile on {}: {} submissions, {:.3} ms of GPU time, {:.3} ms in kernels",
            self.device,
            self.submissions,
            self.gpu_seconds * 1e3,
            self.kernel_seconds() * 1e3
        )?;
        writeln!(
            f,
            "{:<name_w$}  {:>7}  {:>10}  {:>9}  {:>10}  {:>9}  {:>8}  {:>7}  {:>6}",
            "kernel",
            "calls",
            "total ms",
            "mean us",
            "MFLOP/call",
            "MB/call",
            "GFLOP/s",
            "GB/s",
            "share"
        )?;
        for k in &self.kernels {
            let mut name: String = k.name.chars().take(name_w).collect();
            if k.name.chars().count() > name_w {
                name.pop();
                name.push('~');
            }
            writeln!(
                f,
                "{name:<name_w$}  {:>7}  {:>10.3}  {:>9.1}  {:>10.3}  {:>9.3}  {:>8.2}  {:>7.2}  {:>5.1}%",
                k.calls,
                k.seconds * 1e3,
                k.mean_seconds() * 1e6,
                k.flops_per_call() / 1e6,
                k.bytes_per_call() / 1e6,
                k.gflops(),
                k.gbytes_per_s(),
                100.0 * self.share(k)
            )?;
        }
        Ok(())
    }
}

/// Accumulates kernel times for a backend while profiling is on.
#[derive(Debug, Default)]
pub struct ProfileRecorder {
    order: Vec<String>,
    kernels: HashMap<String, KernelStats>,
    submissions: u64,
    gpu_seconds: f64,
}

impl ProfileRecorder {
    /// Adds one run of kernel `name` that did `flops` and moved `bytes` in `seconds`.
    pub fn record(&mut self, name: &str, flops: u64, bytes: u64, seconds: f64) {
        let entry = self.kernels.entry(name.to_string()).or_insert_with(|| {
            self.order.push(name.to_string());
            KernelStats {
                name: name.to_string(),
                calls: 0,
                seconds: 0.0,
                flops: 0,
                bytes: 0,
            }
        });
        entry.calls += 1;
        entry.seconds += seconds;
        entry.flops += flops;
        entry.bytes += bytes;
    }
    /// Adds one profiled submission whose kernels spanned `seconds` of GPU time.
    pub fn submission(&mut self, seconds: f64) {
        self.submissions += 1;
        self.gpu_seconds += seconds;
    }
    /// The profile so far, for `device`; the recorder starts again from zero.
    pub fn take(&mut self, device: String) -> Profile {
        let mut kernels: Vec<KernelStats> = std::mem::take(&mut self.order)
            .into_iter()
            .filter_map(|n| self.kernels.remove(&n))
            .collect();
        kernels.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        let p = Profile {
            device,
            kernels,
            submissions: self.submissions,
            gpu_seconds: self.gpu_seconds,
        };
        *self = ProfileRecorder::default();
        p
    }
}
