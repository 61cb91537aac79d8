//! The verifier. It accumulates every problem it finds rather than stopping
//! at the first, and names the graph and node of each. Checks:
//!
//! 1. every node input and graph output is a live value of this graph;
//! 2. every live value has exactly one definition (graph input,
//!    initializer, node output or outer capture), and names are unique;
//! 3. the recorded producer of each node output is that node;
//! 4. petgraph edges mirror node inputs (no missing or stale edges);
//! 5. the graph is acyclic;
//! 6. initializers hold as much data as their dims say;
//! 7. values whose type is known agree with initializer types;
//! 8. the same, recursively, for subgraphs and function bodies, where
//!    captured names must exist in an enclosing graph.

use crate::{Graph, Initializer, Model, ValueId};
use std::collections::{HashMap, HashSet};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct VerifyError {
    pub location: String,
    pub message: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// All problems found, empty when the model is valid.
pub fn verify_model(model: &Model) -> Vec<VerifyError> {
    let mut errors = Vec::new();
    verify_graph(
        &model.graph,
        &format!("graph '{}'", model.graph.name),
        &[],
        &mut errors,
    );
    for f in &model.functions {
        verify_graph(&f.body, &format!("function '{}'", f.name), &[], &mut errors);
    }
    errors
}

/// Verifies and returns the first problem as an [`crate::IrError`].
pub fn check(model: &Model) -> crate::Result<()> {
    let errors = verify_model(model);
    match errors.len() {
        0 => Ok(()),
        1 => Err(crate::IrError::Invalid(errors[0].to_string())),
        n => Err(crate::IrError::Invalid(format!(
            "{} (and {} more problems)",
            errors[0],
            n - 1
        ))),
    }
}

fn verify_graph(
    g: &Graph,
    location: &str,
    outer: &[HashSet<String>],
    errors: &mut Vec<VerifyError>,
) {
    let mut report = |message: String| {
        errors.push(VerifyError {
            location: location.to_string(),
            message,
        })
    };
    let live = |v: ValueId| v.index() < usize::MAX && !g.value(v).dead;
    let inputs: HashSet<ValueId> = g.inputs.iter().copied().collect();
    let mut names: HashMap<&str, ValueId> = HashMap::new();
    for (id, v) in g.values() {
        if let Some(other) = names.insert(&v.name, id) {
            report(format!(
                "value name '{}' is used by two values ({:?} and {:?})",
                v.name, other, id
            ));
        }
        let defs = inputs.contains(&id) as u8
            + v.producer.is_some() as u8
            + v.outer as u8
            + (v.init.is_some() && !inputs.contains(&id)) as u8;
        if defs == 0 {
            report(format!("value '{}' has no definition", v.name));
        } else if defs > 1 {
            report(format!("value '{}' has {defs} definitions", v.name));
        }
        if v.outer && !outer.iter().any(|s| s.contains(&v.name)) {
            report(format!(
                "value '{}' is captured but no enclosing graph defines it",
                v.name
            ));
        }
        if let Some(Initializer::Dense(t)) = &v.init {
            if let Err(e) = t.check(&v.name) {
                report(e.to_string());
            }
            if let Some(crate::Type::Tensor { dtype, .. }) = &v.ty {
                if *dtype != t.dtype {
                    report(format!(
                        "initializer '{}' is {} but its value type says {dtype}",
                        v.name, t.dtype
                    ));
                }
            }
        }
        if let Some((node, slot)) = v.producer {
            if !g.contains_node(node) || g.node(node).output(slot) != Some(id) {
                report(format!(
                    "value '{}' names a producer that does not define it",
                    v.name
                ));
            }
        }
    }
    for &v in g.inputs.iter().chain(&g.outputs) {
        if !live(v) {
            report(format!(
                "graph input/output '{}' is not a live value",
                g.value(v).name
            ));
        }
    }
    let mut expected_edges = HashSet::new();
    for (id, node) in g.nodes() {
        for v in node.inputs().iter().flatten() {
            if !live(*v) {
                report(format!(
                    "node '{}' reads '{}', which was removed",
                    node.display_name(),
                    g.value(*v).name
                ));
            } else if let Some((p, _)) = g.value(*v).producer {
                expected_edges.insert((p, id, *v));
            }
        }
        for (slot, v) in node.outputs().iter().enumerate() {
            if let Some(v) = v {
                if g.value(*v).producer != Some((id, slot)) {
                    report(format!(
                        "node '{}' output {slot} is not recorded as produced by it",
                        node.display_name()
                    ));
                }
            }
        }
    }
    let actual: HashSet<_> = g.edges().into_iter().collect();
    for e in &expected_edges {
        if !actual.contains(e) {
            report(format!("missing edge for value '{}'", g.value(e.2).name));
        }
    }
    for e in &actual {
        let capture = g.node(e.1).subgraphs().next().is_some();
        if !expected_edges.contains(e) && !capture {
            report(format!("stale edge for value '{}'", g.value(e.2).name));
        }
    }
    if let Err(e) = g.topo_order() {
        report(e.to_string());
    }
    let mut scope: Vec<HashSet<String>> = outer.to_vec();
    scope.push(g.values().map(|(_, v)| v.name.clone()).collect());
    for (_, node) in g.nodes() {
        for sub in node.subgraphs() {
            let loc = format!(
                "{location} > node '{}' body '{}'",
                node.display_name(),
                sub.name
            );
            verify_graph(sub, &loc, &scope, errors);
        }
    }
}
