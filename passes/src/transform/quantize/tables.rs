//! Embedding tables in int4 (or int8): a `Gather` (axis 0) of a constant
//! f32, f16 or bf16 table
//! `[V, D]` becomes a gather of packed 4-bit rows and their block scales
//! and zero points, dequantized after the gather, so that only the rows
//! looked up are ever widened. Standard ONNX ops only (Gather, Cast, Mod,
//! Div, Concat, Reshape, Sub, Mul), which every runtime runs:
//!
//! ```text
//! p = Gather(codes [V, D/2] u8, ids)        two codes a byte, low first
//! c = Concat(Mod(p, 16), Div(p, 16)) → [..., D/block, block], as f32
//! y = (c − Gather(zero_points, ids)) · Gather(scales, ids) → [..., D]
//! ```
//!
//! With 8 bits the codes are a byte each and only cast.
//!
//! The codes are those of [`super::blocks`], with the table's rows as the
//! blocks' columns (blocks run along `D`), rounded to nearest: a lookup has
//! no input statistics to weigh the error with. The dequantization runs in
//! f32 (which every runtime computes); a half-precision table's rows are
//! cast back to its type at the end.

use super::blocks::{quantize, Format, Quantized};
use rayon::prelude::*;
use sculpt_ir::ops::infer::{constant, value_type};
use sculpt_ir::rewrite::{cast_to, Patch};
use sculpt_ir::{AttrValue, Attribute, DataType, Graph, IrError, NodeId, Tensor};

/// A table to quantize: the Gather node, its table and indices.
#[derive(Clone)]
pub struct Table {
    pub node: NodeId,
    pub name: String,
    pub rows: usize,
    pub width: usize,
}

/// The Gathers of constant float tables worth quantizing (at least
/// `min_elements`), and the ones left alone with why.
pub fn find_tables(
    graph: &Graph,
    format: Format,
    min_elements: usize,
) -> (Vec<Table>, Vec<(String, String)>) {
    let (mut tables, mut skipped) = (Vec::new(), Vec::new());
    for (id, n) in graph.nodes() {
        if n.op_type != "Gather" || !n.is_onnx() {
            continue;
        }
        let Some(t) = n.input(0).and_then(|v| constant(graph, v)) else {
            continue;
        };
        let float = matches!(t.dtype, DataType::F32 | DataType::F16 | DataType::BF16);
        if !float || t.dims.len() != 2 {
            continue;
        }
        let (rows, width) = (t.dims[0] as usize, t.dims[1] as usize);
        if rows * width < min_elements {
            continue;
        }
        let name = n.display_name().to_string();
        let why = if n.int_attr("axis", 0) != 0 {
            Some("gathers along the table's columns")
        } else if !width.is_multiple_of(format.block) {
            Some("its width is not a multiple of the block")
        } else if n
            .input(1)
            .and_then(|v| value_type(graph, v))
            .and_then(|t| t.shape().map(|s| s.len()))
            .is_none()
        {
            Some("the rank of its indices is unknown")
        } else {
            None
        };
        match why {
            Some(why) => skipped.push((name, why.to_string())),
            None => tables.push(Table {
                node: id,
                name,
                rows,
                width,
            }),
        }
    }
    (tables, skipped)
}

/// Table rows quantized together (in parallel across such parts).
const ROWS_PER_PART: usize = 2048;

/// The table of `table`'s Gather in int4 (its transpose is what
/// [`quantize`] cuts into blocks along the rows), rows in parallel parts.
pub fn quantize_table(graph: &Graph, table: &Table, format: Format) -> Result<Quantized, IrError> {
    let n = graph.node(table.node);
    let t = constant(graph, n.input(0).expect("a table")).expect("a constant table");
    let values = t.to_f32_vec()?;
    let width = table.width;
    let parts: Vec<Quantized> = values
        .par_chunks(ROWS_PER_PART * width)
        .map(|part| {
            let w =
                faer::Mat::from_fn(width, part.len() / width, |i, j| part[j * width + i] as f64);
            quantize(w.as_ref(), format, None, 0.0)
        })
        .collect();
    Ok(Quantized::columns(parts))
}

