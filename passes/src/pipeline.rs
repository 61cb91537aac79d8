//! Pipelines: `name{key=value key=value},name2#label` (MLIR style) or TOML:
//!
//! ```toml
//! pipeline = "cleanup,cleanup#final"
//! # or, step by step:
//! [[pass]]
//! name = "cleanup"
//! options = { dce = true }
//! ```
//!
//! A pipeline prints back to the text it was parsed from.

use crate::{PassError, Result};
use std::collections::BTreeMap;
use std::fmt;

/// Options of one pipeline step, as text: the pass's declaration
/// ([`crate::options::PassOptions`]) reads them into its typed options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub pass: String,
    values: BTreeMap<String, String>,
}

impl Options {
    pub fn new(pass: &str, values: BTreeMap<String, String>) -> Options {
        Options {
            pass: pass.into(),
            values,
        }
    }

    /// The text given for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A failed check of option `key`, for the pass to return.
    pub fn invalid(&self, key: &str, reason: impl Into<String>) -> PassError {
        PassError::Option {
            pass: self.pass.clone(),
            option: key.into(),
            reason: reason.into(),
        }
    }

    /// Fails on any option the pass does not declare.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<()> {
        match self.values.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(self.invalid(
                k,
                format!(
                    "unknown option; '{}' takes: {}",
                    self.pass,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            )),
            None => Ok(()),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.values.iter()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PipelineStep {
    pub name: String,
    pub label: Option<String>,
    pub options: Options,
}

impl PipelineStep {
    /// `name` or `name#label`, as reports show it.
    pub fn display_name(&self) -> String {
        match &self.label {
            Some(l) => format!("{}#{l}", self.name),
            None => self.name.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pipeline {
    pub steps: Vec<PipelineStep>,
}

impl Pipeline {
    /// Parses `name{k=v k=v},name2#label{...}`. Values may be quoted
    /// (`protect="a b"`); an empty text is the empty pipeline.
    pub fn parse(text: &str) -> Result<Pipeline> {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        let mut steps = Vec::new();
        let err = |i: usize, m: &str| {
            PassError::Pipeline(format!("{m} at character {} of '{text}'", i + 1))
        };
        let skip_ws = |i: &mut usize| {
            while *i < chars.len() && chars[*i].is_whitespace() {
                *i += 1;
            }
        };
        let word = |i: &mut usize| -> String {
            let start = *i;
            while *i < chars.len() && (chars[*i].is_alphanumeric() || "_-.".contains(chars[*i])) {
                *i += 1;
            }
            chars[start..*i].iter().collect()
        };
        skip_ws(&mut i);
        if i == chars.len() {
            return Ok(Pipeline::default());
        }
        loop {
            skip_ws(&mut i);
            let name = word(&mut i);
            if name.is_empty() {
                return Err(err(i, "expected a pass name"));
            }
            let mut label = None;
            if i < chars.len() && chars[i] == '#' {
                i += 1;
                let l = word(&mut i);
                if l.is_empty() {
                    return Err(err(i, "expected a label after '#'"));
                }
                label = Some(l);
            }
            skip_ws(&mut i);
            let mut values = BTreeMap::new();
            if i < chars.len() && chars[i] == '{' {
                i += 1;
                loop {
                    skip_ws(&mut i);
                    if i < chars.len() && chars[i] == '}' {
                        i += 1;
                        break;
                    }
                    let key = word(&mut i);
                    if key.is_empty() {
                        return Err(err(i, "expected an option name or '}'"));
                    }
                    skip_ws(&mut i);
                    if i >= chars.len() || chars[i] != '=' {
                        return Err(err(i, &format!("expected '=' after option '{key}'")));
                    }
                    i += 1;
                    skip_ws(&mut i);
                    let value: String = if i < chars.len() && chars[i] == '"' {
                        let start = i + 1;
                        let end = chars[start..]
                            .iter()
                            .position(|&c| c == '"')
                            .ok_or_else(|| err(i, "unterminated quoted value"))?;
                        i = start + end + 1;
                        chars[start..start + end].iter().collect()
                    } else {
                        let start = i;
                        while i < chars.len()
                            && !chars[i].is_whitespace()
                            && chars[i] != '}'
                            && chars[i] != ','
                        {
                            i += 1;
                        }
                        chars[start..i].iter().collect()
                    };
                    if values.insert(key.clone(), value).is_some() {
                        return Err(err(i, &format!("option '{key}' given twice")));
                    }
                    skip_ws(&mut i);
                    if i < chars.len() && chars[i] == ',' {
                        i += 1;
                    }
                }
            }
            steps.push(PipelineStep {
                options: Options::new(&name, values),
                name,
                label,
            });
            skip_ws(&mut i);
            if i == chars.len() {
                break;
            }
            if chars[i] != ',' {
                return Err(err(i, "expected ',' between passes"));
            }
            i += 1;
        }
        Ok(Pipeline { steps })
    }

    /// Reads a TOML pipeline: either `pipeline = "…"` or `[[pass]]` tables
    /// with `name`, optional `label` and an `options` table.
    pub fn from_toml(text: &str) -> Result<Pipeline> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| PassError::Pipeline(format!("TOML: {}", e.message())))?;
        if let Some(p) = doc.get("pipeline") {
            let s = p
                .as_str()
                .ok_or_else(|| PassError::Pipeline("'pipeline' must be a string".into()))?;
            return Pipeline::parse(s);
        }
        let passes = doc.get("pass").and_then(|p| p.as_array()).ok_or_else(|| {
            PassError::Pipeline("TOML pipeline needs 'pipeline = \"…\"' or [[pass]] tables".into())
        })?;
        let mut steps = Vec::new();
        for p in passes {
            let name = p
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| PassError::Pipeline("every [[pass]] needs a name".into()))?;
            let label = p.get("label").and_then(|l| l.as_str()).map(String::from);
            let mut values = BTreeMap::new();
            if let Some(opts) = p.get("options").and_then(|o| o.as_table()) {
                for (k, v) in opts {
                    let text = match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    values.insert(k.clone(), text);
                }
            }
            steps.push(PipelineStep {
                name: name.into(),
                label,
                options: Options::new(name, values),
            });
        }
        Ok(Pipeline { steps })
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&s.display_name())?;
            let opts: Vec<String> = s
                .options
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() || v.contains([' ', ',', '}']) {
                        format!("{k}=\"{v}\"")
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            if !opts.is_empty() {
                write!(f, "{{{}}}", opts.join(" "))?;
            }
        }
        Ok(())
    }
}
