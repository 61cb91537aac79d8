//! Quantization policies as data: a default precision and rules that pick
//! a precision for the nodes they match (op type, node name glob, layer
//! range), with exclusions. The last matching rule wins; an excluded node
//! stays f32 whatever the rules say.
//!
//! Written inline (`policy=int8`, `rules="int4 op=MatMul name=*attn*
//! layers=0-3; fp32 name=*classifier*"`) or as a TOML file:
//!
//! ```toml
//! default = "int8"
//! include = ["/encoder/*"]    # optional: only these nodes
//! exclude = ["*classifier*"]
//!
//! [[rule]]
//! precision = "int4/64"      # int4 weights, blocks of 64 rows
//! op = ["MatMul", "Gemm"]    # or one string
//! name = "*attention*"
//! layers = "0-3"             # or one number
//! ```
//!
//! A node's layer is the first index in its name written as a module path
//! writes it (`layer.3/`, `/layers.12.`, `/blocks/0/`), else in the name
//! of its first constant input (`model.layers.0.mlp.up_proj.weight`).

use crate::util::glob::any_match;
use sculpt_ir::ops::infer::constant;
use sculpt_ir::{Graph, NodeId};
use std::fmt;

/// What a node is turned into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    /// Left alone.
    F32,
    /// Computed in float16, Casts at the region's edges.
    F16,
    /// Computed in bfloat16, Casts at the region's edges.
    Bf16,
    /// int8 weights and activations (QDQ).
    Int8,
    /// int8 weights only (MatMulNBits with 8 bits, or int8 table rows).
    W8,
    /// int4 weights only (MatMulNBits, or int4 table rows).
    Int4,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "fp32",
            Precision::F16 => "fp16",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
            Precision::W8 => "w8",
            Precision::Int4 => "int4",
        }
    }

    /// Stores weights in blocks of codes (MatMulNBits, block tables).
    pub fn is_weight_only(self) -> bool {
        matches!(self, Precision::W8 | Precision::Int4)
    }

    /// Bits per code of a weight-only precision.
    pub fn bits(self) -> u32 {
        match self {
            Precision::W8 => 8,
            _ => 4,
        }
    }
}

/// A precision, and for weight-only ones the block size when not the
/// pass's (`int4/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Choice {
    pub precision: Precision,
    pub block: Option<usize>,
}

impl Choice {
    pub const F32: Choice = Choice {
        precision: Precision::F32,
        block: None,
    };

    pub fn parse(text: &str) -> Result<Choice, String> {
        let (name, block) = match text.split_once('/') {
            Some((name, block)) => (name, Some(block)),
            None => (text, None),
        };
        let precision = match name.trim() {
            "fp32" | "f32" => Precision::F32,
            "fp16" | "f16" => Precision::F16,
            "bf16" => Precision::Bf16,
            "int8" => Precision::Int8,
            "w8" => Precision::W8,
            "int4" | "w4" => Precision::Int4,
            other => {
                return Err(format!(
                    "'{other}' is not a precision (fp32, fp16, bf16, int8, w8, int4)"
                ))
            }
        };
        let block = match block {
            None => None,
            Some(_) if !precision.is_weight_only() => {
                return Err(format!("'{text}': only w8 and int4 take a block size"))
            }
            Some(b) => match b.trim().parse::<usize>() {
                Ok(b) if b >= 16 && b.is_power_of_two() => Some(b),
                _ => {
                    return Err(format!(
                        "'{text}': the block must be a power of two, 16 or more"
                    ))
                }
            },
        };
        Ok(Choice { precision, block })
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.precision.name())?;
        match self.block {
            Some(b) => write!(f, "/{b}"),
            None => Ok(()),
        }
    }
}

/// One rule: the nodes it matches and what they become. Empty lists match
/// every node.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub ops: Vec<String>,
    pub names: Vec<String>,
    pub layers: Option<(usize, usize)>,
    pub choice: Choice,
}

impl Rule {
    fn matches(&self, node: &Target<'_>) -> bool {
        (self.ops.is_empty() || any_match(&self.ops, node.op))
            && (self.names.is_empty() || any_match(&self.names, node.name))
            && self
                .layers
                .is_none_or(|(lo, hi)| node.layer.is_some_and(|l| (lo..=hi).contains(&l)))
    }
}

/// A policy: what every node becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub default: Choice,
    pub rules: Vec<Rule>,
    /// When not empty, only nodes named like one of these are quantized.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// What a rule looks at in a node.
pub struct Target<'a> {
    pub op: &'a str,
    pub name: &'a str,
    pub layer: Option<usize>,
}

