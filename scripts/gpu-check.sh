#!/usr/bin/env bash
# The device check of issue 13: on a machine with a GPU, run the test suite with the kernel
# family the adapter gets by default, then the kernels, train_step and models benches, and print
# one summary table read from their JSON reports in target/kiln-bench/ (also written to
# target/kiln-bench/gpu-check.md).
#
#   scripts/gpu-check.sh [--quick] [--dev-profile] [--skip-tests] [--summary-only]
#
#   --quick         the benches' quick settings (KILN_BENCH_QUICK=1: fewer, smaller runs; no
#                   4096^3 matmul, small ResNet batches): for a trial on a software adapter
#   --dev-profile   build the benches with the dev profile (reuses the test build; the host code
#                   is less optimised, the GPU kernels are the same) instead of release
#   --skip-tests    benches only
#   --summary-only  no runs: the table from the JSON files already there
#
# KILN_ADAPTER, WGPU_BACKEND and KILN_KERNELS are honoured as everywhere in kiln. Needs cargo and
# python3 (for reading the JSON).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0 tests=1 runs=1 profile=()
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --dev-profile) profile=(--profile dev) ;;
        --skip-tests) tests=0 ;;
        --summary-only) runs=0 tests=0 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "gpu-check: unknown argument $arg (accepted: --quick, --dev-profile, --skip-tests, --summary-only)" >&2; exit 2 ;;
    esac
done
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
out=target/kiln-bench
mkdir -p "$out"

timed() { # label, command...: runs the command and records its wall time
    local label=$1 start=$SECONDS
    shift
    echo "gpu-check: $label: $*"
    "$@"
    echo "$label $((SECONDS - start))" >> "$out/gpu-check-times.txt"
}

if [ "$runs" = 1 ]; then
    : > "$out/gpu-check-times.txt"
    cargo run --quiet --example devices | tee "$out/gpu-check-devices.txt"
    if [ "$tests" = 1 ]; then
        timed tests cargo test --workspace
    fi
    if [ "$quick" = 1 ]; then export KILN_BENCH_QUICK=1; fi
    models_args=()
    if [ "$quick" = 1 ]; then models_args=(-- --quick); fi
    timed kernels cargo bench "${profile[@]}" --bench kernels
    timed train_step cargo bench "${profile[@]}" --bench train_step
    timed models cargo bench "${profile[@]}" --bench models "${models_args[@]}"
fi

python3 - "$out" <<'PY' | tee "$out/gpu-check.md"
import json, os, sys
out = sys.argv[1]

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []

kernels, steps, models = load("kernels.json"), load("train_step.json"), load("models.json")

def fmt(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"

def kernel(name, shape):
    return next((r for r in kernels if r.get("kernel") == name and r.get("shape") == shape), {})

def model(name):
    return next((r for r in models if r.get("model") == name), {})

adapter = next((r.get("device") for r in kernels + steps if r.get("device")), "unknown")
timing = next((r.get("timing") for r in kernels if r.get("timing")), "?")
rows = [("adapter", adapter, ""), ("kernel timing", timing, "")]
for size in (1024, 4096):
    r = kernel("matmul square", f"{size}x{size}x{size}")
    rows.append((f"matmul {size}^3", fmt(r.get("gflops")) + " GFLOP/s",
                 f"{fmt(r.get('ms'), 2)} ms; host GEMM {fmt(r.get('host_gemm_gflops'))} GFLOP/s" if r else "not run"))
r = kernel("matmul gpu family", "1024x1024x1024")
rows.append(("matmul 1024^3, GPU family", fmt(r.get("gflops")) + " GFLOP/s", "checked against the host GEMM" if r else "not run"))
for s in steps:
    rows.append((f"LeNet-5 step, batch {s['batch']}",
                 f"{fmt(s.get('ms_per_step'), 2)} ms, {fmt(s.get('images_per_s'), 0)} img/s",
                 f"first step {fmt(s.get('first_step_ms', 0) / 1e3, 2)} s; {fmt(s.get('dispatches_per_step'), 0)} dispatches"))
for name in ("lenet5", "resnet20", "resnet20-fashion", "resnet18"):
    m = model(name)
    if not m:
        rows.append((f"{name} training", "-", "not run"))
    elif "error" in m:
        rows.append((f"{name} training", "failed", m["error"]))
    else:
        rows.append((f"{name} training, batch {m['batch']}",
                     fmt(m.get("train_images_per_s")) + " img/s",
                     f"forward {fmt(m.get('forward_images_per_s'))} img/s; first step {fmt(m.get('first_step_s'), 2)} s, "
                     f"first forward {fmt(m.get('first_forward_s'), 2)} s; peak {fmt(m.get('peak_bytes', 0) / 2**20, 0)} MiB"))
try:
    with open(os.path.join(out, "gpu-check-times.txt")) as f:
        rows.append(("wall time", ", ".join(f"{a} {b} s" for a, b in (l.split() for l in f if l.strip())), ""))
except OSError:
    pass
print("| what | value | notes |")
print("|---|---|---|")
for what, value, notes in rows:
    print(f"| {what} | {value} | {notes} |")
PY
