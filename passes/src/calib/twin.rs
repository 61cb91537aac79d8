//! Twin models: a model and a reference version of it (the model before a
//! pass changed it) in one graph, reading the same inputs, so that one
//! calibration run gives each activation in both, sample for sample. The
//! reference's values are renamed with a prefix; its initializers are
//! shared where the two are the same tensor.

use sculpt_ir::{Graph, IrError, Model, Node, Value, ValueId};
use std::collections::HashMap;

/// What names of the reference model start with in the twin.
pub const REFERENCE_PREFIX: &str = "sculpt.reference/";

/// The name `reference`'s value `name` has in the twin.
pub fn reference_name(name: &str) -> String {
    format!("{REFERENCE_PREFIX}{name}")
}

/// `current` with `reference`'s nodes beside it, reading the same graph
/// inputs (matched by name). Refused where a subgraph of the reference
/// reads outer values by name (they would resolve to the wrong copy).
pub fn twin(current: &Model, reference: &Model) -> Result<Model, IrError> {
    let r = &reference.graph;
    if r.nodes()
        .any(|(_, n)| n.subgraphs().any(|g| !g.captured_names().is_empty()))
    {
        return Err(IrError::Invalid(
            "the reference model has subgraphs that read outer values; it cannot run beside its copy".into(),
        ));
    }
    let mut model = current.clone();
    let g: &mut Graph = &mut model.graph;
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for &v in &r.inputs {
        let name = &r.value(v).name;
        let Some(shared) = g.value_by_name(name) else {
            return Err(IrError::Invalid(format!(
                "the reference model's input '{name}' is not an input of its copy"
            )));
        };
        map.insert(v, shared);
    }
    for (v, value) in r.initializers() {
        if map.contains_key(&v) {
            continue;
        }
        let same = g
            .value_by_name(&value.name)
            .filter(|&c| g.value(c).init == value.init);
        let id = match same {
            Some(c) => c,
            None => {
                let mut copy = Value::new(reference_name(&value.name));
                copy.init = value.init.clone();
                copy.ty = value.ty.clone();
                g.add_value(copy)
            }
        };
        map.insert(v, id);
    }
    for id in r.topo_order()? {
        let n = r.node(id);
        let inputs: Vec<Option<ValueId>> = n
            .inputs()
            .iter()
            .map(|v| v.map(|v| map.get(&v).copied().ok_or(v)).transpose())
            .collect::<Result<_, _>>()
            .map_err(|v| {
                IrError::Invalid(format!(
                    "the reference model's value '{}' has no definition",
                    r.value(v).name
                ))
            })?;
        let outputs: Vec<Option<String>> = n
            .outputs()
            .iter()
            .map(|v| v.map(|v| reference_name(&r.value(v).name)))
            .collect();
        let mut node: Node = n.clone();
        node.name = reference_name(&n.name);
        let new = g.add_node(node, inputs, outputs);
        let produced = g.node(new).outputs().to_vec();
        for (old, new) in n.outputs().iter().zip(produced) {
            if let (Some(old), Some(new)) = (old, new) {
                map.insert(*old, new);
                g.value_mut(new).ty = r.value(*old).ty.clone();
            }
        }
    }
    Ok(model)
}
