// matmul.wgsl — batched single-precision matrix multiply for GPUs: a register-blocked tiled
// kernel (the GPU kernel family; lavapipe gets matmul_cpu.wgsl unless KILN_KERNELS=gpu).
//
//   out[b, m, n] = sum_k A[b, m, k] * B[b, k, n]      for b < BATCH, m < M, n < N, k < K
//
// Any BATCH/M/N/K works (not only multiples of the tile): out-of-range tile elements are staged
// as 0 and out-of-range outputs are not stored.
//
// Generated region (between the @kiln:generated markers; the code generator replaces it):
//   const BATCH, M, N, K: u32        problem size
//   fn tile_of(wg, nwg) -> vec3<u32> (column tile, row tile, batch) of workgroup wg of the
//                                    dispatched grid nwg; a batch >= BATCH does nothing
//   bindings                         whatever the loads and the store need
//   fn load_a(batch, row, k) -> f32  A[batch, row, k]; only called with row < M, k < K
//   fn load_b(batch, k, col) -> f32  B[batch, k, col]; only called with k < K, col < N
//   fn store_out(batch, row, col, acc)  writes epilogue(acc) (bias, activation, batch norm...)
//                                    to out[batch, row, col]; only called with row < M, col < N
//   const A_MODE, B_MODE: u32        how A and B are staged: 0 one value at a time (load_a,
//                                    load_b, any view or fused prologue); A_MODE 1: 4 k-steps of a
//                                    row (load_a4; stride 1 along k, K % 4 == 0); A_MODE 2: 4
//                                    rows at one k (load_a4m; stride 1 along rows, M % 4 == 0);
//                                    B_MODE 1: 4 columns at one k (load_b4; stride 1 along
//                                    columns, N % 4 == 0); B_MODE 2: 4 k-steps of a column
//                                    (load_b4k; stride 1 along k, K % 4 == 0)
//   fn load_a4(batch, row, k4) -> vec4<f32>   A[batch, row, 4 k4 .. 4 k4 + 3]      (A_MODE 1)
//   fn load_a4m(batch, r4, k) -> vec4<f32>    A[batch, 4 r4 .. 4 r4 + 3, k]        (A_MODE 2)
//   fn load_b4(batch, k, c4) -> vec4<f32>     B[batch, k, 4 c4 .. 4 c4 + 3]        (B_MODE 1)
//   fn load_b4k(batch, col, k4) -> vec4<f32>  B[batch, 4 k4 .. 4 k4 + 3, col]      (B_MODE 2)
// The 4-aligned conditions make a vec4 group lie wholly inside or wholly outside the matrix, so
// an edge tile checks each group once.
//
// Design (see docs/DESIGN.md, "The two kernel families"): the 2D block tiling of the published
// WGSL kernels (gpu.cpp's "2D blocktiling with vectorization", wgpu-mm after Bram Wasti's M1
// kernel, Simon Boehm's CUDA kernel 5):
// - A workgroup of WG_X x WG_Y = 8 x 8 = 64 invocations computes a TILE_M x TILE_N = 64 x 64
//   block of one batch, stepping over K in TILE_K = 16 slices staged through workgroup memory.
// - Each invocation holds an 8 x 8 block of outputs in 16 vec4 registers: rows
//   row0 + 8 ty .. + 7, columns col0 + 8 tx .. + 7. Per k step it reads 2 vec4 of A and 2 of B
//   from workgroup memory and does 16 vec4 FMAs (64 multiply-adds for 4 loads).
// - Staging: every invocation loads 4 vec4 (or 16 scalars) of each operand per slice; plain
//   operands load as vec4 from storage, others through load_a/load_b (views, windows, fused
//   prologues). Interior tiles (the whole 64 x 64 x 16 slice in range, uniform per workgroup)
//   skip the bounds checks; edge tiles check and stage 0 outside.
// - Epilogue through workgroup memory: after the K loop the 64 x 64 block is written to the
//   same workgroup array and read back so that consecutive invocations store consecutive
//   columns (coalesced stores, coalesced epilogue reads of a bias or batch-norm vectors), in a
//   rolled loop that calls store_out once: the fused epilogue is compiled once, not 64 times.
//
// Workgroup memory: 1,024 vec4 = 16 KiB (WebGPU's default limit): A slice at 0..255 (transposed:
// smem[kk * 16 + r4] holds rows 4 r4 .. 4 r4 + 3 at slice column kk), B slice at 256..511
// (smem[256 + kk * 16 + c4] holds columns 4 c4 .. 4 c4 + 3 at slice row kk); the whole array
// holds the finished 64 x 64 block (row-major, 16 vec4 per row) for the epilogue.
//
// Dispatch (host): ceil(N / 64) * ceil(M / 64) * BATCH workgroups, spread over x, y and z (at
// most 65,535 each); tile_of folds the workgroup id back into (column tile, row tile, batch),
// column tiles fastest.