impl Policy {
    pub fn uniform(choice: Choice) -> Policy {
        Policy {
            default: choice,
            rules: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }

    /// The precision of a node described by `target`.
    pub fn resolve(&self, target: &Target<'_>) -> Choice {
        let included = self.include.is_empty() || any_match(&self.include, target.name);
        if !included || any_match(&self.exclude, target.name) {
            return Choice::F32;
        }
        self.rules
            .iter()
            .rev()
            .find(|r| r.matches(target))
            .map_or(self.default, |r| r.choice)
    }

    /// The precision of node `id` of `graph`.
    pub fn resolve_node(&self, graph: &Graph, id: NodeId) -> Choice {
        let node = graph.node(id);
        let layer = layer_index(node.display_name()).or_else(|| {
            node.inputs()
                .iter()
                .flatten()
                .find(|&&v| constant(graph, v).is_some())
                .and_then(|&v| layer_index(&graph.value(v).name))
        });
        self.resolve(&Target {
            op: &node.op_type,
            name: node.display_name(),
            layer,
        })
    }

    /// Every precision the policy can give.
    pub fn precisions(&self) -> Vec<Precision> {
        let mut all: Vec<Precision> = std::iter::once(self.default.precision)
            .chain(self.rules.iter().map(|r| r.choice.precision))
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Adds the rules of an inline list: `PRECISION [op=A|B] [name=GLOB|GLOB]
    /// [layers=N-M]`, `;`-separated.
    pub fn add_inline_rules(&mut self, text: &str) -> Result<(), String> {
        for rule in text.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let mut words = rule.split_whitespace();
            let choice = Choice::parse(words.next().unwrap_or_default())?;
            let mut parsed = Rule {
                ops: Vec::new(),
                names: Vec::new(),
                layers: None,
                choice,
            };
            for word in words {
                let (key, value) = word
                    .split_once('=')
                    .ok_or_else(|| format!("rule '{rule}': expected key=value, got '{word}'"))?;
                let list = || value.split('|').map(String::from).collect::<Vec<_>>();
                match key {
                    "op" => parsed.ops = list(),
                    "name" => parsed.names = list(),
                    "layers" => parsed.layers = Some(parse_layers(value)?),
                    _ => {
                        return Err(format!(
                            "rule '{rule}': unknown key '{key}' (op, name, layers)"
                        ))
                    }
                }
            }
            self.rules.push(parsed);
        }
        Ok(())
    }

    /// Reads a TOML policy (see the module docs).
    pub fn from_toml(text: &str) -> Result<Policy, String> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        for key in doc.keys() {
            if !["default", "include", "exclude", "rule"].contains(&key.as_str()) {
                return Err(format!(
                    "unknown key '{key}' (default, include, exclude, [[rule]])"
                ));
            }
        }
        let default = match doc.get("default") {
            None => Choice::F32,
            Some(v) => Choice::parse(v.as_str().ok_or("'default' must be a string")?)?,
        };
        let mut policy = Policy {
            default,
            rules: Vec::new(),
            include: strings(doc.get("include"), "include")?,
            exclude: strings(doc.get("exclude"), "exclude")?,
        };
        let rules = match doc.get("rule") {
            None => &Vec::new(),
            Some(r) => r.as_array().ok_or("'rule' must be [[rule]] tables")?,
        };
        for (i, rule) in rules.iter().enumerate() {
            let table = rule.as_table().ok_or("'rule' must be [[rule]] tables")?;
            let at = |m: String| format!("rule {}: {m}", i + 1);
            for key in table.keys() {
                if !["precision", "op", "name", "layers"].contains(&key.as_str()) {
                    return Err(at(format!(
                        "unknown key '{key}' (precision, op, name, layers)"
                    )));
                }
            }
            let precision = table
                .get("precision")
                .and_then(|p| p.as_str())
                .ok_or_else(|| at("needs precision = \"…\"".into()))?;
            let layers = match table.get("layers") {
                None => None,
                Some(toml::Value::Integer(n)) if *n >= 0 => Some((*n as usize, *n as usize)),
                Some(toml::Value::String(s)) => Some(parse_layers(s).map_err(at)?),
                Some(_) => return Err(at("layers is a number or \"N-M\"".into())),
            };
            policy.rules.push(Rule {
                ops: strings(table.get("op"), "op").map_err(at)?,
                names: strings(table.get("name"), "name").map_err(at)?,
                layers,
                choice: Choice::parse(precision).map_err(at)?,
            });
        }
        Ok(policy)
    }

