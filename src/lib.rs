//! The `sculpt` command line as a library: the binary (`src/main.rs`) and
//! the Python package (`python/`) both run it through [`run`], and the
//! Python API reads models' summaries through [`api`].

mod arg_values;
pub mod cli;
mod emit;
mod files;
mod inspect;
mod opt;

pub use sculpt_runtime::panic_message;

/// Runs the command line `args` (the program name first): parses them and
/// dispatches. A usage error is an error like any other; `--help` and
/// `--version` print and succeed.
pub fn run<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser;
    match cli::Cli::try_parse_from(args) {
        Ok(parsed) => cli::dispatch(parsed),
        Err(e) if !e.use_stderr() => {
            e.print()?;
            Ok(())
        }
        Err(e) => {
            let text = e.render().to_string();
            let text = text.trim_end();
            Err(anyhow::anyhow!(text
                .strip_prefix("error: ")
                .unwrap_or(text)
                .to_string()))
        }
    }
}

/// An error and its causes as one line, each cause once: a message that
/// already ends with its cause's text (thiserror's `{source}`) does not
/// repeat it.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1).map(|c| c.to_string()) {
        if !text.ends_with(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

/// What `sculpt inspect --json`, `inspect --zig --json` and `passes`
/// print, as JSON values, for callers in the same process.
pub mod api {
    use anyhow::Result;
    use std::collections::HashMap;
    use std::path::Path;

    /// The summary `sculpt inspect --json` prints.
    pub fn inspect(model: &Path, dims: &HashMap<String, usize>) -> Result<serde_json::Value> {
        let m = crate::files::load(model)?;
        let size = std::fs::metadata(model).map(|m| m.len()).unwrap_or(0);
        Ok(serde_json::to_value(crate::inspect::summarize(
            &m, size, dims,
        ))?)
    }

    /// The zero-invariant groups `sculpt inspect --zig --json` prints.
    pub fn zig(model: &Path) -> Result<serde_json::Value> {
        Ok(serde_json::to_value(crate::cli::zero_groups(
            &crate::files::load(model)?,
        ))?)
    }

    /// Every pass: its name, summary and options (name, type, default,
    /// help).
    pub fn passes() -> serde_json::Value {
        crate::cli::passes_json()
    }
}
