//! Latency measurement: warm-up runs, then timed runs; median, min, max.

use crate::{Array, Engine, Result, Session};
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// The runtime measured.
    pub runtime: Engine,
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

pub fn bench(session: &Session, inputs: &[Array], warmup: usize, runs: usize) -> Result<Latency> {
    for _ in 0..warmup {
        session.run(inputs)?;
    }
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        session.run(inputs)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(Latency {
        runtime: session.engine(),
        runs: times.len(),
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        max_ms: times[times.len() - 1],
    })
}
