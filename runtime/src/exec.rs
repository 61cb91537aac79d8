//! Execution: a [`Session`] runs a model on the engine asked for (tract
//! or onnxruntime), after the checks both share: every required input
//! given, token ids within the tables they index, and no intermediate
//! value past the machine's memory.

use crate::onnxruntime::OrtSession;
use crate::tract::TractPlan;
use crate::{Array, Engine, Result, RuntimeError};
use sculpt_ir::{DataType, Dim, Model, Type};
use std::collections::HashMap;

/// A model prepared to run on one engine; built once for the shapes of
/// the inputs it will run on, then run any number of times.
pub struct Session {
    backend: Backend,
    input_names: Vec<String>,
    output_names: Vec<String>,
    lookups: Vec<Lookup>,
}

enum Backend {
    Tract(TractPlan),
    Ort(OrtSession),
}

/// A model input that a Gather reads as indices into a constant table
/// (token ids): values out of the table are refused before the model runs.
struct Lookup {
    input: String,
    gather: String,
    rows: i64,
}

/// The inputs of `model` that index constant tables directly.
fn lookups(model: &Model) -> Vec<Lookup> {
    let g = &model.graph;
    let mut found = Vec::new();
    for &input in &g.inputs {
        for (id, slot) in g.consumers(input) {
            let node = g.node(id);
            if slot != 1 || node.op_type != "Gather" || !node.is_onnx() {
                continue;
            }
            let Some(table) = node
                .input(0)
                .and_then(|t| sculpt_ir::ops::infer::constant(g, t))
            else {
                continue;
            };
            let axis = sculpt_ir::normalize_axis(node.int_attr("axis", 0), table.dims.len());
            if let Some(&rows) = axis.and_then(|a| table.dims.get(a)) {
                found.push(Lookup {
                    input: g.value(input).name.clone(),
                    gather: node.display_name().to_string(),
                    rows,
                });
            }
        }
    }
    found
}

impl Lookup {
    fn check(&self, a: &Array) -> Result<()> {
        let Some(values) = a.to_f64() else {
            return Ok(());
        };
        let rows = self.rows as f64;
        match values.iter().find(|&&v| v < -rows || v >= rows) {
            Some(v) => Err(RuntimeError::Input {
                name: self.input.clone(),
                reason: format!(
                    "holds index {v}, out of range for the {} rows that Gather '{}' looks up",
                    self.rows, self.gather
                ),
            }),
            None => Ok(()),
        }
    }
}

fn given<'a>(by_name: &HashMap<&str, &'a Array>, name: &str) -> Result<&'a Array> {
    by_name
        .get(name)
        .copied()
        .ok_or_else(|| RuntimeError::Input {
            name: name.to_string(),
            reason: "no value given for this model input".into(),
        })
}

/// The graph inputs a caller must feed (inputs with initializer defaults
/// are optional and left out).
pub fn required_inputs(model: &Model) -> Vec<(String, Option<Type>)> {
    let g = &model.graph;
    g.inputs
        .iter()
        .filter(|&&v| g.value(v).init.is_none())
        .map(|&v| (g.value(v).name.clone(), g.value(v).ty.clone()))
        .collect()
}

/// Refuses inputs whose inferred intermediate values would need more memory
/// than `limit` bytes, naming the first such value.
fn check_memory(model: &Model, inputs: &[Array], limit: u64) -> Result<()> {
    let mut graph = model.graph.clone();
    for a in inputs {
        if let Some(v) = graph.value_by_name(&a.name) {
            graph.value_mut(v).ty = Some(Type::tensor(
                a.dtype,
                &a.shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
            ));
        }
    }
    sculpt_ir::ops::infer::infer_graph(&mut graph)?;
    for (_, v) in graph.values() {
        let Some(ty) = &v.ty else { continue };
        let (Some(dims), Some(dt)) = (ty.static_dims(), ty.dtype()) else {
            continue;
        };
        if dims.iter().any(|&d| d < 0) {
            continue;
        }
        let bytes = sculpt_ir::element_count(&dims).and_then(|n| dt.packed_bytes(n));
        if bytes.is_none_or(|b| b > limit) {
            let node = v
                .producer
                .map(|(n, _)| graph.node(n).display_name().to_string());
            return Err(RuntimeError::Memory {
                value: v.name.clone(),
                node: node.unwrap_or_else(|| "a graph input".into()),
                shape: dims,
                limit_gib: limit >> 30,
            });
        }
    }
    Ok(())
}

/// Physical memory, as the limit for any one tensor.
fn memory_limit() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(16 << 30, |kb| kb * 1024)
}

impl Session {
    /// Prepares `model` to run on `engine` on inputs shaped like `inputs`,
    /// with all of rayon's threads.
    pub fn new(engine: Engine, model: &Model, inputs: &[Array]) -> Result<Session> {
        Session::with_threads(engine, model, inputs, rayon::current_num_threads())
    }

