//! Element types of tensors, and the Rust types that carry them on the host.

use half::f16;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float (`half::f16` on the host).
    F16,
    /// 32-bit signed integer.
    I32,
    /// 32-bit unsigned integer.
    U32,
    /// Boolean (stored as one 32-bit word per element on the GPU).
    Bool,
}

impl DType {
    /// Bytes one element takes in host memory and in a device buffer (bool: 4 on the device).
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F16 => 2,
            _ => 4,
        }
    }
    /// True for F32 and F16.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }
    /// True for I32 and U32.
    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::U32)
    }
    /// Short lower-case name: "f32", "f16", "i32", "u32", "bool".
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I32 => "i32",
            DType::U32 => "u32",
            DType::Bool => "bool",
        }
    }
    /// Rounds an exact value to what this dtype can hold (the reference executor's rounding).
    pub fn round(self, v: f64) -> f64 {
        match self {
            DType::F32 => v as f32 as f64,
            DType::F16 => f16::from_f64(v).to_f64(),
            DType::I32 => {
                if v.is_nan() {
                    0.0
                } else {
                    (v.trunc() as i32) as f64
                }
            }
            DType::U32 => {
                if v.is_nan() {
                    0.0
                } else {
                    (v.trunc() as u32) as f64
                }
            }
            DType::Bool => {
                if v != 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust type that can be the element of a tensor on the host: `f32`, `f16`, `i32`, `u32`, `bool`.
pub trait Element: Copy + Send + Sync + 'static {
    /// The dtype of tensors made from this type.
    const DTYPE: DType;
    /// The Rust type's name, for error messages.
    const NAME: &'static str;
    /// Exact conversion to f64 (the reference executor's working type).
    fn to_f64(self) -> f64;
    /// Conversion from f64, rounding as the dtype does.
    fn from_f64(v: f64) -> Self;
    /// Appends this value's little-endian device representation to `out`.
    fn write_bytes(self, out: &mut Vec<u8>);
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    const NAME: &'static str = "f32";
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn write_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    const NAME: &'static str = "f16";
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    fn write_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bits().to_le_bytes())
    }
}

impl Element for i32 {
    const DTYPE: DType = DType::I32;
    const NAME: &'static str = "i32";
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as i32
    }
    fn write_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}

impl Element for u32 {
    const DTYPE: DType = DType::U32;
    const NAME: &'static str = "u32";
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as u32
    }
    fn write_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    const NAME: &'static str = "bool";
    fn to_f64(self) -> f64 {
        if self {
            1.0
        } else {
            0.0
        }
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn write_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self as u32).to_le_bytes())
    }
}

/// Decodes one element of `dtype` from its little-endian device bytes into an exact f64.
pub fn decode_f64(dtype: DType, bytes: &[u8]) -> f64 {
    match dtype {
        DType::F32 => f32::from_le_bytes(bytes[..4].try_into().unwrap()) as f64,
        DType::F16 => f16::from_bits(u16::from_le_bytes(bytes[..2].try_into().unwrap())).to_f64(),
        DType::I32 => i32::from_le_bytes(bytes[..4].try_into().unwrap()) as f64,
        DType::U32 => u32::from_le_bytes(bytes[..4].try_into().unwrap()) as f64,
        DType::Bool => (u32::from_le_bytes(bytes[..4].try_into().unwrap()) != 0) as u32 as f64,
    }
}

/// Encodes an f64 as one element of `dtype` in little-endian device bytes.
pub fn encode_f64(dtype: DType, v: f64, out: &mut Vec<u8>) {
    match dtype {
        DType::F32 => (v as f32).write_bytes(out),
        DType::F16 => f16::from_f64(v).write_bytes(out),
        DType::I32 => (v as i32).write_bytes(out),
        DType::U32 => (v as u32).write_bytes(out),
        DType::Bool => (v != 0.0).write_bytes(out),
    }
}
