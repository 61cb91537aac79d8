//! IR → ONNX protobuf, and writing model files.
//!
//! The export is canonical: nodes in topological order (ties by insertion
//! order, so an imported model keeps its node order), initializers in value
//! order, `value_info` for typed node outputs in node order and then for
//! other typed values. Tensor storage is emitted exactly as it was read.
//!
//! Files are written to a temporary file in the target's folder and renamed
//! into place, so a failed write never leaves a partial model behind.

use super::proto;
use super::stream::StreamBuf;
use crate::{
    AttrValue, Attribute, Dim, Function, Graph, Initializer, IrError, Model, Node, OpsetImport,
    Result, Tensor, TensorData, Type, Value, ValueId,
};
use bytes::Bytes;
use prost::Message;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The protobuf limit: a serialized message must stay under 2 GiB.
pub const PROTOBUF_LIMIT: u64 = (1 << 31) - 1;

pub fn to_proto(model: &Model) -> proto::ModelProto {
    let mut p = model.extra.as_deref().cloned().unwrap_or_default();
    p.ir_version = Some(model.ir_version);
    p.opset_import = opsets(&model.opset_imports);
    p.producer_name = non_empty(&model.producer_name);
    p.producer_version = non_empty(&model.producer_version);
    p.domain = non_empty(&model.domain);
    p.model_version = (model.model_version != 0).then_some(model.model_version);
    p.doc_string = non_empty(&model.doc_string);
    p.metadata_props = string_pairs(&model.metadata);
    p.graph = Some(graph_to_proto(&model.graph));
    p.functions = model.functions.iter().map(function_to_proto).collect();
    p
}

