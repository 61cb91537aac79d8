//! File-driven pass tests. Each `tests/cases/<pass>/<file>.sculpt` starts
//! with `// RUN: <pipeline>`; cases are split by `// -----` and each has a
//! `///` line saying what it checks. Every case is a test of its own, named
//! `<pass>::<file>::<name>` where the name is the first words of its `///`
//! line (so `cargo test -p sculpt-passes --test cases -- prune::` runs one
//! pass's cases, and a failure names its case while the rest still run),
//! and so is its snapshot (`snapshots/cases__<pass>__<file>__<name>.snap`).
//! For every case the harness verifies the input, runs the pipeline
//! (exactly as written: no cleanup is inserted) with verification after
//! each pass, checks that the result round-trips through the text form, and
//! snapshots it with the non-zero statistics of each pass.
//!
//! Calibrated passes: `// CALIB: data.npz` (beside the case file, axis 0 =
//! samples) is the calibration data the pipeline gets. `// TOLERANCE: T`
//! prints the snapshot's numbers to the precision `T` asks for (results
//! of solves differ in the last bits between machines), and every
//! `// EXPECT: %name = [v, …]` line is checked against the result's tensor
//! `name` within `T` (absolute and relative); the expected values come
//! from an independent computation (a numpy script beside the case).
//! These three lines may stand in a case or, for all cases, in the file's
//! first part.

use libtest_mimic::{Arguments, Failed, Trial};
use sculpt_ir::text::{parse, print, PrintOptions};
use sculpt_passes::{PassManager, Pipeline};
use std::path::{Path, PathBuf};

/// `// KEY: value` in `case`, else in `header`.
fn directive<'a>(case: &'a str, header: &'a str, key: &str) -> Option<&'a str> {
    let find = |text: &'a str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(str::trim)
    };
    find(case).or_else(|| find(header))
}

/// Every number in `text` rounded to `digits` significant digits.
fn round_numbers(text: &str, digits: i32) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Numbers stand after a delimiter (names such as `layer.1.w` do not).
        let starts_number =
            bytes[i].is_ascii_digit() && (i == 0 || b" [(,=-".contains(&bytes[i - 1]));
        if !starts_number {
            out.push(bytes[i] as char);
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_digit()
                || bytes[i] == b'.'
                || bytes[i] == b'e'
                || (bytes[i] == b'-' && bytes[i - 1] == b'e'))
        {
            i += 1;
        }
        let token = &text[start..i];
        match token.parse::<f64>() {
            // Below the tolerance a number is zero (its sign and last
            // digits are rounding noise).
            Ok(x) if x.abs() < 10f64.powi(-digits) && token.contains('.') => {
                if out.ends_with('-') {
                    out.pop();
                }
                out.push_str("0.0");
            }
            Ok(x) if token.contains('.') && x.is_finite() => {
                let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
                out.push_str(&format!("{:?}", (x * scale).round() / scale));
            }
            _ => out.push_str(token),
        }
    }
    out
}

/// Checks every `// EXPECT: %name = [...]` line of `case` against `model`.
fn check_expectations(case: &str, model: &sculpt_ir::Model, tolerance: f64, what: &str) -> usize {
    let mut checked = 0;
    for line in case.lines() {
        let Some(rest) = line.trim().strip_prefix("// EXPECT:") else {
            continue;
        };
        let (name, values) = rest.split_once('=').expect("EXPECT: %name = [values]");
        let name = name.trim().trim_start_matches('%');
        let want: Vec<f64> = values
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|v| v.trim().parse().expect("a number"))
            .collect();
        let g = &model.graph;
        let v = g
            .value_by_name(name)
            .unwrap_or_else(|| panic!("{what}: no tensor '{name}' in the result"));
        let got = g
            .value(v)
            .tensor()
            .unwrap_or_else(|| panic!("{what}: '{name}' is not an initializer"))
            .to_f64_vec()
            .unwrap();
        assert_eq!(
            got.len(),
            want.len(),
            "{what}: '{name}' has {} values",
            got.len()
        );
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= tolerance * (1.0 + w.abs()),
                "{what}: '{name}'[{i}] is {g}, expected {w} (tolerance {tolerance})"
            );
        }
        checked += 1;
    }
    checked
}

/// One case of a case file.
struct Case {
    path: PathBuf,
    pass: String,
    stem: String,
    /// From the intent line: its first words, lower case, `_`-joined.
    name: String,
    intent: String,
    pipeline: String,
    header: String,
    text: String,
}

/// A case's name: the first words of its intent line.
fn case_name(intent: &str) -> String {
    let words: Vec<String> = intent
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(7)
        .map(str::to_lowercase)
        .collect();
    words.join("_")
}

