//! Constant tensors (initializers and attribute values). Storage is shared
//! and zero-copy: raw data is a [`Bytes`] slice, usually of the memory-mapped
//! model file, so cloning a tensor never copies its payload.

use crate::{codec, DataType, IrError, Result};
use bytes::Bytes;
use std::borrow::Cow;

/// How a tensor's elements are stored, kept exactly as the model stored them
/// so that export reproduces the input.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// `raw_data`: little-endian, packed (sub-byte types share bytes).
    Raw(Bytes),
    Floats(Vec<f32>),
    Int32s(Vec<i32>),
    Int64s(Vec<i64>),
    Doubles(Vec<f64>),
    Uint64s(Vec<u64>),
    Strings(Vec<Bytes>),
}

/// Where a tensor's data lived outside the model file, as `external_data`
/// said. Kept for information; on save the writer decides afresh where data goes.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ExternalSource {
    pub location: String,
    pub offset: u64,
    pub length: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DataType,
    pub dims: Vec<i64>,
    pub data: TensorData,
    pub doc_string: String,
    /// Fields of `TensorProto` the IR does not model (segment,
    /// metadata_props), kept so that they round-trip.
    pub extra: Option<Box<crate::onnx::proto::TensorProto>>,
}

impl Tensor {
    pub fn from_raw(dtype: DataType, dims: Vec<i64>, raw: Bytes) -> Tensor {
        Tensor {
            dtype,
            dims,
            data: TensorData::Raw(raw),
            doc_string: String::new(),
            extra: None,
        }
    }

    pub fn from_f32(dims: Vec<i64>, values: &[f32]) -> Tensor {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::from_raw(DataType::F32, dims, raw.into())
    }

    pub fn from_i64(dims: Vec<i64>, values: &[i64]) -> Tensor {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::from_raw(DataType::I64, dims, raw.into())
    }

    /// Element count, or `None` when a dim is negative or the product overflows.
    pub fn element_count(&self) -> Option<u64> {
        element_count(&self.dims)
    }

    /// Bytes the payload takes when packed as raw data.
    pub fn byte_size(&self) -> u64 {
        match &self.data {
            TensorData::Raw(b) => b.len() as u64,
            TensorData::Strings(s) => s.iter().map(|s| s.len() as u64).sum(),
            _ => self
                .element_count()
                .and_then(|n| self.dtype.packed_bytes(n))
                .unwrap_or(0),
        }
    }

    /// Checks that the stored data holds exactly as many elements as the dims say.
    pub fn check(&self, name: &str) -> Result<()> {
        let count = self
            .element_count()
            .ok_or_else(|| IrError::tensor(name, format!("invalid dims {:?}", self.dims)))?;
        let mismatch = |have: u64, unit: &str, want: u64| {
            IrError::tensor(
                name,
                format!(
                    "declared {} {:?} needs {want} {unit} but the data holds {have}",
                    self.dtype, self.dims
                ),
            )
        };
        match &self.data {
            TensorData::Raw(b) => {
                if self.dtype == DataType::STRING {
                    return Err(IrError::tensor(name, "string tensor stored as raw_data"));
                }
                let want = self.dtype.packed_bytes(count).ok_or_else(|| {
                    IrError::tensor(name, format!("unsupported element type {}", self.dtype))
                })?;
                if b.len() as u64 != want {
                    return Err(mismatch(b.len() as u64, "bytes", want));
                }
            }
            TensorData::Strings(v) => check_len(v.len(), count, &mismatch)?,
            TensorData::Floats(v) => check_len(v.len(), self.typed_count(count, 1, 14), &mismatch)?,
            TensorData::Doubles(v) => {
                check_len(v.len(), self.typed_count(count, 11, 15), &mismatch)?
            }
            TensorData::Int64s(v) => check_len(v.len(), count, &mismatch)?,
            TensorData::Uint64s(v) => check_len(v.len(), count, &mismatch)?,
            TensorData::Int32s(v) => {
                // Sub-byte types pack several elements into each int32 entry.
                let per = match self.dtype.bit_width() {
                    Some(b) if b < 8 => (8 / b) as u64,
                    _ => 1,
                };
                check_len(v.len(), count.div_ceil(per), &mismatch)?
            }
        }
        Ok(())
    }

