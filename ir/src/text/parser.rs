//! Text form → ONNX protobuf → IR (through the ordinary importer).

use super::lexer::{lex, Tok, Token};
use crate::onnx::{attr_type, proto};
use crate::{DataType, IrError, Model, Result};
use bytes::Bytes;
use prost::Message;

pub fn parse(text: &str) -> Result<Model> {
    let tokens = lex(text)?;
    let mut p = Parser { tokens, pos: 0 };
    let proto = p.model()?;
    crate::onnx::from_proto(proto, None)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

type PResult<T> = Result<T>;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].tok
    }

    fn peek2(&self) -> &Tok {
        &self.tokens[(self.pos + 1).min(self.tokens.len() - 1)].tok
    }

    fn next(&mut self) -> Tok {
        let t = self.tokens[self.pos].tok.clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn error(&self, message: impl Into<String>) -> IrError {
        let t = &self.tokens[self.pos];
        IrError::Parse {
            line: t.line,
            column: t.column,
            message: message.into(),
        }
    }

    fn describe(t: &Tok) -> String {
        match t {
            Tok::Value(v) => format!("'%{v}'"),
            Tok::Str(_) => "a string".into(),
            Tok::Word(w) => format!("'{w}'"),
            Tok::Number(n) => format!("'{n}'"),
            Tok::Arrow => "'->'".into(),
            Tok::Punct(c) => format!("'{c}'"),
            Tok::Eof => "the end of the text".into(),
        }
    }

    fn expect_punct(&mut self, c: char) -> PResult<()> {
        if *self.peek() == Tok::Punct(c) {
            self.next();
            Ok(())
        } else {
            Err(self.error(format!(
                "expected '{c}', found {}",
                Self::describe(self.peek())
            )))
        }
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if *self.peek() == Tok::Punct(c) {
            self.next();
            true
        } else {
            false
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Word(x) if x == w)
    }

    fn word(&mut self) -> PResult<String> {
        match self.next() {
            Tok::Word(w) => Ok(w),
            t => {
                self.pos -= 1;
                Err(self.error(format!("expected a word, found {}", Self::describe(&t))))
            }
        }
    }

    fn string_bytes(&mut self) -> PResult<Vec<u8>> {
        match self.next() {
            Tok::Str(s) => Ok(s),
            t => {
                self.pos -= 1;
                Err(self.error(format!("expected a string, found {}", Self::describe(&t))))
            }
        }
    }

    fn string(&mut self) -> PResult<String> {
        let b = self.string_bytes()?;
        String::from_utf8(b).map_err(|_| self.error("string is not UTF-8"))
    }

    /// A bare word or a quoted string.
    fn name(&mut self) -> PResult<String> {
        match self.peek() {
            Tok::Str(_) => self.string(),
            _ => self.word(),
        }
    }

    fn int(&mut self) -> PResult<i64> {
        match self.next() {
            Tok::Number(n) => n.parse().map_err(|_| {
                self.pos -= 1;
                self.error(format!("'{n}' is not an integer"))
            }),
            t => {
                self.pos -= 1;
                Err(self.error(format!("expected an integer, found {}", Self::describe(&t))))
            }
        }
    }

    fn number_text(&mut self) -> PResult<String> {
        match self.next() {
            Tok::Number(n) => Ok(n),
            Tok::Word(w) if w == "inf" || w == "nan" || w == "NaN" => {
                if self.is_nan_bits() {
                    return self.nan_bits(&w);
                }
                Ok(w)
            }
            t => {
                self.pos -= 1;
                Err(self.error(format!("expected a number, found {}", Self::describe(&t))))
            }
        }
    }

    fn is_nan_bits(&self) -> bool {
        *self.peek() == Tok::Punct('(')
    }

    fn nan_bits(&mut self, _w: &str) -> PResult<String> {
        self.expect_punct('(')?;
        let n = match self.next() {
            Tok::Number(n) => n,
            _ => return Err(self.error("expected NaN bits")),
        };
        self.expect_punct(')')?;
        Ok(format!("bits:{n}"))
    }

    fn f32_value(&mut self) -> PResult<f32> {
        let text = self.number_text()?;
        parse_f32(&text).ok_or_else(|| self.error(format!("'{text}' is not a float")))
    }

    fn f64_value(&mut self) -> PResult<f64> {
        let text = self.number_text()?;
        parse_f64(&text).ok_or_else(|| self.error(format!("'{text}' is not a float")))
    }

    fn hex(&mut self) -> PResult<Bytes> {
        if !self.is_word("hex") {
            return Err(self.error(format!(
                "expected hex\"…\", found {}",
                Self::describe(self.peek())
            )));
        }
        self.next();
        let s = self.string_bytes()?;
        if s.len() % 2 != 0 {
            return Err(self.error("hex string has an odd length"));
        }
        s.chunks(2)
            .map(|c| {
                std::str::from_utf8(c)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| self.error("bad hex digit"))
            })
            .collect::<PResult<Vec<u8>>>()
            .map(Bytes::from)
    }

    fn decode<M: Message + Default>(&mut self, what: &str) -> PResult<M> {
        let bytes = self.hex()?;
        // The decoder has no depth limit of its own.
        crate::onnx::nesting::check_any(&bytes)
            .map_err(|e| self.error(format!("bad encoded {what}: {e}")))?;
        M::decode(bytes).map_err(|e| self.error(format!("bad encoded {what}: {e}")))
    }

    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        self.expect_punct('[')?;
        let mut out = Vec::new();
        if self.eat_punct(']') {
            return Ok(out);
        }
        loop {
            out.push(item(self)?);
            if self.eat_punct(']') {
                return Ok(out);
            }
            self.expect_punct(',')?;
        }
    }

    // ---- model ----

    fn model(&mut self) -> PResult<proto::ModelProto> {
        let mut m = proto::ModelProto::default();
        loop {
            let key = match self.peek() {
                Tok::Eof => break,
                Tok::Word(w) => w.clone(),
                t => {
                    return Err(self.error(format!(
                        "expected a model statement, found {}",
                        Self::describe(t)
                    )))
                }
            };
            self.next();
            match key.as_str() {
                "ir_version" => m.ir_version = Some(self.int()?),
                "producer_name" => m.producer_name = Some(self.string()?),
                "producer_version" => m.producer_version = Some(self.string()?),
                "domain" => m.domain = Some(self.string()?),
                "doc" => m.doc_string = Some(self.string()?),
                "model_version" => m.model_version = Some(self.int()?),
                "opset" => m.opset_import.push(self.opset()?),
                "meta" => m.metadata_props.push(self.meta()?),
                "extra" => {
                    let rest: proto::ModelProto = self.decode("model fields")?;
                    m.training_info = rest.training_info;
                    m.configuration = rest.configuration;
                }
                "graph" => {
                    if m.graph.is_some() {
                        return Err(self.error("a model has one main graph"));
                    }
                    m.graph = Some(self.graph()?);
                }
                "function" => m.functions.push(self.function()?),
                other => return Err(self.error(format!("unknown model statement '{other}'"))),
            }
        }
        if m.ir_version.is_none() {
            m.ir_version = Some(crate::onnx::IR_VERSION);
        }
        // The default domain is imported unless the text says which opset.
        let imports_default = m
            .opset_import
            .iter()
            .any(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")));
        if !imports_default {
            m.opset_import.push(proto::OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(crate::onnx::DEFAULT_OPSET),
            });
        }
        Ok(m)
    }

    fn opset(&mut self) -> PResult<proto::OperatorSetIdProto> {
        Ok(proto::OperatorSetIdProto {
            domain: Some(self.string()?),
            version: Some(self.int()?),
        })
    }

    fn meta(&mut self) -> PResult<proto::StringStringEntryProto> {
        Ok(proto::StringStringEntryProto {
            key: Some(self.string()?),
            value: Some(self.string()?),
        })
    }

    /// After the `graph` keyword: `"name" (decls) -> (decls) { body }`.
    fn graph(&mut self) -> PResult<proto::GraphProto> {
        let mut g = proto::GraphProto {
            name: Some(self.name()?),
            ..Default::default()
        };
        g.input = self.decls()?;
        if self.next() != Tok::Arrow {
            self.pos -= 1;
            return Err(self.error("expected '->' after the graph inputs"));
        }
        g.output = self.decls()?;
        self.expect_punct('{')?;
        while !self.eat_punct('}') {
            self.graph_statement(&mut g, None)?;
        }
        Ok(g)
    }

    fn decls(&mut self) -> PResult<Vec<proto::ValueInfoProto>> {
        self.expect_punct('(')?;
        let mut out = Vec::new();
        if self.eat_punct(')') {
            return Ok(out);
        }
        loop {
            out.push(self.value_decl()?);
            if self.eat_punct(')') {
                return Ok(out);
            }
            self.expect_punct(',')?;
        }
    }

    fn value_ref(&mut self) -> PResult<String> {
        match self.next() {
            Tok::Value(v) => Ok(v),
            t => {
                self.pos -= 1;
                Err(self.error(format!(
                    "expected a value name, found {}",
                    Self::describe(&t)
                )))
            }
        }
    }

    fn value_decl(&mut self) -> PResult<proto::ValueInfoProto> {
        let mut info = proto::ValueInfoProto {
            name: Some(self.value_ref()?),
            ..Default::default()
        };
        if self.eat_punct(':') {
            info.r#type = Some(self.type_()?);
        }
        if *self.peek() == Tok::Punct('{') && matches!(self.peek2(), Tok::Word(w) if w == "$extra")
        {
            self.next();
            self.next();
            self.expect_punct('=')?;
            let rest: proto::ValueInfoProto = self.decode("value info fields")?;
            info.doc_string = rest.doc_string;
            info.metadata_props = rest.metadata_props;
            self.expect_punct('}')?;
        }
        Ok(info)
    }

    fn type_(&mut self) -> PResult<proto::TypeProto> {
        if self.is_word("opaque") {
            self.next();
            return self.decode("type");
        }
        let dtype_word = self.word()?;
        let dtype = DataType::from_name(&dtype_word)
            .ok_or_else(|| self.error(format!("unknown element type '{dtype_word}'")))?;
        self.expect_punct('[')?;
        use proto::tensor_shape_proto::{dimension::Value as V, Dimension};
        let shape = if self.eat_punct('*') {
            self.expect_punct(']')?;
            None
        } else {
            let mut dims = Vec::new();
            if !self.eat_punct(']') {
                loop {
                    let value = match self.next() {
                        Tok::Number(n) => Some(V::DimValue(n.parse().map_err(|_| {
                            self.pos -= 1;
                            self.error(format!("bad dim '{n}'"))
                        })?)),
                        Tok::Word(w) => Some(V::DimParam(w)),
                        Tok::Str(s) => Some(V::DimParam(String::from_utf8_lossy(&s).into_owned())),
                        Tok::Punct('?') => None,
                        t => {
                            self.pos -= 1;
                            return Err(
                                self.error(format!("expected a dim, found {}", Self::describe(&t)))
                            );
                        }
                    };
                    dims.push(Dimension {
                        value,
                        denotation: None,
                    });
                    if self.eat_punct(']') {
                        break;
                    }
                    self.expect_punct(',')?;
                }
            }
            Some(proto::TensorShapeProto { dim: dims })
        };
        Ok(proto::TypeProto {
            denotation: None,
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: Some(dtype.0),
                    shape,
                },
            )),
        })
    }

    /// One statement of a graph (or, with `function` set, of a function body).
    fn graph_statement(
        &mut self,
        g: &mut proto::GraphProto,
        function: Option<&mut proto::FunctionProto>,
    ) -> PResult<()> {
        match self.peek().clone() {
            Tok::Value(_) | Tok::Punct('(') => return self.node_statement(g),
            Tok::Word(w) if w == "_" => return self.node_statement(g),
            Tok::Word(w) => {
                self.next();
                match (w.as_str(), function) {
                    ("doc", None) => g.doc_string = Some(self.string()?),
                    ("meta", None) => g.metadata_props.push(self.meta()?),
                    ("extra", None) => {
                        let rest: proto::GraphProto = self.decode("graph fields")?;
                        g.quantization_annotation = rest.quantization_annotation;
                    }
                    ("init", _) => {
                        let name = self.value_ref()?;
                        self.expect_punct('=')?;
                        let mut t = self.tensor()?;
                        t.name = Some(name);
                        g.initializer.push(t);
                    }
                    ("sparse_init", _) => g.sparse_initializer.push(self.decode("sparse tensor")?),
                    ("value", _) => g.value_info.push(self.value_decl()?),
                    ("domain", Some(f)) => f.domain = Some(self.string()?),
                    ("overload", Some(f)) => f.overload = Some(self.string()?),
                    ("doc", Some(f)) => f.doc_string = Some(self.string()?),
                    ("meta", Some(f)) => f.metadata_props.push(self.meta()?),
                    ("opset", Some(f)) => f.opset_import.push(self.opset()?),
                    ("attributes", Some(f)) => f.attribute = self.list(|p| p.string())?,
                    ("attribute_default", Some(f)) => f.attribute_proto.push(self.attribute()?),
                    (other, _) => {
                        self.pos -= 1;
                        return Err(self.error(format!("unknown statement '{other}'")));
                    }
                }
            }
            t => {
                return Err(self.error(format!(
                    "expected a statement, found {}",
                    Self::describe(&t)
                )))
            }
        }
        Ok(())
    }

    /// `%a: type, _, %c = Op(%x, _) {attrs} @"name"`.
    fn node_statement(&mut self, g: &mut proto::GraphProto) -> PResult<()> {
        let mut n = proto::NodeProto::default();
        if self.eat_punct('(') {
            self.expect_punct(')')?;
        } else {
            loop {
                if self.is_word("_") {
                    self.next();
                    n.output.push(String::new());
                } else {
                    let decl = self.value_decl()?;
                    n.output.push(decl.name.clone().unwrap_or_default());
                    if decl.r#type.is_some()
                        || decl.doc_string.is_some()
                        || !decl.metadata_props.is_empty()
                    {
                        g.value_info.push(decl);
                    }
                }
                if !self.eat_punct(',') {
                    break;
                }
            }
        }
        self.expect_punct('=')?;
        n.op_type = Some(self.name()?);
        self.expect_punct('(')?;
        if !self.eat_punct(')') {
            loop {
                if self.is_word("_") {
                    self.next();
                    n.input.push(String::new());
                } else {
                    n.input.push(self.value_ref()?);
                }
                if self.eat_punct(')') {
                    break;
                }
                self.expect_punct(',')?;
            }
        }
        if self.eat_punct('{') && !self.eat_punct('}') {
            loop {
                match self.peek().clone() {
                    Tok::Word(w) if w.starts_with('$') => {
                        self.next();
                        self.expect_punct('=')?;
                        match w.as_str() {
                            "$domain" => n.domain = Some(self.string()?),
                            "$overload" => n.overload = Some(self.string()?),
                            "$doc" => n.doc_string = Some(self.string()?),
                            "$extra" => {
                                let rest: proto::NodeProto = self.decode("node fields")?;
                                n.metadata_props = rest.metadata_props;
                                n.device_configurations = rest.device_configurations;
                            }
                            other => {
                                return Err(self.error(format!("unknown node field '{other}'")))
                            }
                        }
                    }
                    _ => n.attribute.push(self.attribute()?),
                }
                if self.eat_punct('}') {
                    break;
                }
                self.expect_punct(',')?;
            }
        }
        if self.eat_punct('@') {
            n.name = Some(self.string()?);
        }
        g.node.push(n);
        Ok(())
    }

    fn attribute(&mut self) -> PResult<proto::AttributeProto> {
        let mut a = proto::AttributeProto {
            name: Some(self.name()?),
            ..Default::default()
        };
        self.expect_punct('=')?;
        self.attr_value(&mut a)?;
        if self.is_word("$doc") {
            self.next();
            a.doc_string = Some(self.string()?);
        }
        Ok(a)
    }

    fn attr_value(&mut self, a: &mut proto::AttributeProto) -> PResult<()> {
        use attr_type as t;
        let ty = match self.peek().clone() {
            Tok::Number(n) => {
                if is_float_text(&n) {
                    a.f = Some(self.f32_value()?);
                    t::FLOAT
                } else {
                    a.i = Some(self.int()?);
                    t::INT
                }
            }
            Tok::Str(_) => {
                a.s = Some(self.string_bytes()?.into());
                t::STRING
            }
            Tok::Punct('[') => self.attr_list(a)?,
            Tok::Word(w) => {
                let empty_kind = attr_type::NAMES
                    .iter()
                    .find(|(_, name)| *name == w)
                    .map(|(code, _)| *code);
                if let (Some(code), Tok::Punct('[')) = (empty_kind, self.peek2().clone()) {
                    self.next();
                    self.expect_punct('[')?;
                    self.expect_punct(']')?;
                    code
                } else {
                    self.next();
                    match w.as_str() {
                        "inf" | "nan" | "NaN" => {
                            self.pos -= 1;
                            a.f = Some(self.f32_value()?);
                            t::FLOAT
                        }
                        "tensor" => {
                            a.t = Some(self.tensor()?);
                            t::TENSOR
                        }
                        "graph" => {
                            a.g = Some(self.graph()?);
                            t::GRAPH
                        }
                        "sparse" => {
                            a.sparse_tensor = Some(self.decode("sparse tensor")?);
                            t::SPARSE_TENSOR
                        }
                        "type" => {
                            a.tp = Some(self.type_()?);
                            t::TYPE_PROTO
                        }
                        "ref" => {
                            let kind = self.word()?;
                            let code = attr_type::NAMES
                                .iter()
                                .find(|(_, n)| *n == kind)
                                .map(|(c, _)| *c)
                                .unwrap_or(0);
                            a.ref_attr_name = Some(self.string()?);
                            code
                        }
                        "undefined" => self.int()? as i32,
                        other => {
                            self.pos -= 1;
                            return Err(self.error(format!("unknown attribute value '{other}'")));
                        }
                    }
                }
            }
            other => {
                return Err(self.error(format!(
                    "expected an attribute value, found {}",
                    Self::describe(&other)
                )))
            }
        };
        a.r#type = Some(ty);
        Ok(())
    }

    /// A non-empty list; its kind is that of its first element (a float
    /// list if any number in it is written as a float).
    fn attr_list(&mut self, a: &mut proto::AttributeProto) -> PResult<i32> {
        use attr_type as t;
        let start = self.pos;
        let first = self.peek2().clone();
        match first {
            Tok::Number(_) | Tok::Word(_) if !matches!(&first, Tok::Word(w) if ["tensor", "graph", "sparse", "type"].contains(&w.as_str())) =>
            {
                let texts = self.list(|p| p.number_text())?;
                if texts.iter().any(|n| is_float_text(n)) {
                    a.floats = texts
                        .iter()
                        .map(|n| parse_f32(n))
                        .collect::<Option<_>>()
                        .ok_or_else(|| self.error("bad float in list"))?;
                    Ok(t::FLOATS)
                } else {
                    a.ints = texts
                        .iter()
                        .map(|n| n.parse().ok())
                        .collect::<Option<_>>()
                        .ok_or_else(|| {
                            self.pos = start;
                            self.error("bad integer in list")
                        })?;
                    Ok(t::INTS)
                }
            }
            Tok::Str(_) => {
                a.strings = self.list(|p| p.string_bytes().map(Bytes::from))?;
                Ok(t::STRINGS)
            }
            Tok::Word(w) => match w.as_str() {
                "tensor" => {
                    a.tensors = self.list(|p| {
                        p.word()?;
                        p.tensor()
                    })?;
                    Ok(t::TENSORS)
                }
                "graph" => {
                    a.graphs = self.list(|p| {
                        p.word()?;
                        p.graph()
                    })?;
                    Ok(t::GRAPHS)
                }
                "sparse" => {
                    a.sparse_tensors = self.list(|p| {
                        p.word()?;
                        p.decode("sparse tensor")
                    })?;
                    Ok(t::SPARSE_TENSORS)
                }
                _ => {
                    a.type_protos = self.list(|p| {
                        p.word()?;
                        p.type_()
                    })?;
                    Ok(t::TYPE_PROTOS)
                }
            },
            other => Err(self.error(format!("unexpected {} in a list", Self::describe(&other)))),
        }
    }

    /// `dtype[dims] payload [{$name=…, $doc=…, $extra=…}]`.
    fn tensor(&mut self) -> PResult<proto::TensorProto> {
        let dtype_word = self.word()?;
        let dtype = DataType::from_name(&dtype_word)
            .ok_or_else(|| self.error(format!("unknown element type '{dtype_word}'")))?;
        let dims = self.list(|p| p.int())?;
        let mut t = proto::TensorProto {
            data_type: Some(dtype.0),
            dims,
            ..Default::default()
        };
        match self.peek().clone() {
            Tok::Punct('[') => {
                let texts = self.list(|p| p.number_text())?;
                t.raw_data = Some(encode_values(dtype, &texts).map_err(|m| self.error(m))?);
            }
            Tok::Word(w) => {
                match w.as_str() {
                    "hex" => t.raw_data = Some(self.hex()?),
                    "none" => {
                        self.next();
                    }
                    "elided" => {
                        return Err(self.error(
                            "tensor data was elided when printing; print the model with --full to get a parseable text form",
                        ))
                    }
                    "floats" => {
                        self.next();
                        t.float_data = self.list(|p| p.f32_value())?;
                    }
                    "doubles" => {
                        self.next();
                        t.double_data = self.list(|p| p.f64_value())?;
                    }
                    "int32s" => {
                        self.next();
                        t.int32_data = self.list(|p| p.int().map(|v| v as i32))?;
                    }
                    "int64s" => {
                        self.next();
                        t.int64_data = self.list(|p| p.int())?;
                    }
                    "uint64s" => {
                        self.next();
                        t.uint64_data = self.list(|p| {
                            let n = p.number_text()?;
                            n.parse().map_err(|_| p.error(format!("bad u64 '{n}'")))
                        })?;
                    }
                    "strings" => {
                        self.next();
                        t.string_data = self.list(|p| p.string_bytes().map(Bytes::from))?;
                    }
                    other => return Err(self.error(format!("unknown tensor payload '{other}'"))),
                }
            }
            other => return Err(self.error(format!("expected tensor data, found {}", Self::describe(&other)))),
        }
        if *self.peek() == Tok::Punct('{')
            && matches!(self.peek2(), Tok::Word(w) if w.starts_with('$'))
        {
            self.next();
            loop {
                let key = self.word()?;
                self.expect_punct('=')?;
                match key.as_str() {
                    "$name" => t.name = Some(self.string()?),
                    "$doc" => t.doc_string = Some(self.string()?),
                    "$extra" => {
                        let rest: proto::TensorProto = self.decode("tensor fields")?;
                        t.segment = rest.segment;
                        t.metadata_props = rest.metadata_props;
                        t.external_data = rest.external_data;
                        t.data_location = rest.data_location;
                    }
                    other => return Err(self.error(format!("unknown tensor field '{other}'"))),
                }
                if self.eat_punct('}') {
                    break;
                }
                self.expect_punct(',')?;
            }
        }
        Ok(t)
    }

    /// After the `function` keyword.
    fn function(&mut self) -> PResult<proto::FunctionProto> {
        let mut f = proto::FunctionProto {
            name: Some(self.string()?),
            ..Default::default()
        };
        f.input = self.decls()?.into_iter().filter_map(|d| d.name).collect();
        if self.next() != Tok::Arrow {
            self.pos -= 1;
            return Err(self.error("expected '->' after the function inputs"));
        }
        f.output = self.decls()?.into_iter().filter_map(|d| d.name).collect();
        self.expect_punct('{')?;
        let mut body = proto::GraphProto::default();
        while !self.eat_punct('}') {
            self.graph_statement(&mut body, Some(&mut f))?;
        }
        f.node = body.node;
        f.value_info = body.value_info;
        Ok(f)
    }
}

