// matmul_cpu.wgsl — batched single-precision matrix multiply for CPU Vulkan drivers
// (lavapipe / llvmpipe, adapter type Cpu). Same contract as matmul.wgsl; choose this file when
// the adapter's device_type is DeviceType::Cpu and matmul.wgsl otherwise.
//
//   out[b, m, n] = sum_k A[b, m, k] * B[b, k, n]      for b < BATCH, m < M, n < N, k < K
//
// Why a separate kernel: llvmpipe runs the 8 invocations of a subgroup as one 8-wide SIMD
// program and turns every storage or workgroup-memory access with a per-invocation address into
// an 8-step scalar loop (with a bounds check for storage buffers), and a barrier into a coroutine
// switch per subgroup. Shared-memory tiling therefore costs more than it saves there. This kernel
// uses no shared memory and no barriers; each invocation keeps a 16 x 16 block of accumulators so
// that every loaded value feeds 16 FMAs. Measured on llvmpipe (Zen 5, 2 cores): ~3-4x the
// throughput of matmul.wgsl. On a real GPU use matmul.wgsl.
//
// Generated region (between the @kiln:generated markers; the code generator replaces it):
//   const BATCH, M, N, K: u32        problem size
//   fn tile_of(wg, nwg) -> vec3<u32> (column tile, row tile, batch) of workgroup wg of the
//                                    dispatched grid nwg; a batch >= BATCH does nothing
//   const RM, RN: u32                output rows / columns per invocation (powers of two up to
//                                    16, chosen from M and N so that a small output does not
//                                    compute a mostly clamped 64 x 128 block)
//   const WG_X, WG_Y: u32            the workgroup: 8 x 4 (four subgroups stacked along rows)
//   bindings                         whatever the loads and the store need (the default region
//                                    uses @group(0) @binding(0) out_buf (read_write),
//                                    @binding(1) a_buf (read), @binding(2) b_buf (read),
//                                    all array<f32>, row-major, contiguous)
//   fn load_a(batch, row, k) -> f32  A[batch, row, k]; only called with row < M, k < K
//   fn load_b(batch, k, col) -> f32  B[batch, k, col]; only called with k < K, col < N
//   fn store_out(batch, row, col, acc)  writes the finished dot product; row < M, col < N
//   const A_MODE, B_MODE: u32        how A and B are read: 0 one value at a time (load_a, load_b);
//                                    A_MODE 1: 4 k-steps of a row (load_a4; A has stride 1
//                                    along k, K % 4 == 0); A_MODE 2: 4 rows at one k (load_a4m;
//                                    stride 1 along rows, M % 4 == 0, RM >= 4); B_MODE 1: 4
//                                    columns at one k (load_b4; stride 1 along columns,
//                                    N % 4 == 0, RN >= 4); B_MODE 2: 4 k-steps of a column
//                                    (load_b4k; stride 1 along k, K % 4 == 0). A transposed
//                                    operand (a weight gradient's im2col, a weight read as W^T)
//                                    is thus read 4 values at a time as well.
//   fn load_a4(batch, row, k4) -> vec4<f32>   A[batch, row, 4 k4 .. 4 k4 + 3]      (A_MODE 1)
//   fn load_a4m(batch, r4, k) -> vec4<f32>    A[batch, 4 r4 .. 4 r4 + 3, k]        (A_MODE 2)
//   fn load_b4(batch, k, c4) -> vec4<f32>     B[batch, k, 4 c4 .. 4 c4 + 3]        (B_MODE 1)
//   fn load_b4k(batch, col, k4) -> vec4<f32>  B[batch, 4 k4 .. 4 k4 + 3, col]      (B_MODE 2)
//   const EPILOGUE_PASS: bool        true when store_out writes the raw dot product and
//                                    finish_out(batch, row, col) applies a fused epilogue to it
//   fn finish_out(batch, row, col)   reads out[batch, row, col] back, applies the epilogue and
//                                    writes the result; called once per stored output when
//                                    EPILOGUE_PASS
// The vec4 loads exist because llvmpipe turns a load whose address differs between lanes into
// one scalar load per lane: a vec4 load costs the same as a scalar one and brings 4 values.
// A's rows are shared by the 8 lanes of a subgroup, so its loads are uniform (one load for all
// lanes); B's are per lane, so each one should feed as many rows (RM) as possible.
// NOTE: the loads are called straight from the K loop,
// not staged in shared memory, so an element is loaded once per invocation that needs it:
// A[b, m, k] 8 * ceil(N / TILE_N) times in all (the 8 lanes of a subgroup share a row block),
// B[b, k, n] ceil(M / RM) = ceil(M / 16) times. A fused prologue in load_a/load_b is re-evaluated
// that often; when such a prologue is expensive, materialise it before this kernel.
//
// Workgroup shape: @workgroup_size(WG_X, WG_Y, 1) = 32 invocations = 4 llvmpipe subgroups,
// 8 x 4. One workgroup computes a TILE_M x TILE_N = WG_Y*RM x WG_X*RN block of one
// batch (64 x 128 at the default). Invocation (lid.x, lid.y) computes the RM x RN outputs
//   rows    wg.y*TILE_M + lid.y*RM + i,    i < RM   (contiguous; shared by the subgroup)
//   columns wg.x*TILE_N + lid.x + WG_X*j,  j < RN   (strided by WG_X; adjacent lanes adjacent)
// Out-of-range rows/columns are clamped for loading (row M-1 / column N-1) and not stored; the
// K loop runs exactly K times, so no zero padding is needed.
//
// Dispatch (host): ceil(N / TILE_N) * ceil(M / TILE_M) * BATCH workgroups, spread over x, y and z
//   (at most 65,535 each); tile_of folds the workgroup id back into (column tile, row tile,
//   batch), column tiles fastest.

