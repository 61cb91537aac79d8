//! Subcommands and their wiring to the libraries: one function per
//! subcommand (`opt` in [`crate::opt`], `emit` in [`crate::emit`]).

use crate::arg_values::{parse_dim, parse_shape, RuntimeArgs, ToleranceArgs};
use crate::files::{inputs_for, load, run_model};
use crate::opt::OptArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use sculpt_passes::registry;
use sculpt_runtime::Session;
use std::collections::HashMap;
use std::path::PathBuf;

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
    Inspect(InspectArgs),
    /// Run a pass pipeline and write the result.
    Opt(OptArgs),
    /// Run a model on inputs (.npz) or generated inputs.
    Run(RunArgs),
    /// Compare two models' outputs on the same inputs.
    Check(CheckArgs),
    /// Measure latency (warm-up, then timed runs).
    Bench(BenchArgs),
    /// Print the text form.
    Print(PrintArgs),
    /// List passes and their options.
    Passes(PassesArgs),
    /// Emit the model as MLIR (linalg on tensors, or TOSA; verified by
    /// MLIR), after cleanup; `--check` also runs it on the CPU and compares
    /// with tract. Needs a build with `--features mlir` (LLVM 22).
    Emit(EmitArgs),
    /// The ops `emit` covers and what each becomes, as a markdown table.
    EmitOps,
}

/// Inputs, outputs, op histogram, params, FLOPs, opsets and size.
#[derive(Args)]
pub struct InspectArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// List the zero-invariant groups (prunable structures).
    #[arg(long)]
    pub zig: bool,
    /// Size of a symbolic input dim for the FLOPs: NAME=SIZE (a leading
    /// dim unbound counts as 1, per sample; others are named as unbound).
    #[arg(long = "dim", value_parser = parse_dim)]
    pub dims: Vec<(String, usize)>,
}

/// Run a model on inputs (.npz) or generated inputs.
#[derive(Args)]
pub struct RunArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Bind a symbolic dim for generated inputs: NAME=SIZE.
    #[arg(long = "dim", value_parser = parse_dim)]
    pub dims: Vec<(String, usize)>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Compare two models' outputs on the same inputs.
#[derive(Args)]
pub struct CheckArgs {
    pub a: PathBuf,
    pub b: PathBuf,
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    #[command(flatten)]
    pub tolerance: ToleranceArgs,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Measure latency (warm-up, then timed runs).
#[derive(Args)]
pub struct BenchArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Print the text form.
#[derive(Args)]
pub struct PrintArgs {
    pub model: PathBuf,
    /// Print every tensor in full (parseable), not elided digests.
    #[arg(long)]
    pub full: bool,
}

/// List passes and their options.
#[derive(Args)]
pub struct PassesArgs {
    /// The reference as Markdown (docs/passes.md).
    #[arg(long)]
    pub markdown: bool,
    /// As JSON: name, summary and options of every pass.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
}

/// Emit the model as MLIR (linalg on tensors, or TOSA; verified by
/// MLIR), after cleanup; `--check` also runs it on the CPU and compares
/// with tract. Needs a build with `--features mlir` (LLVM 22).
#[derive(Args)]
pub struct EmitArgs {
    pub model: PathBuf,
    /// Emit MLIR (the only output format so far).
    #[arg(long)]
    pub mlir: bool,
    /// The module: MLIR text, or MLIR bytecode when it ends in .mlirbc
    /// (weights as raw bytes: about half the size).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Static dims for an input with symbolic ones: NAME=D0,D1,...
    #[arg(long = "shape", value_parser = parse_shape)]
    pub shapes: Vec<(String, Vec<i64>)>,
    /// linalg (named ops and generics on tensors) or tosa.
    #[arg(long, default_value = "linalg")]
    pub dialect: String,
    /// The layout linalg convolutions compute in: nchw (ONNX's, the
    /// faster on IREE's llvm-cpu) or nhwc (transposed in and out; IREE
    /// cancels the transposes between convolutions).
    #[arg(long, default_value = "nchw")]
    pub conv_layout: String,
    /// sculpt passes to run first, once the shapes are bound, e.g.
    /// "prune{ratio=0.3}" (cleanup always runs last).
    #[arg(short, long)]
    pub pipeline: Option<String>,
    /// An MLIR pass pipeline to run on the emitted module before it is
    /// written, e.g. "builtin.module(canonicalize,cse)".
    #[arg(long)]
    pub mlir_passes: Option<String>,
    /// cpu or cuda: the module is for IREE (llvm-cpu on this host, or
    /// CUDA on --chip), and the `iree-compile` flags it was made for are
    /// written beside it (OUTPUT with the extension .iree-flags, one flag
    /// per line); or gpu: lower it in process through the gpu dialect to
    /// PTX (--ptx).
    #[arg(long, default_value = "cpu")]
    pub target: String,
    /// With --target cuda or gpu: the NVIDIA chip (sm_80, ...; IREE has no
    /// sm_90 entry: an H100 runs sm_80 code).
    #[arg(long, default_value = "sm_80")]
    pub chip: String,
    /// With --target gpu: the folder to write one PTX file per kernel to.
    #[arg(long)]
    pub ptx: Option<PathBuf>,
    /// Lower for the CPU, run on --inputs (or generated ones) and
    /// compare with the ONNX model run on --runtime (rtol 1e-4).
    #[arg(long)]
    pub check: bool,
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

pub fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect(args) => inspect(args),
        Command::Opt(args) => crate::opt::opt(args),
        Command::Run(args) => run(args),
        Command::Check(args) => check(args),
        Command::Emit(args) => emit(args),
        Command::EmitOps => crate::emit::print_ops(),
        Command::Bench(args) => bench(args),
        Command::Print(args) => print(args),
        Command::Passes(args) => passes(args),
    }
}

