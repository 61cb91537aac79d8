//! Calibration data for passes that measure activations: samples stacked
//! along axis 0 of every input (`--calib DATA.npz`) or generated
//! (`--calib-random N`). Implements the passes' [`Calibrator`] by running
//! the model in chunks of samples, on tract or onnxruntime ([`Engine`]):
//! the values asked for become outputs of the copy that runs, so that no
//! runtime fuses them away.
//!
//! Axis 0 is either the model's batch axis (rows of several samples run
//! together) or, for an array one rank above its input (a scalar flag, a
//! state whose batch is not its first axis), a sample axis of its own:
//! such a set runs sample by sample, each fed without that axis.

use crate::{generate_inputs, Array, Engine, Result, RuntimeError, Session};
use sculpt_ir::calibrator::{Calibrator, ValueChunk, VisitChunk};
use sculpt_ir::{Dim, Model, Type};
use std::collections::HashMap;

pub struct CalibrationSet {
    /// One array per model input; axis 0 is the sample axis.
    inputs: Vec<Array>,
    samples: usize,
    progress: Option<indicatif::MultiProgress>,
    /// The arrays whose axis 0 the model does not have ([`Self::fit_to`]).
    stacked: Vec<bool>,
    engine: Engine,
}

/// The most bytes generated calibration samples may take together.
const RANDOM_SAMPLES_LIMIT: u64 = 2 << 30;

impl CalibrationSet {
    pub fn from_arrays(inputs: Vec<Array>) -> Result<CalibrationSet> {
        let samples = inputs
            .first()
            .and_then(|a| a.shape.first().copied())
            .unwrap_or(0);
        if samples == 0 || inputs.iter().any(|a| a.shape.first() != Some(&samples)) {
            return Err(RuntimeError::Npz(
                "calibration arrays must share a non-empty first (sample) axis".into(),
            ));
        }
        Ok(CalibrationSet {
            stacked: vec![false; inputs.len()],
            inputs,
            samples,
            progress: None,
            engine: Engine::Tract,
        })
    }

    /// Runs the model on `engine` (tract unless told).
    pub fn on(mut self, engine: Engine) -> CalibrationSet {
        self.engine = engine;
        self
    }

    /// Matches the arrays to `model`'s inputs: an array one rank above its
    /// input holds one sample per index of axis 0; one of the input's rank
    /// holds rows of its batch axis. Any other rank is refused, naming
    /// the input.
    pub fn fit_to(mut self, model: &Model) -> Result<CalibrationSet> {
        let g = &model.graph;
        for (a, stacked) in self.inputs.iter().zip(&mut self.stacked) {
            let rank = g
                .inputs
                .iter()
                .find(|&&v| g.value(v).name == a.name)
                .and_then(|&v| g.value(v).ty.as_ref())
                .and_then(|t| t.shape().map(<[Dim]>::len));
            *stacked = match rank {
                Some(r) if a.shape.len() == r + 1 => true,
                Some(r) if a.shape.len() == r => false,
                Some(r) => {
                    return Err(RuntimeError::Input {
                        name: a.name.clone(),
                        reason: format!(
                            "calibration array of rank {} for an input of rank {r}: give the input's rank (axis 0 its batch) or one more (axis 0 the samples)",
                            a.shape.len()
                        ),
                    })
                }
                None => false,
            };
        }
        Ok(self)
    }

