//! `sculpt opt`: load, build the pipeline, calibrate, run the passes with
//! the numeric guard, check the result, and write the model with its report
//! and the files passes asked for (staged first: nothing is written unless
//! the whole command succeeds).

use crate::arg_values::{parse_bytes, RuntimeArgs, ToleranceArgs};
use crate::files::{inputs_for, load, persist, run_model, stage, write_atomic};
use anyhow::{bail, Context, Result};
use clap::Args;
use sculpt_ir::onnx::export::ExternalPolicy;
use sculpt_ir::Model;
use sculpt_passes::{PassManager, Pipeline};
use sculpt_runtime::{Array, Engine, Tolerance};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Run a pass pipeline and write the result.
#[derive(Args)]
pub struct OptArgs {
    /// An ONNX file or a text-form file.
    pub model: PathBuf,
    /// Pipeline, e.g. "cleanup" ("" = plain round-trip).
    #[arg(short = 'p', long, conflicts_with = "pipeline_file")]
    pub pipeline: Option<String>,
    /// Pipeline from a TOML file.
    #[arg(long)]
    pub pipeline_file: Option<PathBuf>,
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Verify the IR after every pass.
    #[arg(long)]
    pub verify_each: bool,
    /// Run input and output models on the same inputs; refuse to write
    /// the output if they differ beyond tolerance. On by default for
    /// pipelines of lossless passes (models up to 1 GiB of weights),
    /// where a pass that moves the outputs is also rolled back.
    #[arg(long, conflicts_with = "no_check")]
    pub check: bool,
    /// Do not check numerics, not even for a lossless pipeline.
    #[arg(long)]
    pub no_check: bool,
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    #[command(flatten)]
    pub tolerance: ToleranceArgs,
    /// Write a JSON report of the run.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write tensor data to a side file (<output>.data).
    #[arg(long)]
    pub external_data: bool,
    /// Declare the inferred type of every value (value_info), not only
    /// those the input declared.
    #[arg(long)]
    pub write_shapes: bool,
    /// Write the text form instead of ONNX.
    #[arg(long)]
    pub text: bool,
    /// Calibration inputs for passes that measure activations (.npz,
    /// axis 0 = samples).
    #[arg(long, conflicts_with = "calib_random")]
    pub calib: Option<PathBuf>,
    /// N generated calibration samples instead of --calib.
    #[arg(long)]
    pub calib_random: Option<usize>,
    /// Most memory activation statistics may take (e.g. 512M, 4G); past
    /// it the largest fall back to per-channel statistics.
    #[arg(long, default_value = "4G", value_parser = parse_bytes)]
    pub stats_memory: u64,
    /// A model input whose zeros mark padding rows that activation
    /// statistics skip (default: `attention_mask` where the model has
    /// one; `none` for no mask).
    #[arg(long)]
    pub calib_mask: Option<String>,
    /// Run the pipeline exactly as written: no `cleanup` before passes
    /// that need canonical form, nor after the last transform.
    #[arg(long)]
    pub no_cleanup: bool,
    /// The runtime of calibration, probes and checks.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Print warnings and errors only: no pass details, run table or
    /// check summary.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn opt(args: OptArgs) -> Result<()> {
    let pipeline = read_pipeline(&args)?;
    let engine = args.runtime.engine()?;
    let original = load(&args.model)?;
    let mut m = original.clone();
    let mut manager = PassManager::new(pipeline)?;
    manager.verify_each |= args.verify_each;
    manager.canonicalize = !args.no_cleanup;
    manager.stats_memory = args.stats_memory;
    manager.row_mask = args.calib_mask.clone();
    let bars = indicatif::MultiProgress::new();
    manager.progress = Some(work_progress(&bars));
    let bar = bars.add(indicatif::ProgressBar::new(
        manager.step_names().len() as u64
    ));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    let mut calibration =
        calibration_set(&args, &original)?.map(|c| c.on(engine).with_progress(&bars));
    let calibrator = calibration
        .as_mut()
        .map(|c| c as &mut dyn sculpt_passes::Calibrator);
    let auto_check = manager.lossless()
        && !args.check
        && !args.no_check
        && original.graph.weight_bytes() <= AUTO_CHECK_WEIGHTS;
    let checked = args.check || auto_check;
    if checked {
        manager.guard = Some(numeric_guard(&args, engine));
    }
    let run = manager.run_with(&mut m, calibrator, |name| {
        bar.set_message(name.to_string());
        bar.inc(1);
    });
    bar.finish_and_clear();
    let run = run?;
    sculpt_ir::verify::check(&m).context("the optimized model is invalid")?;
    for record in &run.passes {
        if let Some(sculpt_passes::GuardVerdict::NotChecked(why)) = &record.check {
            eprintln!("{}: numerics not checked: {why}", record.pass);
        }
    }
    let comparison = match checked {
        true => final_check(&args, engine, &original, &m, auto_check)?,
        false => None,
    };
    write_results(&args, engine, &m, &run, comparison.as_ref())?;
    if !args.quiet {
        print_run_table(&run);
    }
    Ok(())
}

