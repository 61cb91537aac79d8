//! Prints the canonical ONNX export of a model as text.

use super::lexer::quote;
use super::{is_bare_name, is_bare_word};
use crate::onnx::{attr_type, proto};
use crate::DataType;
use prost::Message;
use sha2::{Digest, Sha256};
use std::fmt::Write;

#[derive(Clone, Debug)]
pub struct PrintOptions {
    /// Tensors with at most this many elements print their values.
    pub inline_limit: usize,
    /// Print larger tensors as hex (parseable) instead of a digest.
    pub full: bool,
}

impl Default for PrintOptions {
    fn default() -> Self {
        PrintOptions {
            inline_limit: 16,
            full: false,
        }
    }
}

pub fn print(model: &crate::Model, options: &PrintOptions) -> String {
    let mut p = Printer {
        out: String::new(),
        indent: 0,
        options,
    };
    p.model(&crate::onnx::to_proto(model));
    p.out
}

/// Prints one graph (as it would appear inside a model).
pub fn print_graph(graph: &crate::Graph, options: &PrintOptions) -> String {
    let mut p = Printer {
        out: String::new(),
        indent: 0,
        options,
    };
    p.graph(&crate::onnx::export::graph_to_proto(graph));
    p.out.push('\n');
    p.out
}

struct Printer<'a> {
    out: String,
    indent: usize,
    options: &'a PrintOptions,
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2 + 5);
    s.push_str("hex\"");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s.push('"');
    s
}

fn value_name(name: &str) -> String {
    if is_bare_name(name) {
        format!("%{name}")
    } else {
        format!("%{}", quote(name.as_bytes()))
    }
}

fn word_or_quoted(s: &str) -> String {
    if is_bare_word(s) {
        s.to_string()
    } else {
        quote(s.as_bytes())
    }
}

pub(crate) fn float(f: f32) -> String {
    if f.is_nan() {
        format!("nan(0x{:08x})", f.to_bits())
    } else {
        format!("{f:?}")
    }
}

fn double(f: f64) -> String {
    if f.is_nan() {
        format!("nan(0x{:016x})", f.to_bits())
    } else {
        format!("{f:?}")
    }
}

fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    let parts: Vec<String> = items.iter().map(f).collect();
    format!("[{}]", parts.join(", "))
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// Type in text: `f32[N,3,?]`, `f32[*]` for unknown rank, or an opaque
/// encoded `TypeProto` for anything else.
pub(crate) fn type_text(tp: &proto::TypeProto) -> String {
    if let crate::Type::Tensor { dtype, shape } = crate::onnx::import::import_type(tp.clone()) {
        let elem_ok = matches!(&tp.value, Some(proto::type_proto::Value::TensorType(t)) if t.elem_type.is_some());
        if elem_ok {
            let dims = match shape {
                None => "*".to_string(),
                Some(dims) => dims
                    .iter()
                    .map(|d| match d {
                        crate::Dim::Known(v) => v.to_string(),
                        crate::Dim::Unknown => "?".into(),
                        crate::Dim::Symbol(s) => word_or_quoted(s),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            };
            return format!("{dtype}[{dims}]");
        }
    }
    format!("opaque {}", hex(&tp.encode_to_vec()))
}

impl Printer<'_> {
    fn line(&mut self, s: &str) {
        for _ in 0..self.indent {
            self.out.push_str("  ");
        }
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn model(&mut self, m: &proto::ModelProto) {
        self.line(&format!("ir_version {}", m.ir_version.unwrap_or(0)));
        for (key, v) in [
            ("producer_name", &m.producer_name),
            ("producer_version", &m.producer_version),
            ("domain", &m.domain),
            ("doc", &m.doc_string),
        ] {
            if let Some(v) = non_empty(v) {
                self.line(&format!("{key} {}", quote(v.as_bytes())));
            }
        }
        if let Some(v) = m.model_version.filter(|v| *v != 0) {
            self.line(&format!("model_version {v}"));
        }
        self.opsets(&m.opset_import);
        self.meta(&m.metadata_props);
        let rest = proto::ModelProto {
            training_info: m.training_info.clone(),
            configuration: m.configuration.clone(),
            ..Default::default()
        };
        self.extra(&rest);
        if let Some(g) = &m.graph {
            let text = self.graph_text(g);
            self.out.push_str(&text);
            self.out.push('\n');
        }
        for f in &m.functions {
            self.function(f);
        }
    }

    fn opsets(&mut self, list: &[proto::OperatorSetIdProto]) {
        for o in list {
            self.line(&format!(
                "opset {} {}",
                quote(o.domain.as_deref().unwrap_or("").as_bytes()),
                o.version.unwrap_or(0)
            ));
        }
    }

    fn meta(&mut self, list: &[proto::StringStringEntryProto]) {
        for e in list {
            self.line(&format!(
                "meta {} {}",
                quote(e.key.as_deref().unwrap_or("").as_bytes()),
                quote(e.value.as_deref().unwrap_or("").as_bytes())
            ));
        }
    }

    fn extra<M: Message + Default + PartialEq>(&mut self, rest: &M) {
        if *rest != M::default() {
            self.line(&format!("extra {}", hex(&rest.encode_to_vec())));
        }
    }

    fn graph(&mut self, g: &proto::GraphProto) {
        let text = self.graph_text(g);
        self.out.push_str(&text);
    }

    /// `graph "name" (inputs) -> (outputs) { body }`, indented from the
    /// current level, without a trailing newline.
    fn graph_text(&mut self, g: &proto::GraphProto) -> String {
        let mut head = String::new();
        for _ in 0..self.indent {
            head.push_str("  ");
        }
        let _ = writeln!(
            head,
            "graph {} ({}) -> ({}) {{",
            quote(g.name.as_deref().unwrap_or("").as_bytes()),
            g.input
                .iter()
                .map(value_decl)
                .collect::<Vec<_>>()
                .join(", "),
            g.output
                .iter()
                .map(value_decl)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let saved = std::mem::take(&mut self.out);
        self.indent += 1;
        if let Some(doc) = non_empty(&g.doc_string) {
            self.line(&format!("doc {}", quote(doc.as_bytes())));
        }
        self.meta(&g.metadata_props);
        let rest = proto::GraphProto {
            quantization_annotation: g.quantization_annotation.clone(),
            ..Default::default()
        };
        self.extra(&rest);
        for t in &g.initializer {
            let name = value_name(t.name.as_deref().unwrap_or(""));
            let tensor = self.tensor(t, false);
            self.line(&format!("init {name} = {tensor}"));
        }
        for s in &g.sparse_initializer {
            self.line(&format!("sparse_init {}", hex(&s.encode_to_vec())));
        }
        let plain_info: std::collections::HashMap<&str, &proto::ValueInfoProto> = g
            .value_info
            .iter()
            .filter(|i| is_plain_info(i))
            .map(|i| (i.name.as_deref().unwrap_or(""), i))
            .collect();
        let mut inlined = std::collections::HashSet::new();
        for n in &g.node {
            let outputs: Vec<String> = n
                .output
                .iter()
                .map(|o| {
                    if o.is_empty() {
                        "_".to_string()
                    } else if let Some(info) = plain_info
                        .get(o.as_str())
                        .filter(|_| !inlined.contains(o.as_str()))
                    {
                        inlined.insert(o.as_str());
                        value_decl(info)
                    } else {
                        value_name(o)
                    }
                })
                .collect();
            let node = self.node(n, outputs);
            self.line(&node);
        }
        for info in &g.value_info {
            if !(is_plain_info(info) && inlined.contains(info.name.as_deref().unwrap_or(""))) {
                self.line(&format!("value {}", value_decl(info)));
            }
        }
        self.indent -= 1;
        let body = std::mem::replace(&mut self.out, saved);
        let mut close = String::new();
        for _ in 0..self.indent {
            close.push_str("  ");
        }
        close.push('}');
        format!("{head}{body}{close}")
    }

    fn node(&mut self, n: &proto::NodeProto, outputs: Vec<String>) -> String {
        let lhs = if outputs.is_empty() {
            "()".to_string()
        } else {
            outputs.join(", ")
        };
        let inputs: Vec<String> = n
            .input
            .iter()
            .map(|i| {
                if i.is_empty() {
                    "_".into()
                } else {
                    value_name(i)
                }
            })
            .collect();
        let mut attrs: Vec<String> = n.attribute.iter().map(|a| self.attribute(a)).collect();
        for (key, v) in [
            ("$domain", &n.domain),
            ("$overload", &n.overload),
            ("$doc", &n.doc_string),
        ] {
            if let Some(v) = non_empty(v) {
                attrs.push(format!("{key}={}", quote(v.as_bytes())));
            }
        }
        let rest = proto::NodeProto {
            metadata_props: n.metadata_props.clone(),
            device_configurations: n.device_configurations.clone(),
            ..Default::default()
        };
        if rest != proto::NodeProto::default() {
            attrs.push(format!("$extra={}", hex(&rest.encode_to_vec())));
        }
        let mut s = format!(
            "{lhs} = {}({})",
            word_or_quoted(n.op_type.as_deref().unwrap_or("")),
            inputs.join(", ")
        );
        if !attrs.is_empty() {
            let _ = write!(s, " {{{}}}", attrs.join(", "));
        }
        if let Some(name) = non_empty(&n.name) {
            let _ = write!(s, " @{}", quote(name.as_bytes()));
        }
        s
    }

    fn attribute(&mut self, a: &proto::AttributeProto) -> String {
        let name = word_or_quoted(a.name.as_deref().unwrap_or(""));
        let value = self.attr_value(a);
        match non_empty(&a.doc_string) {
            Some(doc) => format!("{name}={value} $doc {}", quote(doc.as_bytes())),
            None => format!("{name}={value}"),
        }
    }

    fn attr_value(&mut self, a: &proto::AttributeProto) -> String {
        let ty = a.r#type.unwrap_or(0);
        if let Some(r) = non_empty(&a.ref_attr_name) {
            let ty_name = attr_type::NAMES
                .iter()
                .find(|t| t.0 == ty)
                .map_or("undefined", |t| t.1);
            return format!("ref {ty_name} {}", quote(r.as_bytes()));
        }
        let empty = |kind: &str| format!("{kind}[]");
        match ty {
            attr_type::FLOAT => float(a.f.unwrap_or(0.0)),
            attr_type::INT => a.i.unwrap_or(0).to_string(),
            attr_type::STRING => quote(a.s.as_deref().unwrap_or(b"")),
            attr_type::TENSOR => format!(
                "tensor {}",
                self.tensor(a.t.as_ref().unwrap_or(&Default::default()), true)
            ),
            attr_type::GRAPH => {
                self.indent += 1;
                let g = self.graph_text(a.g.as_ref().unwrap_or(&Default::default()));
                self.indent -= 1;
                g.trim_start().to_string()
            }
            attr_type::SPARSE_TENSOR => format!(
                "sparse {}",
                hex(&a.sparse_tensor.clone().unwrap_or_default().encode_to_vec())
            ),
            attr_type::TYPE_PROTO => format!(
                "type {}",
                type_text(a.tp.as_ref().unwrap_or(&Default::default()))
            ),
            attr_type::FLOATS if a.floats.is_empty() => empty("floats"),
            attr_type::FLOATS => list(&a.floats, |f| float(*f)),
            attr_type::INTS if a.ints.is_empty() => empty("ints"),
            attr_type::INTS => list(&a.ints, |i| i.to_string()),
            attr_type::STRINGS if a.strings.is_empty() => empty("strings"),
            attr_type::STRINGS => list(&a.strings, |s| quote(s)),
            attr_type::TENSORS if a.tensors.is_empty() => empty("tensors"),
            attr_type::TENSORS => {
                let parts: Vec<String> = a
                    .tensors
                    .iter()
                    .map(|t| format!("tensor {}", self.tensor(t, true)))
                    .collect();
                format!("[{}]", parts.join(", "))
            }
            attr_type::GRAPHS if a.graphs.is_empty() => empty("graphs"),
            attr_type::GRAPHS => {
                self.indent += 1;
                let parts: Vec<String> = a
                    .graphs
                    .iter()
                    .map(|g| self.graph_text(g).trim_start().to_string())
                    .collect();
                self.indent -= 1;
                format!("[{}]", parts.join(", "))
            }
            attr_type::SPARSE_TENSORS if a.sparse_tensors.is_empty() => empty("sparse_tensors"),
            attr_type::SPARSE_TENSORS => list(&a.sparse_tensors, |s| {
                format!("sparse {}", hex(&s.encode_to_vec()))
            }),
            attr_type::TYPE_PROTOS if a.type_protos.is_empty() => empty("type_protos"),
            attr_type::TYPE_PROTOS => list(&a.type_protos, |t| format!("type {}", type_text(t))),
            other => format!("undefined {other}"),
        }
    }

    /// `f32[2,3] <payload> [{$name=…, $doc=…, $extra=…}]`.
    fn tensor(&mut self, t: &proto::TensorProto, with_name: bool) -> String {
        let dtype = DataType(t.data_type.unwrap_or(0));
        let dims = t
            .dims
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let payload = self.payload(dtype, t);
        let mut trailer = Vec::new();
        if with_name {
            if let Some(n) = non_empty(&t.name) {
                trailer.push(format!("$name={}", quote(n.as_bytes())));
            }
        }
        if let Some(d) = non_empty(&t.doc_string) {
            trailer.push(format!("$doc={}", quote(d.as_bytes())));
        }
        let rest = proto::TensorProto {
            segment: t.segment,
            metadata_props: t.metadata_props.clone(),
            external_data: t.external_data.clone(),
            data_location: t.data_location,
            ..Default::default()
        };
        if rest != proto::TensorProto::default() {
            trailer.push(format!("$extra={}", hex(&rest.encode_to_vec())));
        }
        let mut s = format!("{dtype}[{dims}] {payload}");
        if !trailer.is_empty() {
            let _ = write!(s, " {{{}}}", trailer.join(", "));
        }
        s
    }

    fn payload(&self, dtype: DataType, t: &proto::TensorProto) -> String {
        let limit = self.options.inline_limit;
        let small = |n: usize| n <= limit || self.options.full;
        if let Some(raw) = &t.raw_data {
            if let Some(values) = raw_values(dtype, raw).filter(|v| v.len() <= limit) {
                return format!("[{}]", values.join(", "));
            }
            if self.options.full {
                return hex(raw);
            }
            let digest = Sha256::digest(raw);
            let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            return format!("elided\"sha256:{short}:{}\"", raw.len());
        }
        let typed: Option<(&str, Vec<String>)> = if !t.float_data.is_empty() {
            Some(("floats", t.float_data.iter().map(|f| float(*f)).collect()))
        } else if !t.int32_data.is_empty() {
            Some((
                "int32s",
                t.int32_data.iter().map(|v| v.to_string()).collect(),
            ))
        } else if !t.int64_data.is_empty() {
            Some((
                "int64s",
                t.int64_data.iter().map(|v| v.to_string()).collect(),
            ))
        } else if !t.double_data.is_empty() {
            Some((
                "doubles",
                t.double_data.iter().map(|v| double(*v)).collect(),
            ))
        } else if !t.uint64_data.is_empty() {
            Some((
                "uint64s",
                t.uint64_data.iter().map(|v| v.to_string()).collect(),
            ))
        } else if !t.string_data.is_empty() {
            Some(("strings", t.string_data.iter().map(|s| quote(s)).collect()))
        } else {
            None
        };
        match typed {
            Some((kind, items)) if small(items.len()) => format!("{kind}[{}]", items.join(", ")),
            Some((kind, _)) => {
                let digest = Sha256::digest(t.encode_to_vec());
                let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("elided\"{kind}:sha256:{short}\"")
            }
            None => "none".into(),
        }
    }
}

/// Raw little-endian data as printable values, for the types the parser
/// can encode back exactly.
fn raw_values(dtype: DataType, raw: &[u8]) -> Option<Vec<String>> {
    let vals: Vec<String> = match dtype {
        DataType::F32 => raw
            .chunks_exact(4)
            .map(|c| float(f32::from_le_bytes(c.try_into().unwrap())))
            .collect(),
        DataType::F64 => raw
            .chunks_exact(8)
            .map(|c| double(f64::from_le_bytes(c.try_into().unwrap())))
            .collect(),
        DataType::I64 => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()).to_string())
            .collect(),
        DataType::U64 => raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()).to_string())
            .collect(),
        DataType::I32 => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()).to_string())
            .collect(),
        DataType::U32 => raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()).to_string())
            .collect(),
        DataType::I16 => raw
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]).to_string())
            .collect(),
        DataType::U16 => raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]).to_string())
            .collect(),
        DataType::I8 => raw.iter().map(|&b| (b as i8).to_string()).collect(),
        DataType::U8 => raw.iter().map(|b| b.to_string()).collect(),
        DataType::BOOL if raw.iter().all(|&b| b <= 1) => {
            raw.iter().map(|b| b.to_string()).collect()
        }
        _ => return None,
    };
    let width = dtype.bit_width()? / 8;
    (raw.len() == vals.len() * width).then_some(vals)
}

