//! `search=true`: a mixed-precision policy chosen within a budget.
//!
//! Every weight the policy makes weight-only (linear sites, tables) is
//! quantized in each of the candidate precisions (`choices=`). Each
//! candidate's sensitivity is measured, not predicted: the model's output
//! error on calibration samples when only that weight is quantized (its
//! dequantized values written in place). Taking the errors to add up, the
//! choice per weight is a multiple-choice knapsack ([`crate::allocate`]):
//! least total error within `budget=size:S` (bytes of all the model's
//! weights), or least size within `budget=error:E`. The report lists the
//! Pareto points met on the way and the policy picked, which is also
//! written as TOML (`policy_out=`) and plotted as SVG (`plot=`).

use super::policy::{Choice, Policy, Precision, Rule};
use super::weights::{Quantization, Weight};
use crate::allocate::{self, Allocation, Alternative};
use crate::calib::judge::OutputReference;
use crate::context::PassContext;
use sculpt_ir::{IrError, Model};
use serde_json::json;

/// What the search must meet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// Bytes of all the model's weights.
    Bytes(u64),
    /// A share of the model's weight bytes before the pass.
    Share(f64),
    /// Sum of the measured relative output errors.
    Error(f64),
}

impl crate::options::OptionValue for Budget {
    fn kind() -> String {
        "size:S|error:E".into()
    }
    fn parse(text: &str) -> Result<Budget, String> {
        Budget::parse(text)
    }
    fn text(&self) -> String {
        match self {
            Budget::Bytes(b) => format!("size:{b}"),
            Budget::Share(s) => format!("size:{}%", s * 100.0),
            Budget::Error(e) => format!("error:{e}"),
        }
    }
}

