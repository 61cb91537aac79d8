//! Element codecs: the one place that turns ONNX's little-endian packed
//! bytes into numbers and back, for every element type sculpt computes
//! with. Floats go through f64 (f32, f64, f16, bf16); integers through
//! i64 (8 to 64 bits, bool, and the packed 4-bit types, two to a byte,
//! low nibble first, as ONNX stores them).

use crate::DataType;

/// The f32 an IEEE half holds.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            let shift = m.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | (((m << shift) & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// The IEEE half nearest `x` (ties to even), as bits.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1 << (shift - 1);
        let rem = m & ((1 << shift) - 1);
        let mut r = (m >> shift) as u16;
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r;
    }
    let rem = mant & 0x1fff;
    let mut r = sign | ((e as u16) << 10) | (mant >> 13) as u16;
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    r
}

/// The f32 a bfloat16 holds.
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// The bfloat16 nearest `x` (ties to even), as bits.
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7FFF + ((bits >> 16) & 1);
    ((bits + rounding) >> 16) as u16
}

/// Element types [`decode_floats`] and [`encode_floats`] take.
pub fn is_codec_float(dtype: DataType) -> bool {
    matches!(
        dtype,
        DataType::F32 | DataType::F64 | DataType::F16 | DataType::BF16
    )
}

/// Element types [`decode_ints`] and [`encode_ints`] take.
pub fn is_codec_int(dtype: DataType) -> bool {
    dtype.is_integer() || matches!(dtype, DataType::I4 | DataType::U4)
}

/// `count` float elements of `dtype` from packed bytes.
pub fn decode_floats(dtype: DataType, raw: &[u8]) -> Option<Vec<f64>> {
    let two = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
    Some(match dtype {
        DataType::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        DataType::F64 => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        DataType::F16 => raw
            .chunks_exact(2)
            .map(|c| f16_to_f32(two(c)) as f64)
            .collect(),
        DataType::BF16 => raw
            .chunks_exact(2)
            .map(|c| bf16_to_f32(two(c)) as f64)
            .collect(),
        _ => return None,
    })
}

/// Packed bytes of `values` as `dtype` (rounded to nearest, ties to even).
pub fn encode_floats(dtype: DataType, values: impl IntoIterator<Item = f64>) -> Option<Vec<u8>> {
    let values = values.into_iter();
    let mut raw = Vec::with_capacity(values.size_hint().0 * 4);
    match dtype {
        DataType::F32 => values.for_each(|x| raw.extend((x as f32).to_le_bytes())),
        DataType::F64 => values.for_each(|x| raw.extend(x.to_le_bytes())),
        DataType::F16 => values.for_each(|x| raw.extend(f32_to_f16(x as f32).to_le_bytes())),
        DataType::BF16 => values.for_each(|x| raw.extend(f32_to_bf16(x as f32).to_le_bytes())),
        _ => return None,
    }
    Some(raw)
}

/// `count` integer (or bool) elements of `dtype` from packed bytes.
pub fn decode_ints(dtype: DataType, raw: &[u8], count: usize) -> Option<Vec<i64>> {
    let v = match dtype {
        DataType::I64 => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        DataType::U64 => raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")) as i64)
            .collect(),
        DataType::I32 => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        DataType::U32 => raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        DataType::I16 => raw
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
            .collect(),
        DataType::U16 => raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
            .collect(),
        DataType::I8 => raw.iter().map(|&b| b as i8 as i64).collect(),
        DataType::U8 | DataType::BOOL => raw.iter().map(|&b| b as i64).collect(),
        DataType::I4 | DataType::U4 => {
            let signed = dtype == DataType::I4;
            (0..count)
                .map(|i| {
                    let byte = raw[i / 2];
                    let nibble = if i % 2 == 0 { byte & 0xF } else { byte >> 4 };
                    if signed && nibble >= 8 {
                        nibble as i64 - 16
                    } else {
                        nibble as i64
                    }
                })
                .collect()
        }
        _ => return None,
    };
    Some(v)
}

/// Packed bytes of `values` as the integer type `dtype` (values are
/// wrapped to the type's width; 4-bit values two to a byte, low first).
pub fn encode_ints(dtype: DataType, values: &[i64]) -> Option<Vec<u8>> {
    let mut raw = Vec::with_capacity(values.len() * 8);
    match dtype {
        DataType::I64 | DataType::U64 => values.iter().for_each(|&x| raw.extend(x.to_le_bytes())),
        DataType::I32 | DataType::U32 => values
            .iter()
            .for_each(|&x| raw.extend((x as i32).to_le_bytes())),
        DataType::I16 | DataType::U16 => values
            .iter()
            .for_each(|&x| raw.extend((x as i16).to_le_bytes())),
        DataType::I8 | DataType::U8 => values.iter().for_each(|&x| raw.push(x as u8)),
        DataType::BOOL => values.iter().for_each(|&x| raw.push((x != 0) as u8)),
        DataType::I4 | DataType::U4 => {
            for pair in values.chunks(2) {
                let lo = (pair[0] & 0xF) as u8;
                let hi = pair.get(1).map_or(0, |&x| (x & 0xF) as u8);
                raw.push(lo | (hi << 4));
            }
        }
        _ => return None,
    }
    Some(raw)
}

/// Numeric elements as f64 (floats exactly, integers converted).
pub fn decode_f64(dtype: DataType, raw: &[u8], count: usize) -> Option<Vec<f64>> {
    decode_floats(dtype, raw).or_else(|| {
        decode_ints(dtype, raw, count).map(|v| v.into_iter().map(|x| x as f64).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_round_trip_and_round_to_even() {
        for x in [0.0f32, -1.5, 65504.0, f32::INFINITY] {
            assert_eq!(f16_to_f32(f32_to_f16(x)), x);
        }
        // 1e-7 lies between the subnormal halves 1 and 2 (units of 2^-24), nearer 2.
        assert_eq!(f32_to_f16(1e-7), 2);
        assert_eq!(bf16_to_f32(f32_to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(bf16_to_f32(f32_to_bf16(3.0)), 3.0);
    }

    #[test]
    fn four_bit_values_pack_two_to_a_byte() {
        let v = [-8i64, 7, -1, 0, 3];
        let raw = encode_ints(DataType::I4, &v).unwrap();
        assert_eq!(raw, vec![0x78, 0x0F, 0x03]);
        assert_eq!(decode_ints(DataType::I4, &raw, 5).unwrap(), v);
        let u = [15i64, 0, 9];
        let raw = encode_ints(DataType::U4, &u).unwrap();
        assert_eq!(decode_ints(DataType::U4, &raw, 3).unwrap(), u);
    }
}
