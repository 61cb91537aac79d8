//! A named n-dimensional array with ONNX element type and raw
//! little-endian bytes: what `.npz` files hold and what models take and give.

use sculpt_ir::DataType;

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
        sculpt_ir::codec::decode_f64(self.dtype, &self.data, self.len())
    }
}