/// Replaces `table`'s Gather by the gather-then-dequantize of `q`.
pub fn rewrite(graph: &mut Graph, table: &Table, q: &Quantized) -> Result<(), IrError> {
    let n = graph.node(table.node);
    let dtype = n
        .input(0)
        .and_then(|v| constant(graph, v))
        .map_or(DataType::F32, |t| t.dtype);
    let ids = n.input(1).expect("Gather has indices");
    let out = n.output(0).expect("Gather has an output");
    let rank = value_type(graph, ids)
        .and_then(|t| t.shape().map(|s| s.len()))
        .expect("checked by find_tables");
    let (rows, width, block) = (table.rows, table.width, q.format.block);
    let blocks = width / block;
    let keep = |tail: &[i64]| -> Vec<i64> {
        let mut dims = vec![0i64; rank];
        dims.extend_from_slice(tail);
        dims
    };
    let mut patch = Patch::replacing(graph, table.node);
    let u8_table =
        |dims: Vec<i64>, bytes: Vec<u8>| Tensor::from_raw(DataType::U8, dims, bytes.into());
    // `q` is per row of the table (its columns), blocks along D.
    let per_byte = 8 / q.format.bits as usize;
    let codes = patch.initializer_named(
        if per_byte == 2 { "q4" } else { "q8" },
        u8_table(
            vec![rows as i64, (width / per_byte) as i64],
            q.packed_codes(),
        ),
    );
    let scales = patch.initializer_named(
        "scales",
        Tensor::from_f32(vec![rows as i64, blocks as i64], &q.scales),
    );
    let zeros = patch.initializer_named(
        "zero_points",
        u8_table(vec![rows as i64, blocks as i64], q.zeros.clone()),
    );
    let axis0 = || vec![Attribute::new("axis", AttrValue::Int(0))];
    let packed = patch.node("Gather", &[Some(codes), Some(ids)], axis0());
    let codes = if per_byte == 2 {
        let packed = patch.node("Cast", &[Some(packed)], vec![cast_to(DataType::I32)]);
        let sixteen = patch.initializer(Tensor::from_raw(
            DataType::I32,
            vec![],
            16i32.to_le_bytes().to_vec().into(),
        ));
        let low = patch.node("Mod", &[Some(packed), Some(sixteen)], vec![]);
        let high = patch.node("Div", &[Some(packed), Some(sixteen)], vec![]);
        let low = patch.reshape(low, &keep(&[(width / 2) as i64, 1]))?;
        let high = patch.reshape(high, &keep(&[(width / 2) as i64, 1]))?;
        let last = vec![Attribute::new("axis", AttrValue::Int(-1))];
        patch.node("Concat", &[Some(low), Some(high)], last)
    } else {
        packed
    };
    let codes = patch.reshape(codes, &keep(&[blocks as i64, block as i64]))?;
    let codes = patch.node("Cast", &[Some(codes)], vec![cast_to(DataType::F32)]);
    let zero = patch.node("Gather", &[Some(zeros), Some(ids)], axis0());
    let zero = patch.node("Cast", &[Some(zero)], vec![cast_to(DataType::F32)]);
    let zero = patch.reshape(zero, &keep(&[blocks as i64, 1]))?;
    let scale = patch.node("Gather", &[Some(scales), Some(ids)], axis0());
    let scale = patch.reshape(scale, &keep(&[blocks as i64, 1]))?;
    let centered = patch.node("Sub", &[Some(codes), Some(zero)], vec![]);
    let mut values = patch.node("Mul", &[Some(centered), Some(scale)], vec![]);
    if dtype != DataType::F32 {
        values = patch.node("Cast", &[Some(values)], vec![cast_to(dtype)]);
    }
    let shape = patch.ints(&keep(&[width as i64]));
    patch.define("Reshape", &[Some(values), Some(shape)], vec![], out)?;
    Ok(())
}
