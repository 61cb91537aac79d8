//! What is fuzzed: each target reads bytes the way the CLI reads a file of
//! that kind and goes on as far as the input allows. Errors are answers;
//! only a panic (or an abort) is a crash.

use bytes::Bytes;
use sculpt_passes::{PassManager, Pipeline};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// ONNX protobuf: import, verify, cleanup (folding bounded to 1 MiB a
    /// tensor, so that runs stay fast), export, text form.
    Onnx,
    /// The text form: parse, print, parse again.
    Text,
    /// Pipeline strings: parse, build the passes, run on a small model.
    Pipeline,
    /// npz archives as `--inputs`/`--calib` read them.
    Npz,
}

pub const ALL: [Target; 4] = [Target::Onnx, Target::Text, Target::Pipeline, Target::Npz];

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Onnx => "onnx",
            Target::Text => "text",
            Target::Pipeline => "pipeline",
            Target::Npz => "npz",
        }
    }

    pub fn parse(name: &str) -> Option<Target> {
        ALL.into_iter().find(|t| t.name() == name)
    }

    /// Runs the target on `data`; `Err` says how far it got (not a crash).
    pub fn run(self, data: &[u8]) -> Result<(), String> {
        match self {
            Target::Onnx => onnx(data),
            Target::Text => text(data),
            Target::Pipeline => pipeline(data),
            Target::Npz => sculpt_runtime::read_npz_from(std::io::Cursor::new(data)).map(drop),
        }
    }
}

fn model_through_cleanup(mut model: sculpt_ir::Model) -> Result<(), String> {
    if !sculpt_ir::verify::verify_model(&model).is_empty() {
        return Err("does not verify".into());
    }
    let mut manager = PassManager::new(
        Pipeline::parse("cleanup{fold_limit=1M fold_growth=16M}").map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    manager.run(&mut model, |_| {}).map_err(|e| e.to_string())?;
    let bytes = sculpt_ir::onnx::to_bytes(&model);
    let again = sculpt_ir::onnx::from_bytes(Bytes::from(bytes), None).map_err(|e| e.to_string())?;
    sculpt_ir::text::print(&again, &Default::default());
    Ok(())
}

fn onnx(data: &[u8]) -> Result<(), String> {
    let model = sculpt_ir::onnx::from_bytes(Bytes::copy_from_slice(data), None)
        .map_err(|e| e.to_string())?;
    model_through_cleanup(model)
}

fn text(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let model = sculpt_ir::text::parse(text).map_err(|e| e.to_string())?;
    let printed = sculpt_ir::text::print(&model, &Default::default());
    sculpt_ir::text::parse(&printed).map_err(|e| format!("printed text does not parse: {e}"))?;
    Ok(())
}

/// A graph every pass has something to do with: a Conv, a Gemm head.
const PIPELINE_MODEL: &str = r#"ir_version 8
opset "" 17
graph "g" (%x: f32[1,2,4,4]) -> (%y) {
  init %w = f32[3,2,1,1] [0.5, -1.0, 0.25, 2.0, 0.0, 1.0]
  init %b = f32[3] [0.1, 0.2, 0.3]
  init %v = f32[3,2] [1.0, 0.0, 0.0, 1.0, 0.5, -0.5]
  init %vb = f32[2] [0.25, -0.25]
  %c = Conv(%x, %w, %b)
  %r = Relu(%c)
  %p = GlobalAveragePool(%r)
  %f = Flatten(%p)
  %z = Gemm(%f, %v, %vb)
  %y = Identity(%z)
}
"#;

fn pipeline(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let pipeline = Pipeline::parse(text).map_err(|e| e.to_string())?;
    let mut model = sculpt_ir::text::parse(PIPELINE_MODEL).map_err(|e| e.to_string())?;
    let mut manager = PassManager::new(pipeline).map_err(|e| e.to_string())?;
    manager.run(&mut model, |_| {}).map_err(|e| e.to_string())?;
    Ok(())
}