// @kiln:generated-begin
const BATCH: u32 = 2u;
const M: u32 = 100u;
const N: u32 = 70u;
const K: u32 = 50u;
const RM: u32 = 16u;
const RN: u32 = 16u;
const WG_X: u32 = 8u;
const WG_Y: u32 = 4u;
@group(0) @binding(0) var<storage, read_write> out_buf: array<f32>;
@group(0) @binding(1) var<storage, read> a_buf: array<f32>;
@group(0) @binding(2) var<storage, read> b_buf: array<f32>;
// (column tile, row tile, batch) of workgroup wg from its flat index.
fn tile_of(wg: vec3<u32>, nwg: vec3<u32>) -> vec3<u32> {
    let f = wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
    let cols = (N + TILE_N - 1u) / TILE_N;
    let rows = (M + TILE_M - 1u) / TILE_M;
    return vec3<u32>(f % cols, (f / cols) % rows, f / (cols * rows));
}
// A[batch, row, k]; called only with row < M, k < K.
fn load_a(batch: u32, row: u32, k: u32) -> f32 { return a_buf[(batch * M + row) * K + k]; }
// B[batch, k, col]; called only with k < K, col < N.
fn load_b(batch: u32, k: u32, col: u32) -> f32 { return b_buf[(batch * K + k) * N + col]; }
// Writes the finished dot product of out[batch, row, col]; called only with row < M, col < N.
fn store_out(batch: u32, row: u32, col: u32, acc: f32) { out_buf[(batch * M + row) * N + col] = acc; }
const A_MODE: u32 = 0u;
const B_MODE: u32 = 0u;
fn load_a4(batch: u32, row: u32, k4: u32) -> vec4<f32> { return vec4<f32>(); }
fn load_a4m(batch: u32, r4: u32, k: u32) -> vec4<f32> { return vec4<f32>(); }
fn load_b4(batch: u32, k: u32, c4: u32) -> vec4<f32> { return vec4<f32>(); }
fn load_b4k(batch: u32, col: u32, k4: u32) -> vec4<f32> { return vec4<f32>(); }
const EPILOGUE_PASS: bool = false;
// Applies the fused epilogue to out[batch, row, col] in place (none here).
fn finish_out(batch: u32, row: u32, col: u32) {}
// @kiln:generated-end

const TILE_M: u32 = WG_Y * RM; // output rows per workgroup
const TILE_N: u32 = WG_X * RN; // output columns per workgroup

// The output column of accumulator j of lane `lane` in column tile `tile`: with B_MODE 1
// (4-column groups) lane `lane` takes the groups tile*TILE_N/4 + lane + 8 q, q < RN / 4, and
// j = 4 q + e is column e of group q; otherwise columns tile*TILE_N + lane + 8 j (adjacent
// lanes adjacent).
fn out_col(tile: u32, lane: u32, j: u32) -> u32 {
    if (B_MODE == 1u) {
        return 4u * (tile * (TILE_N / 4u) + lane + WG_X * (j / 4u)) + j % 4u;
    }
    return tile * TILE_N + lane + j * WG_X;
}

// Column k of A at the invocation's rows (`rows`: clamped rows; with A_MODE 2, rows[4 q] is a
// multiple of 4 and starts a 4-row group).
fn load_a_col(batch: u32, k: u32, rows: array<u32, RM>) -> array<f32, RM> {
    var a: array<f32, RM>;
    if (A_MODE == 2u) {
        for (var q = 0u; q < RM / 4u; q++) {
            let v = load_a4m(batch, rows[4u * q] / 4u, k);
            a[4u * q] = v.x;
            a[4u * q + 1u] = v.y;
            a[4u * q + 2u] = v.z;
            a[4u * q + 3u] = v.w;
        }
    } else {
        for (var i = 0u; i < RM; i++) { a[i] = load_a(batch, rows[i], k); }
    }
    return a;
}

