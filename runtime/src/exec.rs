//! Execution on tract. A [`Session`] is built once from an IR model and the
//! shapes of the inputs it will run on, then run any number of times.

use crate::{Array, Result, RuntimeError};
use sculpt_ir::{DataType, Dim, Model, Type};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use tract_onnx::prelude::*;

pub struct Session {
    plan: Arc<TypedRunnableModel>,
    input_names: Vec<String>,
    output_names: Vec<String>,
    lookups: Vec<Lookup>,
}

/// A model input that a Gather reads as indices into a constant table
/// (token ids): values out of the table are refused before tract runs.
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

fn datum(dt: DataType) -> Option<DatumType> {
    Some(match dt {
        DataType::F32 => DatumType::F32,
        DataType::F64 => DatumType::F64,
        DataType::F16 => DatumType::F16,
        DataType::I64 => DatumType::I64,
        DataType::I32 => DatumType::I32,
        DataType::I16 => DatumType::I16,
        DataType::I8 => DatumType::I8,
        DataType::U8 => DatumType::U8,
        DataType::U16 => DatumType::U16,
        DataType::U32 => DatumType::U32,
        DataType::U64 => DatumType::U64,
        DataType::BOOL => DatumType::Bool,
        _ => return None,
    })
}

fn dtype_of(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::F32 => DataType::F32,
        DatumType::F64 => DataType::F64,
        DatumType::F16 => DataType::F16,
        DatumType::I64 => DataType::I64,
        DatumType::I32 => DataType::I32,
        DatumType::I16 => DataType::I16,
        DatumType::I8 => DataType::I8,
        DatumType::U8 => DataType::U8,
        DatumType::U16 => DataType::U16,
        DatumType::U32 => DataType::U32,
        DatumType::U64 => DataType::U64,
        DatumType::Bool => DataType::BOOL,
        _ => return None,
    })
}

fn tract_err(stage: &'static str) -> impl Fn(TractError) -> RuntimeError {
    move |e| RuntimeError::Tract {
        stage,
        message: format!("{e:#}").lines().next().unwrap_or("").to_string(),
    }
}

/// The array given for model input `name`.
/// How many [`guarded`] calls are under way (on any thread).
static GUARDED_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Calls into tract, which asserts (panics) on some malformed models
/// rather than returning an error: a panic becomes an error of `stage`,
/// and its message is not printed. tract's worker threads panic where
/// the caller's flag cannot be seen, so the panic hook stays quiet while
/// any guarded call is under way.
fn guarded<T>(stage: &'static str, call: impl FnOnce() -> TractResult<T>) -> Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED_CALLS.load(Ordering::SeqCst) == 0 {
                previous(info);
            }
        }));
    });
    GUARDED_CALLS.fetch_add(1, Ordering::SeqCst);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
    GUARDED_CALLS.fetch_sub(1, Ordering::SeqCst);
    match outcome {
        Ok(result) => result.map_err(tract_err(stage)),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            // tract's errors may carry a backtrace after the message.
            let message = message.lines().next().unwrap_or_default().to_string();
            Err(RuntimeError::Tract {
                stage,
                message: format!("tract failed an internal check ({message}); the model or its inputs hold something tract cannot compute"),
            })
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

/// tract treats `value_info` as facts to unify with; symbolic dims there
/// would clash with the concrete input shapes, so intermediates go untyped
/// and tract infers them itself; so do the values of If/Loop/Scan bodies
/// but their inputs (a branch's output typed `[N, 8]` clashes with the
/// `[4, 8]` tract computes for a bound `N`).
fn without_intermediate_types(model: &Model) -> Model {
    let mut m = model.clone();
    let keep: Vec<_> = m
        .graph
        .inputs
        .iter()
        .chain(&m.graph.outputs)
        .copied()
        .collect();
    m.graph.clear_types_except(&keep);
    sculpt_ir::ops::infer::for_each_body_typed(&mut m.graph, &mut |body| {
        let inputs = body.inputs.clone();
        body.clear_types_except(&inputs);
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap_or_else(|never| match never {});
    m
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
    /// Prepares `model` to run on inputs shaped like `inputs`.
    pub fn new(model: &Model, inputs: &[Array]) -> Result<Session> {
        let runnable = crate::legalize::for_tract(model)?;
        let bytes = sculpt_ir::onnx::to_bytes(&without_intermediate_types(&runnable));
        Session::from_onnx_bytes(model, &bytes, inputs)
    }

    /// Like [`Session::new`], but hands tract the given serialized form of
    /// `model` (e.g. the original file) instead of sculpt's export.
    pub fn from_onnx_bytes(model: &Model, bytes: &[u8], inputs: &[Array]) -> Result<Session> {
        check_memory(model, inputs, memory_limit())?;
        let mut inference = guarded("load", || tract_onnx::onnx().model_for_read(&mut &*bytes))?;
        let required = required_inputs(model);
        let by_name: HashMap<&str, &Array> = inputs.iter().map(|a| (a.name.as_str(), a)).collect();
        let input_names: Vec<String> = required.iter().map(|(n, _)| n.clone()).collect();
        for (i, name) in input_names.iter().enumerate() {
            let a = given(&by_name, name)?;
            let dt = datum(a.dtype).ok_or_else(|| RuntimeError::Input {
                name: name.clone(),
                reason: format!("element type {} is not supported", a.dtype),
            })?;
            inference
                .set_input_fact(i, InferenceFact::dt_shape(dt, &a.shape))
                .map_err(tract_err("bind the inputs of"))?;
        }
        let typed = guarded("type", || inference.into_typed())?;
        let optimized = guarded("optimize", || typed.into_optimized())?;
        let plan = guarded("plan", || optimized.into_runnable())?;
        Ok(Session {
            plan,
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

    pub fn run(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        let by_name: HashMap<&str, &Array> = inputs.iter().map(|a| (a.name.as_str(), a)).collect();
        for lookup in &self.lookups {
            lookup.check(given(&by_name, &lookup.input)?)?;
        }
        let mut values: TVec<TValue> = tvec![];
        for name in &self.input_names {
            let a = given(&by_name, name)?;
            let dt = datum(a.dtype).expect("checked when the session was built");
            // SAFETY: `a.data` holds `a.len()` elements of `dt` (checked when read).
            let t = unsafe { Tensor::from_raw_dt(dt, &a.shape, &a.data) }
                .map_err(tract_err("read inputs for"))?;
            values.push(t.into_tvalue());
        }
        // tract's matrix products share rayon's pool with sculpt's own
        // parallel work (RAYON_NUM_THREADS sets both).
        let outputs = guarded("run", || {
            tract_linalg::multithread::multithread_tract_scope(
                tract_linalg::multithread::Executor::RayonGlobal,
                || self.plan.run(values),
            )
        })?;
        outputs
            .into_iter()
            .zip(&self.output_names)
            .map(|(t, name)| {
                let mut t = t.into_tensor();
                // tract computes some integer arithmetic as symbolic
                // dims; with every input given they are plain numbers.
                if t.datum_type() == DatumType::TDim {
                    t = t
                        .cast_to::<i64>()
                        .map_err(tract_err("return"))?
                        .into_owned();
                }
                let dtype = dtype_of(t.datum_type()).ok_or_else(|| RuntimeError::Tract {
                    stage: "return",
                    message: format!("output '{name}' has unsupported type {:?}", t.datum_type()),
                })?;
                let data = t.as_bytes().to_vec();
                Ok(Array {
                    name: name.clone(),
                    dtype,
                    shape: t.shape().to_vec(),
                    data,
                })
            })
            .collect()
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