/// The pipeline of `-p` or `--pipeline-file`.
fn read_pipeline(args: &OptArgs) -> Result<Pipeline> {
    Ok(match (&args.pipeline, &args.pipeline_file) {
        (Some(p), None) => Pipeline::parse(p)?,
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            Pipeline::from_toml(&text)?
        }
        (None, None) => {
            bail!("give a pipeline with -p \"...\" (\"\" for a round-trip) or --pipeline-file")
        }
        (Some(_), Some(_)) => unreachable!("clap rejects both"),
    })
}

/// Long work inside passes gets a progress bar of its own while it runs.
fn work_progress(bars: &indicatif::MultiProgress) -> sculpt_passes::context::Progress {
    let work: std::sync::Mutex<Option<indicatif::ProgressBar>> = Default::default();
    let bars = bars.clone();
    std::sync::Arc::new(move |what: &str, done, total| {
        let mut slot = work.lock().unwrap_or_else(|e| e.into_inner());
        let bar = slot.get_or_insert_with(|| {
            let bar = bars.add(indicatif::ProgressBar::new(total));
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len}")
                    .expect("valid template"),
            );
            bar
        });
        bar.set_message(what.to_string());
        bar.set_length(total);
        bar.set_position(done);
        if done >= total {
            bar.finish_and_clear();
            *slot = None;
        }
    })
}

/// The calibration data of `--calib` or `--calib-random`, fitted to the
/// model's inputs.
fn calibration_set(
    args: &OptArgs,
    model: &Model,
) -> Result<Option<sculpt_runtime::CalibrationSet>> {
    Ok(match (&args.calib, args.calib_random) {
        (Some(p), _) => Some(
            sculpt_runtime::CalibrationSet::from_arrays(sculpt_runtime::read_npz(p)?)?
                .fit_to(model)?,
        ),
        (None, Some(n)) => Some(sculpt_runtime::CalibrationSet::random(model, n)?),
        (None, None) => None,
    })
}

/// The pass manager's numeric guard: the outputs before and after a
/// lossless pass, compared on `engine`.
fn numeric_guard(args: &OptArgs, engine: Engine) -> sculpt_passes::NumericGuard {
    let given = args.inputs.clone();
    let tolerance = args.tolerance.tolerance();
    std::sync::Arc::new(move |before: &Model, after: &Model| {
        match compare_outputs(engine, before, after, given.as_deref(), tolerance) {
            Ok(Some(cmp)) if cmp.ok => Ok(Ok(check_summary(&cmp))),
            Ok(Some(cmp)) => Ok(Err(check_summary(&cmp))),
            Ok(None) => Err("no outputs to compare".into()),
            Err(e) => Err(format!("{e:#}")),
        }
    })
}

/// The whole model against the original: an error (nothing written) when
/// they differ; a default check that cannot run is only said.
fn final_check(
    args: &OptArgs,
    engine: Engine,
    original: &Model,
    optimized: &Model,
    auto_check: bool,
) -> Result<Option<sculpt_runtime::Comparison>> {
    let ToleranceArgs { rtol, atol } = args.tolerance;
    let compared = compare_outputs(
        engine,
        original,
        optimized,
        args.inputs.as_deref(),
        args.tolerance.tolerance(),
    );
    let cmp = match compared {
        Err(e) if auto_check => {
            eprintln!("numerics not checked (--check to insist): {e:#}");
            return Ok(None);
        }
        other => other?,
    };
    let Some(cmp) = cmp else {
        return Ok(None);
    };
    if !cmp.ok {
        let bad = cmp
            .outputs
            .iter()
            .find(|o| !o.ok)
            .expect("a failing output");
        bail!(
            "--check failed: output '{}' differs (max abs err {:.3e}, {} of {} elements beyond rtol={rtol} atol={atol}); {} not written",
            bad.name, bad.max_abs_err, bad.mismatches, bad.elements, args.output.display()
        );
    }
    let worst = cmp.worst();
    if args.quiet {
        return Ok(Some(cmp));
    }
    eprintln!(
        "--check: {} output(s) of the input and optimized models agree on {engine} within rtol={rtol} atol={atol} on {}{}",
        cmp.outputs.len(),
        args.inputs
            .as_ref()
            .map_or("generated inputs".to_string(), |p| p.display().to_string()),
        worst.map_or(String::new(), |w| format!(
            "; worst max abs err {:.3e} ('{}')",
            w.max_abs_err, w.name
        ))
    );
    Ok(Some(cmp))
}