    /// `n` generated samples for `model` (see [`generate_inputs`]), stacked.
    pub fn random(model: &Model, n: usize) -> Result<CalibrationSet> {
        let refuse = |reason: String| RuntimeError::Input {
            name: "generated calibration samples".into(),
            reason,
        };
        if n == 0 {
            return Err(refuse("0 asked for; give 1 or more".into()));
        }
        let first = generate_inputs(model, &HashMap::new(), 1)?;
        // A scalar input has no batch axis to stack samples on: every
        // input then gets a sample axis of its own.
        let by_sample = first.iter().any(|a| a.shape.is_empty());
        let per_sample: u64 = first.iter().map(|a| a.data.len() as u64).sum();
        if per_sample.saturating_mul(n as u64) > RANDOM_SAMPLES_LIMIT {
            return Err(refuse(format!(
                "{n} samples of {per_sample} bytes would need more than {} GiB; give fewer, or real data with --calib",
                RANDOM_SAMPLES_LIMIT >> 30
            )));
        }
        let parts: Vec<Vec<Array>> = std::iter::once(Ok(first))
            .chain((1..n).map(|i| generate_inputs(model, &HashMap::new(), i as u64 + 1)))
            .collect::<Result<_>>()?;
        let inputs = (0..parts[0].len())
            .map(|k| {
                let first = &parts[0][k];
                let mut shape = first.shape.clone();
                if by_sample {
                    shape.insert(0, 1);
                }
                let per = shape[0];
                shape[0] = per * parts.len();
                Array {
                    name: first.name.clone(),
                    dtype: first.dtype,
                    shape,
                    data: parts
                        .iter()
                        .flat_map(|p| p[k].data.iter().copied())
                        .collect(),
                }
            })
            .collect();
        CalibrationSet::from_arrays(inputs)?.fit_to(model)
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Samples `start..end` of every input.
    fn chunk(&self, start: usize, end: usize) -> Vec<Array> {
        self.inputs
            .iter()
            .zip(&self.stacked)
            .map(|(a, &stacked)| {
                let per = a.data.len() / a.shape[0];
                let mut shape = a.shape.clone();
                shape[0] = end - start;
                if stacked {
                    debug_assert_eq!(end - start, 1, "stacked sets run sample by sample");
                    shape.remove(0);
                }
                Array {
                    name: a.name.clone(),
                    dtype: a.dtype,
                    shape,
                    data: a.data[start * per..end * per].to_vec(),
                }
            })
            .collect()
    }

    /// Samples per run: the model's fixed batch size, or as many (up to
    /// 64) as keep the requested values of one chunk within
    /// [`CHUNK_BYTES`], evened out over the `visited` samples.
    fn chunk_size(&self, probe: &Model, visited: usize) -> usize {
        if self.stacked.contains(&true) {
            return 1;
        }
        let g = &probe.graph;
        let fixed = g.inputs.iter().find_map(|&v| match &g.value(v).ty {
            Some(Type::Tensor {
                shape: Some(dims), ..
            }) => match dims.first() {
                Some(Dim::Known(k)) if *k > 0 => Some(*k as usize),
                _ => None,
            },
            _ => None,
        });
        if let Some(k) = fixed {
            return k.min(self.samples);
        }
        let per_sample = self.bytes_per_sample(probe).unwrap_or(0).max(1);
        let most = ((CHUNK_BYTES / per_sample) as usize).clamp(1, 64);
        // Chunks of equal size where they can be: a last, smaller chunk
        // would build the session again.
        let samples = visited.max(1);
        // At least two, for two workers; not by the thread count, so
        // that sums over chunks add up alike on every machine.
        let chunks = samples.div_ceil(most).max(2);
        samples.div_ceil(chunks)
    }

    /// Bytes the outputs of `probe` take for one sample (by shape inference).
    fn bytes_per_sample(&self, probe: &Model) -> Option<u64> {
        let mut graph = probe.graph.clone();
        for a in self.chunk(0, 1) {
            if let Some(v) = graph.value_by_name(&a.name) {
                let dims: Vec<i64> = a.shape.iter().map(|&d| d as i64).collect();
                graph.value_mut(v).ty = Some(Type::tensor(a.dtype, &dims));
            }
        }
        sculpt_ir::ops::infer::infer_graph(&mut graph).ok()?;
        graph
            .outputs
            .iter()
            .map(|&v| {
                let t = graph.value(v).ty.as_ref()?;
                let n = sculpt_ir::element_count(&t.static_dims()?)?;
                n.checked_mul(4)
            })
            .sum()
    }

    /// Shows a progress bar over samples in `bars` while visiting (drawn
    /// when stderr is a terminal).
    pub fn with_progress(mut self, bars: &indicatif::MultiProgress) -> CalibrationSet {
        self.progress = Some(bars.clone());
        self
    }

    /// Runs `model` on `samples` (within the set), chunk by chunk.
    fn run(
        &self,
        model: &Model,
        names: &[String],
        samples: std::ops::Range<usize>,
        visit: &mut VisitChunk<'_>,
    ) -> Result<()> {
        let mut probe = model.clone();
        let g = &mut probe.graph;
        let outputs = names
            .iter()
            .map(|n| {
                g.value_by_name(n).ok_or_else(|| RuntimeError::Input {
                    name: n.clone(),
                    reason: "no such value in the model".into(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        for &v in &outputs {
            if !g.inputs.contains(&v) {
                g.value_mut(v).ty = None;
            }
        }
        g.outputs = outputs;
        let chunk = self.chunk_size(&probe, samples.len()).max(1);
        let range = samples;
        let bar = match &self.progress {
            Some(bars) => bars.add(indicatif::ProgressBar::new(range.len() as u64)),
            None => indicatif::ProgressBar::hidden(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("calibration {bar:30} {pos}/{len} samples")
                .expect("valid template"),
        );
        // The chunks run on `workers` threads, chunk i on worker
        // i % workers (each with its own session), each at most one chunk
        // ahead of the visitor, which takes them in order: 2 × workers
        // chunks in memory at most.
        let starts: Vec<usize> = range.clone().step_by(chunk).collect();
        let workers = workers().min(starts.len().max(1));
        type Sent = Result<(usize, Vec<ValueChunk>)>;
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| std::sync::mpsc::sync_channel::<Sent>(1))
            .unzip();
        std::thread::scope(|scope| {
            let producers: Vec<_> = senders
                .into_iter()
                .enumerate()
                .map(|(worker, sender)| {
                    let (probe, starts, range) = (&probe, &starts, &range);
                    scope.spawn(move || {
                        let mut session: Option<(usize, Session)> = None;
                        for &start in starts.iter().skip(worker).step_by(workers) {
                            let end = (start + chunk).min(range.end);
                            let values = self
                                .run_chunk(probe, &mut session, start, end)
                                .map(|v| (end - start, v));
                            let failed = values.is_err();
                            if sender.send(values).is_err() || failed {
                                break;
                            }
                        }
                    })
                })
                .collect();
            let mut outcome = Ok(());
            for i in 0..starts.len() {
                // A worker that stopped early (after an error it sent) has
                // hung up: nothing more comes.
                let Ok(values) = receivers[i % workers].recv() else {
                    break;
                };
                match values {
                    Ok((count, values)) => {
                        visit(&values);
                        bar.inc(count as u64);
                    }
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            drop(receivers);
            for producer in producers {
                if producer.join().is_err() {
                    outcome = Err(RuntimeError::Tract {
                        stage: "run",
                        message: "a calibration thread panicked".into(),
                    });
                }
            }
            outcome
        })?;
        bar.finish_and_clear();
        Ok(())
    }
}

impl CalibrationSet {
    /// Runs samples `start..end` (building the session again when the
    /// chunk's size changes) and returns the requested values as f32.
    fn run_chunk(
        &self,
        probe: &Model,
        session: &mut Option<(usize, Session)>,
        start: usize,
        end: usize,
    ) -> Result<Vec<ValueChunk>> {
        let inputs = self.chunk(start, end);
        if session.as_ref().is_none_or(|(len, _)| *len != end - start) {
            let threads = (rayon::current_num_threads() / workers()).max(1);
            let built = Session::with_threads(self.engine, probe, &inputs, threads)?;
            *session = Some((end - start, built));
        }
        let outs = session.as_ref().expect("built above").1.run(&inputs)?;
        Ok(outs
            .iter()
            .map(|o| ValueChunk {
                shape: o.shape.clone(),
                data: match o.dtype {
                    sculpt_ir::DataType::F32 => o
                        .data
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                    _ => o
                        .to_f64()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|x| x as f32)
                        .collect(),
                },
            })
            .collect())
    }
}

/// Threads that run calibration chunks: two where rayon has two or more
/// (RAYON_NUM_THREADS=1 makes it one).
fn workers() -> usize {
    rayon::current_num_threads().clamp(1, 2)
}

/// The most memory one chunk's requested values may take (up to four
/// chunks are in memory at once: two workers, each one ahead).
const CHUNK_BYTES: u64 = 256 << 20;

impl Calibrator for CalibrationSet {
    fn visit_chunks(
        &mut self,
        model: &Model,
        values: &[String],
        samples: std::ops::Range<usize>,
        visit: &mut VisitChunk<'_>,
    ) -> std::result::Result<(), String> {
        let samples = samples.start.min(self.samples)..samples.end.min(self.samples);
        self.run(model, values, samples, visit)
            .map_err(|e| e.to_string())
    }

    fn samples(&self) -> usize {
        self.samples
    }

    fn sample_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.chunk(0, 1)
            .into_iter()
            .map(|a| (a.name, a.shape))
            .collect()
    }
}
