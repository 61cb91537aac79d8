//! `.npz` (a zip of `.npy` files) reading and writing, for the element
//! types ONNX models take. Fortran-ordered arrays are refused.

use crate::{Array, Result, RuntimeError};
use sculpt_ir::DataType;
use std::io::{Read, Write};
use std::path::Path;

const DESCRS: &[(&str, DataType)] = &[
    ("f4", DataType::F32),
    ("f8", DataType::F64),
    ("f2", DataType::F16),
    ("i8", DataType::I64),
    ("i4", DataType::I32),
    ("i2", DataType::I16),
    ("i1", DataType::I8),
    ("u8", DataType::U64),
    ("u4", DataType::U32),
    ("u2", DataType::U16),
    ("u1", DataType::U8),
    ("b1", DataType::BOOL),
];

fn npz_err(path: &Path, reason: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Npz(format!("{}: {reason}", path.display()))
}

pub fn read_npz(path: &Path) -> Result<Vec<Array>> {
    let meta = std::fs::metadata(path).map_err(|e| npz_err(path, e))?;
    if !meta.is_file() {
        return Err(npz_err(path, "not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(|e| npz_err(path, e))?;
    read_npz_from(file).map_err(|e| npz_err(path, e))
}

/// The arrays of an npz archive read from `reader`. Each entry is read
/// only as far as its npy header and zip entry agree it goes: an archive
/// that declares more than it holds, or holds more than it declares, is
/// refused before the data is read whole.
pub fn read_npz_from(reader: impl Read + std::io::Seek) -> std::result::Result<Vec<Array>, String> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| format!("not an npz archive ({e})"))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
        let name = entry.name().trim_end_matches(".npy").to_string();
        let declared = entry.size();
        let mut bytes = Vec::new();
        // The header first (at most 64 KiB), then exactly what it declares.
        (&mut entry)
            .take(declared.min(1 << 16))
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        let total = npy_len(&bytes).map_err(|e| format!("array '{name}': {e}"))?;
        if total != declared {
            return Err(format!(
                "array '{name}': its header declares {total} bytes, its zip entry {declared}"
            ));
        }
        (&mut entry)
            .take(total - bytes.len() as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        out.push(parse_npy(&name, &bytes).map_err(|e| format!("array '{name}': {e}"))?);
    }
    Ok(out)
}

/// The whole length an npy file declares (header and data), from its
/// first bytes.
fn npy_len(bytes: &[u8]) -> std::result::Result<u64, String> {
    let (dtype, shape, data_start) = npy_header(bytes)?;
    shape
        .iter()
        .try_fold((dtype.bit_width().unwrap_or(8) / 8) as u64, |acc, &d| {
            acc.checked_mul(d as u64)
        })
        .and_then(|n| n.checked_add(data_start as u64))
        .ok_or_else(|| "shape overflows".to_string())
}

/// An npy file's element type, shape and where its data starts.
fn npy_header(bytes: &[u8]) -> std::result::Result<(DataType, Vec<usize>, usize), String> {
    if !bytes.starts_with(b"\x93NUMPY") || bytes.len() < 10 {
        return Err("not a .npy array".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => {
            let b = bytes.get(8..12).ok_or("truncated header")?;
            (u32::from_le_bytes(b.try_into().unwrap()) as usize, 12)
        }
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or("no descr")?;
    let descr = descr
        .trim_start_matches('\'')
        .split('\'')
        .next()
        .unwrap_or("");
    if descr.starts_with('>') {
        return Err(format!("big-endian data ({descr}) is not supported"));
    }
    let code = descr.trim_start_matches(['<', '|', '=']);
    let dtype = DESCRS
        .iter()
        .find(|(d, _)| *d == code)
        .map(|(_, t)| *t)
        .ok_or_else(|| format!("element type '{descr}' is not supported"))?;
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_text = field("shape").ok_or("no shape")?;
    let inner = shape_text
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("");
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape '{shape_text}'"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((dtype, shape, start + header_len))
}

fn parse_npy(name: &str, bytes: &[u8]) -> std::result::Result<Array, String> {
    let (dtype, shape, data_start) = npy_header(bytes)?;
    let data = &bytes[data_start..];
    let want = shape
        .iter()
        .try_fold(dtype.bit_width().unwrap_or(8) / 8, |acc, &d| {
            acc.checked_mul(d)
        })
        .ok_or("shape overflows")?;
    if data.len() != want {
        return Err(format!(
            "holds {} bytes, shape {:?} needs {want}",
            data.len(),
            shape
        ));
    }
    Ok(Array {
        name: name.to_string(),
        dtype,
        shape,
        data: data.to_vec(),
    })
}

fn npy_bytes(a: &Array) -> std::result::Result<Vec<u8>, String> {
    let (code, _) = DESCRS
        .iter()
        .find(|(_, t)| *t == a.dtype)
        .ok_or_else(|| format!("cannot write element type {} to npy", a.dtype))?;
    let prefix = if matches!(*code, "i1" | "u1" | "b1") {
        "|"
    } else {
        "<"
    };
    let shape = match a.shape.len() {
        1 => format!("({},)", a.shape[0]),
        _ => format!(
            "({})",
            a.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{prefix}{code}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(&a.data);
    Ok(out)
}

/// Writes arrays to `path` atomically (temp file, then rename).
pub fn write_npz(path: &Path, arrays: &[Array]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = sculpt_ir::output_tempfile(dir).map_err(|e| npz_err(path, e))?;
    {
        let mut zip = zip::ZipWriter::new(tmp.as_file());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        for a in arrays {
            zip.start_file(format!("{}.npy", a.name), opts)
                .map_err(|e| npz_err(path, e))?;
            let bytes = npy_bytes(a).map_err(|e| npz_err(path, e))?;
            zip.write_all(&bytes).map_err(|e| npz_err(path, e))?;
        }
        zip.finish().map_err(|e| npz_err(path, e))?;
    }
    tmp.persist(path).map_err(|e| npz_err(path, e.error))?;
    Ok(())
}