// Row k of B at the invocation's columns (`cols`: clamped columns, or with B_MODE 1 clamped
// 4-column groups).
fn load_b_row(batch: u32, k: u32, cols: array<u32, RN>) -> array<f32, RN> {
    var b: array<f32, RN>;
    if (B_MODE == 1u) {
        for (var q = 0u; q < RN / 4u; q++) {
            let v = load_b4(batch, k, cols[4u * q]);
            b[4u * q] = v.x;
            b[4u * q + 1u] = v.y;
            b[4u * q + 2u] = v.z;
            b[4u * q + 3u] = v.w;
        }
    } else {
        for (var j = 0u; j < RN; j++) { b[j] = load_b(batch, k, cols[j]); }
    }
    return b;
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let wg = tile_of(wg_id, nwg);   // (column tile, row tile, batch)
    if (wg.z >= BATCH) { return; }
    let batch = wg.z;
    let row0 = wg.y * TILE_M + lid.y * RM;

    // Clamped load coordinates: rows >= M / columns >= N read a valid element; never stored.
    var rows: array<u32, RM>;
    var cols: array<u32, RN>;
    for (var i = 0u; i < RM; i++) { rows[i] = min(row0 + i, M - 1u); }
    for (var j = 0u; j < RN; j++) {
        let c = out_col(wg.x, lid.x, j);
        cols[j] = select(min(c, N - 1u), min(c / 4u, max(N / 4u, 1u) - 1u), B_MODE == 1u);
    }

    var acc: array<array<f32, RN>, RM>;
    // The chunk arrays live in main, not in helper functions: an array returned by a function
    // made the 1024^3 product 2x slower to compile and 20% slower to run on llvmpipe.
    if (B_MODE == 2u) {
        // B comes 4 k-steps per column (K % 4 == 0): A and B in chunks of 4 k, a[i][e] and
        // b[j][e] at k = 4 k4 + e.
        for (var k4 = 0u; k4 < K / 4u; k4++) {
            var a: array<vec4<f32>, RM>;
            if (A_MODE == 1u) {
                for (var i = 0u; i < RM; i++) { a[i] = load_a4(batch, rows[i], k4); }
            } else {
                for (var e = 0u; e < 4u; e++) {
                    let col = load_a_col(batch, 4u * k4 + e, rows);
                    for (var i = 0u; i < RM; i++) { a[i][e] = col[i]; }
                }
            }
            var b: array<vec4<f32>, RN>;
            for (var j = 0u; j < RN; j++) { b[j] = load_b4k(batch, cols[j], k4); }
            for (var e = 0u; e < 4u; e++) {
                for (var i = 0u; i < RM; i++) {
                    let ai = a[i][e];
                    for (var j = 0u; j < RN; j++) { acc[i][j] = fma(ai, b[j][e], acc[i][j]); }
                }
            }
        }
    } else if (A_MODE == 1u) {
        // A comes 4 k-steps per row (K % 4 == 0); B one row of k at a time, so that only RN of
        // its values are live.
        for (var k4 = 0u; k4 < K / 4u; k4++) {
            var a: array<vec4<f32>, RM>;
            for (var i = 0u; i < RM; i++) { a[i] = load_a4(batch, rows[i], k4); }
            for (var e = 0u; e < 4u; e++) {
                let b = load_b_row(batch, 4u * k4 + e, cols);
                for (var i = 0u; i < RM; i++) {
                    let ai = a[i][e];
                    for (var j = 0u; j < RN; j++) { acc[i][j] = fma(ai, b[j], acc[i][j]); }
                }
            }
        }
    } else {
        for (var k = 0u; k < K; k++) {
            let a = load_a_col(batch, k, rows);
            let b = load_b_row(batch, k, cols);
            for (var i = 0u; i < RM; i++) {
                for (var j = 0u; j < RN; j++) { acc[i][j] = fma(a[i], b[j], acc[i][j]); }
            }
        }
    }

    for (var i = 0u; i < RM; i++) {
        for (var j = 0u; j < RN; j++) {
            let r = row0 + i;
            let c = out_col(wg.x, lid.x, j);
            if (r < M && c < N) { store_out(batch, r, c, acc[i][j]); }
        }
    }

    // A fused epilogue runs in a second, rolled loop. Mesa fully unrolls loops that index a
    // local array (acc) by their counter, so an epilogue inside the loop above would be
    // compiled RM * RN times, each copy with its own gathers: a batch-norm + ReLU epilogue took
    // LLVM tens of seconds per kernel, a bias + ReLU one ~2 s. This loop indexes only the
    // storage buffer, so it stays a loop.
    if (EPILOGUE_PASS) {
        for (var t = 0u; t < RM * RN; t++) {
            let r = row0 + t / RN;
            let c = out_col(wg.x, lid.x, t % RN);
            if (r < M && c < N) { finish_out(batch, r, c); }
        }
    }
}
