//! The `sculpt` command line: inspect, optimize, run, compare and benchmark
//! ONNX models. Errors are one line with context, exit code 1; output files
//! are written atomically.

mod cli;
mod emit;
mod inspect;

use clap::Parser;

fn main() {
    // Usage errors exit 1 like every other failure (clap's own code is 2);
    // --help and --version still exit 0.
    let args = cli::Cli::try_parse().unwrap_or_else(|e| {
        let code = if e.use_stderr() { 1 } else { 0 };
        let _ = e.print();
        std::process::exit(code);
    });
    if let Err(e) = cli::dispatch(args) {
        // Each cause once: a message that already ends with its cause's
        // text (thiserror's `{source}`) does not repeat it.
        let mut text = e.to_string();
        for cause in e.chain().skip(1).map(|c| c.to_string()) {
            if !text.ends_with(&cause) {
                text = format!("{text}: {cause}");
            }
        }
        eprintln!("error: {text}");
        std::process::exit(1);
    }
}
