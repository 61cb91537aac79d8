//! Parsing and verifying emitted modules with MLIR, through melior.

use crate::{CodegenError, Result};
use melior::ir::operation::OperationLike;
use melior::ir::Module;
use melior::{dialect::DialectRegistry, utility::register_all_dialects, Context};

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

/// Parses and verifies `text`; returns MLIR's own printing of it.
pub fn verify_module(context: &MlirContext, text: &str) -> Result<String> {
    let module = Module::parse(&context.context, text)
        .ok_or_else(|| CodegenError::Verify("the module does not parse".into()))?;
    if !module.as_operation().verify() {
        return Err(CodegenError::Verify("the module does not verify".into()));
    }
    Ok(text.to_string())
}

/// Parses `text` and runs the textual pass `pipeline` on it in process.
pub(crate) fn lower<'c>(
    context: &'c MlirContext,
    text: &str,
    pipeline: &str,
) -> Result<Module<'c>> {
    melior::utility::register_all_passes();
    melior::utility::register_all_llvm_translations(&context.context);
    let mut module = Module::parse(&context.context, text)
        .ok_or_else(|| CodegenError::Verify("the module does not parse".into()))?;
    let pm = melior::pass::PassManager::new(&context.context);
    melior::utility::parse_pass_pipeline(pm.as_operation_pass_manager(), pipeline)
        .map_err(|e| CodegenError::Lowering(e.to_string()))?;
    pm.run(&mut module)
        .map_err(|e| CodegenError::Lowering(e.to_string()))?;
    Ok(module)
}