impl Budget {
    /// `size:N[KB|MB|GB]`, `size:P%` or `error:E`.
    pub fn parse(text: &str) -> Result<Budget, String> {
        let bad = || format!("'{text}': expected size:BYTES (KB/MB/GB), size:P% or error:E");
        match text.split_once(':').ok_or_else(bad)? {
            ("size", s) => match s.strip_suffix('%') {
                Some(p) => match p.parse::<f64>() {
                    Ok(p) if p > 0.0 && p <= 100.0 => Ok(Budget::Share(p / 100.0)),
                    _ => Err(bad()),
                },
                None => crate::options::parse_bytes(s)
                    .filter(|&b| b > 0)
                    .map(Budget::Bytes)
                    .ok_or_else(bad),
            },
            ("error", e) => match e.parse::<f64>() {
                Ok(e) if e.is_finite() && e >= 0.0 => Ok(Budget::Error(e)),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SearchSpec {
    pub budget: Budget,
    /// The precisions each weight may take (`fp32` included if listed).
    pub choices: Vec<Choice>,
    /// Calibration samples each sensitivity probe runs on.
    pub probe_samples: usize,
}

/// One weight's candidate: its precision and quantization (`None`: f32).
pub type Candidate = (Choice, Option<Quantization>);

/// What the search decided.
pub struct Searched {
    /// Per weight, the index of the candidate picked.
    pub picks: Vec<usize>,
    /// The policy picked: the base policy with one rule per weight.
    pub policy: Policy,
    pub svg: String,
    pub details: Vec<String>,
    pub records: Vec<serde_json::Value>,
}

/// Measures every candidate, then picks one per weight within the budget.
pub fn search(
    model: &Model,
    base: &Policy,
    weights: &[Weight],
    candidates: &[Vec<Candidate>],
    spec: &SearchSpec,
    cx: &mut PassContext<'_>,
) -> Result<Searched, IrError> {
    let errors = measure(model, weights, candidates, spec, cx)?;
    let weight_bytes = model.graph.param_bytes();
    let f32_bytes: Vec<u64> = weights.iter().map(|w| w.f32_bytes(&model.graph)).collect();
    // Bytes outside the searched weights stay as they are.
    let fixed = weight_bytes.saturating_sub(f32_bytes.iter().sum());
    let items: Vec<Vec<Alternative>> = candidates
        .iter()
        .zip(&errors)
        .zip(&f32_bytes)
        .map(|((cands, errs), &f32b)| {
            cands
                .iter()
                .zip(errs)
                .map(|((_, q), &error)| Alternative {
                    cost: q.as_ref().map_or(f32b, |q| q.bytes) as f64,
                    error,
                })
                .collect()
        })
        .collect();
    let within_size = |total: u64| {
        let room = total as f64 - fixed as f64;
        allocate::within_cost(&items, room).ok_or_else(|| {
            let cheapest = allocate::at_price(&items, f64::INFINITY).cost as u64 + fixed;
            IrError::Invalid(format!(
                "quantize search: budget {total} bytes is below the smallest the choices reach ({cheapest} bytes)"
            ))
        })
    };
    let picked = match spec.budget {
        Budget::Error(e) => allocate::within_error(&items, e),
        Budget::Bytes(total) => within_size(total)?,
        Budget::Share(share) => within_size((weight_bytes as f64 * share) as u64)?,
    };
    let points = allocate::frontier(&items, 400);
    let mut policy = base.clone();
    let mut records = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        let (choice, _) = &candidates[i][picked.picks[i]];
        policy.rules.push(Rule {
            ops: Vec::new(),
            names: vec![w.name().to_string()],
            layers: None,
            choice: *choice,
        });
        records.push(json!({
            "weight": w.name(),
            "picked": choice.to_string(),
            "candidates": candidates[i].iter().zip(&items[i]).map(|((c, _), a)| json!({
                "precision": c.to_string(),
                "bytes": a.cost,
                "measured_error": a.error,
            })).collect::<Vec<_>>(),
        }));
    }
    let size = |a: &Allocation| a.cost as u64 + fixed;
    records.push(json!({
        "search": {
            "budget": format!("{:?}", spec.budget),
            "picked": {"bytes": size(&picked), "predicted_error": picked.error},
            "pareto": points.iter().map(|p| json!({"bytes": size(p), "predicted_error": p.error})).collect::<Vec<_>>(),
        }
    }));
    let mut details = vec![format!(
        "search ({:?}): {} weights, {} candidates each measured on {} calibration samples; picked {} bytes of weights, predicted error {:.3e}",
        spec.budget,
        weights.len(),
        spec.choices.len(),
        spec.probe_samples,
        size(&picked),
        picked.error
    )];
    let mut counts: Vec<(Choice, usize)> = Vec::new();
    for (i, &p) in picked.picks.iter().enumerate() {
        let c = candidates[i][p].0;
        match counts.iter_mut().find(|(x, _)| *x == c) {
            Some((_, n)) => *n += 1,
            None => counts.push((c, 1)),
        }
    }
    counts.sort();
    details.push(format!(
        "  picked: {}",
        counts
            .iter()
            .map(|(c, n)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    details.push(format!(
        "  Pareto points (weight bytes, predicted error): {}",
        points.len()
    ));
    for p in &points {
        details.push(format!("    {:>12}  {:.3e}", size(p), p.error));
    }
    let svg = plot(&points, &picked, fixed, &format!("{:?}", spec.budget));
    Ok(Searched {
        picks: picked.picks,
        policy,
        svg,
        details,
        records,
    })
}

/// Per weight and candidate, the model's relative output error with only
/// that weight quantized (0 for f32), on the first `probe_samples`
/// fitting samples.
fn measure(
    model: &Model,
    weights: &[Weight],
    candidates: &[Vec<Candidate>],
    spec: &SearchSpec,
    cx: &mut PassContext<'_>,
) -> Result<Vec<Vec<f64>>, IrError> {
    let mask = cx.stats_options(model).row_mask;
    let total: usize = candidates
        .iter()
        .map(|c| c.iter().filter(|(_, q)| q.is_some()).count())
        .sum();
    let progress = cx.progress.clone();
    let calibrator = cx.calibrator("quantize search", "measures each weight's sensitivity")?;
    let fitting = calibrator.split().fitting();
    let probe = fitting.start..fitting.end.min(fitting.start + spec.probe_samples.max(1));
    let reference = OutputReference::new(&mut *calibrator, model, mask, probe)?;
    let mut done = 0u64;
    let mut errors = Vec::with_capacity(weights.len());
    for (w, cands) in weights.iter().zip(candidates) {
        let mut row = Vec::with_capacity(cands.len());
        for (_, q) in cands {
            let error = match q {
                None => 0.0,
                Some(q) => {
                    let mut probe = model.clone();
                    w.substitute(&mut probe.graph, &q.quantized)?;
                    done += 1;
                    if let Some(p) = &progress {
                        p("quantize: measuring sensitivities", done, total as u64);
                    }
                    reference.relative_error(&mut *calibrator, &probe)?
                }
            };
            row.push(error.max(0.0));
        }
        errors.push(row);
    }
    Ok(errors)
}

/// Size against predicted error, the Pareto points joined, the pick
/// marked: an SVG a browser opens.
fn plot(points: &[Allocation], picked: &Allocation, fixed: u64, budget: &str) -> String {
    let (w, h, pad) = (640.0, 420.0, 60.0);
    let mb = |a: &Allocation| (a.cost + fixed as f64) / 1e6;
    let floor = points
        .iter()
        .chain([picked])
        .map(|p| p.error)
        .filter(|&e| e > 0.0)
        .fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() { floor / 2.0 } else { 1e-9 };
    let log = |e: f64| e.max(floor).log10();
    let all: Vec<(f64, f64)> = points
        .iter()
        .chain([picked])
        .map(|p| (mb(p), log(p.error)))
        .collect();
    let (x0, x1) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (y0, y1) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let (x1, y1) = (x1.max(x0 + 1e-9), y1.max(y0 + 1e-9));
    let sx = |x: f64| pad + (x - x0) / (x1 - x0) * (w - 2.0 * pad);
    let sy = |y: f64| h - pad - (y - y0) / (y1 - y0) * (h - 2.0 * pad);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\">quantize search: weight size vs predicted output error (budget {budget})</text>\n\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>\n",
        w / 2.0,
        h - pad,
        w - pad,
        h - pad,
        h - pad
    );
    for t in 0..=4 {
        let x = x0 + (x1 - x0) * t as f64 / 4.0;
        let y = y0 + (y1 - y0) * t as f64 / 4.0;
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x:.2}</text>\n",
            sx(x),
            h - pad + 18.0
        );
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.1e}</text>\n",
            pad - 6.0,
            sy(y) + 4.0,
            10f64.powf(y)
        );
    }
    svg += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">weights (MB)</text>\n\
         <text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">sum of measured relative output errors (log)</text>\n",
        w / 2.0,
        h - 16.0,
        h / 2.0,
        h / 2.0
    );
    let line: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", sx(mb(p)), sy(log(p.error))))
        .collect();
    svg += &format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"steelblue\"/>\n",
        line.join(" ")
    );
    for p in points {
        svg += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"steelblue\"><title>{:.3} MB, {:.3e}</title></circle>\n",
            sx(mb(p)),
            sy(log(p.error)),
            mb(p),
            p.error
        );
    }
    svg += &format!(
        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"6\" fill=\"none\" stroke=\"crimson\" stroke-width=\"2\"><title>picked: {:.3} MB, {:.3e}</title></circle>\n</svg>\n",
        sx(mb(picked)),
        sy(log(picked.error)),
        mb(picked),
        picked.error
    );
    svg
}

/// The precisions a search may choose from: weight-only ones and fp32.
pub fn check_choice(choice: Choice) -> Result<Choice, String> {
    match choice.precision {
        Precision::F32 | Precision::W8 | Precision::Int4 => Ok(choice),
        _ => Err(format!(
            "'{choice}' cannot be searched (choices are w8, int4 and fp32, with /BLOCK)"
        )),
    }
}
