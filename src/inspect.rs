//! `sculpt inspect`: a model summary as a table or JSON.

use sculpt_ir::ops::{cost, infer};
use sculpt_ir::Model;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Serialize)]
pub struct Io {
    pub name: String,
    pub ty: String,
}

#[derive(Serialize)]
pub struct Summary {
    pub graph: String,
    pub ir_version: i64,
    pub opsets: BTreeMap<String, i64>,
    pub producer: String,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
    pub nodes: usize,
    pub op_histogram: BTreeMap<String, usize>,
    pub params: u64,
    /// Bytes the parameters take as stored (quantized weights at their width).
    pub param_bytes: u64,
    pub weight_bytes: u64,
    pub file_bytes: u64,
    pub flops: u64,
    pub flops_by_op: BTreeMap<String, u64>,
    pub nodes_with_unknown_cost: usize,
    /// The sizes symbolic input dims were given for the FLOPs: by
    /// `--dim`, or 1 for a leading (batch) dim.
    pub bound_dims: BTreeMap<String, i64>,
    /// Symbolic input dims past the leading one that nothing bound:
    /// counted as 1, so that the FLOPs hold at that size only.
    pub unbound_dims: Vec<String>,
    pub functions: usize,
}

fn type_text(ty: Option<&sculpt_ir::Type>) -> String {
    match ty {
        Some(sculpt_ir::Type::Tensor {
            dtype,
            shape: Some(s),
        }) => {
            format!(
                "{dtype}[{}]",
                s.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        Some(sculpt_ir::Type::Tensor { dtype, shape: None }) => format!("{dtype}[*]"),
        Some(sculpt_ir::Type::Other(_)) => "non-tensor".into(),
        None => "?".into(),
    }
}

/// `dims` binds symbolic input dims by name for the FLOPs.
pub fn summarize(model: &Model, file_bytes: u64, dims: &HashMap<String, usize>) -> Summary {
    let mut g = model.graph.clone();
    let _ = infer::infer_graph(&mut g);
    let io = |g: &sculpt_ir::Graph, ids: &[sculpt_ir::ValueId]| -> Vec<Io> {
        ids.iter()
            .filter(|&&v| g.value(v).init.is_none())
            .map(|&v| Io {
                name: g.value(v).name.clone(),
                ty: type_text(infer::value_type(g, v).as_ref()),
            })
            .collect()
    };
    let (inputs, outputs) = (io(&g, &g.inputs), io(&g, &g.outputs));
    // Costs are per sample: symbolic dims bound by name, else to 1.
    let infer::DimBinding {
        bound: bound_dims,
        unbound: unbound_dims,
    } = infer::bind_dims(&mut g, dims);
    let _ = infer::infer_graph(&mut g);
    let mut op_histogram = BTreeMap::new();
    let mut flops_by_op = BTreeMap::new();
    let mut unknown = 0;
    for (id, n) in g.nodes() {
        *op_histogram.entry(n.op_type.clone()).or_insert(0) += 1;
        match cost::node_flops(&g, id) {
            Some(f) => *flops_by_op.entry(n.op_type.clone()).or_insert(0) += f,
            None => unknown += 1,
        }
    }
    Summary {
        graph: g.name.clone(),
        ir_version: model.ir_version,
        opsets: model
            .opset_imports
            .iter()
            .map(|o| {
                (
                    if o.domain.is_empty() {
                        "ai.onnx".into()
                    } else {
                        o.domain.clone()
                    },
                    o.version,
                )
            })
            .collect(),
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string(),
        inputs,
        outputs,
        nodes: g.node_count(),
        flops: flops_by_op.values().sum(),
        op_histogram,
        params: g.param_count(),
        param_bytes: g.param_bytes(),
        weight_bytes: g.weight_bytes(),
        file_bytes,
        flops_by_op,
        nodes_with_unknown_cost: unknown,
        bound_dims,
        unbound_dims,
        functions: model.functions.len(),
    }
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

pub fn table(s: &Summary) -> String {
    let mut out = String::new();
    let opsets: Vec<String> = s.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
    out += &format!(
        "graph      {}  (ir_version {}, opsets: {}, producer: {})\n",
        s.graph,
        s.ir_version,
        opsets.join(", "),
        s.producer
    );
    for i in &s.inputs {
        out += &format!("input      {:<40} {}\n", i.name, i.ty);
    }
    for o in &s.outputs {
        out += &format!("output     {:<40} {}\n", o.name, o.ty);
    }
    out += &format!(
        "size       {} nodes, {} params ({} bytes), {} weight bytes, {} file bytes, {} FLOPs per sample{}{}\n",
        s.nodes,
        human(s.params),
        human(s.param_bytes),
        human(s.weight_bytes),
        human(s.file_bytes),
        human(s.flops),
        if s.unbound_dims.is_empty() {
            String::new()
        } else {
            format!(
                " at {} (bind with --dim NAME=SIZE)",
                s.unbound_dims
                    .iter()
                    .map(|d| format!("{d}=1"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        if s.nodes_with_unknown_cost > 0 {
            format!(" ({} nodes of unknown cost)", s.nodes_with_unknown_cost)
        } else {
            String::new()
        }
    );
    let mut ops: Vec<(&String, &usize)> = s.op_histogram.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    out += &format!("{:<28} {:>6} {:>12}\n", "op", "count", "FLOPs");
    for (op, count) in ops {
        out += &format!(
            "{:<28} {:>6} {:>12}\n",
            op,
            count,
            human(*s.flops_by_op.get(op).unwrap_or(&0))
        );
    }
    out
}

pub fn zig_table(z: &sculpt_passes::analysis::zero_groups::ZeroGroups) -> String {
    use sculpt_passes::analysis::zero_groups::Fix;
    let mut out = String::new();
    let prunable = z.groups.iter().filter(|g| g.prunable).count();
    out += &format!(
        "{} groups, {} prunable; prunable params {} of {} ({:.1}%)\n",
        z.groups.len(),
        prunable,
        human(z.prunable_params),
        human(z.total_params),
        100.0 * z.prunable_params as f64 / z.total_params.max(1) as f64
    );
    out += &format!(
        "{:<4} {:<15} {:>8} {:>10} {:>10}  {}\n",
        "#", "kind", "units", "params/u", "params", "sources"
    );
    for (i, g) in z.groups.iter().enumerate() {
        out += &format!(
            "{:<4} {:<15} {:>8} {:>10} {:>10}  {}\n",
            i,
            g.kind,
            g.channels,
            g.params_per_channel,
            human(g.params_per_channel * g.channels as u64),
            g.sources.join(", "),
        );
        // tensor[axis] for a plain slice, tensor[axis @offset ×block] otherwise.
        let slices: Vec<String> = g
            .members
            .iter()
            .map(|m| {
                let mut at = m.axis.to_string();
                if m.offset > 0 {
                    at += &format!(" @{}", m.offset);
                }
                if m.block > 1 {
                    at += &format!(" x{}", m.block);
                }
                format!("{}[{at}]", m.tensor)
            })
            .collect();
        out += &format!("       slices: {}\n", slices.join(", "));
        let fixes: Vec<String> = g
            .fixes
            .iter()
            .map(|f| match f {
                Fix::Entry {
                    tensor,
                    entry,
                    per_channel,
                } => {
                    format!("{tensor}[{entry}] -= {per_channel}/unit")
                }
                Fix::Attribute {
                    node_output,
                    attribute,
                    entry,
                    per_channel,
                } => format!(
                    "{attribute}{} of the node of '{node_output}' -= {per_channel}/unit",
                    entry.map_or(String::new(), |e| format!("[{e}]"))
                ),
            })
            .collect();
        if !fixes.is_empty() {
            out += &format!("       fixes: {}\n", fixes.join(", "));
        }
        for r in &g.reasons {
            out += &format!("       UNPRUNABLE: {r}\n");
        }
    }
    out
}
