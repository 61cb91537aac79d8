//! `sculpt opt M -p "" -o R` on every corpus model: onnxruntime gives
//! bit-identical outputs for R and M, and onnx.checker (full_check) passes.
//! tract (in-process, `sculpt check`) agrees too, and so does `cleanup`.

use crate::{corpus_models, ort_compare, path_str, python_has_onnxruntime, sculpt};

#[test]
fn round_trip_is_bit_identical_in_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let check_ort = python_has_onnxruntime();
    for (name, folder) in corpus_models() {
        let model = folder.join("model.onnx");
        let out = dir.path().join(format!("{name}.onnx"));
        let r = sculpt(&["opt", path_str(&model), "-p", "", "-o", path_str(&out)]);
        assert!(
            r.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        if check_ort {
            let line = ort_compare(
                path_str(&model),
                path_str(&out),
                path_str(&folder.join("inputs.npz")),
                &["--exact"],
            );
            eprintln!("{name}: {}", line.trim());
        }
    }
}

#[test]
fn cleanup_keeps_outputs_in_tract_and_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let check_ort = python_has_onnxruntime();
    for (name, folder) in corpus_models() {
        let model = folder.join("model.onnx");
        let inputs = folder.join("inputs.npz");
        let out = dir.path().join(format!("{name}.onnx"));
        let r = sculpt(&[
            "opt",
            path_str(&model),
            "-p",
            "cleanup",
            "-o",
            path_str(&out),
            "--verify-each",
            "--check",
            "--inputs",
            path_str(&inputs),
        ]);
        assert!(
            r.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let c = sculpt(&[
            "check",
            path_str(&model),
            path_str(&out),
            "--inputs",
            path_str(&inputs),
        ]);
        assert!(
            c.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&c.stderr)
        );
        if check_ort {
            ort_compare(path_str(&model), path_str(&out), path_str(&inputs), &[]);
        }
    }
}

#[test]
fn tract_reproduces_the_reference_outputs() {
    // The corpus's outputs.npz come from onnxruntime; tract running the
    // imported model must agree with them.
    for (name, folder) in corpus_models() {
        let model = sculpt_ir::load(&folder.join("model.onnx")).unwrap();
        let inputs = sculpt_runtime::read_npz(&folder.join("inputs.npz")).unwrap();
        let expected = sculpt_runtime::read_npz(&folder.join("outputs.npz")).unwrap();
        let session = sculpt_runtime::Session::new(sculpt_runtime::Engine::Tract, &model, &inputs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = session.run(&inputs).unwrap();
        let cmp = sculpt_runtime::compare(
            &got,
            &expected,
            sculpt_runtime::Tolerance {
                rtol: 1e-3,
                atol: 1e-4,
            },
        );
        assert!(cmp.ok, "{name}: {:?}", cmp.outputs);
    }
}

/// Node counts after `cleanup` are at most what onnxsim and onnxslim reach
/// (the figures in the corpus's PEERS.md).
#[test]
fn cleanup_matches_or_beats_peer_node_counts() {
    let peers = std::fs::read_to_string(crate::corpus_dir().join("PEERS.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for line in peers
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| model"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(name), Some(onnxsim), Some(onnxslim)) =
            (cells.get(1), cells.get(3), cells.get(4))
        else {
            continue;
        };
        let (Ok(onnxsim), Ok(onnxslim)) = (onnxsim.parse::<usize>(), onnxslim.parse::<usize>())
        else {
            continue;
        };
        let model = crate::corpus_dir().join(name).join("model.onnx");
        let out = dir.path().join(format!("{name}.onnx"));
        let r = sculpt(&[
            "opt",
            path_str(&model),
            "-p",
            "cleanup",
            "-o",
            path_str(&out),
        ]);
        assert!(
            r.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let nodes = sculpt_ir::load(&out).unwrap().graph.node_count();
        eprintln!("{name}: sculpt {nodes}, onnxsim {onnxsim}, onnxslim {onnxslim}");
        assert!(
            nodes <= onnxsim.min(onnxslim),
            "{name}: {nodes} nodes, peers reach {onnxsim}/{onnxslim}"
        );
        checked += 1;
    }
    assert!(checked >= 5, "PEERS.md table not found");
}
