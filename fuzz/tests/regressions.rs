//! Every input a fuzzing run found a crash with is kept in
//! `regressions/<target>/` once fixed: each must now give an answer (an
//! error is fine), never a panic.

use sculpt_fuzz::targets::ALL;

#[test]
fn kept_crash_inputs_no_longer_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut replayed = 0;
    for target in ALL {
        let dir = root.join(target.name());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "txt") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target.run(&data));
            assert!(outcome.is_ok(), "{} panics", path.display());
            replayed += 1;
        }
    }
    eprintln!("{replayed} kept inputs replayed");
}
