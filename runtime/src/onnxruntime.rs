//! Models on onnxruntime, through the `ort` crate with the library loaded
//! at run time ([`crate::engine`]). onnxruntime reads every op sculpt
//! writes (contrib ops, 4-bit and bf16 types) as they are, so the model is
//! handed over unchanged: serialized in memory, or through a temporary
//! folder with its weights in a side file when it is too large for one
//! protobuf.

use crate::engine::onnxruntime_environment;
use crate::{Array, Result, RuntimeError};
use ort::value::{DynTensor, DynTensorValueType, TensorElementType};
use sculpt_ir::ops::infer::constant;
use sculpt_ir::{DataType, Model};
use std::sync::Mutex;

pub(crate) struct OrtSession {
    /// onnxruntime runs take the session mutably; each caller thread has
    /// a session of its own, so the lock is never contended.
    session: Mutex<ort::session::Session>,
}

/// Models with more weight bytes than this go to onnxruntime as a file
/// with external data (a protobuf holds at most 2 GiB).
const IN_MEMORY_WEIGHTS: u64 = 1 << 30;

fn failed(stage: &'static str) -> impl Fn(String) -> RuntimeError {
    move |message| RuntimeError::Ort { stage, message }
}

impl OrtSession {
    /// `model` loaded into onnxruntime, run on `threads` threads. Input
    /// types are checked against what onnxruntime can take.
    pub(crate) fn new(
        model: &Model,
        input_names: &[String],
        inputs: &[&Array],
        threads: usize,
    ) -> Result<OrtSession> {
        if let Some(node) = division_trap(model) {
            return Err(RuntimeError::Ort {
                stage: "load",
                message: format!(
                    "integer {node} may trap (a division by zero, or the minimum by -1), which ends the process inside onnxruntime (SIGFPE); run it with --runtime tract"
                ),
            });
        }
        crate::contained(|| OrtSession::load(model, input_names, inputs, threads)).unwrap_or_else(
            |panic| {
                Err(RuntimeError::Ort {
                    stage: "load",
                    message: format!("the ort crate failed an internal check ({panic})"),
                })
            },
        )
    }