    /// Like [`Session::new`], on `threads` threads where the engine has a
    /// pool of its own (onnxruntime; tract shares rayon's).
    pub fn with_threads(
        engine: Engine,
        model: &Model,
        inputs: &[Array],
        threads: usize,
    ) -> Result<Session> {
        Session::build(model, inputs, |names, ordered| {
            Ok(match engine {
                Engine::Tract => Backend::Tract(TractPlan::new(model, names, ordered)?),
                Engine::Ort => Backend::Ort(OrtSession::new(model, names, ordered, threads)?),
            })
        })
    }

    /// A tract session of `bytes`, a serialization of `model` handed to
    /// tract as it is (the original file, say, rather than sculpt's
    /// export).
    pub fn tract_from_onnx_bytes(model: &Model, bytes: &[u8], inputs: &[Array]) -> Result<Session> {
        Session::build(model, inputs, |names, ordered| {
            Ok(Backend::Tract(TractPlan::from_bytes(
                bytes, names, ordered,
            )?))
        })
    }

    /// The checks both engines share, then the backend `make` builds for
    /// the required inputs (their names, and the arrays in that order).
    fn build(
        model: &Model,
        inputs: &[Array],
        make: impl FnOnce(&[String], &[&Array]) -> Result<Backend>,
    ) -> Result<Session> {
        check_memory(model, inputs, memory_limit())?;
        let by_name: HashMap<&str, &Array> = inputs.iter().map(|a| (a.name.as_str(), a)).collect();
        let input_names: Vec<String> = required_inputs(model).into_iter().map(|(n, _)| n).collect();
        let ordered = input_names
            .iter()
            .map(|name| given(&by_name, name))
            .collect::<Result<Vec<_>>>()?;
        let backend = make(&input_names, &ordered)?;
        Ok(Session {
            backend,
            lookups: lookups(model),
            input_names,
            output_names: model
                .graph
                .outputs
                .iter()
                .map(|&v| model.graph.value(v).name.clone())
                .collect(),
        })
    }

    /// The runtime this session runs on.
    pub fn engine(&self) -> Engine {
        match self.backend {
            Backend::Tract(_) => Engine::Tract,
            Backend::Ort(_) => Engine::Ort,
        }
    }

    pub fn run(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        let by_name: HashMap<&str, &Array> = inputs.iter().map(|a| (a.name.as_str(), a)).collect();
        for lookup in &self.lookups {
            lookup.check(given(&by_name, &lookup.input)?)?;
        }
        let ordered = self
            .input_names
            .iter()
            .map(|name| given(&by_name, name))
            .collect::<Result<Vec<_>>>()?;
        match &self.backend {
            Backend::Tract(plan) => plan.run(&ordered, &self.output_names),
            Backend::Ort(session) => session.run(&self.input_names, &ordered, &self.output_names),
        }
    }
}

/// The most elements one generated input may have.
const GENERATED_LIMIT: usize = 1 << 28;

/// Deterministic inputs for every required model input: symbolic dims are
/// bound from `dims` (default 1), floats are uniform in [-1, 1), integers
/// are 0 or 1, booleans alternate.
pub fn generate_inputs(
    model: &Model,
    dims: &HashMap<String, usize>,
    seed: u64,
) -> Result<Vec<Array>> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    required_inputs(model)
        .into_iter()
        .map(|(name, ty)| {
            let Some(Type::Tensor {
                dtype,
                shape: Some(shape),
            }) = ty
            else {
                return Err(RuntimeError::Input {
                    name,
                    reason: "type or rank unknown; give inputs with --inputs".into(),
                });
            };
            // Negative dims are how some exporters spell a dynamic one.
            let shape: Vec<usize> = shape
                .iter()
                .map(|d| match d {
                    Dim::Known(v) if *v >= 0 => *v as usize,
                    Dim::Symbol(s) => dims.get(s).copied().unwrap_or(1),
                    Dim::Known(_) | Dim::Unknown => 1,
                })
                .collect();
            let n = shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= GENERATED_LIMIT)
                .ok_or_else(|| RuntimeError::Input {
                    name: name.clone(),
                    reason: format!(
                        "shape {shape:?} is over {GENERATED_LIMIT} elements; give inputs with --inputs or smaller --dim bindings"
                    ),
                })?;
            let data: Vec<u8> = match dtype {
                DataType::F32 => (0..n)
                    .flat_map(|_| ((next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0).to_le_bytes())
                    .collect(),
                DataType::F64 => (0..n)
                    .flat_map(|_| ((next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0).to_le_bytes())
                    .collect(),
                DataType::I64 => (0..n)
                    .flat_map(|_| ((next() & 1) as i64).to_le_bytes())
                    .collect(),
                DataType::I32 => (0..n)
                    .flat_map(|_| ((next() & 1) as i32).to_le_bytes())
                    .collect(),
                DataType::BOOL | DataType::U8 | DataType::I8 => {
                    (0..n).map(|i| (i % 2) as u8).collect()
                }
                other => {
                    return Err(RuntimeError::Input {
                        name,
                        reason: format!(
                            "cannot generate {other} inputs; give inputs with --inputs"
                        ),
                    })
                }
            };
            Ok(Array {
                name,
                dtype,
                shape,
                data,
            })
        })
        .collect()
}
