//! A named n-dimensional array with ONNX element type and raw
//! little-endian bytes: what `.npz` files hold and what models take and give.

use sculpt_ir::{f16_to_f32, DataType};

#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub name: String,
    pub dtype: DataType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Array {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn from_f32(name: &str, shape: Vec<usize>, values: &[f32]) -> Array {
        Array {
            name: name.into(),
            dtype: DataType::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// Values as f64, for comparison; `None` for non-numeric types.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        let d = &self.data;
        let v: Vec<f64> = match self.dtype {
            DataType::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            DataType::F64 => d
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            DataType::F16 => d
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])) as f64)
                .collect(),
            DataType::BF16 => d
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64)
                .collect(),
            DataType::I64 => d
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            DataType::I32 => d
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            DataType::I16 => d
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
                .collect(),
            DataType::U16 => d
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as f64)
                .collect(),
            DataType::U32 => d
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            DataType::U64 => d
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            DataType::I8 => d.iter().map(|&b| b as i8 as f64).collect(),
            DataType::U8 | DataType::BOOL => d.iter().map(|&b| b as f64).collect(),
            _ => return None,
        };
        Some(v)
    }
}