pub fn to_bytes(model: &Model) -> Vec<u8> {
    to_proto(model).encode_to_vec()
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn opsets(list: &[OpsetImport]) -> Vec<proto::OperatorSetIdProto> {
    list.iter()
        .map(|o| proto::OperatorSetIdProto {
            domain: Some(o.domain.clone()),
            version: Some(o.version),
        })
        .collect()
}

fn string_pairs(list: &[(String, String)]) -> Vec<proto::StringStringEntryProto> {
    list.iter()
        .map(|(k, v)| proto::StringStringEntryProto {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

pub(crate) fn export_type(ty: &Type) -> proto::TypeProto {
    match ty {
        Type::Other(tp) => tp.clone(),
        Type::Tensor { dtype, shape } => {
            use proto::tensor_shape_proto::{dimension::Value as V, Dimension};
            let shape = shape.as_ref().map(|dims| proto::TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|d| Dimension {
                        value: match d {
                            Dim::Known(v) => Some(V::DimValue(*v)),
                            Dim::Symbol(s) => Some(V::DimParam(s.clone())),
                            Dim::Unknown => None,
                        },
                        denotation: None,
                    })
                    .collect(),
            });
            proto::TypeProto {
                denotation: None,
                value: Some(proto::type_proto::Value::TensorType(
                    proto::type_proto::Tensor {
                        elem_type: Some(dtype.0),
                        shape,
                    },
                )),
            }
        }
    }
}

fn value_info(v: &Value) -> proto::ValueInfoProto {
    let mut info = v.info_extra.as_deref().cloned().unwrap_or_default();
    info.name = Some(v.name.clone());
    info.r#type = v.ty.as_ref().map(export_type);
    info
}

pub(crate) fn tensor_to_proto(name: Option<&str>, t: &Tensor) -> proto::TensorProto {
    let mut p = t.extra.as_deref().cloned().unwrap_or_default();
    if let Some(name) = name {
        p.name = Some(name.to_string());
    }
    p.data_type = Some(t.dtype.0);
    p.dims = t.dims.clone();
    p.doc_string = non_empty(&t.doc_string);
    match &t.data {
        TensorData::Raw(b) => p.raw_data = Some(b.clone()),
        TensorData::Floats(v) => p.float_data = v.clone(),
        TensorData::Int32s(v) => p.int32_data = v.clone(),
        TensorData::Int64s(v) => p.int64_data = v.clone(),
        TensorData::Doubles(v) => p.double_data = v.clone(),
        TensorData::Uint64s(v) => p.uint64_data = v.clone(),
        TensorData::Strings(v) => p.string_data = v.clone(),
    }
    p
}

/// Order in which `value_info` entries are written: typed node outputs in
/// node order, then every other typed value that is not a graph input,
/// output or initializer.
fn value_info_order(g: &Graph, nodes: &[crate::NodeId]) -> Vec<ValueId> {
    let io: HashSet<ValueId> = g.inputs.iter().chain(&g.outputs).copied().collect();
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for &n in nodes {
        for v in g.node(n).outputs().iter().flatten() {
            if !io.contains(v) && g.value(*v).ty.is_some() && seen.insert(*v) {
                order.push(*v);
            }
        }
    }
    let mut typed_others: Vec<ValueId> = g
        .values()
        .filter(|(id, v)| v.ty.is_some() && !io.contains(id) && !seen.contains(id))
        .map(|(id, _)| id)
        .collect();
    order.append(&mut typed_others);
    order
}

pub(crate) fn graph_to_proto(g: &Graph) -> proto::GraphProto {
    let mut p = g.extra.as_deref().cloned().unwrap_or_default();
    let order = g.order_for_display();
    p.name = Some(g.name.clone());
    p.doc_string = non_empty(&g.doc_string);
    p.node = order.iter().map(|&n| node_to_proto(g, g.node(n))).collect();
    p.input = g.inputs.iter().map(|&v| value_info(g.value(v))).collect();
    p.output = g.outputs.iter().map(|&v| value_info(g.value(v))).collect();
    p.value_info = value_info_order(g, &order)
        .into_iter()
        .map(|v| value_info(g.value(v)))
        .collect();
    p.initializer.clear();
    p.sparse_initializer.clear();
    for (_, v) in g.initializers() {
        match &v.init {
            Some(Initializer::Dense(t)) => p.initializer.push(tensor_to_proto(Some(&v.name), t)),
            Some(Initializer::Sparse(s)) => {
                let mut s = s.as_ref().clone();
                s.values.get_or_insert_with(Default::default).name = Some(v.name.clone());
                p.sparse_initializer.push(s);
            }
            None => {}
        }
    }
    p
}

fn name_of(g: &Graph, v: Option<ValueId>) -> String {
    v.map(|v| g.value(v).name.clone()).unwrap_or_default()
}

fn node_to_proto(g: &Graph, n: &Node) -> proto::NodeProto {
    let mut p = n.extra.as_deref().cloned().unwrap_or_default();
    p.input = n.inputs().iter().map(|v| name_of(g, *v)).collect();
    p.output = n.outputs().iter().map(|v| name_of(g, *v)).collect();
    p.name = non_empty(&n.name);
    p.op_type = Some(n.op_type.clone());
    p.domain = non_empty(&n.domain);
    p.overload = non_empty(&n.overload);
    p.doc_string = non_empty(&n.doc_string);
    p.attribute = n.attributes.iter().map(attribute_to_proto).collect();
    p
}

pub fn attribute_to_proto(a: &Attribute) -> proto::AttributeProto {
    use super::attr_type as t;
    let mut p = proto::AttributeProto {
        name: Some(a.name.clone()),
        doc_string: non_empty(&a.doc_string),
        ..Default::default()
    };
    let ty = match &a.value {
        AttrValue::Float(f) => {
            p.f = Some(*f);
            t::FLOAT
        }
        AttrValue::Int(i) => {
            p.i = Some(*i);
            t::INT
        }
        AttrValue::String(s) => {
            p.s = Some(s.clone());
            t::STRING
        }
        AttrValue::Tensor(x) => {
            p.t = Some(tensor_to_proto(None, x));
            t::TENSOR
        }
        AttrValue::Graph(g) => {
            p.g = Some(graph_to_proto(g));
            t::GRAPH
        }
        AttrValue::SparseTensor(s) => {
            p.sparse_tensor = Some(s.as_ref().clone());
            t::SPARSE_TENSOR
        }
        AttrValue::Type(tp) => {
            p.tp = Some(tp.as_ref().clone());
            t::TYPE_PROTO
        }
        AttrValue::Floats(v) => {
            p.floats = v.clone();
            t::FLOATS
        }
        AttrValue::Ints(v) => {
            p.ints = v.clone();
            t::INTS
        }
        AttrValue::Strings(v) => {
            p.strings = v.clone();
            t::STRINGS
        }
        AttrValue::Tensors(v) => {
            p.tensors = v.iter().map(|x| tensor_to_proto(None, x)).collect();
            t::TENSORS
        }
        AttrValue::Graphs(v) => {
            p.graphs = v.iter().map(graph_to_proto).collect();
            t::GRAPHS
        }
        AttrValue::SparseTensors(v) => {
            p.sparse_tensors = v.clone();
            t::SPARSE_TENSORS
        }
        AttrValue::Types(v) => {
            p.type_protos = v.clone();
            t::TYPE_PROTOS
        }
        AttrValue::Ref { name, ty } => {
            p.ref_attr_name = Some(name.clone());
            *ty
        }
    };
    p.r#type = Some(ty);
    p
}

fn function_to_proto(f: &Function) -> proto::FunctionProto {
    let mut p = f.extra.as_deref().cloned().unwrap_or_default();
    let body = graph_to_proto(&f.body);
    p.name = Some(f.name.clone());
    p.domain = Some(f.domain.clone());
    p.overload = non_empty(&f.overload);
    p.input = body
        .input
        .iter()
        .map(|i| i.name.clone().unwrap_or_default())
        .collect();
    p.output = body
        .output
        .iter()
        .map(|i| i.name.clone().unwrap_or_default())
        .collect();
    p.node = body.node;
    p.value_info = body.value_info;
    p.attribute = f.attribute_names.clone();
    p.attribute_proto = f
        .attribute_defaults
        .iter()
        .map(attribute_to_proto)
        .collect();
    p.opset_import = opsets(&f.opset_imports);
    p.doc_string = non_empty(&f.doc_string);
    p
}

/// Graphs compare by what they export to (see `Model`'s `PartialEq`).
impl PartialEq for Graph {
    fn eq(&self, other: &Graph) -> bool {
        graph_to_proto(self) == graph_to_proto(other)
    }
}

impl PartialEq for Function {
    fn eq(&self, other: &Function) -> bool {
        function_to_proto(self) == function_to_proto(other)
    }
}

/// Where tensor payloads go when a model is saved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ExternalPolicy {
    /// Inline, unless the model would pass the 2 GiB protobuf limit; then
    /// external, as with `Always`.
    #[default]
    Auto,
    /// Every tensor of at least `threshold` bytes goes to one side file
    /// (`<model file name>.data` unless `location` is given).
    Always {
        location: Option<String>,
        threshold: u64,
    },
    Never,
}

#[derive(Clone, Debug, Default)]
pub struct SaveOptions {
    pub external: ExternalPolicy,
    /// Write a `value_info` entry for every value whose type is known (the
    /// ones inference gave too), not only those the model declared. Off by
    /// default: with the shapes of a transformer's residual adds declared,
    /// onnxruntime 1.32 fuses them with LayerNormalization into its CPU
    /// SkipLayerNormalization, which is several times slower (minilm at
    /// 8×128 tokens: 193 ms against 155 ms).
    pub inferred_shapes: bool,
}

/// Drops the `value_info` entries of values the model did not declare,
/// in `graph` and its subgraphs (`proto` is `graph` as written).
fn keep_declared_shapes(graph: &Graph, proto: &mut proto::GraphProto) {
    let mut declared = HashSet::new();
    fn collect<'g>(g: &'g Graph, names: &mut HashSet<&'g str>) {
        for (_, v) in g.values() {
            if v.declared {
                names.insert(v.name.as_str());
            }
        }
        for (_, n) in g.nodes() {
            for body in n.subgraphs() {
                collect(body, names);
            }
        }
    }
    collect(graph, &mut declared);
    fn strip(p: &mut proto::GraphProto, declared: &HashSet<&str>) {
        p.value_info
            .retain(|v| v.name.as_deref().is_some_and(|n| declared.contains(n)));
        for node in &mut p.node {
            for a in &mut node.attribute {
                for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                    strip(g, declared);
                }
            }
        }
    }
    strip(proto, &declared);
}

