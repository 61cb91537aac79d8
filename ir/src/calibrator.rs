//! How passes see a model run on calibration data without running it
//! themselves: the [`Calibrator`] trait (the runtime implements it), and
//! [`SampleSplit`], the one place that says which calibration samples a
//! pass fits on and which it judges its result on.

use crate::Model;
use std::ops::Range;

/// One requested value for one chunk of calibration samples: its shape
/// (the chunk's samples on axis 0) and its data as f32.
#[derive(Clone, Debug, Default)]
pub struct ValueChunk {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Receives one chunk of one value: (index in the requested values, shape,
/// data).
pub type Visit<'a> = dyn FnMut(usize, &[usize], &[f32]) + 'a;

/// Receives every requested value for one chunk of samples, in request order.
pub type VisitChunk<'a> = dyn FnMut(&[ValueChunk]) + 'a;

/// Runs models on calibration samples for passes that need activations.
/// Every run names the samples it visits (a range of sample indices, cut
/// to the samples there are), so no state is switched between runs.
pub trait Calibrator {
    /// Runs `model` on `samples`, a chunk of samples at a time (samples in
    /// order), and hands `visit` the values named in `values` for each
    /// chunk. Only one chunk is held at a time.
    fn visit_chunks(
        &mut self,
        model: &Model,
        values: &[String],
        samples: Range<usize>,
        visit: &mut VisitChunk<'_>,
    ) -> Result<(), String>;

    /// How many calibration samples there are.
    fn samples(&self) -> usize;

    /// Which samples fit and which judge.
    fn split(&self) -> SampleSplit {
        SampleSplit::new(self.samples())
    }

    /// The shape of one sample of each model input, by input name (the
    /// sample axis first, 1): what symbolic dims are for these data.
    fn sample_shapes(&self) -> Vec<(String, Vec<usize>)> {
        Vec::new()
    }

    /// Like [`Calibrator::visit_chunks`], one value at a time:
    /// `visit(index in values, shape, data)`.
    fn visit(
        &mut self,
        model: &Model,
        values: &[String],
        samples: Range<usize>,
        visit: &mut Visit<'_>,
    ) -> Result<(), String> {
        self.visit_chunks(model, values, samples, &mut |chunk| {
            for (i, c) in chunk.iter().enumerate() {
                visit(i, &c.shape, &c.data);
            }
        })
    }

    /// Each value in `values` on `samples`, flattened (samples in order).
    fn values(
        &mut self,
        model: &Model,
        values: &[String],
        samples: Range<usize>,
    ) -> Result<Vec<Vec<f32>>, String> {
        let mut all = vec![Vec::new(); values.len()];
        self.visit(model, values, samples, &mut |i, _, data| {
            all[i].extend_from_slice(data)
        })?;
        Ok(all)
    }

    /// The same for the model's outputs.
    fn outputs(&mut self, model: &Model, samples: Range<usize>) -> Result<Vec<Vec<f32>>, String> {
        let names: Vec<String> = model
            .graph
            .outputs
            .iter()
            .map(|&v| model.graph.value(v).name.clone())
            .collect();
        self.values(model, &names, samples)
    }
}

/// Which calibration samples a pass fits on and which it judges on.
///
/// The last eighth (at most half) is held out. A pass that judges its
/// result fits on the rest where at least [`SampleSplit::MIN_JUDGED`]
/// samples remain, and judges on the held-out samples where there are at
/// least that many; with fewer, it uses the first 64 samples (judging then
/// overlaps fitting: too few samples to keep apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleSplit {
    pub samples: usize,
}

impl SampleSplit {
    /// The share of the samples held out.
    pub const HELD_OUT_SHARE: f64 = 0.125;
    /// The fewest samples a fit or a judgement keeps to itself.
    pub const MIN_JUDGED: usize = 32;
    /// What a judgement uses when too few are held out.
    pub const SMALL_JUDGED: usize = 64;

    pub fn new(samples: usize) -> SampleSplit {
        SampleSplit { samples }
    }

    pub fn all(&self) -> Range<usize> {
        0..self.samples
    }

    /// The held-out samples: the last eighth, at most half.
    pub fn held_out(&self) -> Range<usize> {
        let held =
            ((self.samples as f64 * Self::HELD_OUT_SHARE).round() as usize).min(self.samples / 2);
        self.samples - held..self.samples
    }

    /// The samples before the held-out ones (statistics fit there and
    /// check on the held-out ones).
    pub fn fitted(&self) -> Range<usize> {
        0..self.held_out().start
    }

    /// The samples a pass fits on when its result is judged afterwards:
    /// all but the held-out ones where at least 32 remain, else all.
    pub fn fitting(&self) -> Range<usize> {
        match self.fitted() {
            f if f.len() >= Self::MIN_JUDGED => f,
            _ => self.all(),
        }
    }

    /// The samples a pass judges its result on: the held-out ones, or the
    /// first 64 when fewer than 32 are held out.
    pub fn judging(&self) -> Range<usize> {
        match self.held_out() {
            h if h.len() >= Self::MIN_JUDGED => h,
            _ => 0..Self::SMALL_JUDGED.min(self.samples),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SampleSplit;

    #[test]
    fn an_eighth_is_held_out_and_judged_where_there_are_enough() {
        let s = SampleSplit::new(512);
        assert_eq!(s.held_out(), 448..512);
        assert_eq!(s.fitting(), 0..448);
        assert_eq!(s.judging(), 448..512);
    }

    #[test]
    fn few_samples_fit_on_all_and_judge_on_the_first() {
        let s = SampleSplit::new(40);
        assert_eq!(s.held_out(), 35..40);
        assert_eq!(s.fitted(), 0..35);
        assert_eq!(s.fitting(), 0..35);
        assert_eq!(s.judging(), 0..40);
        let s = SampleSplit::new(8);
        assert_eq!(s.fitting(), 0..8);
        assert_eq!(s.judging(), 0..8);
        assert_eq!(SampleSplit::new(1).held_out(), 1..1);
    }
}