    fn load(
        model: &Model,
        input_names: &[String],
        inputs: &[&Array],
        threads: usize,
    ) -> Result<OrtSession> {
        for (name, a) in input_names.iter().zip(inputs) {
            element_type(a.dtype).ok_or_else(|| RuntimeError::Input {
                name: name.clone(),
                reason: format!("element type {} is not supported on onnxruntime", a.dtype),
            })?;
        }
        let environment = onnxruntime_environment()?;
        let load = failed("load");
        let builder = ort::session::Session::builder(environment)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                b.with_log_level(ort::logging::LogLevel::Fatal)
                    .map_err(|e| e.to_string())
            })
            .and_then(|b| {
                b.with_intra_threads(threads.max(1))
                    .map_err(|e| e.to_string())
            })
            .and_then(|b| b.with_inter_threads(1).map_err(|e| e.to_string()));
        let mut builder = builder.map_err(&load)?;
        let session = if model.graph.weight_bytes() <= IN_MEMORY_WEIGHTS {
            builder.commit_from_memory(&sculpt_ir::onnx::to_bytes(model))
        } else {
            let dir = tempfile::tempdir().map_err(|e| load(e.to_string()))?;
            let path = dir.path().join("model.onnx");
            sculpt_ir::onnx::save(model, &path, &Default::default())
                .map_err(|e| load(e.to_string()))?;
            builder.commit_from_file(&path)
        };
        Ok(OrtSession {
            session: Mutex::new(session.map_err(|e| load(e.to_string()))?),
        })
    }

    /// The outputs `output_names` of a run on `inputs` (named
    /// `input_names`).
    pub(crate) fn run(
        &self,
        input_names: &[String],
        inputs: &[&Array],
        output_names: &[String],
    ) -> Result<Vec<Array>> {
        crate::contained(|| self.run_unguarded(input_names, inputs, output_names)).unwrap_or_else(
            |panic| {
                Err(RuntimeError::Ort {
                    stage: "run",
                    message: format!("the ort crate failed an internal check ({panic})"),
                })
            },
        )
    }

    fn run_unguarded(
        &self,
        input_names: &[String],
        inputs: &[&Array],
        output_names: &[String],
    ) -> Result<Vec<Array>> {
        let run = failed("run");
        let feeds = input_names
            .iter()
            .zip(inputs)
            .map(|(name, a)| Ok((name.as_str(), to_tensor(a)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let mut outputs = session.run(feeds).map_err(|e| run(e.to_string()))?;
        output_names
            .iter()
            .map(|name| {
                let value = outputs
                    .remove(name)
                    .ok_or_else(|| run(format!("no output '{name}' came back")))?;
                let tensor = value
                    .downcast::<DynTensorValueType>()
                    .map_err(|e| run(format!("output '{name}': {e}")))?;
                from_tensor(name, &tensor)
            })
            .collect()
    }
}

/// The first integer Div or Mod of the main graph that onnxruntime would
/// end the process on (x86 traps an integer division by zero, and
/// MIN / -1): one whose divisor is not a constant, or a constant holding
/// 0, or -1 where the dividend is a constant holding the type's minimum.
fn division_trap(model: &Model) -> Option<String> {
    let g = &model.graph;
    g.node_ids().into_iter().find_map(|id| {
        let node = g.node(id);
        if !node.is_onnx() || !matches!(node.op_type.as_str(), "Div" | "Mod") {
            return None;
        }
        let (dividend, divisor) = (node.input(0)?, node.input(1)?);
        let dtype = match g.value(divisor).ty.as_ref().and_then(|t| t.dtype()) {
            Some(dtype) => dtype,
            None => constant(g, divisor)?.dtype,
        };
        if !dtype.is_integer() {
            return None;
        }
        let values = |v| constant(g, v).and_then(|t| t.to_i64_vec().ok());
        let minimum = match dtype {
            DataType::I8 => i8::MIN as i64,
            DataType::I16 => i16::MIN as i64,
            DataType::I32 => i32::MIN as i64,
            DataType::I64 => i64::MIN,
            _ => 0,
        };
        let traps = match values(divisor) {
            None => true,
            Some(d) => {
                d.contains(&0)
                    || (minimum != 0
                        && d.contains(&-1)
                        && values(dividend).is_some_and(|n| n.contains(&minimum)))
            }
        };
        traps.then(|| format!("{} '{}'", node.op_type, node.display_name()))
    })
}

/// `a` copied into a tensor onnxruntime owns.
fn to_tensor(a: &Array) -> Result<DynTensor> {
    let ty = element_type(a.dtype).expect("checked when the session was made");
    let shape: Vec<i64> = a.shape.iter().map(|&d| d as i64).collect();
    let mut tensor =
        DynTensor::new(&ort::memory::Allocator::default(), ty, shape).map_err(|e| {
            RuntimeError::Input {
                name: a.name.clone(),
                reason: e.to_string(),
            }
        })?;
    if !a.data.is_empty() {
        // SAFETY: the tensor was just allocated on the CPU for `a`'s type
        // and shape, which `a.data` holds exactly (checked when read).
        unsafe {
            std::ptr::copy_nonoverlapping(
                a.data.as_ptr(),
                tensor.data_ptr_mut().cast::<u8>(),
                a.data.len(),
            );
        }
    }
    Ok(tensor)
}

/// A tensor onnxruntime returned, copied out as output `name`.
fn from_tensor(name: &str, tensor: &DynTensor) -> Result<Array> {
    let ty = *tensor.data_type();
    let dtype = data_type(ty).ok_or_else(|| RuntimeError::Ort {
        stage: "return",
        message: format!("output '{name}' has type {ty:?}, which sculpt does not read"),
    })?;
    let shape: Vec<usize> = tensor.shape().iter().map(|&d| d.max(0) as usize).collect();
    let elements: usize = shape.iter().product();
    let bytes = ty.byte_size(elements).unwrap_or(0);
    let data = match bytes {
        0 => Vec::new(),
        // SAFETY: a CPU tensor of `elements` elements of `ty` holds
        // `bytes` bytes at its data pointer.
        _ => unsafe { std::slice::from_raw_parts(tensor.data_ptr().cast::<u8>(), bytes) }.to_vec(),
    };
    Ok(Array {
        name: name.to_string(),
        dtype,
        shape,
        data,
    })
}

const ELEMENT_TYPES: [(DataType, TensorElementType); 15] = [
    (DataType::F32, TensorElementType::Float32),
    (DataType::F64, TensorElementType::Float64),
    (DataType::F16, TensorElementType::Float16),
    (DataType::BF16, TensorElementType::Bfloat16),
    (DataType::I64, TensorElementType::Int64),
    (DataType::I32, TensorElementType::Int32),
    (DataType::I16, TensorElementType::Int16),
    (DataType::I8, TensorElementType::Int8),
    (DataType::U64, TensorElementType::Uint64),
    (DataType::U32, TensorElementType::Uint32),
    (DataType::U16, TensorElementType::Uint16),
    (DataType::U8, TensorElementType::Uint8),
    (DataType::BOOL, TensorElementType::Bool),
    (DataType::I4, TensorElementType::Int4),
    (DataType::U4, TensorElementType::Uint4),
];

fn element_type(dtype: DataType) -> Option<TensorElementType> {
    ELEMENT_TYPES
        .iter()
        .find(|(d, _)| *d == dtype)
        .map(|&(_, t)| t)
}

fn data_type(ty: TensorElementType) -> Option<DataType> {
    ELEMENT_TYPES
        .iter()
        .find(|(_, t)| *t == ty)
        .map(|&(d, _)| d)
}
