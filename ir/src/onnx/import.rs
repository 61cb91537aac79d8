//! ONNX protobuf → IR. Checks what the IR relies on while building it:
//! every used name is defined (here or, in a subgraph, in an enclosing
//! graph), no name is defined twice, tensors hold as much data as their dims
//! say, external data stays inside the model's folder, and graphs are acyclic.

use super::external::ExternalData;
use super::proto;
use crate::{
    AttrValue, Attribute, DataType, Dim, Function, Graph, Initializer, IrError, Model, Node,
    OpsetImport, Result, Tensor, TensorData, Type, Value, ValueId,
};
use bytes::Bytes;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The bytes of the model file at `path`, memory-mapped: a regular,
/// non-empty file (a pipe or a folder is refused before it is opened).
pub fn map_file(path: &Path) -> Result<Bytes> {
    let read_err = |source| IrError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Looked at before opening: opening a named pipe would wait for a
    // writer.
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.is_dir() {
        return Err(IrError::Invalid(format!(
            "{} is a directory, not a model",
            path.display()
        )));
    }
    if !meta.is_file() {
        return Err(IrError::Invalid(format!(
            "{} is not a regular file (a pipe or device?); give a model file",
            path.display()
        )));
    }
    let file = std::fs::File::open(path).map_err(read_err)?;
    if meta.len() == 0 {
        return Err(IrError::Empty {
            path: path.to_path_buf(),
        });
    }
    // SAFETY: the mapping is read-only; like every mmap-based reader we rely
    // on the file not being truncated while the model is alive.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(read_err)?;
    Ok(Bytes::from_owner(map))
}

/// Decodes a serialized `ModelProto`. `base_dir` is where external data
/// files are looked up (none: external data is refused).
pub fn from_bytes(bytes: Bytes, base_dir: Option<&Path>) -> Result<Model> {
    sniff_foreign_format(&bytes)?;
    // The decoder has no depth limit of its own (see `nesting`).
    super::nesting::check(&bytes).map_err(IrError::Decode)?;
    let proto = proto::ModelProto::decode(bytes).map_err(|e| IrError::Decode(e.to_string()))?;
    from_proto(proto, base_dir)
}

fn sniff_foreign_format(bytes: &[u8]) -> Result<()> {
    let kinds: &[(&[u8], &str)] = &[
        (b"PK\x03\x04", "a zip archive (.npz?)"),
        (b"\x93NUMPY", "a NumPy .npy file"),
        (b"\x89PNG", "a PNG image"),
        (b"\x7fELF", "an ELF executable"),
        (b"\x1f\x8b", "a gzip file"),
        (b"{", "a JSON document"),
        (b"TFL3", "a TensorFlow Lite model"),
    ];
    for (magic, what) in kinds {
        if bytes.starts_with(magic)
            || bytes.get(4..8) == Some(*magic) && *what == "a TensorFlow Lite model"
        {
            return Err(IrError::Invalid(format!(
                "not an ONNX model: this is {what}"
            )));
        }
    }
    Ok(())
}

pub fn from_proto(mut proto: proto::ModelProto, base_dir: Option<&Path>) -> Result<Model> {
    let graph_proto = proto
        .graph
        .take()
        .ok_or_else(|| IrError::Invalid("not an ONNX model: it has no graph".into()))?;
    let ir_version = proto.ir_version.take().unwrap_or(0);
    if ir_version <= 0 {
        return Err(IrError::Invalid(format!(
            "not an ONNX model: ir_version is {ir_version}"
        )));
    }
    if ir_version > LATEST_IR_VERSION {
        return Err(IrError::Invalid(format!(
            "ir_version {ir_version} is newer than the {LATEST_IR_VERSION} sculpt reads (onnx 1.23)"
        )));
    }
    let mut importer = Importer {
        external: ExternalData::new(base_dir),
    };
    let graph = importer.graph(graph_proto, &mut Vec::new())?;
    check_opsets(&proto.opset_import, ir_version, &graph)?;
    let functions = std::mem::take(&mut proto.functions)
        .into_iter()
        .map(|f| importer.function(f))
        .collect::<Result<Vec<_>>>()?;
    let model = Model {
        ir_version,
        opset_imports: opsets(std::mem::take(&mut proto.opset_import)),
        producer_name: proto.producer_name.take().unwrap_or_default(),
        producer_version: proto.producer_version.take().unwrap_or_default(),
        domain: proto.domain.take().unwrap_or_default(),
        model_version: proto.model_version.take().unwrap_or_default(),
        doc_string: proto.doc_string.take().unwrap_or_default(),
        metadata: string_pairs(std::mem::take(&mut proto.metadata_props)),
        graph,
        functions,
        extra: remainder(proto),
    };
    let problems = crate::ops::schema::check_model(&model);
    if let Some(first) = problems.first() {
        let more = match problems.len() {
            1 => String::new(),
            n => format!(" (and {} more problems)", n - 1),
        };
        return Err(IrError::Invalid(format!("{first}{more}")));
    }
    Ok(model)
}

