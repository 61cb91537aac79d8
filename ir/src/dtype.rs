//! Element types, numbered as ONNX numbers them (`TensorProto.DataType`).

use std::fmt;

/// An ONNX element type. Unknown codes are kept (and round-trip) as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataType(pub i32);

/// (code, text name, bits per element) for every type ONNX defines.
const TYPES: &[(i32, &str, usize)] = &[
    (0, "undef", 0),
    (1, "f32", 32),
    (2, "u8", 8),
    (3, "i8", 8),
    (4, "u16", 16),
    (5, "i16", 16),
    (6, "i32", 32),
    (7, "i64", 64),
    (8, "string", 0),
    (9, "bool", 8),
    (10, "f16", 16),
    (11, "f64", 64),
    (12, "u32", 32),
    (13, "u64", 64),
    (14, "c64", 64),
    (15, "c128", 128),
    (16, "bf16", 16),
    (17, "f8e4m3fn", 8),
    (18, "f8e4m3fnuz", 8),
    (19, "f8e5m2", 8),
    (20, "f8e5m2fnuz", 8),
    (21, "u4", 4),
    (22, "i4", 4),
    (23, "f4e2m1", 4),
    (24, "f8e8m0", 8),
    (25, "u2", 2),
    (26, "i2", 2),
    (27, "f6e2m3", 6),
    (28, "f6e3m2", 6),
];

impl DataType {
    pub const UNDEFINED: DataType = DataType(0);
    pub const F32: DataType = DataType(1);
    pub const U8: DataType = DataType(2);
    pub const I8: DataType = DataType(3);
    pub const U16: DataType = DataType(4);
    pub const I16: DataType = DataType(5);
    pub const I32: DataType = DataType(6);
    pub const I64: DataType = DataType(7);
    pub const STRING: DataType = DataType(8);
    pub const BOOL: DataType = DataType(9);
    pub const F16: DataType = DataType(10);
    pub const F64: DataType = DataType(11);
    pub const U32: DataType = DataType(12);
    pub const U64: DataType = DataType(13);
    pub const C64: DataType = DataType(14);
    pub const C128: DataType = DataType(15);
    pub const BF16: DataType = DataType(16);
    pub const U4: DataType = DataType(21);
    pub const I4: DataType = DataType(22);

    fn entry(self) -> Option<&'static (i32, &'static str, usize)> {
        TYPES.iter().find(|t| t.0 == self.0)
    }

    /// Bits one element takes in `raw_data`; `None` for strings and unknown codes.
    pub fn bit_width(self) -> Option<usize> {
        self.entry().map(|t| t.2).filter(|&b| b > 0)
    }

    pub fn from_name(name: &str) -> Option<DataType> {
        if let Some(code) = name.strip_prefix("dtype") {
            return code.parse().ok().map(DataType);
        }
        TYPES.iter().find(|t| t.1 == name).map(|t| DataType(t.0))
    }

    /// Integer types and bool (whose values are whole numbers).
    pub fn is_integer(self) -> bool {
        matches!(self.0, 2..=7 | 9 | 12 | 13)
    }

    pub fn is_float(self) -> bool {
        matches!(self.0, 1 | 10 | 11 | 16..=20 | 23 | 24 | 27 | 28)
    }

    /// Number of bytes `count` elements take when packed as ONNX packs them
    /// (sub-byte types two or four to a byte, rounded up).
    pub fn packed_bytes(self, count: u64) -> Option<u64> {
        let bits = self.bit_width()? as u64;
        count.checked_mul(bits).map(|b| b.div_ceil(8))
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry() {
            Some(t) => f.write_str(t.1),
            None => write!(f, "dtype{}", self.0),
        }
    }
}
