//! Models on tract: the model made runnable for it ([`crate::legalize`]),
//! typed for the shapes of the inputs at hand, optimized into a plan, and
//! run with the panics tract raises on malformed models turned into errors.

use crate::{Array, Result, RuntimeError};
use sculpt_ir::{DataType, Model};
use tract_onnx::prelude::*;

pub(crate) struct TractPlan {
    plan: Arc<TypedRunnableModel>,
}

impl TractPlan {
    /// `model` planned for inputs shaped like `inputs`, fed in the order
    /// of `input_names`.
    pub(crate) fn new(
        model: &Model,
        input_names: &[String],
        inputs: &[&Array],
    ) -> Result<TractPlan> {
        let runnable = crate::legalize::for_tract(model)?;
        let bytes = sculpt_ir::onnx::to_bytes(&without_intermediate_types(&runnable));
        TractPlan::from_bytes(&bytes, input_names, inputs)
    }

    /// Like [`TractPlan::new`], from a serialized model handed to tract as
    /// it is.
    pub(crate) fn from_bytes(
        bytes: &[u8],
        input_names: &[String],
        inputs: &[&Array],
    ) -> Result<TractPlan> {
        let mut inference = guarded("load", || tract_onnx::onnx().model_for_read(&mut &*bytes))?;
        for (i, (name, a)) in input_names.iter().zip(inputs).enumerate() {
            let dt = datum(a.dtype).ok_or_else(|| RuntimeError::Input {
                name: name.clone(),
                reason: format!("element type {} is not supported on tract", a.dtype),
            })?;
            inference
                .set_input_fact(i, InferenceFact::dt_shape(dt, &a.shape))
                .map_err(tract_err("bind the inputs of"))?;
        }
        let typed = guarded("type", || inference.into_typed())?;
        let optimized = guarded("optimize", || typed.into_optimized())?;
        let plan = guarded("plan", || optimized.into_runnable())?;
        Ok(TractPlan { plan })
    }

    /// The outputs, named `output_names`, of a run on `inputs` (in the
    /// order the plan was made for).
    pub(crate) fn run(&self, inputs: &[&Array], output_names: &[String]) -> Result<Vec<Array>> {
        let mut values: TVec<TValue> = tvec![];
        for a in inputs {
            let dt = datum(a.dtype).expect("checked when the plan was made");
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
            .zip(output_names)
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
                Ok(Array {
                    name: name.clone(),
                    dtype,
                    shape: t.shape().to_vec(),
                    data: t.as_bytes().to_vec(),
                })
            })
            .collect()
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

/// Calls into tract, which asserts (panics) on some malformed models
/// rather than returning an error: a panic becomes an error of `stage`.
fn guarded<T>(stage: &'static str, call: impl FnOnce() -> TractResult<T>) -> Result<T> {
    match crate::contained(call) {
        Ok(result) => result.map_err(tract_err(stage)),
        Err(message) => Err(RuntimeError::Tract {
            stage,
            message: format!("tract failed an internal check ({message}); the model or its inputs hold something tract cannot compute"),
        }),
    }
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