/// Writes the model, the report and the files passes asked for. The
/// report and the files are staged before the model is written, so that
/// one that cannot be written leaves no output behind.
fn write_results(
    args: &OptArgs,
    engine: Engine,
    m: &Model,
    run: &sculpt_passes::RunReport,
    comparison: Option<&sculpt_runtime::Comparison>,
) -> Result<()> {
    let staged_report = match &args.report {
        Some(path) => {
            let json = serde_json::json!({ "run": run, "check": comparison, "runtime": engine });
            Some((
                path,
                stage(path, serde_json::to_string_pretty(&json)?.as_bytes())?,
            ))
        }
        None => None,
    };
    // The files passes asked for (a search's plot and policy).
    let staged_files = run
        .passes
        .iter()
        .flat_map(|p| &p.outcome.files)
        .map(|(path, bytes)| Ok((path, stage(path, bytes)?)))
        .collect::<Result<Vec<_>>>()?;
    if args.text {
        let full = sculpt_ir::text::PrintOptions {
            full: true,
            ..Default::default()
        };
        write_atomic(&args.output, sculpt_ir::text::print(m, &full).as_bytes())?;
    } else {
        let options = sculpt_ir::onnx::SaveOptions {
            external: if args.external_data {
                ExternalPolicy::Always {
                    location: None,
                    threshold: 1024,
                }
            } else {
                ExternalPolicy::Auto
            },
            inferred_shapes: args.write_shapes,
        };
        sculpt_ir::onnx::save(m, &args.output, &options)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
    }
    for (path, staged) in staged_report.into_iter().chain(staged_files) {
        persist(staged, path)?;
    }
    Ok(())
}

/// Models of at most this many bytes of weights get their numerics checked
/// by default after a lossless pipeline.
const AUTO_CHECK_WEIGHTS: u64 = 1 << 30;

/// Runs `before` and `after` on the same inputs (`given`, or generated for
/// `before`; `after` gets those it declares) and compares their outputs.
fn compare_outputs(
    engine: Engine,
    before: &Model,
    after: &Model,
    given: Option<&Path>,
    tolerance: Tolerance,
) -> Result<Option<sculpt_runtime::Comparison>> {
    let ins = inputs_for(before, given, &HashMap::new())?;
    let a = run_model(engine, before, &ins).context("running the input model")?;
    let wanted: std::collections::HashSet<String> = sculpt_runtime::exec_required_inputs(after)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let after_ins: Vec<Array> = ins
        .into_iter()
        .filter(|x| wanted.contains(&x.name))
        .collect();
    let b = run_model(engine, after, &after_ins).context("running the optimized model")?;
    Ok(Some(sculpt_runtime::compare(&b, &a, tolerance)))
}

/// One line: how many outputs, the worst error, and where.
fn check_summary(cmp: &sculpt_runtime::Comparison) -> String {
    let worst = cmp.worst();
    format!(
        "{} output(s), worst max abs err {}",
        cmp.outputs.len(),
        worst.map_or("-".into(), |w| format!(
            "{:.3e} ('{}')",
            w.max_abs_err, w.name
        ))
    )
}

fn print_run_table(run: &sculpt_passes::RunReport) {
    for r in &run.passes {
        for line in &r.outcome.details {
            eprintln!("{}: {line}", r.pass);
        }
    }
    eprintln!(
        "{:<20} {:>9} {:>8} {:>8} {:>12} {:>14} {:>12}",
        "pass", "ms", "nodes", "Δnodes", "params", "FLOPs", "bytes"
    );
    for r in &run.passes {
        eprintln!(
            "{:<20} {:>9.2} {:>8} {:>8} {:>12} {:>14} {:>12}",
            r.pass,
            r.millis,
            r.after.nodes,
            r.after.nodes as i64 - r.before.nodes as i64,
            r.after.params,
            r.after.flops,
            r.after.weight_bytes
        );
    }
    eprintln!(
        "{:<20} {:>9.2} {:>8} {:>8} {:>12} {:>14} {:>12}",
        "total",
        run.total_millis,
        run.after.nodes,
        run.after.nodes as i64 - run.before.nodes as i64,
        run.after.params,
        run.after.flops,
        run.after.weight_bytes
    );
}
