//! Calibration data for passes that measure activations: samples stacked
//! along axis 0 of every input (`--calib DATA.npz`) or generated
//! (`--calib-random N`). Implements the passes' [`Calibrator`] by running
//! the model on tract in chunks of samples.

use crate::{generate_inputs, Array, Result, RuntimeError, Session};
use sculpt_ir::{Dim, Model, Type};
use sculpt_passes::manager::Visit;
use sculpt_passes::Calibrator;
use std::collections::HashMap;

pub struct CalibrationSet {
    /// One array per model input; axis 0 is the sample axis.
    inputs: Vec<Array>,
    samples: usize,
}

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
        Ok(CalibrationSet { inputs, samples })
    }

    /// `n` generated samples for `model` (see [`generate_inputs`]), stacked.
    pub fn random(model: &Model, n: usize) -> Result<CalibrationSet> {
        let parts: Vec<Vec<Array>> = (0..n.max(1))
            .map(|i| generate_inputs(model, &HashMap::new(), i as u64 + 1))
            .collect::<Result<_>>()?;
        let inputs = (0..parts[0].len())
            .map(|k| {
                let first = &parts[0][k];
                let mut shape = first.shape.clone();
                if shape.is_empty() {
                    shape.push(1);
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
        CalibrationSet::from_arrays(inputs)
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Samples `start..end` of every input.
    fn chunk(&self, start: usize, end: usize) -> Vec<Array> {
        self.inputs
            .iter()
            .map(|a| {
                let per = a.data.len() / a.shape[0];
                let mut shape = a.shape.clone();
                shape[0] = end - start;
                Array {
                    name: a.name.clone(),
                    dtype: a.dtype,
                    shape,
                    data: a.data[start * per..end * per].to_vec(),
                }
            })
            .collect()
    }

    /// Samples per run: the model's fixed batch size, or up to 64.
    fn chunk_size(&self, model: &Model) -> usize {
        let g = &model.graph;
        g.inputs
            .iter()
            .find_map(|&v| match &g.value(v).ty {
                Some(Type::Tensor {
                    shape: Some(dims), ..
                }) => match dims.first() {
                    Some(Dim::Known(k)) if *k > 0 => Some(*k as usize),
                    _ => None,
                },
                _ => None,
            })
            .unwrap_or(64)
            .min(self.samples)
    }

    fn run(&self, model: &Model, names: &[String], visit: &mut Visit<'_>) -> Result<()> {
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
        let chunk = self.chunk_size(model).max(1);
        let mut session: Option<(usize, Session)> = None;
        for start in (0..self.samples).step_by(chunk) {
            let end = (start + chunk).min(self.samples);
            let inputs = self.chunk(start, end);
            if session.as_ref().is_none_or(|(len, _)| *len != end - start) {
                session = Some((end - start, Session::new(&probe, &inputs)?));
            }
            let outs = session.as_ref().expect("built above").1.run(&inputs)?;
            for (i, o) in outs.iter().enumerate() {
                let data: Vec<f32> = o
                    .to_f64()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|x| x as f32)
                    .collect();
                visit(i, &o.shape, &data);
            }
        }
        Ok(())
    }
}

impl Calibrator for CalibrationSet {
    fn visit(
        &mut self,
        model: &Model,
        values: &[String],
        visit: &mut Visit<'_>,
    ) -> std::result::Result<(), String> {
        self.run(model, values, visit).map_err(|e| e.to_string())
    }
}
