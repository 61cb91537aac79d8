//! Subcommands and their wiring to the libraries.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use sculpt_ir::onnx::export::ExternalPolicy;
use sculpt_ir::Model;
use sculpt_passes::{registry, PassManager, Pipeline};
use sculpt_runtime::{Array, Session, Tolerance};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "sculpt",
    version,
    about = "A compiler for trained neural networks: ONNX in, smaller and faster ONNX out"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inputs, outputs, op histogram, params, FLOPs, opsets and size.
    Inspect {
        model: PathBuf,
        #[arg(long)]
        json: bool,
        /// List the zero-invariant groups (prunable structures).
        #[arg(long)]
        zig: bool,
        /// Size of a symbolic input dim for the FLOPs: NAME=SIZE (a leading
        /// dim unbound counts as 1, per sample; others are named as unbound).
        #[arg(long = "dim", value_parser = parse_dim)]
        dims: Vec<(String, usize)>,
    },
    /// Run a pass pipeline and write the result.
    Opt {
        /// An ONNX file or a text-form file.
        model: PathBuf,
        /// Pipeline, e.g. "cleanup" ("" = plain round-trip).
        #[arg(short = 'p', long, conflicts_with = "pipeline_file")]
        pipeline: Option<String>,
        /// Pipeline from a TOML file.
        #[arg(long)]
        pipeline_file: Option<PathBuf>,
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Verify the IR after every pass.
        #[arg(long)]
        verify_each: bool,
        /// Run input and output models on the same inputs; refuse to write
        /// the output if they differ beyond tolerance. On by default for
        /// pipelines of lossless passes (models up to 1 GiB of weights),
        /// where a pass that moves the outputs is also rolled back.
        #[arg(long, conflicts_with = "no_check")]
        check: bool,
        /// Do not check numerics, not even for a lossless pipeline.
        #[arg(long)]
        no_check: bool,
        #[arg(long)]
        inputs: Option<PathBuf>,
        #[arg(long, default_value_t = 1e-4, value_parser = parse_tolerance)]
        rtol: f64,
        #[arg(long, default_value_t = 1e-5, value_parser = parse_tolerance)]
        atol: f64,
        /// Write a JSON report of the run.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write tensor data to a side file (<output>.data).
        #[arg(long)]
        external_data: bool,
        /// Declare the inferred type of every value (value_info), not only
        /// those the input declared.
        #[arg(long)]
        write_shapes: bool,
        /// Write the text form instead of ONNX.
        #[arg(long)]
        text: bool,
        /// Calibration inputs for passes that measure activations (.npz,
        /// axis 0 = samples).
        #[arg(long, conflicts_with = "calib_random")]
        calib: Option<PathBuf>,
        /// N generated calibration samples instead of --calib.
        #[arg(long)]
        calib_random: Option<usize>,
        /// Most memory activation statistics may take (e.g. 512M, 4G); past
        /// it the largest fall back to per-channel statistics.
        #[arg(long, default_value = "4G", value_parser = parse_bytes)]
        stats_memory: u64,
        /// A model input whose zeros mark padding rows that activation
        /// statistics skip (default: `attention_mask` where the model has
        /// one; `none` for no mask).
        #[arg(long)]
        calib_mask: Option<String>,
        /// Run the pipeline exactly as written: no `cleanup` before passes
        /// that need canonical form, nor after the last transform.
        #[arg(long)]
        no_cleanup: bool,
    },
    /// Run a model on inputs (.npz) or generated inputs.
    Run {
        model: PathBuf,
        #[arg(long)]
        inputs: Option<PathBuf>,
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Bind a symbolic dim for generated inputs: NAME=SIZE.
        #[arg(long = "dim", value_parser = parse_dim)]
        dims: Vec<(String, usize)>,
    },
    /// Compare two models' outputs on the same inputs.
    Check {
        a: PathBuf,
        b: PathBuf,
        #[arg(long)]
        inputs: Option<PathBuf>,
        #[arg(long, default_value_t = 1e-4, value_parser = parse_tolerance)]
        rtol: f64,
        #[arg(long, default_value_t = 1e-5, value_parser = parse_tolerance)]
        atol: f64,
        #[arg(long)]
        json: bool,
    },
    /// Measure latency on tract (warm-up, then timed runs).
    Bench {
        model: PathBuf,
        #[arg(long)]
        inputs: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 20)]
        runs: usize,
        #[arg(long)]
        json: bool,
    },
    /// Print the text form.
    Print {
        model: PathBuf,
        /// Print every tensor in full (parseable), not elided digests.
        #[arg(long)]
        full: bool,
    },
    /// List passes and their options.
    Passes,
    /// Emit the model as MLIR (linalg on tensors, or TOSA; verified by
    /// MLIR), after cleanup; `--check` also runs it on the CPU and compares
    /// with tract. Needs a build with `--features mlir` (LLVM 22).
    Emit {
        model: PathBuf,
        /// Emit MLIR (the only output format so far).
        #[arg(long)]
        mlir: bool,
        #[arg(short, long)]
        output: PathBuf,
        /// Static dims for an input with symbolic ones: NAME=D0,D1,...
        #[arg(long = "shape", value_parser = parse_shape)]
        shapes: Vec<(String, Vec<i64>)>,
        /// linalg (named ops and generics on tensors) or tosa.
        #[arg(long, default_value = "linalg")]
        dialect: String,
        /// sculpt passes to run first, once the shapes are bound, e.g.
        /// "prune{ratio=0.3}" (cleanup always runs last).
        #[arg(short, long)]
        pipeline: Option<String>,
        /// An MLIR pass pipeline to run on the emitted module before it is
        /// written, e.g. "builtin.module(canonicalize,cse)".
        #[arg(long)]
        mlir_passes: Option<String>,
        /// cpu, or gpu: also lower through the gpu dialect to PTX (--ptx).
        #[arg(long, default_value = "cpu")]
        target: String,
        /// With --target gpu: the NVIDIA chip (sm_80, sm_90, ...).
        #[arg(long, default_value = "sm_80")]
        chip: String,
        /// With --target gpu: the folder to write one PTX file per kernel to.
        #[arg(long)]
        ptx: Option<PathBuf>,
        /// Lower for the CPU, run on --inputs (or generated ones) and
        /// compare with tract (rtol 1e-4).
        #[arg(long)]
        check: bool,
        #[arg(long)]
        inputs: Option<PathBuf>,
    },
    /// The ops `emit` covers and what each becomes, as a markdown table.
    EmitOps,
}