fn is_plain_info(info: &proto::ValueInfoProto) -> bool {
    info.doc_string.as_deref().unwrap_or("").is_empty() && info.metadata_props.is_empty()
}

/// `%name`, `%name: type`, with `{$extra=…}` for doc strings and metadata.
fn value_decl(info: &proto::ValueInfoProto) -> String {
    let mut s = value_name(info.name.as_deref().unwrap_or(""));
    if let Some(tp) = &info.r#type {
        let _ = write!(s, ": {}", type_text(tp));
    }
    let rest = proto::ValueInfoProto {
        doc_string: info.doc_string.clone().filter(|d| !d.is_empty()),
        metadata_props: info.metadata_props.clone(),
        ..Default::default()
    };
    if rest != proto::ValueInfoProto::default() {
        let _ = write!(s, " {{$extra={}}}", hex(&rest.encode_to_vec()));
    }
    s
}

impl Printer<'_> {
    fn function(&mut self, f: &proto::FunctionProto) {
        let decl = |names: &[String]| {
            names
                .iter()
                .map(|n| value_name(n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.line(&format!(
            "function {} ({}) -> ({}) {{",
            quote(f.name.as_deref().unwrap_or("").as_bytes()),
            decl(&f.input),
            decl(&f.output)
        ));
        self.indent += 1;
        self.line(&format!(
            "domain {}",
            quote(f.domain.as_deref().unwrap_or("").as_bytes())
        ));
        if let Some(o) = non_empty(&f.overload) {
            self.line(&format!("overload {}", quote(o.as_bytes())));
        }
        if let Some(d) = non_empty(&f.doc_string) {
            self.line(&format!("doc {}", quote(d.as_bytes())));
        }
        if !f.attribute.is_empty() {
            self.line(&format!(
                "attributes {}",
                list(&f.attribute, |a| quote(a.as_bytes()))
            ));
        }
        for a in &f.attribute_proto {
            let text = self.attribute(a);
            self.line(&format!("attribute_default {text}"));
        }
        self.opsets(&f.opset_import);
        self.meta(&f.metadata_props);
        let graph = proto::GraphProto {
            node: f.node.clone(),
            value_info: f.value_info.clone(),
            ..Default::default()
        };
        self.indent -= 1;
        let body = self.graph_text(&graph);
        self.indent += 1;
        // Keep only the body lines of the rendered graph.
        let inner: Vec<&str> = body.lines().collect();
        for l in &inner[1..inner.len() - 1] {
            self.out.push_str(l);
            self.out.push('\n');
        }
        self.indent -= 1;
        self.line("}");
    }
}