    /// The policy as TOML that [`Policy::from_toml`] reads back.
    pub fn to_toml(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let list = |l: &[String]| {
            let items: Vec<String> = l.iter().map(|s| quote(s)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut out = format!("default = {}\n", quote(&self.default.to_string()));
        if !self.include.is_empty() {
            out += &format!("include = {}\n", list(&self.include));
        }
        if !self.exclude.is_empty() {
            out += &format!("exclude = {}\n", list(&self.exclude));
        }
        for rule in &self.rules {
            out += &format!(
                "\n[[rule]]\nprecision = {}\n",
                quote(&rule.choice.to_string())
            );
            if !rule.ops.is_empty() {
                out += &format!("op = {}\n", list(&rule.ops));
            }
            if !rule.names.is_empty() {
                out += &format!("name = {}\n", list(&rule.names));
            }
            if let Some((lo, hi)) = rule.layers {
                out += &format!("layers = \"{lo}-{hi}\"\n");
            }
        }
        out
    }
}

fn strings(value: Option<&toml::Value>, key: &str) -> Result<Vec<String>, String> {
    match value {
        None => Ok(Vec::new()),
        Some(toml::Value::String(s)) => Ok(vec![s.clone()]),
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("'{key}' must be strings")),
        Some(_) => Err(format!("'{key}' must be a string or a list of strings")),
    }
}

/// `N` or `N-M`.
fn parse_layers(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("layers '{text}': expected N or N-M");
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let lo: usize = lo.trim().parse().map_err(|_| bad())?;
    let hi: usize = hi.trim().parse().map_err(|_| bad())?;
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// The first index a module path writes in `name`: digits with `.` or `/`
/// before them and `.`, `/` or the end after (`layer.3/`, `blocks/0/`).
pub fn layer_index(name: &str) -> Option<usize> {
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && i > 0 && matches!(bytes[i - 1], b'.' | b'/') {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == bytes.len() || matches!(bytes[i], b'.' | b'/') {
                if let Ok(n) = name[start..i].parse() {
                    return Some(n);
                }
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(op: &'a str, name: &'a str) -> Target<'a> {
        Target {
            op,
            name,
            layer: layer_index(name),
        }
    }

    #[test]
    fn layers_are_read_from_module_paths() {
        assert_eq!(layer_index("/encoder/layer.3/attention/MatMul"), Some(3));
        assert_eq!(layer_index("model.layers.12.mlp.up_proj.weight"), Some(12));
        assert_eq!(layer_index("/blocks/0/conv"), Some(0));
        assert_eq!(layer_index("MatMul_123"), None);
        assert_eq!(layer_index("onnx::MatMul_1234"), None);
        assert_eq!(layer_index("v1.5x"), None);
    }

    #[test]
    fn the_last_matching_rule_wins_and_exclusions_stay_f32() {
        let mut p = Policy::uniform(Choice::parse("int8").unwrap());
        p.add_inline_rules("int4 op=MatMul; w8/128 op=MatMul layers=0-1; fp16 name=*head*")
            .unwrap();
        p.exclude.push("*classifier*".into());
        let at = |op, name| p.resolve(&target(op, name)).to_string();
        assert_eq!(at("Add", "/layer.0/Add"), "int8");
        assert_eq!(at("MatMul", "/layer.1/ffn/MatMul"), "w8/128");
        assert_eq!(at("MatMul", "/layer.2/ffn/MatMul"), "int4");
        assert_eq!(at("MatMul", "/head/MatMul"), "fp16");
        assert_eq!(at("MatMul", "/classifier/MatMul"), "fp32");
    }

    #[test]
    fn toml_round_trips() {
        let text = r#"
default = "fp32"
exclude = ["*lm_head*"]

[[rule]]
precision = "int4/64"
op = ["MatMul", "Gemm"]
name = "*mlp*"
layers = "2-5"

[[rule]]
precision = "w8"
layers = 0
"#;
        let p = Policy::from_toml(text).unwrap();
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.rules[1].layers, Some((0, 0)));
        assert_eq!(Policy::from_toml(&p.to_toml()).unwrap(), p);
    }

    #[test]
    fn bad_policies_say_what_is_wrong() {
        assert!(Choice::parse("int3")
            .unwrap_err()
            .contains("not a precision"));
        assert!(Choice::parse("fp16/32").unwrap_err().contains("block"));
        assert!(Choice::parse("int4/48")
            .unwrap_err()
            .contains("power of two"));
        let mut p = Policy::uniform(Choice::F32);
        assert!(p
            .add_inline_rules("int4 layer=3")
            .unwrap_err()
            .contains("unknown key"));
        assert!(p
            .add_inline_rules("int4 layers=5-2")
            .unwrap_err()
            .contains("N-M"));
        assert!(Policy::from_toml("[[rule]]\nop = \"MatMul\"")
            .unwrap_err()
            .contains("precision"));
        assert!(Policy::from_toml("defaults = \"int8\"")
            .unwrap_err()
            .contains("unknown key"));
    }
}
