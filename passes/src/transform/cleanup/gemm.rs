//! MatMul + Add → Gemm: `Add(MatMul(A, B), C)` with A of rank 2, B a
//! constant matrix and C a constant broadcastable to the output's columns
//! (`[N]` or `[1, N]`) becomes `Gemm(A, B, C)`. Not fused: a MatMul whose
//! output anything else reads, batched (rank > 2) inputs, non-float types.

use sculpt_ir::ops::infer::{constant, value_type};
use sculpt_ir::{DataType, Graph, IrError, Node, NodeId};

/// Fuses every eligible pair. Returns how many.
pub fn fuse_matmul_add(graph: &mut Graph) -> Result<u64, IrError> {
    let mut count = 0;
    for add in graph.topo_order()? {
        if graph.contains_node(add) && fuse_one(graph, add).is_some() {
            count += 1;
        }
    }
    Ok(count)
}

fn fuse_one(graph: &mut Graph, add: NodeId) -> Option<()> {
    let node = graph.node(add);
    if node.op_type != "Add" || !node.is_onnx() || node.inputs().len() != 2 {
        return None;
    }
    let out = node.output(0)?;
    let (mm_slot, bias) = [(0, node.input(1)?), (1, node.input(0)?)]
        .into_iter()
        .find(|(slot, _)| {
            node.input(*slot)
                .and_then(|v| graph.value(v).producer)
                .is_some_and(|(p, _)| graph.node(p).op_type == "MatMul" && graph.node(p).is_onnx())
        })?;
    let mm_out = node.input(mm_slot)?;
    let (mm, _) = graph.value(mm_out).producer?;
    if graph.consumers(mm_out).len() != 1
        || graph.outputs.contains(&mm_out)
        || graph.is_captured(mm_out)
    {
        return None;
    }
    let (a, b) = (graph.node(mm).input(0)?, graph.node(mm).input(1)?);
    let a_ty = value_type(graph, a)?;
    if a_ty.shape()?.len() != 2
        || !matches!(a_ty.dtype()?, DataType::F32 | DataType::F64 | DataType::F16)
    {
        return None;
    }
    let b_t = constant(graph, b)?;
    let c_t = constant(graph, bias)?;
    if b_t.dims.len() != 2 || c_t.dtype != b_t.dtype {
        return None;
    }
    let n = b_t.dims[1];
    let c_ok = matches!(c_t.dims.as_slice(), [m] if *m == n)
        || matches!(c_t.dims.as_slice(), [1, m] if *m == n);
    if !c_ok {
        return None;
    }
    let mut gemm = Node::new("Gemm");
    gemm.name = graph.node(mm).name.clone();
    graph.detach_node(add);
    graph.remove_node(mm);
    graph.add_node_defining(gemm, vec![Some(a), Some(b), Some(bias)], vec![Some(out)]);
    Some(())
}
