//! The `sculpt` command line: inspect, optimize, run, compare and benchmark
//! ONNX models. Errors are one line with context, exit code 1; output files
//! are written atomically.

mod cli;
mod emit;
mod inspect;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
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
