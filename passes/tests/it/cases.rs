//! File-driven pass tests. Each `tests/cases/<pass>/<case>.sculpt` starts
//! with `// RUN: <pipeline>`; cases are split by `// -----` and each has a
//! `///` line saying what it checks. For every case the harness verifies the
//! input, runs the pipeline with verification after each pass, checks that
//! the result round-trips through the text form, and snapshots it.

use sculpt_ir::text::{parse, print, PrintOptions};
use sculpt_passes::{PassManager, Pipeline};
use std::path::Path;

fn run_case_file(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let pipeline = text
        .lines()
        .find_map(|l| l.strip_prefix("// RUN:"))
        .unwrap_or_else(|| panic!("{}: no '// RUN:' line", path.display()))
        .trim();
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let pass = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut count = 0;
    for (i, case) in text.split("// -----").enumerate() {
        let intent = case
            .lines()
            .find_map(|l| l.trim().strip_prefix("///"))
            .unwrap_or_else(|| panic!("{}: case {i} has no '///' intent line", path.display()))
            .trim()
            .to_string();
        let mut model =
            parse(case).unwrap_or_else(|e| panic!("{}: case {i} ({intent}): {e}", path.display()));
        sculpt_ir::verify::check(&model).unwrap();
        let mut manager = PassManager::new(Pipeline::parse(pipeline).unwrap());
        manager.verify_each = true;
        let report = manager
            .run(&mut model, |_| {})
            .unwrap_or_else(|e| panic!("{}: case {i}: {e}", path.display()));
        let printed = print(&model, &PrintOptions::default());
        let reparsed = parse(&print(
            &model,
            &PrintOptions {
                full: true,
                ..Default::default()
            },
        ))
        .unwrap();
        assert!(
            reparsed == model,
            "{}: case {i}: result does not round-trip",
            path.display()
        );
        let stats: Vec<String> = report
            .passes
            .iter()
            .flat_map(|r| {
                r.outcome
                    .statistics
                    .iter()
                    .map(move |(k, v)| format!("{}.{k}={v}", r.pass))
            })
            .collect();
        let snapshot = format!(
            "/// {intent}\n// RUN: {pipeline}\n// stats: {}\n{printed}",
            stats.join(" ")
        );
        insta::assert_snapshot!(format!("{pass}__{stem}__{i}"), snapshot);
        count += 1;
    }
    count
}

#[test]
fn pass_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = walk(&root);
    files.sort();
    assert!(!files.is_empty());
    let total: usize = files.iter().map(|f| run_case_file(f)).sum();
    assert!(total > 0);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "sculpt") {
            out.push(p);
        }
    }
    out
}
