//! Mutations of seed inputs: byte-level ones for every target, and
//! structural ones for ONNX models (decoded, changed, encoded again), so
//! that inputs get past the protobuf decoder into the importer and passes.

use crate::Rng;
use prost::Message;
use sculpt_ir::onnx::proto::{self, ModelProto};

/// Values that tend to sit on boundaries.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// One to four byte-level edits of `data`, or a splice with `other`.
pub fn bytes(rng: &mut Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                out[at] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let width = [1, 2, 4, 8][rng.below(4)].min(len - at);
                let value = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                out[at..at + width].copy_from_slice(&value[..width]);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                out.drain(at..at + n);
            }
            4 => {
                let at = rng.below(len + 1);
                let chunk: Vec<u8> = if len > 0 && rng.below(2) == 0 {
                    let from = rng.below(len);
                    out[from..(from + 1 + rng.below(32)).min(len)].to_vec()
                } else {
                    (0..1 + rng.below(16))
                        .map(|_| rng.next_u64() as u8)
                        .collect()
                };
                out.splice(at..at, chunk);
            }
            5 if len > 0 => out.truncate(rng.below(len)),
            _ if !other.is_empty() && len > 0 => {
                let cut = rng.below(len);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    out
}

/// One structural edit of an ONNX model: `None` when `data` does not
/// decode or the model has nothing the chosen edit needs.
pub fn model(rng: &mut Rng, data: &[u8]) -> Option<Vec<u8>> {
    let mut m = ModelProto::decode(data).ok()?;
    let g = m.graph.as_mut()?;
    let names: Vec<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().chain(&n.output).cloned())
        .chain(g.initializer.iter().filter_map(|t| t.name.clone()))
        .collect();
    let pick_name = |rng: &mut Rng| -> String {
        match rng.below(4) {
            0 => "dangling".into(),
            1 => String::new(),
            _ if !names.is_empty() => names[rng.below(names.len())].clone(),
            _ => "x".into(),
        }
    };
    match rng.below(10) {
        0 if !g.node.is_empty() => {
            let at = rng.below(g.node.len());
            g.node.remove(at);
        }
        1 if !g.node.is_empty() => {
            let at = rng.below(g.node.len());
            let node = &mut g.node[at];
            if node.input.is_empty() || rng.below(3) == 0 {
                node.input.push(pick_name(rng));
            } else {
                let slot = rng.below(node.input.len());
                node.input[slot] = pick_name(rng);
            }
        }
        2 if !g.node.is_empty() => {
            let at = rng.below(g.node.len());
            let name = pick_name(rng);
            let node = &mut g.node[at];
            match node.output.first_mut() {
                Some(o) if rng.below(2) == 0 => *o = name,
                _ => node.output.clear(),
            }
        }
        3 if !g.node.is_empty() => {
            const OPS: &[&str] = &[
                "Add",
                "Conv",
                "Gather",
                "Reshape",
                "Transpose",
                "Slice",
                "Concat",
                "Cast",
                "If",
                "Loop",
                "Range",
                "MatMul",
                "Split",
                "Squeeze",
                "Expand",
                "Pad",
                "Resize",
                "TopK",
                "NonZero",
                "ScatterND",
                "Einsum",
                "Unknown",
            ];
            let at = rng.below(g.node.len());
            g.node[at].op_type = Some(OPS[rng.below(OPS.len())].into());
            if rng.below(4) == 0 {
                g.node[at].domain =
                    Some(["com.evil", "com.microsoft", "ai.onnx.ml"][rng.below(3)].into());
            }
        }
        4 if g.node.iter().any(|n| !n.attribute.is_empty()) => {
            let with: Vec<usize> = (0..g.node.len())
                .filter(|&i| !g.node[i].attribute.is_empty())
                .collect();
            let node = &mut g.node[with[rng.below(with.len())]];
            let slot = rng.below(node.attribute.len());
            let a = &mut node.attribute[slot];
            match rng.below(5) {
                0 => a.r#type = Some(rng.below(16) as i32),
                1 => {
                    a.i = Some(
                        INTERESTING[rng.below(INTERESTING.len())] as i64
                            * if rng.below(2) == 0 { -1 } else { 1 },
                    )
                }
                2 => a.ints = (0..rng.below(6)).map(|_| rng.below(9) as i64 - 3).collect(),
                3 => a.f = Some([f32::NAN, f32::INFINITY, -0.0, 1e30][rng.below(4)]),
                _ => {
                    node.attribute.remove(slot);
                }
            }
        }
        5 if !g.initializer.is_empty() => {
            let at = rng.below(g.initializer.len());
            let t = &mut g.initializer[at];
            match rng.below(3) {
                0 if !t.dims.is_empty() => {
                    let d = rng.below(t.dims.len());
                    t.dims[d] = [0, -1, 1 << 40, t.dims[d] + 1][rng.below(4)];
                }
                1 => t.data_type = Some(rng.below(24) as i32),
                _ => t.dims.push(rng.below(3) as i64),
            }
        }
        6 => {
            let version = [0, -1, 1, 7, 13, 21, 99, 1 << 62][rng.below(8)];
            match m.opset_import.first_mut() {
                Some(o) => o.version = Some(version),
                None => m.opset_import.push(proto::OperatorSetIdProto {
                    domain: Some(String::new()),
                    version: Some(version),
                }),
            }
        }
        7 if !g.node.is_empty() => {
            let at = rng.below(g.node.len());
            let copy = g.node[at].clone();
            g.node.insert(rng.below(g.node.len() + 1), copy);
        }
        8 => {
            let name = pick_name(rng);
            match g.output.first_mut() {
                Some(o) => o.name = Some(name),
                None => g.output.push(proto::ValueInfoProto {
                    name: Some(name),
                    ..Default::default()
                }),
            }
        }
        _ => m.ir_version = Some([0, 3, 4, 8, 10, 99][rng.below(6)]),
    }
    Some(m.encode_to_vec())
}
