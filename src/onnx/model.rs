//! A loaded ONNX model: reading and writing files, and questions about its main graph.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::ArrayD;
use prost::Message;
use snafu::ResultExt;

use super::proto::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use super::tensor;
use super::{
    DecodeSnafu, NotOnnxSnafu, NotTopologicalSnafu, OnnxError, ReadSnafu, TensorSnafu,
    UndefinedInputSnafu, UndefinedOutputSnafu, WriteSnafu,
};

/// What models built in memory are called in error messages.
pub const IN_MEMORY: &str = "<in-memory model>";

/// An ONNX model and the file it came from (named in every error).
///
/// The protobuf is public through [`Model::proto`] and [`Model::proto_mut`]; the methods here
/// answer questions about the main graph (not about subgraphs of control-flow nodes).
#[derive(Clone, PartialEq)]
pub struct Model {
    proto: ModelProto,
    path: PathBuf,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let graph = self.graph();
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("ir_version", &self.proto.ir_version)
            .field("opset_import", &self.proto.opset_import)
            .field("nodes", &graph.node.len())
            .field("initializers", &graph.initializer.len())
            .finish()
    }
}

static EMPTY_GRAPH: LazyLock<GraphProto> = LazyLock::new(GraphProto::default);

/// A node's name for messages: its name, or `#index` when it has none.
pub fn node_label(index: usize, node: &NodeProto) -> String {
    match node.name() {
        "" => format!("#{index}"),
        name => name.to_string(),
    }
}