fn parse_shape(s: &str) -> Result<(String, Vec<i64>), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=D0,D1,...")?;
    let dims = v
        .split(',')
        .map(|d| {
            d.trim()
                .parse::<i64>()
                .map_err(|_| format!("'{d}' is not a size"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((k.to_string(), dims))
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    sculpt_passes::pipeline::parse_bytes(s)
        .ok_or_else(|| format!("'{s}' is not a byte count (like 512M or 4G)"))
}

fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=SIZE")?;
    Ok((
        k.to_string(),
        v.parse().map_err(|_| format!("'{v}' is not a size"))?,
    ))
}

/// A tolerance: a finite number, zero or more (NaN would pass anything).
fn parse_tolerance(v: &str) -> std::result::Result<f64, String> {
    match v.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        Ok(_) => Err(format!(
            "'{v}' is not a tolerance: give a finite number, 0 or more"
        )),
        Err(_) => Err(format!("'{v}' is not a number")),
    }
}

pub fn load(path: &Path) -> Result<Model> {
    sculpt_ir::onnx::load(path).with_context(|| format!("cannot load {}", path.display()))
}

pub fn inputs_for(
    model: &Model,
    inputs: Option<&Path>,
    dims: &HashMap<String, usize>,
) -> Result<Vec<Array>> {
    match inputs {
        Some(p) => Ok(sculpt_runtime::read_npz(p)?),
        None => Ok(sculpt_runtime::generate_inputs(model, dims, 0)?),
    }
}

/// Models of at most this many bytes of weights get their numerics checked
/// by default after a lossless pipeline.
const AUTO_CHECK_WEIGHTS: u64 = 1 << 30;

/// Runs `before` and `after` on the same inputs (`given`, or generated for
/// `before`; `after` gets those it declares) and compares their outputs.
fn compare_outputs(
    before: &Model,
    after: &Model,
    given: Option<&Path>,
    tolerance: Tolerance,
) -> Result<Option<sculpt_runtime::Comparison>> {
    let ins = inputs_for(before, given, &HashMap::new())?;
    let a = run_model(before, &ins).context("running the input model")?;
    let wanted: std::collections::HashSet<String> = sculpt_runtime::exec_required_inputs(after)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let after_ins: Vec<Array> = ins
        .into_iter()
        .filter(|x| wanted.contains(&x.name))
        .collect();
    let b = run_model(after, &after_ins).context("running the optimized model")?;
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

pub fn run_model(model: &Model, inputs: &[Array]) -> Result<Vec<Array>> {
    let session = Session::new(model, inputs)?;
    Ok(session.run(inputs)?)
}

pub fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect {
            model,
            json,
            zig: true,
            ..
        } => {
            let m = load(&model)?;
            let mut graph = m.graph.clone();
            sculpt_passes::transform::prune::prepare(&mut graph);
            let groups = sculpt_passes::analysis::zero_groups::ZeroGroups::of_graph(&graph);
            if json {
                println!("{}", serde_json::to_string_pretty(&groups)?);
            } else {
                print!("{}", crate::inspect::zig_table(&groups));
            }
        }
        Command::Inspect {
            model,
            json,
            zig: false,
            dims,
        } => {
            let m = load(&model)?;
            let size = std::fs::metadata(&model).map(|m| m.len()).unwrap_or(0);
            let summary = crate::inspect::summarize(&m, size, &dims.into_iter().collect());
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", crate::inspect::table(&summary));
            }
        }
        Command::Opt {
            model,
            pipeline,
            pipeline_file,
            output,
            verify_each,
            check,
            no_check,
            inputs,
            rtol,
            atol,
            report,
            external_data,
            write_shapes,
            text,
            calib,
            calib_random,
            stats_memory,
            calib_mask,
            no_cleanup,
        } => {
            let pipeline = match (pipeline, pipeline_file) {
                (Some(p), None) => Pipeline::parse(&p)?,
                (None, Some(f)) => {
                    let text = std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read {}", f.display()))?;
                    Pipeline::from_toml(&text)?
                }
                (None, None) => bail!(
                    "give a pipeline with -p \"...\" (\"\" for a round-trip) or --pipeline-file"
                ),
                (Some(_), Some(_)) => unreachable!("clap rejects both"),
            };
            let original = load(&model)?;
            let mut m = original.clone();
            let mut manager = PassManager::new(pipeline);
            manager.verify_each |= verify_each;
            manager.canonicalize = !no_cleanup;
            manager.stats_memory = stats_memory;
            manager.row_mask = calib_mask;

            let bars = indicatif::MultiProgress::new();
            // Long work inside passes gets a bar of its own while it runs.
            let work: std::sync::Mutex<Option<indicatif::ProgressBar>> = Default::default();
            let work_bars = bars.clone();
            manager.progress = Some(std::sync::Arc::new(move |what: &str, done, total| {
                let mut slot = work.lock().unwrap_or_else(|e| e.into_inner());
                let bar = slot.get_or_insert_with(|| {
                    let bar = work_bars.add(indicatif::ProgressBar::new(total));
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
            }));
            let bar = bars.add(indicatif::ProgressBar::new(manager.steps()?.len() as u64));
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                    .expect("valid template"),
            );
            let mut calibration = match (calib, calib_random) {
                (Some(p), _) => Some(
                    sculpt_runtime::CalibrationSet::from_arrays(sculpt_runtime::read_npz(&p)?)?
                        .fit_to(&original)?,
                ),
                (None, Some(n)) => Some(sculpt_runtime::CalibrationSet::random(&original, n)?),
                (None, None) => None,
            }
            .map(|c| c.with_progress(&bars));
            let calibrator = calibration
                .as_mut()
                .map(|c| c as &mut dyn sculpt_passes::Calibrator);
            let lossless = manager.steps()?.iter().all(|(_, p)| p.lossless());
            let auto_check = lossless
                && !check
                && !no_check
                && original.graph.weight_bytes() <= AUTO_CHECK_WEIGHTS;
            if check || auto_check {
                let given = inputs.clone();
                let tolerance = Tolerance { rtol, atol };
                manager.guard = Some(std::sync::Arc::new(move |before: &Model, after: &Model| {
                    match compare_outputs(before, after, given.as_deref(), tolerance) {
                        Ok(Some(cmp)) if cmp.ok => Ok(Ok(check_summary(&cmp))),
                        Ok(Some(cmp)) => Ok(Err(check_summary(&cmp))),
                        Ok(None) => Err("no outputs to compare".into()),
                        Err(e) => Err(format!("{e:#}")),
                    }
                }));
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
            let mut comparison = None;
            let compared = if check || auto_check {
                compare_outputs(&original, &m, inputs.as_deref(), Tolerance { rtol, atol })
            } else {
                Ok(None)
            };
            let compared = match compared {
                Err(e) if auto_check => {
                    eprintln!("numerics not checked (--check to insist): {e:#}");
                    None
                }
                other => other?,
            };
            if let Some(cmp) = compared {
                if !cmp.ok {
                    let bad = cmp
                        .outputs
                        .iter()
                        .find(|o| !o.ok)
                        .expect("a failing output");
                    bail!(
                        "--check failed: output '{}' differs (max abs err {:.3e}, {} of {} elements beyond rtol={rtol} atol={atol}); {} not written",
                        bad.name, bad.max_abs_err, bad.mismatches, bad.elements, output.display()
                    );
                }
                let worst = cmp.worst();
                eprintln!(
                    "--check: {} output(s) of the input and optimized models agree within rtol={rtol} atol={atol} on {}{}",
                    cmp.outputs.len(),
                    inputs
                        .as_ref()
                        .map_or("generated inputs".to_string(), |p| p.display().to_string()),
                    worst.map_or(String::new(), |w| format!(
                        "; worst max abs err {:.3e} ('{}')",
                        w.max_abs_err, w.name
                    ))
                );
                comparison = Some(cmp);
            }
            // The report is staged before the model is written, so that a
            // report that cannot be written leaves no output behind.
            let staged_report = match &report {
                Some(path) => {
                    let json = serde_json::json!({ "run": &run, "check": &comparison });
                    Some(stage(
                        path,
                        serde_json::to_string_pretty(&json)?.as_bytes(),
                    )?)
                }
                None => None,
            };
            // So are the files passes asked for (a search's plot and policy).
            let staged_files = run
                .passes
                .iter()
                .flat_map(|p| &p.outcome.files)
                .map(|(path, bytes)| Ok((path, stage(path, bytes)?)))
                .collect::<Result<Vec<_>>>()?;
            if text {
                let s = sculpt_ir::text::print(
                    &m,
                    &sculpt_ir::text::PrintOptions {
                        full: true,
                        ..Default::default()
                    },
                );
                write_atomic(&output, s.as_bytes())?;
            } else {
                let options = sculpt_ir::onnx::SaveOptions {
                    external: if external_data {
                        ExternalPolicy::Always {
                            location: None,
                            threshold: 1024,
                        }
                    } else {
                        ExternalPolicy::Auto
                    },
                    inferred_shapes: write_shapes,
                };
                sculpt_ir::onnx::save(&m, &output, &options)
                    .with_context(|| format!("cannot write {}", output.display()))?;
            }
            if let (Some(path), Some(staged)) = (&report, staged_report) {
                persist(staged, path)?;
            }
            for (path, staged) in staged_files {
                persist(staged, path)?;
            }
            print_run_table(&run);
        }
        Command::Run {
            model,
            inputs,
            output,
            dims,
        } => {
            let m = load(&model)?;
            let ins = inputs_for(&m, inputs.as_deref(), &dims.into_iter().collect())?;
            let outs = run_model(&m, &ins)?;
            for o in &outs {
                let vals = o.to_f64().unwrap_or_default();
                let preview: Vec<String> = vals.iter().take(6).map(|v| format!("{v:.5}")).collect();
                println!(
                    "{} {} {:?} [{}{}]",
                    o.name,
                    o.dtype,
                    o.shape,
                    preview.join(", "),
                    if vals.len() > 6 { ", ..." } else { "" }
                );
            }
            if let Some(path) = output {
                sculpt_runtime::write_npz(&path, &outs)?;
            }
        }
        Command::Check {
            a,
            b,
            inputs,
            rtol,
            atol,
            json,
        } => {
            let (ma, mb) = (load(&a)?, load(&b)?);
            let ins = inputs_for(&ma, inputs.as_deref(), &HashMap::new())?;
            let oa = run_model(&ma, &ins).with_context(|| format!("running {}", a.display()))?;
            let ob = run_model(&mb, &ins).with_context(|| format!("running {}", b.display()))?;
            let cmp = sculpt_runtime::compare(&ob, &oa, Tolerance { rtol, atol });
            if json {
                println!("{}", serde_json::to_string_pretty(&cmp)?);
            } else {
                println!(
                    "{:<32} {:>12} {:>12} {:>10} {:>10} ok",
                    "output", "max abs err", "max rel err", "mismatch", "cosine"
                );
                for o in &cmp.outputs {
                    println!(
                        "{:<32} {:>12.3e} {:>12.3e} {:>10} {:>10.6} {}",
                        o.name,
                        o.max_abs_err,
                        o.max_rel_err,
                        o.mismatches,
                        o.cosine,
                        if o.ok {
                            "yes"
                        } else {
                            o.problem.as_deref().unwrap_or("NO")
                        }
                    );
                }
            }
            if !cmp.ok {
                bail!("outputs differ beyond rtol={rtol} atol={atol}");
            }
        }
        Command::Emit {
            model,
            mlir,
            output,
            shapes,
            dialect,
            pipeline,
            mlir_passes,
            target,
            chip,
            ptx,
            check,
            inputs,
        } => {
            if !mlir {
                bail!("say what to emit: --mlir (the only format so far)");
            }
            let gpu = match (target.as_str(), ptx) {
                ("cpu", None) => None,
                ("gpu", Some(dir)) => Some((chip, dir)),
                ("gpu", None) => bail!("--target gpu writes PTX: give --ptx DIR"),
                ("cpu", Some(_)) => bail!("--ptx goes with --target gpu"),
                (other, _) => bail!("--target {other}: cpu or gpu"),
            };
            let m = load(&model)?;
            let request = crate::emit::EmitRequest {
                shapes: shapes.into_iter().collect(),
                dialect: &dialect,
                pipeline: pipeline.as_deref(),
                mlir_passes: mlir_passes.as_deref(),
                check,
                inputs: inputs.as_deref(),
                gpu,
            };
            crate::emit::emit(m, &output, request)?;
        }
        Command::EmitOps => crate::emit::print_ops()?,
        Command::Bench {
            model,
            inputs,
            warmup,
            runs,
            json,
        } => {
            let m = load(&model)?;
            let ins = inputs_for(&m, inputs.as_deref(), &HashMap::new())?;
            let session = Session::new(&m, &ins)?;
            let lat = sculpt_runtime::bench(&session, &ins, warmup, runs)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&lat)?);
            } else {
                println!(
                    "runs {}  median {:.3} ms  min {:.3} ms  max {:.3} ms",
                    lat.runs, lat.median_ms, lat.min_ms, lat.max_ms
                );
            }
        }
        Command::Print { model, full } => {
            let m = load(&model)?;
            print!(
                "{}",
                sculpt_ir::text::print(
                    &m,
                    &sculpt_ir::text::PrintOptions {
                        full,
                        ..Default::default()
                    }
                )
            );
        }
        Command::Passes => {
            for p in registry::PASSES {
                println!("{}  {}", p.name, p.summary);
                for o in p.options {
                    println!(
                        "    {}={} ({}, default {})  {}",
                        o.name, o.kind, o.kind, o.default, o.help
                    );
                }
            }
        }
    }
    Ok(())
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

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    persist(stage(path, bytes)?, path)
}

/// `bytes` written to a temporary file beside `path` (removed if it is
/// never persisted).
fn stage(path: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = sculpt_ir::output_tempfile(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(tmp)
}

/// Moves a staged file to `path`.
fn persist(staged: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    staged
        .persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
