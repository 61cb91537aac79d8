//! Parsing and verifying emitted modules with MLIR, through melior.

use crate::{CodegenError, Result};
use melior::ir::operation::OperationLike;
use melior::ir::Module;
use melior::{dialect::DialectRegistry, utility::register_all_dialects, Context};
use std::cell::RefCell;
use std::rc::Rc;

/// An MLIR context with every upstream dialect loaded.
pub struct MlirContext {
    pub context: Context,
}

impl MlirContext {
    pub fn new() -> MlirContext {
        let registry = DialectRegistry::new();
        register_all_dialects(&registry);
        let context = Context::new();
        context.append_dialect_registry(&registry);
        context.load_all_available_dialects();
        MlirContext { context }
    }
}

impl Default for MlirContext {
    fn default() -> Self {
        MlirContext::new()
    }
}

/// Runs `f`, collecting MLIR's diagnostics: each message, with the line
/// of `text` it points at.
fn with_diagnostics<T>(context: &MlirContext, text: &str, f: impl FnOnce() -> T) -> (T, String) {
    let messages = Rc::new(RefCell::new(Vec::<String>::new()));
    let sink = messages.clone();
    let id = context.context.attach_diagnostic_handler(move |d| {
        sink.borrow_mut().push(format!("{}: {d}", d.location()));
        true
    });
    let result = f();
    context.context.detach_diagnostic_handler(id);
    let described: Vec<String> = messages
        .borrow()
        .iter()
        .map(|m| {
            let line = m
                .split_once("\":")
                .and_then(|(_, rest)| rest.split(':').next()?.parse::<usize>().ok())
                .and_then(|l| text.lines().nth(l.checked_sub(1)?));
            match line {
                Some(l) => format!(
                    "{m}\n  at: {}",
                    l.trim().chars().take(300).collect::<String>()
                ),
                None => m.clone(),
            }
        })
        .collect();
    (result, described.join("\n"))
}

/// Parses `text`, with MLIR's diagnostics in the error.
fn parse<'c>(context: &'c MlirContext, text: &str) -> Result<Module<'c>> {
    let (module, diagnostics) =
        with_diagnostics(context, text, || Module::parse(&context.context, text));
    module.ok_or_else(|| CodegenError::Verify(format!("the module does not parse: {diagnostics}")))
}

/// Parses and verifies `text`; returns MLIR's own printing of it.
pub fn verify_module(context: &MlirContext, text: &str) -> Result<String> {
    let module = parse(context, text)?;
    let (ok, diagnostics) = with_diagnostics(context, text, || module.as_operation().verify());
    if !ok {
        return Err(CodegenError::Verify(format!(
            "the module does not verify: {diagnostics}"
        )));
    }
    Ok(text.to_string())
}

/// TOSA to linalg on tensors (and `arith`, `tensor`); canonicalization
/// then drops the `tosa.const_shape` values the lowered ops used.
pub const TOSA_TO_LINALG: &str = "builtin.module(func.func(tosa-to-linalg-named,tosa-to-linalg,tosa-to-arith,tosa-to-tensor),canonicalize)";

/// Parses `text` and runs the textual pass `pipeline` on it in process; a
/// TOSA module is first lowered to linalg ([`TOSA_TO_LINALG`]).
pub(crate) fn lower<'c>(
    context: &'c MlirContext,
    text: &str,
    pipeline: &str,
) -> Result<Module<'c>> {
    if text.contains("tosa.") {
        run_pipelines(context, text, &[TOSA_TO_LINALG, pipeline])
    } else {
        run_pipelines(context, text, &[pipeline])
    }
}

/// Parses `text` and runs each textual pass pipeline on it, in order.
fn run_pipelines<'c>(
    context: &'c MlirContext,
    text: &str,
    pipelines: &[&str],
) -> Result<Module<'c>> {
    melior::utility::register_all_passes();
    melior::utility::register_all_llvm_translations(&context.context);
    let mut module = parse(context, text)?;
    for p in pipelines {
        let pm = melior::pass::PassManager::new(&context.context);
        melior::utility::parse_pass_pipeline(pm.as_operation_pass_manager(), p)
            .map_err(|e| CodegenError::Lowering(format!("pipeline '{p}': {e}")))?;
        let (ran, diagnostics) = with_diagnostics(context, text, || pm.run(&mut module));
        ran.map_err(|e| CodegenError::Lowering(format!("{e}: {diagnostics}")))?;
    }
    Ok(module)
}

/// Runs the textual MLIR pass `pipeline` on `text` in process and returns
/// the module MLIR prints (verified: the pass manager verifies after each
/// pass).
pub fn run_passes(context: &MlirContext, text: &str, pipeline: &str) -> Result<String> {
    let module = run_pipelines(context, text, &[pipeline])?;
    Ok(module.as_operation().to_string())
}

/// The bytecode version [`to_bytecode`] writes: IREE 3.13 does not read
/// the op properties of versions 5 and 6 as MLIR 22 writes them.
pub const BYTECODE_VERSION: i64 = 4;

/// `text` as MLIR bytecode (`.mlirbc`, [`BYTECODE_VERSION`]): weights as
/// raw bytes rather than hex, so about half the size, and read by
/// `mlir-opt` and `iree-compile` as text is.
pub fn to_bytecode(context: &MlirContext, text: &str) -> Result<Vec<u8>> {
    let module = parse(context, text)?;
    let config = melior::ir::BytecodeWriterConfig::new();
    config.set_desired_emit_version(BYTECODE_VERSION);
    module
        .as_operation()
        .write_bytecode_with_config(&config)
        .map_err(|e| {
            CodegenError::Lowering(format!("writing bytecode version {BYTECODE_VERSION}: {e}"))
        })
}