impl Model {
    /// Reads and decodes an ONNX file. Errors name the file: unreadable, not protobuf
    /// (truncated or another format), or protobuf without a graph and IR version.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, OnnxError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).context(ReadSnafu { path })?;
        Model::decode(&bytes, path)
    }

    /// Decodes an ONNX model from bytes (errors call it [`IN_MEMORY`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, OnnxError> {
        Model::decode(bytes, Path::new(IN_MEMORY))
    }

    fn decode(bytes: &[u8], path: &Path) -> Result<Model, OnnxError> {
        let proto = ModelProto::decode(bytes).context(DecodeSnafu { path })?;
        Model::from_proto(proto, path)
    }

    /// Wraps a protobuf (built in code, or edited), checking that it has a graph and an IR
    /// version; `path` is what errors will call it.
    pub fn from_proto(proto: ModelProto, path: impl Into<PathBuf>) -> Result<Model, OnnxError> {
        let path = path.into();
        if proto.graph.is_none() {
            return NotOnnxSnafu {
                path,
                missing: "graph",
            }
            .fail();
        }
        if proto.ir_version.unwrap_or(0) <= 0 {
            return NotOnnxSnafu {
                path,
                missing: "IR version",
            }
            .fail();
        }
        Ok(Model { proto, path })
    }

    /// The protobuf encoding of the model.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }

    /// Writes the model to `path` atomically: into a temporary file in the same folder, synced,
    /// then renamed over `path`, so readers never see a half-written model.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), OnnxError> {
        let path = path.as_ref();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model.onnx".into());
        let temp = path.with_file_name(format!(
            ".{file_name}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let bytes = self.to_bytes();
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.context(WriteSnafu { path })
    }

    /// The file the model came from (or [`IN_MEMORY`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The protobuf.
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    /// The protobuf, for editing.
    pub fn proto_mut(&mut self) -> &mut ModelProto {
        &mut self.proto
    }

    /// The protobuf, consuming the model.
    pub fn into_proto(self) -> ModelProto {
        self.proto
    }

    /// The main graph.
    pub fn graph(&self) -> &GraphProto {
        self.proto.graph.as_ref().unwrap_or(&EMPTY_GRAPH)
    }

    /// The main graph, for editing.
    pub fn graph_mut(&mut self) -> &mut GraphProto {
        self.proto.graph.get_or_insert_with(GraphProto::default)
    }

    /// The version of the default ONNX operator set (domain `""` or `ai.onnx`).
    pub fn opset_version(&self) -> Option<i64> {
        self.opset_version_of("")
    }

    /// The imported version of a domain (`""` and `ai.onnx` are the same domain).
    pub fn opset_version_of(&self, domain: &str) -> Option<i64> {
        let canonical = |d: &str| if d == "ai.onnx" { "" } else { d }.to_string();
        let wanted = canonical(domain);
        self.proto
            .opset_import
            .iter()
            .find(|o| canonical(o.domain()) == wanted)
            .and_then(|o| o.version)
    }

    /// Graph inputs that are real inputs: those not also initializers (IR < 4 models list
    /// weights as inputs too).
    pub fn inputs(&self) -> Vec<&ValueInfoProto> {
        let graph = self.graph();
        let weights: HashSet<&str> = graph.initializer.iter().map(TensorProto::name).collect();
        graph
            .input
            .iter()
            .filter(|i| !weights.contains(i.name()))
            .collect()
    }

    /// The graph outputs.
    pub fn outputs(&self) -> &[ValueInfoProto] {
        &self.graph().output
    }

    /// The initializer called `name`.
    pub fn initializer(&self, name: &str) -> Option<&TensorProto> {
        self.graph().initializer.iter().find(|t| t.name() == name)
    }

    /// Every initializer by name.
    pub fn initializers(&self) -> HashMap<&str, &TensorProto> {
        self.graph()
            .initializer
            .iter()
            .map(|t| (t.name(), t))
            .collect()
    }

    /// A floating-point initializer as `f32` (see [`tensor::to_f32`]); `Ok(None)` when there is
    /// no initializer of that name.
    pub fn initializer_f32(&self, name: &str) -> Result<Option<ArrayD<f32>>, OnnxError> {
        self.initializer(name)
            .map(|t| tensor::to_f32(t).context(TensorSnafu { path: &self.path }))
            .transpose()
    }

    /// An integer initializer as `i64` (see [`tensor::to_i64`]); `Ok(None)` when absent.
    pub fn initializer_i64(&self, name: &str) -> Result<Option<ArrayD<i64>>, OnnxError> {
        self.initializer(name)
            .map(|t| tensor::to_i64(t).context(TensorSnafu { path: &self.path }))
            .transpose()
    }

    /// The node that produces tensor `name`.
    pub fn node_by_output(&self, name: &str) -> Option<&NodeProto> {
        self.node_index_by_output(name)
            .map(|i| &self.graph().node[i])
    }

    /// The index (in `graph().node`) of the node that produces tensor `name`.
    pub fn node_index_by_output(&self, name: &str) -> Option<usize> {
        if name.is_empty() {
            return None;
        }
        self.graph()
            .node
            .iter()
            .position(|n| n.output.iter().any(|o| o == name))
    }

    /// The node called `name`.
    pub fn node_by_name(&self, name: &str) -> Option<&NodeProto> {
        self.graph().node.iter().find(|n| n.name() == name)
    }

    /// The nodes that read tensor `name`, in graph order (a node reading it twice appears once).
    pub fn consumers(&self, name: &str) -> Vec<&NodeProto> {
        if name.is_empty() {
            return Vec::new();
        }
        self.graph()
            .node
            .iter()
            .filter(|n| n.input.iter().any(|i| i == name))
            .collect()
    }

    /// Whether some node, graph input or initializer defines tensor `name`.
    pub fn defines(&self, name: &str) -> bool {
        let graph = self.graph();
        graph.input.iter().any(|i| i.name() == name)
            || graph.initializer.iter().any(|t| t.name() == name)
            || graph
                .sparse_initializer
                .iter()
                .any(|s| s.values.as_ref().is_some_and(|v| v.name() == name))
            || self.node_index_by_output(name).is_some()
    }

    /// Producer and consumer maps of the main graph, for code that asks many times (the
    /// methods above scan the nodes on every call).
    pub fn index(&self) -> GraphIndex<'_> {
        GraphIndex::new(self.graph())
    }

    /// Checks that every node reads only tensors defined before it (graph inputs,
    /// initializers, outputs of earlier nodes) and that every graph output is defined. The
    /// error names the file, the node and its op type, and the tensor; it tells apart a tensor
    /// produced nowhere from one produced by a later node. Subgraphs are not checked.
    pub fn check_topological_order(&self) -> Result<(), OnnxError> {
        let graph = self.graph();
        let mut defined: HashSet<&str> = graph.input.iter().map(ValueInfoProto::name).collect();
        defined.extend(graph.initializer.iter().map(TensorProto::name));
        defined.extend(
            graph
                .sparse_initializer
                .iter()
                .filter_map(|s| s.values.as_ref().map(TensorProto::name)),
        );
        for (index, node) in graph.node.iter().enumerate() {
            for input in node.input.iter().filter(|i| !i.is_empty()) {
                if defined.contains(input.as_str()) {
                    continue;
                }
                let later = graph.node[index..]
                    .iter()
                    .enumerate()
                    .find(|(_, n)| n.output.iter().any(|o| o == input));
                return match later {
                    Some((offset, producer)) => NotTopologicalSnafu {
                        path: &self.path,
                        node: node_label(index, node),
                        op_type: node.op_type(),
                        input,
                        producer: node_label(index + offset, producer),
                    }
                    .fail(),
                    None => UndefinedInputSnafu {
                        path: &self.path,
                        node: node_label(index, node),
                        op_type: node.op_type(),
                        input,
                    }
                    .fail(),
                };
            }
            defined.extend(node.output.iter().map(String::as_str));
        }
        if let Some(output) = graph.output.iter().find(|o| !defined.contains(o.name())) {
            return UndefinedOutputSnafu {
                path: &self.path,
                output: output.name(),
            }
            .fail();
        }
        Ok(())
    }
}

/// Who produces and who reads each tensor of a graph, by node index (into `graph.node`).
#[derive(Debug, Clone)]
pub struct GraphIndex<'a> {
    producers: HashMap<&'a str, usize>,
    consumers: HashMap<&'a str, Vec<usize>>,
}

impl<'a> GraphIndex<'a> {
    /// Indexes `graph` (empty names, which mark omitted optional inputs and outputs, are
    /// left out).
    pub fn new(graph: &'a GraphProto) -> GraphIndex<'a> {
        let mut producers = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, node) in graph.node.iter().enumerate() {
            for output in node.output.iter().filter(|o| !o.is_empty()) {
                producers.entry(output.as_str()).or_insert(index);
            }
            for input in node.input.iter().filter(|i| !i.is_empty()) {
                let readers = consumers.entry(input.as_str()).or_default();
                if readers.last() != Some(&index) {
                    readers.push(index);
                }
            }
        }
        GraphIndex {
            producers,
            consumers,
        }
    }

    /// The index of the node producing `tensor`.
    pub fn producer(&self, tensor: &str) -> Option<usize> {
        self.producers.get(tensor).copied()
    }

    /// The indices of the nodes reading `tensor`, in graph order, each once.
    pub fn consumers(&self, tensor: &str) -> &[usize] {
        self.consumers.get(tensor).map_or(&[], Vec::as_slice)
    }
}
