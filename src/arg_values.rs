//! Parsers of command-line values that clap does not know: shapes, byte
//! counts, dims, tolerances and the runtime.

pub fn parse_shape(s: &str) -> Result<(String, Vec<i64>), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=D0,D1,...")?;
    let dims = v
        .split(',')
        .map(|d| {
            d.trim()
                .parse::<i64>()
                .map_err(|_| format!("'{d}' is not a size"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((k.to_string(), dims))
}
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    sculpt_passes::options::parse_bytes(s)
        .ok_or_else(|| format!("'{s}' is not a byte count (like 512M or 4G)"))
}
pub fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=SIZE")?;
    Ok((
        k.to_string(),
        v.parse().map_err(|_| format!("'{v}' is not a size"))?,
    ))
}
/// A tolerance: a finite number, zero or more (NaN would pass anything).
pub fn parse_tolerance(v: &str) -> std::result::Result<f64, String> {
    match v.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        Ok(_) => Err(format!(
            "'{v}' is not a tolerance: give a finite number, 0 or more"
        )),
        Err(_) => Err(format!("'{v}' is not a number")),
    }
}

/// How far two models' outputs may differ (`--rtol`, `--atol`).
#[derive(clap::Args, Clone, Copy)]
pub struct ToleranceArgs {
    #[arg(long, default_value_t = 1e-4, value_parser = parse_tolerance)]
    pub rtol: f64,
    #[arg(long, default_value_t = 1e-5, value_parser = parse_tolerance)]
    pub atol: f64,
}

impl ToleranceArgs {
    pub fn tolerance(self) -> sculpt_runtime::Tolerance {
        sculpt_runtime::Tolerance {
            rtol: self.rtol,
            atol: self.atol,
        }
    }
}

/// The runtime that runs models (`--runtime`).
#[derive(clap::Args, Clone, Copy)]
pub struct RuntimeArgs {
    /// What runs the model: tract (embedded), ort (onnxruntime: the
    /// library of the `onnxruntime` pip package, or the one ORT_DYLIB_PATH
    /// names) or auto (ort where a usable library is found, else tract).
    #[arg(long, default_value = "tract")]
    pub runtime: sculpt_runtime::Runtime,
}

impl RuntimeArgs {
    /// The engine that runs: onnxruntime loaded now when asked for.
    pub fn engine(self) -> anyhow::Result<sculpt_runtime::Engine> {
        Ok(self.runtime.resolve()?)
    }
}