/// The cases of one file; a file without a `// RUN:` line, a case without
/// an intent line, or two cases of one name are refused.
fn cases_of(path: &Path) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let pipeline = text
        .lines()
        .find_map(|l| l.strip_prefix("// RUN:"))
        .ok_or("no '// RUN:' line")?
        .trim()
        .to_string();
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let pass = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let parts: Vec<&str> = text.split("// -----").collect();
    let mut cases: Vec<Case> = Vec::new();
    for (i, case) in parts.iter().enumerate() {
        let intent = case
            .lines()
            .find_map(|l| l.trim().strip_prefix("///"))
            .ok_or_else(|| format!("case {i} has no '///' intent line"))?
            .trim()
            .to_string();
        let name = case_name(&intent);
        if cases.iter().any(|c| c.name == name) {
            return Err(format!(
                "two cases named '{name}': begin their '///' lines differently"
            ));
        }
        cases.push(Case {
            path: path.to_path_buf(),
            pass: pass.clone(),
            stem: stem.clone(),
            name,
            intent,
            pipeline: pipeline.clone(),
            header: parts[0].to_string(),
            text: case.to_string(),
        });
    }
    Ok(cases)
}

fn run_case(c: &Case) {
    let (case, header, pipeline, intent) = (&c.text, &c.header, &c.pipeline, &c.intent);
    let what = format!("{}: {} ({intent})", c.path.display(), c.name);
    let mut model = parse(case).unwrap_or_else(|e| panic!("{what}: {e}"));
    sculpt_ir::verify::check(&model).unwrap();
    let mut manager = PassManager::new(Pipeline::parse(pipeline).unwrap()).unwrap();
    manager.verify_each = true;
    manager.canonicalize = false;
    let mut calibration = directive(case, header, "// CALIB:").map(|file| {
        let data = c.path.parent().unwrap().join(file);
        let arrays = sculpt_runtime::read_npz(&data)
            .unwrap_or_else(|e| panic!("{what}: {}: {e}", data.display()));
        sculpt_runtime::CalibrationSet::from_arrays(arrays).unwrap()
    });
    let calibrator = calibration
        .as_mut()
        .map(|c| c as &mut dyn sculpt_passes::Calibrator);
    let report = manager
        .run_with(&mut model, calibrator, |_| {})
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let tolerance: Option<f64> =
        directive(case, header, "// TOLERANCE:").map(|t| t.parse().expect("a tolerance"));
    if let Some(t) = tolerance {
        let checked = check_expectations(case, &model, t, &what);
        let expected = case
            .lines()
            .filter(|l| l.trim().starts_with("// EXPECT:"))
            .count();
        assert_eq!(checked, expected);
    }
    let full = PrintOptions {
        full: true,
        ..Default::default()
    };
    // With a tolerance, every number is printed (rounded), not a digest
    // of bytes that differ in their last bits between machines.
    let printed = match tolerance {
        Some(t) => round_numbers(&print(&model, &full), (-t.log10()).round() as i32),
        None => print(&model, &PrintOptions::default()),
    };
    let reparsed = parse(&print(&model, &full)).unwrap();
    assert!(reparsed == model, "{what}: result does not round-trip");
    let stats: Vec<String> = report
        .passes
        .iter()
        .flat_map(|r| {
            r.outcome
                .statistics
                .iter()
                .filter(|(_, v)| v.as_f64() != 0.0)
                .map(move |(k, v)| format!("{}.{k}={v}", r.pass))
        })
        .collect();
    let mut stats = stats.join(" ");
    if let Some(t) = tolerance {
        stats = round_numbers(&stats, (-t.log10()).round() as i32);
    }
    let snapshot = format!("/// {intent}\n// RUN: {pipeline}\n// stats: {stats}\n{printed}");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::assert_snapshot!(
            format!("cases__{}__{}__{}", c.pass, c.stem, c.name),
            snapshot
        );
    });
}

fn numbers_round_to_significant_digits() {
    assert_eq!(
        round_numbers(
            "f32[2,3] [0.123456, -12345.678, 1e-7, 7, -0.0, -0.00001]",
            3
        ),
        "f32[2,3] [0.123, -12300.0, 1e-7, 7, 0.0, 0.0]"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
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

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files = walk(&root);
    files.sort();
    let mut trials = vec![Trial::test(
        "harness::numbers_round_to_significant_digits",
        || {
            numbers_round_to_significant_digits();
            Ok(())
        },
    )];
    for file in files {
        match cases_of(&file) {
            Ok(cases) => trials.extend(cases.into_iter().map(|c| {
                Trial::test(format!("{}::{}::{}", c.pass, c.stem, c.name), move || {
                    run_case(&c);
                    Ok(())
                })
            })),
            Err(why) => {
                let name = file.display().to_string();
                trials.push(Trial::test(name.clone(), move || {
                    Err(Failed::from(format!("{name}: {why}")))
                }))
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