/// Writes `model` to `path` atomically. Returns the bytes written (model
/// file plus any external data file).
pub fn save(model: &Model, path: &Path, options: &SaveOptions) -> Result<u64> {
    let mut proto = to_proto(model);
    if !options.inferred_shapes {
        if let Some(g) = proto.graph.as_mut() {
            keep_declared_shapes(&model.graph, g);
        }
    }
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| IrError::Invalid(format!("'{}' is not a file path", path.display())))?;
    let (location, threshold) = match &options.external {
        ExternalPolicy::Never => (None, 0),
        ExternalPolicy::Always {
            location,
            threshold,
        } => (
            Some(location.clone().unwrap_or(format!("{file_name}.data"))),
            *threshold,
        ),
        ExternalPolicy::Auto => {
            let len = proto.encoded_len() as u64;
            if len > PROTOBUF_LIMIT {
                (Some(format!("{file_name}.data")), 1024)
            } else {
                (None, 0)
            }
        }
    };
    let mut total = 0;
    let mut pending = Vec::new();
    if let Some(location) = location {
        let dir = path.parent().unwrap_or(Path::new("."));
        let data_path = dir.join(&location);
        let (tmp, written) = write_atomic_begin(&data_path, |w| {
            move_out_external(&mut proto, &location, threshold, w)
        })?;
        total += written;
        pending.push((tmp, data_path));
    } else if options.external == ExternalPolicy::Never
        && proto.encoded_len() as u64 > PROTOBUF_LIMIT
    {
        return Err(IrError::TooLarge {
            bytes: proto.encoded_len() as u64,
        });
    }
    let (tmp, written) = write_atomic_begin(path, |w| {
        let mut stream = StreamBuf::new(w);
        proto
            .encode(&mut stream)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let written = stream.written;
        stream.finish()?;
        Ok(written)
    })?;
    total += written;
    pending.push((tmp, path.to_path_buf()));
    for (tmp, dest) in pending {
        tmp.persist(&dest).map_err(|e| IrError::Write {
            path: dest.clone(),
            source: e.error,
        })?;
    }
    Ok(total)
}

