//! The ONNX backend node suite (onnx 1.22.0 test data, fetched by
//! `scripts/fetch-node-tests.sh` into target/onnx-node-tests): every case
//! tract runs correctly before the round-trip still runs correctly after it.

use sculpt_runtime::{Array, Session, Tolerance};
use std::path::{Path, PathBuf};

fn suite_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ONNX_NODE_TESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo().join("target/onnx-node-tests/node"));
    if dir.is_dir() {
        Some(dir)
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must fetch the node tests (scripts/fetch-node-tests.sh)"
        );
        eprintln!(
            "skipping: no node tests at {} (run scripts/fetch-node-tests.sh)",
            dir.display()
        );
        None
    }
}

fn read_pb(path: &Path) -> Option<Array> {
    use prost::Message;
    let proto =
        sculpt_ir::onnx::proto::TensorProto::decode(std::fs::read(path).ok()?.as_slice()).ok()?;
    let (name, t) = sculpt_ir::onnx::import::tensor_from_proto(proto).ok()?;
    Some(Array {
        name,
        dtype: t.dtype,
        shape: t.dims.iter().map(|&d| d as usize).collect(),
        data: t.raw_bytes().ok()?.into_owned(),
    })
}

fn case_arrays(dir: &Path, prefix: &str) -> Option<Vec<Array>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("test_data_set_0"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    files.sort_by_key(|p| {
        p.file_stem()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches(prefix)
            .parse::<usize>()
            .unwrap_or(0)
    });
    files.iter().map(|f| read_pb(f)).collect()
}

/// Runs `bytes` (a serialization of `model`) on tract and compares with the expected outputs.
fn tract_passes(
    model: &sculpt_ir::Model,
    bytes: &[u8],
    inputs: &[Array],
    expected: &[Array],
) -> bool {
    let run = || -> Option<bool> {
        let mut inputs = inputs.to_vec();
        let required = sculpt_runtime::exec_required_inputs(model);
        for (a, (name, _)) in inputs.iter_mut().zip(&required) {
            a.name = name.clone();
        }
        let session = Session::from_onnx_bytes(model, bytes, &inputs).ok()?;
        let got = session.run(&inputs).ok()?;
        if got.len() != expected.len() {
            return Some(false);
        }
        let cmp = sculpt_runtime::compare(
            &got,
            expected,
            Tolerance {
                rtol: 1e-3,
                atol: 1e-5,
            },
        );
        Some(
            cmp.outputs
                .iter()
                .all(|o| o.ok || o.problem.is_none() && o.mismatches == 0),
        )
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[test]
fn node_suite_still_passes_after_round_trip() {
    let Some(dir) = suite_dir() else { return };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    cases.sort();
    let (mut total, mut imported, mut before, mut after) = (0, 0, 0, 0);
    let mut regressions = Vec::new();
    let mut import_errors = Vec::new();
    std::panic::set_hook(Box::new(|_| {}));
    for case in &cases {
        total += 1;
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let original = std::fs::read(case.join("model.onnx")).unwrap();
        let model = match sculpt_ir::onnx::from_bytes(original.clone().into(), Some(case)) {
            Ok(m) => m,
            Err(e) => {
                import_errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        imported += 1;
        let round_tripped = sculpt_ir::onnx::to_bytes(&model);
        let (Some(inputs), Some(expected)) =
            (case_arrays(case, "input_"), case_arrays(case, "output_"))
        else {
            continue;
        };
        let ok_before = tract_passes(&model, &original, &inputs, &expected);
        if !ok_before {
            continue;
        }
        before += 1;
        let reimported =
            sculpt_ir::onnx::from_bytes(round_tripped.clone().into(), Some(case)).unwrap();
        if tract_passes(&reimported, &round_tripped, &inputs, &expected) {
            after += 1;
        } else {
            regressions.push(name);
        }
    }
    let _ = std::panic::take_hook();
    eprintln!("node suite: {total} cases, {imported} imported, tract passes {before} before and {after} after the round-trip");
    assert!(
        import_errors.is_empty(),
        "valid models refused: {import_errors:?}"
    );
    assert!(regressions.is_empty(), "round-trip broke: {regressions:?}");
    assert!(before > 500, "suspiciously few passing cases: {before}");
}
