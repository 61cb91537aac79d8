//! The `sculpt` command line: inspect, optimize, run, compare and benchmark
//! ONNX models. Errors are one line with context, exit code 1; output files
//! are written atomically.

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
    if let Err(e) = sculpt::run(std::env::args_os()) {
        eprintln!("error: {}", sculpt::error_line(&e));
        std::process::exit(1);
    }
}
