//! Output comparison: `|a - b| <= atol + rtol * |b|` element-wise, with a
//! per-output report (max abs/rel error, mismatches, cosine similarity).

use crate::Array;
use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            rtol: 1e-4,
            atol: 1e-5,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct OutputReport {
    pub name: String,
    pub shape_a: Vec<usize>,
    pub shape_b: Vec<usize>,
    pub max_abs_err: f64,
    pub max_rel_err: f64,
    pub mismatches: usize,
    pub elements: usize,
    pub cosine: f64,
    pub ok: bool,
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub outputs: Vec<OutputReport>,
    pub ok: bool,
}

impl Comparison {
    /// The output with the largest absolute error.
    pub fn worst(&self) -> Option<&OutputReport> {
        self.outputs
            .iter()
            .max_by(|x, y| x.max_abs_err.total_cmp(&y.max_abs_err))
    }
}

/// Compares outputs of `a` against reference `b`, matched by name (or by
/// position where names differ).
pub fn compare(a: &[Array], b: &[Array], tol: Tolerance) -> Comparison {
    let mut outputs = Vec::new();
    for (i, x) in a.iter().enumerate() {
        let y = b.iter().find(|y| y.name == x.name).or_else(|| b.get(i));
        outputs.push(match y {
            Some(y) => compare_one(x, y, tol),
            None => OutputReport {
                name: x.name.clone(),
                shape_a: x.shape.clone(),
                shape_b: vec![],
                max_abs_err: f64::INFINITY,
                max_rel_err: f64::INFINITY,
                mismatches: x.len(),
                elements: x.len(),
                cosine: 0.0,
                ok: false,
                problem: Some("missing in the reference".into()),
            },
        });
    }
    if b.len() > a.len() {
        for y in &b[a.len()..] {
            outputs.push(OutputReport {
                name: y.name.clone(),
                shape_a: vec![],
                shape_b: y.shape.clone(),
                max_abs_err: f64::INFINITY,
                max_rel_err: f64::INFINITY,
                mismatches: y.len(),
                elements: y.len(),
                cosine: 0.0,
                ok: false,
                problem: Some("missing in the compared outputs".into()),
            });
        }
    }
    let ok = outputs.iter().all(|o| o.ok);
    Comparison { outputs, ok }
}

fn compare_one(x: &Array, y: &Array, tol: Tolerance) -> OutputReport {
    let mut r = OutputReport {
        name: x.name.clone(),
        shape_a: x.shape.clone(),
        shape_b: y.shape.clone(),
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        mismatches: 0,
        elements: x.len(),
        cosine: 1.0,
        ok: true,
        problem: None,
    };
    if x.shape != y.shape {
        r.ok = false;
        r.problem = Some(format!("shape {:?} vs {:?}", x.shape, y.shape));
        return r;
    }
    let (Some(a), Some(b)) = (x.to_f64(), y.to_f64()) else {
        r.ok = x.data == y.data;
        if !r.ok {
            r.problem = Some("non-numeric data differs".into());
        }
        return r;
    };
    let (mut dot, mut na, mut nb) = (0.0, 0.0, 0.0);
    for (&p, &q) in a.iter().zip(&b) {
        let same_special = (p.is_nan() && q.is_nan()) || p == q;
        let abs = if same_special { 0.0 } else { (p - q).abs() };
        let abs = if abs.is_nan() { f64::INFINITY } else { abs };
        r.max_abs_err = r.max_abs_err.max(abs);
        if q != 0.0 {
            r.max_rel_err = r.max_rel_err.max(abs / q.abs());
        }
        if abs > tol.atol + tol.rtol * q.abs() {
            r.mismatches += 1;
        }
        if p.is_finite() && q.is_finite() {
            dot += p * q;
            na += p * p;
            nb += q * q;
        }
    }
    r.cosine = if na == 0.0 && nb == 0.0 {
        1.0
    } else {
        dot / (na.sqrt() * nb.sqrt()).max(f64::MIN_POSITIVE)
    };
    r.ok = r.mismatches == 0;
    r
}
