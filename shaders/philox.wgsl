// philox.wgsl — counter-based random numbers (Philox4x32-10), the same on every device.
//
// No bindings, no entry point: a library that kiln's code generator appends to kernels that draw
// random numbers (Tensor::rand, Tensor::randn). Element `index` of a random tensor with seed
// (key.x = low 32 bits, key.y = high 32 bits) is a pure function of (index, key), so the CPU
// reference executor (crates/kiln-core/src/rng.rs) draws exactly the same uniform numbers.

// The high and low 32 bits of a * b.
fn kiln_mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    let cross = (lo_lo >> 16u) + (hi_lo & 0xffffu) + lo_hi;
    let hi = hi_hi + (hi_lo >> 16u) + (cross >> 16u);
    return vec2<u32>(hi, a * b);
}

// Philox4x32 with 10 rounds for counter (index, 0, 0, 0).
fn kiln_philox(index: u32, key_in: vec2<u32>) -> vec4<u32> {
    var c = vec4<u32>(index, 0u, 0u, 0u);
    var k = key_in;
    for (var r = 0u; r < 10u; r = r + 1u) {
        let p0 = kiln_mulhilo(0xD2511F53u, c.x);
        let p1 = kiln_mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

// Uniform on [0, 1): the top 24 bits of word 0.
fn kiln_uniform(index: u32, key: vec2<u32>) -> f32 {
    let w = kiln_philox(index, key);
    return f32(w.x >> 8u) * (1.0 / 16777216.0);
}

// Standard normal by Box-Muller from words 0 and 1.
fn kiln_normal(index: u32, key: vec2<u32>) -> f32 {
    let w = kiln_philox(index, key);
    let u1 = f32((w.x >> 8u) + 1u) * (1.0 / 16777216.0);
    let u2 = f32(w.y >> 8u) * (1.0 / 16777216.0);
    return sqrt(-2.0 * log(u1)) * cos(6.2831855 * u2);
}