/// Temp file beside `dest`, filled by `fill`, flushed and synced; the
/// caller persists it once every file of the save is ready.
fn write_atomic_begin(
    dest: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<u64>,
) -> Result<(tempfile::NamedTempFile, u64)> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let werr = |source| IrError::Write {
        path: dest.to_path_buf(),
        source,
    };
    let tmp = crate::output_tempfile(&dir).map_err(werr)?;
    let written = {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, tmp.as_file());
        let n = fill(&mut w).map_err(werr)?;
        w.flush().map_err(werr)?;
        n
    };
    tmp.as_file().sync_all().map_err(werr)?;
    Ok((tmp, written))
}

/// Moves every tensor payload of at least `threshold` bytes into the side
/// file, aligned to 4 KiB so that readers can map it.
fn move_out_external(
    proto: &mut proto::ModelProto,
    location: &str,
    threshold: u64,
    out: &mut impl Write,
) -> std::io::Result<u64> {
    let mut offset = 0u64;
    let mut visit = |t: &mut proto::TensorProto| -> std::io::Result<()> {
        let raw: Bytes = match t.raw_data.take() {
            Some(r) if r.len() as u64 >= threshold && !r.is_empty() => r,
            other => {
                t.raw_data = other;
                return Ok(());
            }
        };
        let pad = offset.next_multiple_of(4096) - offset;
        out.write_all(&vec![0u8; pad as usize])?;
        offset += pad;
        out.write_all(&raw)?;
        let entry = |k: &str, v: String| proto::StringStringEntryProto {
            key: Some(k.into()),
            value: Some(v),
        };
        t.external_data = vec![
            entry("location", location.to_string()),
            entry("offset", offset.to_string()),
            entry("length", raw.len().to_string()),
        ];
        t.data_location = Some(proto::tensor_proto::DataLocation::External as i32);
        offset += raw.len() as u64;
        Ok(())
    };
    if let Some(g) = proto.graph.as_mut() {
        for t in &mut g.initializer {
            visit(t)?;
        }
    }
    Ok(offset)
}
