//! The ONNX backend node suite through the MLIR back end: every case the
//! emitter accepts is lowered, run on the CPU path and compared with the
//! suite's expected outputs. A case is either refused with an error
//! naming the node, or right: never wrong code, never a panic.

use crate::small::host;
use sculpt_codegen::{emit_mlir, CpuModule, Dialect, EmitOptions, MlirContext};
use sculpt_runtime::{Array, Tolerance};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn suite_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ONNX_NODE_TESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/onnx-node-tests/node")
        });
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must fetch the node tests (scripts/fetch-node-tests.sh)"
    );
    eprintln!("skipping: no node tests at {}", dir.display());
    None
}

#[derive(Debug)]
enum Outcome {
    Right,
    Refused(String),
    Wrong(String),
}

/// The inputs that give shapes, axes, sizes, scales or bounds: the suite
/// feeds them as graph inputs, exported models carry them as constants
/// (and the emitter needs them constant).
fn shape_giving(op: &str, slot: usize) -> bool {
    match op {
        "Reshape" | "Expand" | "Tile" | "Squeeze" | "Unsqueeze" | "Split" | "TopK" | "OneHot"
        | "Trilu" | "CumSum" => slot == 1,
        "Slice" | "Pad" | "Resize" | "Clip" => slot >= 1,
        "ConstantOfShape" | "Range" => true,
        op if op.starts_with("Reduce") => slot == 1,
        _ => false,
    }
}

/// `model` with the graph inputs that only give shapes (see
/// [`shape_giving`]) turned into constants holding their test data; the
/// remaining inputs' data.
fn freeze_shape_inputs(
    mut model: sculpt_ir::Model,
    inputs: Vec<Array>,
) -> (sculpt_ir::Model, Vec<Array>) {
    let g = &mut model.graph;
    let mut kept_inputs = Vec::new();
    let mut kept_data = Vec::new();
    for (v, a) in g.inputs.clone().into_iter().zip(inputs) {
        let consumers = g.consumers(v);
        let frozen = !consumers.is_empty()
            && consumers
                .iter()
                .all(|&(node, slot)| shape_giving(&g.node(node).op_type, slot));
        // The array's bytes are already the tensor's raw little-endian data.
        let numeric = matches!(
            a.dtype,
            sculpt_ir::DataType::F32 | sculpt_ir::DataType::I64 | sculpt_ir::DataType::I32
        );
        let tensor = numeric
            .then(|| sculpt_ir::Tensor::from_raw(a.dtype, dims_of(&a), a.data.clone().into()));
        match tensor {
            Some(t) if frozen => {
                g.value_mut(v).init = Some(sculpt_ir::Initializer::Dense(t));
            }
            _ => {
                kept_inputs.push(v);
                kept_data.push(a);
            }
        }
    }
    g.inputs = kept_inputs;
    (model, kept_data)
}

fn dims_of(a: &Array) -> Vec<i64> {
    a.shape.iter().map(|&d| d as i64).collect()
}

