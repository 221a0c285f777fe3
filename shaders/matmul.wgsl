// matmul.wgsl — batched single-precision matrix multiply, shared-memory tiled (GPU kernel).
//
//   out[b, m, n] = sum_k A[b, m, k] * B[b, k, n]      for b < BATCH, m < M, n < N, k < K
//
// Any BATCH/M/N/K works (not only multiples of the tile): out-of-range tile elements are loaded
// as 0 and out-of-range outputs are not stored.
//
// Generated region (between the @kiln:generated markers; the code generator replaces it):
//   const BATCH, M, N, K: u32        problem size
//   fn tile_of(wg, nwg) -> vec3<u32> (column tile, row tile, batch) of workgroup wg of the
//                                    dispatched grid nwg; a batch >= BATCH does nothing
//   bindings                         whatever the loads and the store need (the default region
//                                    uses @group(0) @binding(0) out_buf (read_write),
//                                    @binding(1) a_buf (read), @binding(2) b_buf (read),
//                                    all array<f32>, row-major, contiguous)
//   fn load_a(batch, row, k) -> f32  A[batch, row, k]; only called with row < M, k < K
//   fn load_b(batch, k, col) -> f32  B[batch, k, col]; only called with k < K, col < N
//   fn store_out(batch, row, col, acc)  writes the finished dot product; row < M, col < N
// The loads may be arbitrary expressions (views, broadcasts, fused prologues): this kernel calls
// load_a and load_b exactly once per element per tile (into shared memory), never in the inner
// loop, and store_out exactly once per output. No optional vec4 entry points are used.
//
// Workgroup shape: @workgroup_size(16, 16, 1) = 256 invocations; one workgroup computes a
// TILE_M x TILE_N = 64 x 64 block of one batch, stepping over K in TILE_K = 16 slices.
// Each invocation computes a 4 x 4 block of outputs (register blocking, 4 vec4 accumulators):
// rows  wg.y*64 + lid.y*4 .. +3,  columns  wg.x*64 + lid.x*4 .. +3.
//
// Dispatch (host): ceil(N / 64) * ceil(M / 64) * BATCH workgroups, spread over x, y and z (at most
//   65,535 each); tile_of folds the workgroup id back into (column tile, row tile, batch),
//   column tiles fastest.
//
// Shared memory: 2 * TILE_K * 64 * 4 bytes = 8 KiB; two barriers per K slice.
// On lavapipe (llvmpipe) prefer matmul_cpu.wgsl: this kernel's per-lane shared-memory traffic and
// barriers make it ~3-4x slower there (see the tuning notes in the kiln matmul bench).

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
// @kiln:generated-end

const TILE_M: u32 = 64u;      // output rows per workgroup
const TILE_N: u32 = 64u;      // output columns per workgroup
const TILE_K: u32 = 16u;      // K slice held in shared memory
const WG_X: u32 = 16u;        // TILE_N / 4: invocations along columns
const WG_Y: u32 = 16u;        // TILE_M / 4: invocations along rows
const WG_SIZE: u32 = 256u;    // WG_X * WG_Y

// a_tile[k * (TILE_M / 4) + r4] = A rows 4*r4 .. 4*r4+3 of the tile at slice column k (transposed,
// so one vec4 read gives an invocation its 4 rows).
var<workgroup> a_tile: array<vec4<f32>, 256>;   // TILE_K * TILE_M / 4
// b_tile[k * (TILE_N / 4) + c4] = B columns 4*c4 .. 4*c4+3 of the tile at slice row k.
var<workgroup> b_tile: array<vec4<f32>, 256>;   // TILE_K * TILE_N / 4

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let wg = tile_of(wg_id, nwg);   // (column tile, row tile, batch); uniform in the workgroup
    if (wg.z >= BATCH) { return; }
    let batch = wg.z;
    let row0 = wg.y * TILE_M;
    let col0 = wg.x * TILE_N;

    var acc0 = vec4<f32>(0.0);   // row lid.y*4 + 0, columns lid.x*4 .. +3
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < K; k0 += TILE_K) {
        // Stage the A and B slices: each invocation loads TILE_M * TILE_K / WG_SIZE = 4 elements of
        // each, consecutive invocations reading consecutive k (A) or columns (B).
        for (var i = 0u; i < TILE_M * TILE_K / WG_SIZE; i++) {
            let e = li + i * WG_SIZE;
            let r = e / TILE_K;
            let kk = e % TILE_K;
            var v = 0.0;
            if (row0 + r < M && k0 + kk < K) { v = load_a(batch, row0 + r, k0 + kk); }
            a_tile[kk * (TILE_M / 4u) + r / 4u][r % 4u] = v;
        }
        for (var i = 0u; i < TILE_N * TILE_K / WG_SIZE; i++) {
            let e = li + i * WG_SIZE;
            let kk = e / TILE_N;
            let c = e % TILE_N;
            var v = 0.0;
            if (col0 + c < N && k0 + kk < K) { v = load_b(batch, k0 + kk, col0 + c); }
            b_tile[kk * (TILE_N / 4u) + c / 4u][c % 4u] = v;
        }
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let a = a_tile[kk * (TILE_M / 4u) + lid.y];   // 4 rows at k
            let b = b_tile[kk * (TILE_N / 4u) + lid.x];   // 4 columns at k
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }

    let r = row0 + lid.y * 4u;
    let c = col0 + lid.x * 4u;
    let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            if (r + i < M && c + j < N) { store_out(batch, r + i, c + j, accs[i][j]); }
        }
    }
}