    /// Complex types store two floats (or doubles) per element.
    fn typed_count(&self, count: u64, real: i32, complex: i32) -> u64 {
        if self.dtype.0 == complex && self.dtype.0 != real {
            count * 2
        } else {
            count
        }
    }

    /// The payload as little-endian packed bytes (borrowed when stored raw).
    pub fn raw_bytes(&self) -> Result<Cow<'_, [u8]>> {
        let bytes: Vec<u8> = match &self.data {
            TensorData::Raw(b) => return Ok(Cow::Borrowed(b)),
            TensorData::Floats(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Doubles(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Int64s(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Uint64s(v) => match self.dtype {
                DataType::U32 => v.iter().flat_map(|x| (*x as u32).to_le_bytes()).collect(),
                _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            },
            TensorData::Int32s(v) => {
                int32_field_to_raw(self.dtype, v, self.element_count().unwrap_or(0))?
            }
            TensorData::Strings(_) => {
                return Err(IrError::tensor("", "string tensors have no raw form"))
            }
        };
        Ok(Cow::Owned(bytes))
    }

    /// Values as f32 when the element type converts losslessly enough for
    /// numeric work (float types and integers, 4-bit ones included).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        if let TensorData::Floats(v) = &self.data {
            if self.dtype == DataType::F32 {
                return Ok(v.clone());
            }
        }
        Ok(self.to_f64_vec()?.into_iter().map(|x| x as f32).collect())
    }

    /// Values as f64 (float types exactly, integers converted).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        let raw = self.raw_bytes()?;
        let count = self.element_count().unwrap_or(0) as usize;
        codec::decode_f64(self.dtype, &raw, count)
            .ok_or_else(|| IrError::tensor("", format!("{} is not a numeric type", self.dtype)))
    }

    /// Values as i64 for integer and boolean element types.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        if let TensorData::Int64s(v) = &self.data {
            return Ok(v.clone());
        }
        let raw = self.raw_bytes()?;
        let count = self.element_count().unwrap_or(0) as usize;
        codec::decode_ints(self.dtype, &raw, count)
            .ok_or_else(|| IrError::tensor("", format!("{} is not an integer type", self.dtype)))
    }

    /// A float tensor of element type `dtype` (f32, f64, f16, bf16)
    /// holding `values`, rounded to nearest.
    pub fn from_floats(dtype: DataType, dims: Vec<i64>, values: &[f64]) -> Result<Tensor> {
        let raw = codec::encode_floats(dtype, values.iter().copied())
            .ok_or_else(|| IrError::tensor("", format!("{dtype} is not a float type")))?;
        Ok(Tensor::from_raw(dtype, dims, raw.into()))
    }

    /// An integer tensor of element type `dtype` holding `values` (4-bit
    /// types packed two to a byte).
    pub fn from_ints(dtype: DataType, dims: Vec<i64>, values: &[i64]) -> Result<Tensor> {
        let raw = codec::encode_ints(dtype, values)
            .ok_or_else(|| IrError::tensor("", format!("{dtype} is not an integer type")))?;
        Ok(Tensor::from_raw(dtype, dims, raw.into()))
    }
}

fn check_len(have: usize, want: u64, mismatch: &dyn Fn(u64, &str, u64) -> IrError) -> Result<()> {
    if have as u64 == want {
        Ok(())
    } else {
        Err(mismatch(have as u64, "elements", want))
    }
}

pub fn element_count(dims: &[i64]) -> Option<u64> {
    dims.iter().try_fold(1u64, |acc, &d| {
        u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// `int32_data` holds 16-bit and narrower types widened to one entry each
/// (4-bit and 2-bit types are packed into each entry's low byte).
fn int32_field_to_raw(dtype: DataType, values: &[i32], count: u64) -> Result<Vec<u8>> {
    let bits = dtype
        .bit_width()
        .ok_or_else(|| IrError::tensor("", format!("{dtype} in int32_data")))?;
    Ok(match bits {
        32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        16 => values
            .iter()
            .flat_map(|v| (*v as u16).to_le_bytes())
            .collect(),
        8 => values.iter().map(|v| *v as u8).collect(),
        _ => {
            let want = dtype.packed_bytes(count).unwrap_or(0) as usize;
            let mut out: Vec<u8> = values.iter().map(|v| *v as u8).collect();
            out.resize(want, 0);
            out
        }
    })
}