fn inspect(
    InspectArgs {
        model,
        json,
        zig,
        dims,
    }: InspectArgs,
) -> Result<()> {
    let m = load(&model)?;
    if zig {
        let groups = zero_groups(&m);
        if json {
            println!("{}", serde_json::to_string_pretty(&groups)?);
        } else {
            print!("{}", crate::inspect::zig_table(&groups));
        }
        return Ok(());
    }
    let size = std::fs::metadata(&model).map(|m| m.len()).unwrap_or(0);
    let summary = crate::inspect::summarize(&m, size, &dims.into_iter().collect());
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", crate::inspect::table(&summary));
    }
    Ok(())
}

/// The zero-invariant groups of `model` (after prune's preparation: its
/// parameters as initializers of their own).
pub(crate) fn zero_groups(
    model: &sculpt_ir::Model,
) -> sculpt_passes::analysis::zero_groups::ZeroGroups {
    let mut graph = model.graph.clone();
    sculpt_passes::transform::prune::prepare(&mut graph);
    sculpt_passes::analysis::zero_groups::ZeroGroups::of_graph(&graph)
}

/// Every pass with its options, as `passes --json` prints them.
pub(crate) fn passes_json() -> serde_json::Value {
    registry::PASSES
        .iter()
        .map(|p| {
            let options: Vec<_> = (p.options)()
                .iter()
                .map(|o| {
                    serde_json::json!({
                        "name": o.name, "kind": o.kind.to_string(),
                        "default": o.default.to_string(), "help": o.help,
                    })
                })
                .collect();
            serde_json::json!({"name": p.name, "summary": p.summary, "options": options})
        })
        .collect()
}

fn passes(PassesArgs { markdown, json }: PassesArgs) -> Result<()> {
    if markdown {
        print!("{}", registry::markdown());
        return Ok(());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&passes_json())?);
        return Ok(());
    }
    for p in registry::PASSES {
        println!("{}  {}", p.name, p.summary);
        for o in (p.options)() {
            println!(
                "    {}={}  (default {})  {}",
                o.name, o.kind, o.default, o.help
            );
        }
    }
    Ok(())
}

fn run(
    RunArgs {
        model,
        inputs,
        output,
        dims,
        runtime,
    }: RunArgs,
) -> Result<()> {
    let engine = runtime.engine()?;
    let m = load(&model)?;
    let ins = inputs_for(&m, inputs.as_deref(), &dims.into_iter().collect())?;
    let outs = run_model(engine, &m, &ins)?;
    eprintln!("ran on {engine}");
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
    Ok(())
}

fn check(
    CheckArgs {
        a,
        b,
        inputs,
        tolerance,
        json,
        runtime,
    }: CheckArgs,
) -> Result<()> {
    let engine = runtime.engine()?;
    let (ma, mb) = (load(&a)?, load(&b)?);
    let ins = inputs_for(&ma, inputs.as_deref(), &HashMap::new())?;
    let oa = run_model(engine, &ma, &ins).with_context(|| format!("running {}", a.display()))?;
    let ob = run_model(engine, &mb, &ins).with_context(|| format!("running {}", b.display()))?;
    eprintln!("both ran on {engine}");
    let cmp = sculpt_runtime::compare(&ob, &oa, tolerance.tolerance());
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
        let ToleranceArgs { rtol, atol } = tolerance;
        bail!("outputs differ beyond rtol={rtol} atol={atol}");
    }
    Ok(())
}

fn bench(
    BenchArgs {
        model,
        inputs,
        warmup,
        runs,
        json,
        runtime,
    }: BenchArgs,
) -> Result<()> {
    let engine = runtime.engine()?;
    let m = load(&model)?;
    let ins = inputs_for(&m, inputs.as_deref(), &HashMap::new())?;
    let session = Session::new(engine, &m, &ins)?;
    let lat = sculpt_runtime::bench(&session, &ins, warmup, runs)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&lat)?);
    } else {
        println!(
            "{}  runs {}  median {:.3} ms  min {:.3} ms  max {:.3} ms",
            lat.runtime, lat.runs, lat.median_ms, lat.min_ms, lat.max_ms
        );
    }
    Ok(())
}

fn print(PrintArgs { model, full }: PrintArgs) -> Result<()> {
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
    Ok(())
}

fn emit(
    EmitArgs {
        model,
        mlir,
        output,
        shapes,
        dialect,
        conv_layout,
        pipeline,
        mlir_passes,
        target,
        chip,
        ptx,
        check,
        inputs,
        runtime,
    }: EmitArgs,
) -> Result<()> {
    if !mlir {
        bail!("say what to emit: --mlir (the only format so far)");
    }
    let (iree, gpu) = match (target.as_str(), ptx) {
        ("gpu", Some(dir)) => (None, Some((chip, dir))),
        ("gpu", None) => bail!("--target gpu writes PTX: give --ptx DIR"),
        ("cpu" | "cuda", Some(_)) => bail!("--ptx goes with --target gpu"),
        (other, None) => match crate::emit::iree_target(other, &chip) {
            Some(t) => (Some(t), None),
            None => bail!("--target {other}: cpu, cuda or gpu"),
        },
        (other, Some(_)) => bail!("--target {other}: cpu, cuda or gpu"),
    };
    let m = load(&model)?;
    let request = crate::emit::EmitRequest {
        shapes: shapes.into_iter().collect(),
        dialect: &dialect,
        conv_layout: &conv_layout,
        pipeline: pipeline.as_deref(),
        mlir_passes: mlir_passes.as_deref(),
        check: check.then(|| runtime.engine()).transpose()?,
        inputs: inputs.as_deref(),
        gpu,
        iree,
    };
    crate::emit::emit(m, &output, request)?;
    Ok(())
}
