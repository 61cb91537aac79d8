//! `sculpt-fuzz TARGET [--seconds N] [--seed S] [--crashes DIR] [SEED_PATH...]`
//!
//! Runs one target (onnx, text, pipeline, npz) for a time budget on
//! mutated seeds (files, or folders searched for the target's files) and,
//! for onnx, on generated models too. A panic is a crash: the input is
//! kept in the crashes folder under a name from its hash, with the panic
//! message beside it. Before each run the input is written to
//! `current-TARGET.bin` there, so that an abort (out of memory, stack
//! overflow) leaves it behind. Prints a JSON summary: executions, crashes.

use sculpt_fuzz::{generate, mutate, Rng, Target};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

const PIPELINES: &[&str] = &[
    "cleanup",
    "cleanup,cleanup#again{dce=false}",
    "cleanup{fold_limit=1K untie=true}",
    "prune{criterion=magnitude ratio=0.3}",
    "erase",
    "lowrank{ratio=0.5}",
    "quantize{policy=int4 round=rtn}",
    "quantize{policy=fp16}",
    "moe{experts=2 k=1 partition=random router=random skip=zero}",
    "opset{to=21}",
];

fn seed_files(paths: &[PathBuf], target: Target) -> Vec<Vec<u8>> {
    let extension = match target {
        Target::Onnx => "onnx",
        Target::Text => "sculpt",
        Target::Pipeline => "pipeline",
        Target::Npz => "npz",
    };
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if p.extension().is_some_and(|e| e == extension) {
            // Small files only: a run should make many executions.
            if std::fs::metadata(&p).is_ok_and(|m| m.len() <= 4 << 20) {
                if let Ok(bytes) = std::fs::read(&p) {
                    files.push(bytes);
                }
            }
        }
    }
    let mut seeds = Vec::new();
    for f in files {
        if target == Target::Text {
            // Pass test files hold several cases.
            let text = String::from_utf8_lossy(&f).into_owned();
            seeds.extend(text.split("// -----").map(|c| c.as_bytes().to_vec()));
        } else {
            seeds.push(f);
        }
    }
    if target == Target::Pipeline {
        seeds.extend(PIPELINES.iter().map(|p| p.as_bytes().to_vec()));
    }
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    seeds
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let target_arg = args.next();
    let usage = "usage: sculpt-fuzz onnx|text|pipeline|npz [--seconds N] [--seed S] [--crashes DIR] [SEED_PATH...]\n       sculpt-fuzz TARGET --replay FILE";
    let Some(target) = target_arg.as_deref().and_then(Target::parse) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let rest: Vec<String> = args.collect();
    if let [flag, file] = rest.as_slice() {
        if flag == "--replay" {
            // The default panic hook, so that RUST_BACKTRACE shows where.
            let data = std::fs::read(file).unwrap_or_else(|e| {
                eprintln!("{file}: {e}");
                std::process::exit(2)
            });
            println!("{:?}", target.run(&data));
            return;
        }
    }
    let mut args = rest.into_iter();
    let (mut seconds, mut seed, mut crashes, mut paths) =
        (60.0f64, 1u64, PathBuf::from("fuzz/crashes"), Vec::new());
    while let Some(a) = args.next() {
        let mut value = |what: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("{what} needs a value\n{usage}");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--seconds" => seconds = value("--seconds").parse().unwrap_or(seconds),
            "--seed" => seed = value("--seed").parse().unwrap_or(seed),
            "--crashes" => crashes = PathBuf::from(value("--crashes")),
            _ => paths.push(PathBuf::from(a)),
        }
    }
    if let Err(e) = std::fs::create_dir_all(&crashes) {
        eprintln!("cannot create {}: {e}", crashes.display());
        std::process::exit(1);
    }
    std::panic::set_hook(Box::new(|info| {
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = info.to_string();
    }));
    let mut pool = seed_files(&paths, target);
    let seeds = pool.len();
    let mut rng = Rng::new(seed);
    let current = crashes.join(format!("current-{}.bin", target.name()));
    let (start, budget) = (Instant::now(), Duration::from_secs_f64(seconds));
    let (mut executions, mut accepted) = (0u64, 0u64);
    let mut found: BTreeMap<String, (PathBuf, usize)> = BTreeMap::new();
    while start.elapsed() < budget {
        let base = pool[rng.below(pool.len())].clone();
        let input = match (target, rng.below(3)) {
            (Target::Onnx, 0) => {
                let raw: Vec<u8> = (0..64 + rng.below(2048))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                generate::model(&raw).unwrap_or_default()
            }
            (Target::Onnx, 1) => mutate::model(&mut rng, &base).unwrap_or(base),
            _ => {
                let other = pool[rng.below(pool.len())].clone();
                mutate::bytes(&mut rng, &base, &other)
            }
        };
        let _ = std::fs::write(&current, &input);
        let result = std::panic::catch_unwind(|| target.run(&input));
        executions += 1;
        match result {
            Ok(Ok(())) => {
                accepted += 1;
                if pool.len() < 4096 {
                    pool.push(input);
                }
            }
            Ok(Err(_)) => {}
            Err(_) => {
                let message = LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default();
                // One crash per panic site (the message's first line).
                let site = message.lines().next().unwrap_or("").to_string();
                let entry = found.entry(site).or_insert_with(|| {
                    let path = crashes.join(format!("{}-{:016x}.bin", target.name(), fnv(&input)));
                    let _ = std::fs::write(&path, &input);
                    let _ = std::fs::write(path.with_extension("txt"), &message);
                    (path, 0)
                });
                entry.1 += 1;
            }
        }
    }
    let _ = std::fs::remove_file(&current);
    let crashes_json: Vec<String> = found
        .iter()
        .map(|(site, (path, n))| {
            format!(
                "{{\"panic\": {:?}, \"times\": {n}, \"input\": {:?}}}",
                site,
                path.display().to_string()
            )
        })
        .collect();
    println!(
        "{{\"target\": \"{}\", \"seconds\": {:.1}, \"seeds\": {seeds}, \"executions\": {executions}, \"accepted\": {accepted}, \"crashes\": [{}]}}",
        target.name(),
        start.elapsed().as_secs_f64(),
        crashes_json.join(", ")
    );
    if !found.is_empty() {
        std::process::exit(1);
    }
}