/// The newest IR version and default-domain opset of the vendored
/// `onnx.proto` (onnx 1.23).
pub const LATEST_IR_VERSION: i64 = 14;
pub const LATEST_OPSET: i64 = 28;

/// The default domain's opset is 1 to [`LATEST_OPSET`], and imported by
/// every model from IR version 3 on that has default-domain nodes (older
/// ones had no opset imports; an ai.onnx.ml-only model needs none).
fn check_opsets(list: &[proto::OperatorSetIdProto], ir_version: i64, graph: &Graph) -> Result<()> {
    let default = list
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")));
    match default.map(|o| o.version.unwrap_or(0)) {
        None if ir_version >= 3 && graph.any_node(&Node::is_onnx) => Err(IrError::Invalid(
            "the model has default-domain nodes but imports no default-domain opset (opset_import has no \"\" entry)".into(),
        )),
        Some(v) if !(1..=LATEST_OPSET).contains(&v) => Err(IrError::Invalid(format!(
            "default-domain opset {v} is not one of 1 to {LATEST_OPSET}"
        ))),
        _ => Ok(()),
    }
}

fn opsets(list: Vec<proto::OperatorSetIdProto>) -> Vec<OpsetImport> {
    list.into_iter()
        .map(|o| OpsetImport {
            domain: o.domain.unwrap_or_default(),
            version: o.version.unwrap_or_default(),
        })
        .collect()
}

fn string_pairs(list: Vec<proto::StringStringEntryProto>) -> Vec<(String, String)> {
    list.into_iter()
        .map(|e| (e.key.unwrap_or_default(), e.value.unwrap_or_default()))
        .collect()
}

/// What is left of a protobuf after the modelled fields were taken out;
/// `None` when nothing is left.
fn remainder<M: Message + Default + PartialEq>(rest: M) -> Option<Box<M>> {
    (rest != M::default()).then(|| Box::new(rest))
}