// @kiln:generated-begin
const BATCH: u32 = 2u;
const M: u32 = 100u;
const N: u32 = 70u;
const K: u32 = 50u;
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
// @kiln:generated-end

const TILE_M: u32 = 64u;      // output rows per workgroup
const TILE_N: u32 = 64u;      // output columns per workgroup
const TILE_K: u32 = 16u;      // K slice staged in workgroup memory
const WG_X: u32 = 8u;         // invocations along columns (8 columns each)
const WG_Y: u32 = 8u;         // invocations along rows (8 rows each)
const WG_SIZE: u32 = 64u;     // WG_X * WG_Y
const B_OFF: u32 = 256u;      // where the B slice starts in smem (TILE_K * TILE_M / 4)

var<workgroup> smem: array<vec4<f32>, 1024>;

// Stages the K slice k0 .. k0 + TILE_K of the tile at (row0, col0) into smem; `checked` (uniform
// in the workgroup) is false for interior slices, which skip the bounds checks.
fn stage(batch: u32, row0: u32, col0: u32, k0: u32, li: u32, checked: bool) {
    // A: 64 rows x 16 k = 256 vec4 (4 per invocation) or 1,024 values (16 per invocation).
    if (A_MODE == 1u) {
        for (var i = 0u; i < 4u; i++) {
            let e = li + i * WG_SIZE;          // (row, k group): 4 k groups per row
            let r = e / 4u;
            let kk = 4u * (e % 4u);
            var v = vec4<f32>(0.0);
            if (!checked || (row0 + r < M && k0 + kk < K)) { v = load_a4(batch, row0 + r, (k0 + kk) / 4u); }
            smem[kk * 16u + r / 4u][r % 4u] = v.x;
            smem[(kk + 1u) * 16u + r / 4u][r % 4u] = v.y;
            smem[(kk + 2u) * 16u + r / 4u][r % 4u] = v.z;
            smem[(kk + 3u) * 16u + r / 4u][r % 4u] = v.w;
        }
    } else if (A_MODE == 2u) {
        for (var i = 0u; i < 4u; i++) {
            let e = li + i * WG_SIZE;          // (k, row group): 16 row groups per k
            let kk = e / 16u;
            let r4 = e % 16u;
            var v = vec4<f32>(0.0);
            if (!checked || (row0 + 4u * r4 < M && k0 + kk < K)) { v = load_a4m(batch, row0 / 4u + r4, k0 + kk); }
            smem[kk * 16u + r4] = v;
        }
    } else {
        for (var i = 0u; i < 16u; i++) {
            let e = li + i * WG_SIZE;          // consecutive invocations: consecutive k
            let r = e / TILE_K;
            let kk = e % TILE_K;
            var v = 0.0;
            if (!checked || (row0 + r < M && k0 + kk < K)) { v = load_a(batch, row0 + r, k0 + kk); }
            smem[kk * 16u + r / 4u][r % 4u] = v;
        }
    }
    // B: 16 k x 64 columns.
    if (B_MODE == 1u) {
        for (var i = 0u; i < 4u; i++) {
            let e = li + i * WG_SIZE;          // (k, column group): 16 column groups per k
            let kk = e / 16u;
            let c4 = e % 16u;
            var v = vec4<f32>(0.0);
            if (!checked || (col0 + 4u * c4 < N && k0 + kk < K)) { v = load_b4(batch, k0 + kk, col0 / 4u + c4); }
            smem[B_OFF + kk * 16u + c4] = v;
        }
    } else if (B_MODE == 2u) {
        for (var i = 0u; i < 4u; i++) {
            let e = li + i * WG_SIZE;          // (column, k group): 4 k groups per column
            let c = e / 4u;
            let kk = 4u * (e % 4u);
            var v = vec4<f32>(0.0);
            if (!checked || (col0 + c < N && k0 + kk < K)) { v = load_b4k(batch, col0 + c, (k0 + kk) / 4u); }
            smem[B_OFF + kk * 16u + c / 4u][c % 4u] = v.x;
            smem[B_OFF + (kk + 1u) * 16u + c / 4u][c % 4u] = v.y;
            smem[B_OFF + (kk + 2u) * 16u + c / 4u][c % 4u] = v.z;
            smem[B_OFF + (kk + 3u) * 16u + c / 4u][c % 4u] = v.w;
        }
    } else {
        for (var i = 0u; i < 16u; i++) {
            let e = li + i * WG_SIZE;          // consecutive invocations: consecutive columns
            let kk = e / TILE_N;
            let c = e % TILE_N;
            var v = 0.0;
            if (!checked || (col0 + c < N && k0 + kk < K)) { v = load_b(batch, k0 + kk, col0 + c); }
            smem[B_OFF + kk * 16u + c / 4u][c % 4u] = v;
        }
    }
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let wg = tile_of(wg_id, nwg);   // (column tile, row tile, batch); uniform in the workgroup
    if (wg.z >= BATCH) { return; }
    let batch = wg.z;
    let row0 = wg.y * TILE_M;
    let col0 = wg.x * TILE_N;
    let interior_mn = row0 + TILE_M <= M && col0 + TILE_N <= N;

    // acc[2 i + h]: row 8 lid.y + i, columns 8 lid.x + 4 h .. + 3.
    var acc: array<vec4<f32>, 16>;
    for (var k0 = 0u; k0 < K; k0 += TILE_K) {
        stage(batch, row0, col0, k0, li, !(interior_mn && k0 + TILE_K <= K));
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let a_lo = smem[kk * 16u + 2u * lid.y];          // rows 8 ty .. + 3 at k
            let a_hi = smem[kk * 16u + 2u * lid.y + 1u];     // rows 8 ty + 4 .. + 7
            let b_lo = smem[B_OFF + kk * 16u + 2u * lid.x];  // columns 8 tx .. + 3 at k
            let b_hi = smem[B_OFF + kk * 16u + 2u * lid.x + 1u];
            let a = array<f32, 8>(a_lo.x, a_lo.y, a_lo.z, a_lo.w, a_hi.x, a_hi.y, a_hi.z, a_hi.w);
            for (var i = 0u; i < 8u; i++) {
                acc[2u * i] = fma(vec4<f32>(a[i]), b_lo, acc[2u * i]);
                acc[2u * i + 1u] = fma(vec4<f32>(a[i]), b_hi, acc[2u * i + 1u]);
            }
        }
        workgroupBarrier();
    }

    // The block, row-major through smem (16 vec4 per row), then stored column-consecutively.
    for (var i = 0u; i < 8u; i++) {
        smem[(8u * lid.y + i) * 16u + 2u * lid.x] = acc[2u * i];
        smem[(8u * lid.y + i) * 16u + 2u * lid.x + 1u] = acc[2u * i + 1u];
    }
    workgroupBarrier();
    for (var t = 0u; t < TILE_M * TILE_N / WG_SIZE; t++) {
        let e = t * WG_SIZE + li;
        let r = row0 + e / TILE_N;
        let c = col0 + e % TILE_N;
        if (r < M && c < N) { store_out(batch, r, c, smem[e / 4u][e % 4u]); }
    }
}
