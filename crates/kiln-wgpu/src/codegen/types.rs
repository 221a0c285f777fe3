//! The WGSL types of kiln's dtypes (in a kernel and in a storage buffer, packed f16 halves
//! without native f16), the conversions between them, literals and NaN tests.

use kiln_core::DType;

/// Whether a tensor of `dtype` is stored as packed f16 halves in `array<u32>` (f16 without
/// native f16 support).
pub fn packed_f16(dtype: DType, f16: bool) -> bool {
    dtype == DType::F16 && !f16
}

/// The WGSL type a value of `dtype` is computed in.
pub fn value_type(dtype: DType, f16: bool) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => {
            if f16 {
                "f16"
            } else {
                "f32"
            }
        }
        DType::I32 => "i32",
        DType::U32 => "u32",
        DType::Bool => "bool",
    }
}

/// The WGSL element type of a storage buffer of `dtype` (two packed halves per `u32` for f16
/// without native f16).
pub fn storage_type(dtype: DType, f16: bool) -> &'static str {
    match dtype {
        DType::Bool => "u32",
        DType::F16 if !f16 => "u32",
        d => value_type(d, f16),
    }
}

/// Converts a stored element (`expr`, of [`storage_type`]) to its value type.
pub fn load_conv(dtype: DType, expr: &str) -> String {
    match dtype {
        DType::Bool => format!("({expr} != 0u)"),
        _ => expr.to_string(),
    }
}

/// Converts a value to its storage type.
pub fn store_conv(dtype: DType, expr: &str) -> String {
    match dtype {
        DType::Bool => format!("select(0u, 1u, {expr})"),
        _ => expr.to_string(),
    }
}

/// A WGSL literal of `v` in the value type of `dtype`.
pub fn literal(v: f64, dtype: DType, f16: bool) -> String {
    match dtype {
        DType::F32 | DType::F16 => {
            let ty = value_type(dtype, f16);
            if v.is_nan() {
                format!("{ty}(bitcast<f32>(0x7fc00000u))")
            } else if v.is_infinite() {
                format!(
                    "{ty}(bitcast<f32>({}u))",
                    if v > 0.0 { "0x7f800000" } else { "0xff800000" }
                )
            } else {
                format!("{ty}({:?})", v as f32)
            }
        }
        DType::I32 => format!("i32({})", v as i32),
        DType::U32 => format!("{}u", v as u32),
        DType::Bool => (v != 0.0).to_string(),
    }
}

/// A WGSL bool expression: is the float `x` (of `dtype`) a NaN? Tested on the bits, because
/// naga compiles `x != x` to an ordered comparison, which is false for NaN.
pub fn is_nan(x: &str, dtype: DType) -> String {
    let bits = match dtype {
        DType::F16 => format!("bitcast<u32>(f32({x}))"),
        _ => format!("bitcast<u32>({x})"),
    };
    format!("(({bits} & 0x7fffffffu) > 0x7f800000u)")
}
