//! The `sculpt` command line: inspect, optimize, run, compare and benchmark
//! ONNX models. Errors are one line with context, exit code 1; output files
//! are written atomically.

mod arg_values;
mod cli;
mod emit;
mod files;
mod inspect;
mod opt;

use clap::Parser;

/// glibc maps every block over 32 MB afresh and unmaps it when freed:
/// calibration runs allocate and free activations of that size chunk
/// after chunk, and spent a third of their time faulting the same pages
/// in again. Blocks up to 64 MB come from the heap instead, and up to
/// 64 MB of freed heap is kept for the next chunk (larger blocks, such as
/// the weights of a large model, are still mapped and given back).
fn keep_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// A closed pipe (`sculpt passes | head`) ends the process quietly, as it
/// does other command-line tools, instead of failing a print.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal, before any other
    // thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() {
    keep_large_blocks();
    quiet_on_closed_pipe();
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
