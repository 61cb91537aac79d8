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
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}
