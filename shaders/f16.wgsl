// f16.wgsl — f16 storage without SHADER_F16: conversions between f32 and the bits of an IEEE
// binary16, for kernels on adapters without native f16 (and devices opened with it off). Included
// as helper functions by generated kernels (no bindings, no entry point).
//
// Without native f16 an f16 tensor lives in its buffer as `array<u32>` with two halves per word
// (element 2i in the low 16 bits, 2i + 1 in the high 16 bits: the same bytes as a little-endian
// array of f16), a buffer of an odd number of elements rounded up to whole words. Kernels load an
// element as `kiln_f16_to_f32(buf[i >> 1u] >> ((i & 1u) << 4u))`, compute in f32 and round every
// f16 result with `kiln_round_f16`, so that values overflow and lose precision where native f16
// (and the reference) would. A kernel writes whole words only: two adjacent elements per
// invocation, or f32 into a scratch buffer that a pack kernel converts (two invocations never
// write halves of the same word, so results are deterministic without atomics).
//
// The conversions are integer code rather than pack2x16float/unpack2x16float: WGSL leaves
// pack2x16float of a value outside f16's finite range indeterminate and lets implementations
// flush subnormals, while these round exactly as the `half` crate does on the host
// (round-to-nearest-even, overflow to infinity, subnormals kept, NaN stays NaN with its sign and
// top payload bits).

// The f16 bits (in the low 16 bits) nearest to `x`, ties to even. (Branches, not selects of every
// case: on lavapipe a chain of elementwise f16 ops ran ~10% faster so.)
fn kiln_f32_to_f16(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let sign = (b >> 16u) & 0x8000u;
    let exp = (b >> 23u) & 0xffu;
    let man = b & 0x7fffffu;
    if (exp == 0xffu) {
        // Infinity, or NaN with the quiet bit set and the top payload bits kept.
        return sign | 0x7c00u | select(0u, 0x200u, man != 0u) | (man >> 13u);
    }
    // The exponent of f16 is exp - 127 + 15.
    if (exp >= 143u) {
        return sign | 0x7c00u;
    }
    if (exp <= 112u) {
        // A subnormal f16 (or zero): the 24-bit significand shifted right by 126 - exp.
        if (exp < 102u) {
            return sign;
        }
        let m = man | 0x800000u;
        let shift = 126u - exp;
        let round_bit = 1u << (shift - 1u);
        let up = (m & round_bit) != 0u && (m & (3u * round_bit - 1u)) != 0u;
        return sign | ((m >> shift) + select(0u, 1u, up));
    }
    // A normal f16; a carry out of the significand rounds up into the exponent (to infinity
    // at the top), as it should.
    let h = sign | ((exp - 112u) << 10u) | (man >> 13u);
    let up = (man & 0x1000u) != 0u && (man & 0x2fffu) != 0u;
    return h + select(0u, 1u, up);
}

// The value of the f16 in the low 16 bits of `h` (the high bits are ignored); exact. Branch-free
// (selects), as it runs on every f16 load.
fn kiln_f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let exp = (h >> 10u) & 0x1fu;
    let man = h & 0x3ffu;
    let normal = sign | ((exp + 112u) << 23u) | (man << 13u);
    let inf_nan = sign | 0x7f800000u | (man << 13u);
    // Zero or subnormal: man * 2^-24 (0x33800000), a normal f32 (or zero), then the sign.
    let small = sign | bitcast<u32>(f32(man) * bitcast<f32>(0x33800000u));
    return bitcast<f32>(select(select(normal, small, exp == 0u), inf_nan, exp == 0x1fu));
}

// `x` rounded to the nearest f16 value, as an f32.
fn kiln_round_f16(x: f32) -> f32 {
    return kiln_f16_to_f32(kiln_f32_to_f16(x));
}
