//! Pipeline syntax, TOML pipelines, option checking, and the manager's
//! analysis cache and verification.

use sculpt_passes::{PassError, PassManager, Pipeline};

#[test]
fn pipeline_text_round_trips() {
    for text in [
        "",
        "cleanup",
        "cleanup,cleanup#final{dce=false}",
        "cleanup{dce=true infer=false},cleanup#b",
    ] {
        let p = Pipeline::parse(text).unwrap();
        assert_eq!(p.to_string(), text);
        assert_eq!(Pipeline::parse(&p.to_string()).unwrap(), p);
    }
    let p = Pipeline::parse(" cleanup { dce = false , infer=true } , cleanup ").unwrap();
    assert_eq!(p.to_string(), "cleanup{dce=false infer=true},cleanup");
    let q = Pipeline::parse(r#"cleanup{protect="a b,c"}"#).unwrap();
    assert_eq!(q.to_string(), r#"cleanup{protect="a b,c"}"#);
}

#[test]
fn pipeline_errors_say_where() {
    for (text, want) in [
        ("cleanup{dce}", "expected '='"),
        ("cleanup{dce=true", "expected an option name or '}'"),
        ("cleanup,,cleanup", "expected a pass name"),
        ("cleanup cleanup", "expected ','"),
        ("cleanup{a=1 a=2}", "given twice"),
    ] {
        let e = Pipeline::parse(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn toml_pipelines() {
    let a = Pipeline::from_toml("pipeline = \"cleanup,cleanup#final\"").unwrap();
    assert_eq!(a.to_string(), "cleanup,cleanup#final");
    let b = Pipeline::from_toml("[[pass]]\nname = \"cleanup\"\noptions = { dce = false }\n[[pass]]\nname = \"cleanup\"\nlabel = \"again\"\n").unwrap();
    assert_eq!(b.to_string(), "cleanup{dce=false},cleanup#again");
    assert!(Pipeline::from_toml("x = 1").is_err());
}

#[test]
fn unknown_passes_and_options_are_refused_before_running() {
    let refused = |text: &str| {
        PassManager::new(Pipeline::parse(text).unwrap())
            .err()
            .unwrap()
    };
    let e = refused("cleanup,bogus");
    assert!(
        matches!(&e, PassError::UnknownPass { name, known } if name == "bogus" && known.contains("cleanup")),
        "{e}"
    );
    let e = refused("cleanup{speed=11}");
    assert!(e.to_string().contains("unknown option"), "{e}");
    let e = refused("cleanup{dce=maybe}");
    assert!(e.to_string().contains("not true or false"), "{e}");
}

#[test]
fn report_records_stats_and_timing() {
    let mut model = sculpt_ir::text::parse(
        "graph \"g\" (%x: f32[2,3]) -> (%y) {\n  init %w = f32[3,4] [1.0,2.0,3.0,4.0,5.0,6.0,7.0,8.0,9.0,10.0,11.0,12.0]\n  init %unused = f32[2] [1.0, 2.0]\n  %y = MatMul(%x, %w)\n  %dead = Relu(%x)\n}",
    )
    .unwrap();
    let report = PassManager::new(Pipeline::parse("cleanup").unwrap())
        .unwrap()
        .run(&mut model, |_| {})
        .unwrap();
    assert_eq!(report.before.nodes, 2);
    assert_eq!(report.after.nodes, 1);
    assert_eq!(report.before.params, 14);
    assert_eq!(report.after.params, 12);
    assert_eq!(report.after.flops, 2 * 2 * 4 * 3);
    assert!(report.passes[0].millis >= 0.0);
}

#[test]
fn the_pass_reference_in_docs_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/passes.md");
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == sculpt_passes::registry::markdown(),
        "docs/passes.md is out of date: regenerate with `sculpt passes --markdown > docs/passes.md`"
    );
}