fn run_case(case: &std::path::Path, dialect: Dialect) -> Outcome {
    let Ok(model) = sculpt_ir::load(&case.join("model.onnx")) else {
        return Outcome::Refused("not imported".into());
    };
    let Ok((inputs, expected)) = sculpt_runtime::read_test_data_set(case, 0) else {
        return Outcome::Refused("no test data".into());
    };
    let (model, inputs) = freeze_shape_inputs(model, inputs);
    // As `sculpt emit` does: each input bound to the shape of its data,
    // then cleanup, then emission.
    let mut options = EmitOptions {
        dialect,
        ..EmitOptions::default()
    };
    for (&v, a) in model.graph.inputs.iter().zip(&inputs) {
        let dims = a.shape.iter().map(|&d| d as i64).collect();
        options
            .shapes
            .insert(model.graph.value(v).name.clone(), dims);
    }
    let Ok(mut model) = sculpt_codegen::bind_shapes(&model, &options) else {
        return Outcome::Refused("shapes do not bind".into());
    };
    let cleanup = sculpt_passes::Pipeline::parse("cleanup").unwrap();
    if sculpt_passes::PassManager::new(cleanup)
        .unwrap()
        .run(&mut model, |_| {})
        .is_err()
    {
        return Outcome::Refused("cleanup refused the model".into());
    }
    let emitted = match emit_mlir(&model, &options) {
        Ok(e) => e,
        Err(e @ sculpt_codegen::CodegenError::Unsupported { .. })
        | Err(e @ sculpt_codegen::CodegenError::Shape { .. }) => {
            return Outcome::Refused(e.to_string())
        }
        Err(e) => return Outcome::Wrong(format!("emitted a module MLIR rejects: {e}")),
    };
    let context = MlirContext::new();
    let cpu = match CpuModule::compile(&context, &emitted.text, emitted.outputs.clone()) {
        Ok(c) => c,
        Err(e) => return Outcome::Wrong(format!("does not lower: {e}")),
    };
    let args: Vec<_> = inputs.iter().map(host).collect();
    let got = match cpu.run(&args) {
        Ok(g) => g,
        Err(e) => return Outcome::Wrong(e.to_string()),
    };
    let got: Vec<Array> = got
        .into_iter()
        .zip(&expected)
        .map(|(t, e)| Array {
            name: e.name.clone(),
            dtype: t.elem.dtype(),
            shape: t.dims.iter().map(|&d| d as usize).collect(),
            data: t.bytes,
        })
        .collect();
    // Half outputs: each op computes in f32 and rounds once, where the
    // reference may round after every step; a few of the half type's
    // units in the last place apart.
    let tolerance = if expected
        .iter()
        .any(|e| e.dtype == sculpt_ir::DataType::BF16)
    {
        Tolerance {
            rtol: 2e-2,
            atol: 1e-2,
        }
    } else if expected.iter().any(|e| e.dtype == sculpt_ir::DataType::F16) {
        Tolerance {
            rtol: 4e-3,
            atol: 1e-3,
        }
    } else {
        // The ONNX backend runner's own defaults (some references are
        // rounded to four decimals).
        Tolerance {
            rtol: 1e-3,
            atol: 1e-7,
        }
    };
    let cmp = sculpt_runtime::compare(&got, &expected, tolerance);
    if cmp.ok && got.len() == expected.len() {
        Outcome::Right
    } else {
        let worst = cmp
            .outputs
            .iter()
            .map(|o| match &o.problem {
                Some(p) => format!("{}: {p}", o.name),
                None => format!("{}: max abs err {:.3e}", o.name, o.max_abs_err),
            })
            .collect::<Vec<_>>()
            .join(", ");
        Outcome::Wrong(format!("differs from the expected outputs ({worst})"))
    }
}

/// Runs every case in `dialect`; panics listing the wrong ones.
fn suite_in(dialect: Dialect) {
    let Some(dir) = suite_dir() else { return };
    let cases = sculpt_runtime::test_cases(&dir).unwrap();
    let mut right = Vec::new();
    let mut wrong = Vec::new();
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = std::panic::catch_unwind(|| run_case(case, dialect))
            .unwrap_or_else(|_| Outcome::Wrong("panicked".into()));
        // SCULPT_NODE_CASES=<substring>: each matching case's outcome.
        if std::env::var("SCULPT_NODE_CASES").is_ok_and(|f| name.contains(&f)) {
            eprintln!("  {name}: {outcome:?}");
        }
        match outcome {
            Outcome::Right => right.push(name),
            Outcome::Wrong(why) => wrong.push(format!("{name}: {why}")),
            Outcome::Refused(why) => {
                // Group refusals by op and reason, without node names.
                let key = why.split_once("): ").map_or(why.clone(), |(node, reason)| {
                    let op = node.rsplit_once('(').map_or("", |(_, op)| op);
                    format!("{op}: {reason}")
                });
                *refusals.entry(key).or_default() += 1;
            }
        }
    }
    let refused: usize = refusals.values().sum();
    eprintln!(
        "node suite through MLIR ({dialect:?}): {} cases, {} emitted and right, {refused} refused, {} wrong",
        cases.len(),
        right.len(),
        wrong.len()
    );
    let mut common: Vec<_> = refusals.iter().collect();
    common.sort_by(|a, b| b.1.cmp(a.1));
    for (why, count) in common.iter().take(90) {
        eprintln!("  refused {count:4} × {why}");
    }
    assert!(wrong.is_empty(), "wrong results:\n{}", wrong.join("\n"));
    assert!(
        right.len() > 200,
        "suspiciously few cases run: {}",
        right.len()
    );
}

#[test]
fn node_suite_cases_are_refused_or_right_in_linalg() {
    suite_in(Dialect::Linalg);
}

#[test]
fn node_suite_cases_are_refused_or_right_in_tosa() {
    suite_in(Dialect::Tosa);
}
