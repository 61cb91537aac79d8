//! onnxruntime's `com.microsoft::MatMulNBits` read into plain arrays: the
//! one place that knows how its weight is packed. The runtime widens it
//! for tract from here, and the MLIR back end emits its codes from here.
//!
//! The op computes `A · Wᵀ (+ bias)`, `A: [.., K]`, `W: [N, K]`, with
//! `W[n, k] = (code[n, k] − zero[n, k / block]) · scale[n, k / block]`.
//! Codes are stored as `B: u8 [N, blocks, block · bits / 8]`, the first
//! code of a byte in its low bits; zero points either packed the same way
//! (u8, `ceil(blocks · bits / 8)` bytes per column) or as floats, and
//! `2^(bits − 1)` when absent. `K` need not be a multiple of the block:
//! the last block is padded.

use super::infer::constant;
use crate::{DataType, Graph, IrError, Node, Result, Tensor};

/// A `MatMulNBits` node's constant weight, unpacked.
#[derive(Clone, Debug)]
pub struct NBitsWeight {
    pub k: usize,
    pub n: usize,
    pub bits: usize,
    pub block: usize,
    /// Blocks per column: `ceil(K / block)`.
    pub blocks: usize,
    /// One code per byte, `[N, blocks, block]` (padding included).
    pub codes: Vec<u8>,
    /// `[N, blocks]`.
    pub scales: Vec<f64>,
    /// `[N, blocks]`, as the values the codes are centred on.
    pub zeros: Vec<f64>,
}

impl NBitsWeight {
    /// Reads `node`'s codes, scales and zero points, which must be
    /// constants of the sizes its `K`, `N`, `bits` and `block_size` give.
    /// `g_idx` (an act-order permutation) is refused.
    pub fn read(g: &Graph, node: &Node) -> Result<NBitsWeight> {
        let (k, n) = (
            node.int_attr("K", 0) as usize,
            node.int_attr("N", 0) as usize,
        );
        let bits = node.int_attr("bits", 4) as usize;
        let block = node.int_attr("block_size", 0) as usize;
        if k == 0 || n == 0 || block == 0 {
            return Err(IrError::node(node, "K, N and block_size must be set"));
        }
        if !matches!(bits, 2 | 4 | 8) {
            return Err(IrError::node(node, format!("{bits}-bit codes (2, 4, 8)")));
        }
        if node.input(4).is_some() {
            return Err(IrError::node(node, "a g_idx input (act-order)"));
        }
        let blocks = k.div_ceil(block);
        let input = |slot: usize, what: &str| {
            node.input(slot)
                .and_then(|v| constant(g, v))
                .ok_or_else(|| IrError::node(node, format!("its {what} are not constants")))
        };
        let packed = input(1, "codes")?;
        if packed.dtype != DataType::U8 {
            return Err(IrError::node(node, "codes that are not u8"));
        }
        let packed = packed.raw_bytes()?;
        let per_byte = 8 / bits;
        let unpack = |bytes: &[u8], i: usize| -> Option<u8> {
            let byte = *bytes.get(i / per_byte)?;
            Some((byte >> ((i % per_byte) * bits)) & ((1u16 << bits) - 1) as u8)
        };
        let count = n * blocks * block;
        let codes: Vec<u8> = (0..count)
            .map(|i| unpack(&packed, i))
            .collect::<Option<_>>()
            .ok_or_else(|| IrError::node(node, "fewer codes than N · blocks · block_size"))?;
        let scales = input(2, "scales")?.to_f64_vec()?;
        if scales.len() != n * blocks {
            return Err(IrError::node(node, "scales are not N · blocks values"));
        }
        let zeros = match node.input(3) {
            None => vec![(1u32 << (bits - 1)) as f64; n * blocks],
            Some(_) => {
                let z = input(3, "zero points")?;
                if z.dtype == DataType::U8 {
                    let bytes = z.raw_bytes()?;
                    let per_column = blocks.div_ceil(per_byte);
                    (0..n * blocks)
                        .map(|i| {
                            let (column, b) = (i / blocks, i % blocks);
                            bytes
                                .get(column * per_column..)
                                .and_then(|c| unpack(c, b))
                                .map(f64::from)
                        })
                        .collect::<Option<_>>()
                        .ok_or_else(|| IrError::node(node, "fewer zero points than N · blocks"))?
                } else {
                    let v = z.to_f64_vec()?;
                    if v.len() != n * blocks {
                        return Err(IrError::node(node, "zero points are not N · blocks values"));
                    }
                    v
                }
            }
        };
        Ok(NBitsWeight {
            k,
            n,
            bits,
            block,
            blocks,
            codes,
            scales,
            zeros,
        })
    }

    /// The weight as `[K, N]` f32 values (MatMul's right operand).
    pub fn dequantized(&self) -> Tensor {
        let mut values = vec![0f32; self.k * self.n];
        for j in 0..self.n {
            for i in 0..self.k {
                let b = i / self.block;
                let at = j * self.blocks + b;
                let code = self.codes[at * self.block + i % self.block] as f64;
                values[i * self.n + j] = ((code - self.zeros[at]) * self.scales[at]) as f32;
            }
        }
        Tensor::from_f32(vec![self.k as i64, self.n as i64], &values)
    }
}