pub(crate) fn import_type(mut tp: proto::TypeProto) -> Type {
    let plain = tp.denotation.as_deref().unwrap_or("").is_empty();
    if let (true, Some(proto::type_proto::Value::TensorType(t))) = (plain, &tp.value) {
        let shape = match &t.shape {
            None => Some(None),
            Some(s) => s
                .dim
                .iter()
                .map(|d| {
                    if !d.denotation.as_deref().unwrap_or("").is_empty() {
                        return None;
                    }
                    use proto::tensor_shape_proto::dimension::Value as V;
                    Some(match &d.value {
                        Some(V::DimValue(v)) => Dim::Known(*v),
                        Some(V::DimParam(p)) => Dim::Symbol(p.clone()),
                        None => Dim::Unknown,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .map(Some),
        };
        if let Some(shape) = shape {
            return Type::Tensor {
                dtype: DataType(t.elem_type.unwrap_or(0)),
                shape,
            };
        }
    }
    tp.denotation = tp.denotation.filter(|d| !d.is_empty());
    Type::Other(tp)
}

/// One `TensorProto` as an IR tensor and its name (external data refused).
pub fn tensor_from_proto(t: proto::TensorProto) -> Result<(String, Tensor)> {
    import_tensor(t, &mut ExternalData::new(None))
}

pub(crate) fn import_tensor(
    mut t: proto::TensorProto,
    external: &mut ExternalData,
) -> Result<(String, Tensor)> {
    let name = t.name.take().unwrap_or_default();
    let dtype = DataType(t.data_type.take().unwrap_or(0));
    let dims = std::mem::take(&mut t.dims);
    let is_external =
        t.data_location.take() == Some(proto::tensor_proto::DataLocation::External as i32);
    let data = if is_external {
        let entries = string_pairs(std::mem::take(&mut t.external_data));
        TensorData::Raw(external.read(&name, &entries)?)
    } else if let Some(raw) = t.raw_data.take() {
        TensorData::Raw(raw)
    } else if !t.float_data.is_empty() {
        TensorData::Floats(std::mem::take(&mut t.float_data))
    } else if !t.int32_data.is_empty() {
        TensorData::Int32s(std::mem::take(&mut t.int32_data))
    } else if !t.int64_data.is_empty() {
        TensorData::Int64s(std::mem::take(&mut t.int64_data))
    } else if !t.double_data.is_empty() {
        TensorData::Doubles(std::mem::take(&mut t.double_data))
    } else if !t.uint64_data.is_empty() {
        TensorData::Uint64s(std::mem::take(&mut t.uint64_data))
    } else if !t.string_data.is_empty() || dtype == DataType::STRING {
        TensorData::Strings(std::mem::take(&mut t.string_data))
    } else {
        // An empty tensor (some dim is 0) or one with no data at all: the
        // size check below tells them apart.
        TensorData::Raw(Bytes::new())
    };
    let tensor = Tensor {
        dtype,
        dims,
        data,
        doc_string: t.doc_string.take().unwrap_or_default(),
        extra: remainder(t),
    };
    tensor.check(&name)?;
    Ok((name, tensor))
}

struct Importer {
    external: ExternalData,
}

/// Names visible from enclosing graphs, innermost last.
type Scopes = Vec<HashSet<String>>;

impl Importer {
    fn graph(&mut self, mut g: proto::GraphProto, scopes: &mut Scopes) -> Result<Graph> {
        let mut graph = Graph::new(g.name.take().unwrap_or_default());
        graph.doc_string = g.doc_string.take().unwrap_or_default();
        let mut names: HashMap<String, (ValueId, String)> = HashMap::new();
        // Initializers first, so that export keeps their order even where
        // (IR < 4) some of them double as graph inputs with defaults.
        for t in std::mem::take(&mut g.initializer) {
            let (name, tensor) = import_tensor(t, &mut self.external)?;
            let id = define(&mut graph, &mut names, name, "an initializer".into())?;
            graph.value_mut(id).init = Some(Initializer::Dense(tensor));
        }
        for mut s in std::mem::take(&mut g.sparse_initializer) {
            let name = s
                .values
                .as_mut()
                .and_then(|v| v.name.take())
                .unwrap_or_default();
            let id = define(&mut graph, &mut names, name, "an initializer".into())?;
            graph.value_mut(id).init = Some(Initializer::Sparse(Box::new(s)));
        }
        let mut is_input = std::collections::HashSet::new();
        for info in std::mem::take(&mut g.input) {
            let (name, ty, extra) = split_info(info);
            let existing = names.get(&name).map(|(id, _)| *id);
            let id = match existing {
                Some(id) if graph.value(id).init.is_some() && !is_input.contains(&id) => id,
                _ => define(&mut graph, &mut names, name, "a graph input".into())?,
            };
            is_input.insert(id);
            let v = graph.value_mut(id);
            v.ty = ty;
            v.info_extra = extra;
            graph.inputs.push(id);
        }

        let nodes = std::mem::take(&mut g.node);
        let mut node_outputs = Vec::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            let label = node_label(n, i);
            let outs = n
                .output
                .iter()
                .map(|o| {
                    if o.is_empty() {
                        Ok(None)
                    } else {
                        define(
                            &mut graph,
                            &mut names,
                            o.clone(),
                            format!("output of node '{label}'"),
                        )
                        .map(Some)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            node_outputs.push(outs);
        }

        let mut all: HashMap<String, ValueId> =
            names.into_iter().map(|(k, (id, _))| (k, id)).collect();
        for info in std::mem::take(&mut g.value_info) {
            let (name, ty, extra) = split_info(info);
            let id = match all.get(&name) {
                Some(&id) => id,
                None => {
                    let id = graph.add_value(Value::new(name.clone()));
                    graph.value_mut(id).dead = true;
                    all.insert(name, id);
                    id
                }
            };
            let v = graph.value_mut(id);
            v.ty = ty;
            v.info_extra = extra;
            v.declared = true;
        }

        let defined: HashSet<String> = all
            .iter()
            .filter(|(_, &id)| !graph.value(id).dead)
            .map(|(k, _)| k.clone())
            .collect();
        scopes.push(defined);
        let mut pending_inputs = Vec::with_capacity(nodes.len());
        for (i, (mut n, outs)) in nodes.into_iter().zip(node_outputs).enumerate() {
            let label = node_label(&n, i);
            let inputs = std::mem::take(&mut n.input)
                .iter()
                .map(|name| {
                    if name.is_empty() {
                        Ok(None)
                    } else {
                        resolve(&mut graph, &mut all, scopes, name, &label).map(Some)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            n.output.clear();
            let node = self.node(n, scopes)?;
            let id = graph.add_node(node, Vec::new(), Vec::new());
            graph.bind_outputs(id, outs);
            pending_inputs.push((id, inputs));
        }
        for (id, inputs) in pending_inputs {
            graph.set_inputs(id, inputs);
        }
        for id in graph.node_ids() {
            if graph.node(id).subgraphs().next().is_some() {
                graph.link_captures(id);
            }
        }

        for info in std::mem::take(&mut g.output) {
            let (name, ty, extra) = split_info(info);
            let id = resolve(&mut graph, &mut all, scopes, &name, "the graph outputs")?;
            let v = graph.value_mut(id);
            if ty.is_some() {
                v.ty = ty;
            }
            if extra.is_some() {
                v.info_extra = extra;
            }
            graph.outputs.push(id);
        }
        scopes.pop();
        graph.extra = remainder(g);
        graph.topo_order()?;
        Ok(graph)
    }

    fn node(&mut self, mut n: proto::NodeProto, scopes: &mut Scopes) -> Result<Node> {
        let mut node = Node::new(n.op_type.take().unwrap_or_default());
        node.name = n.name.take().unwrap_or_default();
        node.domain = n.domain.take().unwrap_or_default();
        node.overload = n.overload.take().unwrap_or_default();
        node.doc_string = n.doc_string.take().unwrap_or_default();
        node.attributes = std::mem::take(&mut n.attribute)
            .into_iter()
            .map(|a| self.attribute(a, scopes))
            .collect::<Result<_>>()
            .map_err(|e| match e {
                IrError::Invalid(reason) => IrError::node(&node, reason),
                other => other,
            })?;
        node.extra = remainder(n);
        Ok(node)
    }

    fn attribute(
        &mut self,
        mut a: proto::AttributeProto,
        scopes: &mut Scopes,
    ) -> Result<Attribute> {
        use super::attr_type as t;
        let name = a.name.take().unwrap_or_default();
        let doc_string = a.doc_string.take().unwrap_or_default();
        let ty = a.r#type.unwrap_or(0);
        let value = if let Some(r) = a.ref_attr_name.take().filter(|r| !r.is_empty()) {
            AttrValue::Ref { name: r, ty }
        } else {
            match ty {
                t::FLOAT => AttrValue::Float(a.f.unwrap_or_default()),
                t::INT => AttrValue::Int(a.i.unwrap_or_default()),
                t::STRING => AttrValue::String(a.s.unwrap_or_default()),
                t::TENSOR => {
                    let tp = a.t.ok_or_else(|| missing(&name, "tensor"))?;
                    let (tname, mut tensor) = import_tensor(tp, &mut self.external)?;
                    keep_tensor_name(&mut tensor, tname);
                    AttrValue::Tensor(tensor)
                }
                t::GRAPH => {
                    let g = a.g.ok_or_else(|| missing(&name, "graph"))?;
                    AttrValue::Graph(Box::new(self.graph(g, scopes)?))
                }
                t::SPARSE_TENSOR => AttrValue::SparseTensor(Box::new(
                    a.sparse_tensor
                        .ok_or_else(|| missing(&name, "sparse tensor"))?,
                )),
                t::TYPE_PROTO => {
                    AttrValue::Type(Box::new(a.tp.ok_or_else(|| missing(&name, "type"))?))
                }
                t::FLOATS => AttrValue::Floats(a.floats),
                t::INTS => AttrValue::Ints(a.ints),
                t::STRINGS => AttrValue::Strings(a.strings),
                t::TENSORS => AttrValue::Tensors(
                    a.tensors
                        .into_iter()
                        .map(|tp| {
                            let (tname, mut tensor) = import_tensor(tp, &mut self.external)?;
                            keep_tensor_name(&mut tensor, tname);
                            Ok(tensor)
                        })
                        .collect::<Result<_>>()?,
                ),
                t::GRAPHS => AttrValue::Graphs(
                    a.graphs
                        .into_iter()
                        .map(|g| self.graph(g, scopes))
                        .collect::<Result<_>>()?,
                ),
                t::SPARSE_TENSORS => AttrValue::SparseTensors(a.sparse_tensors),
                t::TYPE_PROTOS => AttrValue::Types(a.type_protos),
                other => {
                    return Err(IrError::Invalid(format!(
                        "attribute '{name}' has unknown type {other}"
                    )))
                }
            }
        };
        Ok(Attribute {
            name,
            value,
            doc_string,
        })
    }

    fn function(&mut self, mut f: proto::FunctionProto) -> Result<Function> {
        let graph = proto::GraphProto {
            node: std::mem::take(&mut f.node),
            input: std::mem::take(&mut f.input)
                .into_iter()
                .map(|name| proto::ValueInfoProto {
                    name: Some(name),
                    ..Default::default()
                })
                .collect(),
            output: std::mem::take(&mut f.output)
                .into_iter()
                .map(|name| proto::ValueInfoProto {
                    name: Some(name),
                    ..Default::default()
                })
                .collect(),
            value_info: std::mem::take(&mut f.value_info),
            ..Default::default()
        };
        let body = self.graph(graph, &mut Vec::new())?;
        let mut scopes = Vec::new();
        Ok(Function {
            name: f.name.take().unwrap_or_default(),
            domain: f.domain.take().unwrap_or_default(),
            overload: f.overload.take().unwrap_or_default(),
            body,
            attribute_names: std::mem::take(&mut f.attribute),
            attribute_defaults: std::mem::take(&mut f.attribute_proto)
                .into_iter()
                .map(|a| self.attribute(a, &mut scopes))
                .collect::<Result<_>>()?,
            opset_imports: opsets(std::mem::take(&mut f.opset_import)),
            doc_string: f.doc_string.take().unwrap_or_default(),
            extra: remainder(f),
        })
    }
}

/// Attribute tensors carry their name inside; the IR keeps it in `extra`.
fn keep_tensor_name(tensor: &mut Tensor, name: String) {
    if !name.is_empty() {
        tensor.extra.get_or_insert_with(Default::default).name = Some(name);
    }
}

fn missing(attr: &str, what: &str) -> IrError {
    IrError::Invalid(format!(
        "attribute '{attr}' declares a {what} but holds none"
    ))
}

fn node_label(n: &proto::NodeProto, index: usize) -> String {
    match n.name.as_deref() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => format!("#{index} {}", n.op_type.as_deref().unwrap_or("?")),
    }
}

/// Creates the value `name`, refusing a second definition of a name.
fn define(
    graph: &mut Graph,
    names: &mut HashMap<String, (ValueId, String)>,
    name: String,
    what: String,
) -> Result<ValueId> {
    if let Some((_, first)) = names.get(&name) {
        return Err(IrError::Duplicate {
            value: name,
            first: first.clone(),
            second: what,
        });
    }
    let id = graph.add_value(Value::new(name.clone()));
    names.insert(name, (id, what));
    Ok(id)
}

/// The value `name` refers to: one of this graph's, or a capture of an
/// enclosing graph's (`scopes` ends with this graph's own names).
fn resolve(
    graph: &mut Graph,
    all: &mut HashMap<String, ValueId>,
    scopes: &Scopes,
    name: &str,
    user: &str,
) -> Result<ValueId> {
    if let Some(&id) = all.get(name) {
        if !graph.value(id).dead {
            return Ok(id);
        }
    }
    if scopes[..scopes.len() - 1].iter().any(|s| s.contains(name)) {
        let id = match all.get(name) {
            Some(&id) => id,
            None => graph.add_value(Value::new(name)),
        };
        let v = graph.value_mut(id);
        v.dead = false;
        v.outer = true;
        all.insert(name.to_string(), id);
        return Ok(id);
    }
    Err(IrError::Undefined {
        value: name.to_string(),
        node: user.to_string(),
    })
}

fn split_info(
    mut info: proto::ValueInfoProto,
) -> (String, Option<Type>, Option<Box<proto::ValueInfoProto>>) {
    let name = info.name.take().unwrap_or_default();
    let ty = info.r#type.take().map(import_type);
    (name, ty, remainder(info))
}