fn is_float_text(n: &str) -> bool {
    n.starts_with("bits:")
        || n.contains("inf")
        || n.contains("nan")
        || n.contains("NaN")
        || (!n.contains("0x") && (n.contains('.') || n.contains('e') || n.contains('E')))
}

fn parse_f32(n: &str) -> Option<f32> {
    if let Some(bits) = n.strip_prefix("bits:") {
        return u32::from_str_radix(bits.trim_start_matches("0x"), 16)
            .ok()
            .map(f32::from_bits);
    }
    match n {
        "nan" | "NaN" => Some(f32::NAN),
        _ => n.parse().ok(),
    }
}

fn parse_f64(n: &str) -> Option<f64> {
    if let Some(bits) = n.strip_prefix("bits:") {
        return u64::from_str_radix(bits.trim_start_matches("0x"), 16)
            .ok()
            .map(f64::from_bits);
    }
    match n {
        "nan" | "NaN" => Some(f64::NAN),
        _ => n.parse().ok(),
    }
}

/// Encodes `[v, …]` as little-endian raw data of `dtype`.
fn encode_values(dtype: DataType, texts: &[String]) -> std::result::Result<Bytes, String> {
    let mut out = Vec::new();
    for n in texts {
        let bad = || format!("'{n}' is not a valid {dtype}");
        let int = || n.parse::<i128>().map_err(|_| bad());
        match dtype {
            DataType::F32 => out.extend(parse_f32(n).ok_or_else(bad)?.to_le_bytes()),
            DataType::F64 => out.extend(parse_f64(n).ok_or_else(bad)?.to_le_bytes()),
            DataType::I64 => out.extend(i64::try_from(int()?).map_err(|_| bad())?.to_le_bytes()),
            DataType::U64 => out.extend(u64::try_from(int()?).map_err(|_| bad())?.to_le_bytes()),
            DataType::I32 => out.extend(i32::try_from(int()?).map_err(|_| bad())?.to_le_bytes()),
            DataType::U32 => out.extend(u32::try_from(int()?).map_err(|_| bad())?.to_le_bytes()),
            DataType::I16 => out.extend(i16::try_from(int()?).map_err(|_| bad())?.to_le_bytes()),
            DataType::U16 => out.extend(u16::try_from(int()?).map_err(|_| bad())?.to_le_bytes()),
            DataType::I8 => out.push(i8::try_from(int()?).map_err(|_| bad())? as u8),
            DataType::U8 => out.push(u8::try_from(int()?).map_err(|_| bad())?),
            DataType::BOOL => match int()? {
                0 => out.push(0),
                1 => out.push(1),
                _ => return Err(bad()),
            },
            other => {
                return Err(format!(
                    "values cannot be written inline for {other}; use hex\"…\""
                ))
            }
        }
    }
    Ok(out.into())
}
