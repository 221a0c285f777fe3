//! WGSL helper functions a generated kernel may need: Philox random numbers, f16 conversions
//! (`shaders/f16.wgsl`) and a sign-correct `pow`.

use super::expr::KernelEnv;

/// The f16 conversions used without native f16.
pub const F16_WGSL: &str = include_str!("../../../../shaders/f16.wgsl");

/// WGSL helpers a kernel may need: Philox random numbers, f16 conversions and a sign-correct
/// `pow`.
pub fn helpers(env: &KernelEnv) -> String {
    let mut s = String::new();
    if env.uses_philox {
        s.push_str(include_str!("../../../../shaders/philox.wgsl"));
        s.push('\n');
    }
    if env.uses_f16 {
        s.push_str(F16_WGSL);
        s.push('\n');
    }
    if env.uses_pow {
        s.push_str(
            "// pow with the rules of C's powf for a zero exponent, a zero base, and negative bases\n\
// with integral exponents (WGSL's pow is undefined for a <= 0).\n\
fn kiln_pow(a: f32, b: f32) -> f32 {\n\
    if (b == 0.0 || a == 1.0) { return 1.0; }\n\
    let odd = b == floor(b) && b - 2.0 * floor(b * 0.5) == 1.0;\n\
    if (a == 0.0) {\n\
        let z = select(0.0, bitcast<f32>(0x7f800000u), b < 0.0);\n\
        return select(z, -z, odd && bitcast<u32>(a) != 0u);\n\
    }\n\
    if (a > 0.0) { return pow(a, b); }\n\
    let r = pow(-a, b);\n\
    if (b != floor(b)) { return bitcast<f32>(0x7fc00000u); }\n\
    return select(r, -r, odd);\n\
}\n",
        );
    }
    s
}
