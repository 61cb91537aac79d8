//! The ONNX backend node suite (onnx 1.22.0 test data, fetched by
//! `scripts/fetch-node-tests.sh` into target/onnx-node-tests): every case
//! tract runs correctly before the round-trip still runs correctly after it.

use sculpt_runtime::{Array, Session, Tolerance};
use std::path::PathBuf;

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
        let session = Session::tract_from_onnx_bytes(model, bytes, &inputs).ok()?;
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
    let cases = sculpt_runtime::test_cases(&dir).unwrap();
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
        let Ok((inputs, expected)) = sculpt_runtime::read_test_data_set(case, 0) else {
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

/// Every case below opset 21 that tract passes still passes after
/// `raise_opset` to 21, or is refused with a reason: never a wrong result.
#[test]
fn node_suite_still_passes_after_raising_the_opset() {
    let Some(dir) = suite_dir() else { return };
    let cases = sculpt_runtime::test_cases(&dir).unwrap();
    let (mut raised, mut refused) = (0, Vec::new());
    let mut broken = Vec::new();
    std::panic::set_hook(Box::new(|_| {}));
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let original = std::fs::read(case.join("model.onnx")).unwrap();
        let Ok(model) = sculpt_ir::onnx::from_bytes(original.clone().into(), Some(case)) else {
            continue;
        };
        if model.onnx_opset() >= 21 {
            continue;
        }
        let Ok((inputs, expected)) = sculpt_runtime::read_test_data_set(case, 0) else {
            continue;
        };
        if !tract_passes(&model, &original, &inputs, &expected) {
            continue;
        }
        let mut upgraded = model.clone();
        if let Err(e) = sculpt_ir::opset::raise_opset(&mut upgraded, 21) {
            refused.push(format!("{name}: {e}"));
            continue;
        }
        raised += 1;
        let bytes = sculpt_ir::onnx::to_bytes(&upgraded);
        if !tract_passes(&upgraded, &bytes, &inputs, &expected) {
            broken.push(name);
        }
    }
    let _ = std::panic::take_hook();
    eprintln!(
        "node suite: {raised} cases raised to opset 21, {} refused: {refused:?}",
        refused.len()
    );
    assert!(broken.is_empty(), "raising the opset broke: {broken:?}");
    assert!(raised > 300, "suspiciously few raised cases: {raised}");
}
