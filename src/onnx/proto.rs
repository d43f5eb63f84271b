//! The ONNX protobuf messages (IR version 14, `onnx` 1.23), written by hand with
//! `prost`'s derive macros from the field numbers and types of the ONNX IR specification.
//!
//! ONNX's schema is proto2: every singular scalar field has presence, so it is an
//! `Option` here (an attribute `i: 0` written explicitly stays written, as the Python `onnx`
//! package would keep it), and repeated scalar fields are unpacked on the wire except the typed
//! data fields of [`TensorProto`], which the schema marks packed. `prost` derives a getter
//! named like each optional field (`node.name()`, `node.op_type()`, `tensor.data_type()`)
//! that returns the default (`""`, `0`, the enum's zero) when the field is absent.
//!
//! Every message and field of `onnx-ml.proto` 1.23 is covered (including training, function,
//! sparse-tensor and device-configuration messages), so a model read and written again keeps
//! everything: `prost` would silently drop fields it does not know. Fields are encoded in
//! field-number order, as the reference implementation does, so a model written by Python's
//! `onnx` is written back byte for byte (the real VGG16 is). One exception, harmless to
//! every reader: `prost` writes a oneof at its lowest field number, so a [`TypeProto`]
//! holding an optional, sparse or opaque type writes it before `denotation`, Python after.

use prost::{Enumeration, Message, Oneof};

/// A whole model: metadata, opsets and the main graph. The top-level ONNX message.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// The IR version the model is written against.
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// Operator sets the model imports (one per domain).
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Name of the tool that wrote the model.
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    /// Version of that tool.
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    /// Reverse-DNS namespace of the model.
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    /// The model's own version.
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    /// Free text.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// The main graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Named metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Training information (IR 7+).
    #[prost(message, repeated, tag = "20")]
    pub training_info: Vec<TrainingInfoProto>,
    /// Model-local functions (IR 8+).
    #[prost(message, repeated, tag = "25")]
    pub functions: Vec<FunctionProto>,
    /// Multi-device configurations (IR 11+).
    #[prost(message, repeated, tag = "26")]
    pub configuration: Vec<DeviceConfigurationProto>,
}

/// One operator set import: a domain (`""` or `ai.onnx` is the default domain) and version.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct OperatorSetIdProto {
    /// The domain.
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// The opset version.
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// A key-value pair of strings (metadata, external-data locations, bindings).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct StringStringEntryProto {
    /// The key.
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// The value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// A computation graph: nodes in topological order, its inputs, outputs and constants.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// The nodes, topologically sorted.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// The graph's name.
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Constant tensors (weights), by name.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Sparse constant tensors.
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
    /// Free text.
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
    /// Graph inputs (may include initializers in IR < 4 models).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Types and shapes of intermediate tensors.
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
    /// Quantization parameters of tensors.
    #[prost(message, repeated, tag = "14")]
    pub quantization_annotation: Vec<TensorAnnotation>,
    /// Named metadata.
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// One operator application.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// Input tensor names; `""` marks an omitted optional input.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output tensor names; `""` marks an omitted optional output.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// The node's name (optional in ONNX, but most exporters set it).
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    /// The operator, e.g. `Conv`.
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    /// The operator's domain (`""`: the default ONNX domain).
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
    /// Overload of a model-local function.
    #[prost(string, optional, tag = "8")]
    pub overload: Option<String>,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Free text.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// Named metadata.
    #[prost(message, repeated, tag = "9")]
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Multi-device placement of this node.
    #[prost(message, repeated, tag = "10")]
    pub device_configurations: Vec<NodeDeviceConfigurationProto>,
}

/// A named attribute of a node (or a formal attribute of a function).
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    /// The attribute's name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// In a function body: the name of the caller's attribute this one refers to.
    #[prost(string, optional, tag = "21")]
    pub ref_attr_name: Option<String>,
    /// Free text.
    #[prost(string, optional, tag = "13")]
    pub doc_string: Option<String>,
    /// Which of the value fields holds the value.
    #[prost(enumeration = "AttributeType", optional, tag = "20")]
    pub r#type: Option<i32>,
    /// A float.
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// An integer.
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// A string (bytes, UTF-8 by convention).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    /// A tensor.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// A graph (control-flow bodies).
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    /// A sparse tensor.
    #[prost(message, optional, tag = "22")]
    pub sparse_tensor: Option<SparseTensorProto>,
    /// A type.
    #[prost(message, optional, tag = "14")]
    pub tp: Option<TypeProto>,
    /// Floats.
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// Integers.
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// Strings.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    /// Tensors.
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    /// Graphs.
    #[prost(message, repeated, tag = "11")]
    pub graphs: Vec<GraphProto>,
    /// Sparse tensors.
    #[prost(message, repeated, tag = "23")]
    pub sparse_tensors: Vec<SparseTensorProto>,
    /// Types.
    #[prost(message, repeated, tag = "15")]
    pub type_protos: Vec<TypeProto>,
}

/// The type of an attribute's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum AttributeType {
    /// Not set.
    Undefined = 0,
    /// `f`.
    Float = 1,
    /// `i`.
    Int = 2,
    /// `s`.
    String = 3,
    /// `t`.
    Tensor = 4,
    /// `g`.
    Graph = 5,
    /// `sparse_tensor`.
    SparseTensor = 11,
    /// `tp`.
    TypeProto = 13,
    /// `floats`.
    Floats = 6,
    /// `ints`.
    Ints = 7,
    /// `strings`.
    Strings = 8,
    /// `tensors`.
    Tensors = 9,
    /// `graphs`.
    Graphs = 10,
    /// `sparse_tensors`.
    SparseTensors = 12,
    /// `type_protos`.
    TypeProtos = 14,
}

/// A tensor value: its element type, dimensions and data (one of the typed fields,
/// `raw_data`, or external data).
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// Dimensions (empty: a scalar).
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// Element type, a [`DataType`] value.
    #[prost(enumeration = "DataType", optional, tag = "2")]
    pub data_type: Option<i32>,
    /// The part of a larger tensor this one holds.
    #[prost(message, optional, tag = "3")]
    pub segment: Option<tensor_proto::Segment>,
    /// FLOAT and COMPLEX64 data.
    #[prost(float, repeated, packed = "true", tag = "4")]
    pub float_data: Vec<f32>,
    /// INT32, and the 8/16-bit, bool and 16-bit float types widened to int32.
    #[prost(int32, repeated, packed = "true", tag = "5")]
    pub int32_data: Vec<i32>,
    /// STRING data.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    /// INT64 data.
    #[prost(int64, repeated, packed = "true", tag = "7")]
    pub int64_data: Vec<i64>,
    /// The tensor's name (initializers: the name nodes refer to).
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    /// Free text.
    #[prost(string, optional, tag = "12")]
    pub doc_string: Option<String>,
    /// The data as little-endian bytes, row-major (any type but STRING).
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
    /// Where the data lives when `data_location` is EXTERNAL (`location`, `offset`, ...).
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// Whether the data is in this message or in an external file.
    #[prost(enumeration = "tensor_proto::DataLocation", optional, tag = "14")]
    pub data_location: Option<i32>,
    /// DOUBLE and COMPLEX128 data.
    #[prost(double, repeated, packed = "true", tag = "10")]
    pub double_data: Vec<f64>,
    /// UINT32 and UINT64 data.
    #[prost(uint64, repeated, packed = "true", tag = "11")]
    pub uint64_data: Vec<u64>,
    /// Named metadata.
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// Element types of tensors (`TensorProto.DataType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Not set.
    Undefined = 0,
    /// 32-bit IEEE float.
    Float = 1,
    /// Unsigned 8-bit integer.
    Uint8 = 2,
    /// Signed 8-bit integer.
    Int8 = 3,
    /// Unsigned 16-bit integer.
    Uint16 = 4,
    /// Signed 16-bit integer.
    Int16 = 5,
    /// Signed 32-bit integer.
    Int32 = 6,
    /// Signed 64-bit integer.
    Int64 = 7,
    /// Byte string.
    String = 8,
    /// Boolean.
    Bool = 9,
    /// 16-bit IEEE float.
    Float16 = 10,
    /// 64-bit IEEE float.
    Double = 11,
    /// Unsigned 32-bit integer.
    Uint32 = 12,
    /// Unsigned 64-bit integer.
    Uint64 = 13,
    /// Complex of two 32-bit floats.
    Complex64 = 14,
    /// Complex of two 64-bit floats.
    Complex128 = 15,
    /// Brain floating point (8-bit exponent, 7-bit mantissa).
    Bfloat16 = 16,
    /// 8-bit float E4M3, finite only.
    Float8e4m3fn = 17,
    /// 8-bit float E4M3, finite only, no negative zero.
    Float8e4m3fnuz = 18,
    /// 8-bit float E5M2.
    Float8e5m2 = 19,
    /// 8-bit float E5M2, finite only, no negative zero.
    Float8e5m2fnuz = 20,
    /// Unsigned 4-bit integer, two per byte.
    Uint4 = 21,
    /// Signed 4-bit integer, two per byte.
    Int4 = 22,
    /// 4-bit float E2M1.
    Float4e2m1 = 23,
    /// 8-bit exponent-only float E8M0.
    Float8e8m0 = 24,
    /// Unsigned 2-bit integer.
    Uint2 = 25,
    /// Signed 2-bit integer.
    Int2 = 26,
    /// 6-bit float E2M3.
    Float6e2m3 = 27,
    /// 6-bit float E3M2.
    Float6e3m2 = 28,
}

/// Nested types of [`TensorProto`].
pub mod tensor_proto {
    use super::{Enumeration, Message};

    /// The range of a larger tensor that a segment holds.
    #[derive(Clone, PartialEq, Eq, Message)]
    pub struct Segment {
        /// First element (inclusive).
        #[prost(int64, optional, tag = "1")]
        pub begin: Option<i64>,
        /// Last element (exclusive).
        #[prost(int64, optional, tag = "2")]
        pub end: Option<i64>,
    }

    /// Where a tensor's data is stored.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
    #[repr(i32)]
    pub enum DataLocation {
        /// In this message.
        Default = 0,
        /// In an external file named by `external_data`.
        External = 1,
    }
}

/// A sparse tensor: non-zero values and their indices.
#[derive(Clone, PartialEq, Message)]
pub struct SparseTensorProto {
    /// The non-zero values (1-D), named as the sparse tensor.
    #[prost(message, optional, tag = "1")]
    pub values: Option<TensorProto>,
    /// Their indices, `[NNZ]` linearised or `[NNZ, rank]`.
    #[prost(message, optional, tag = "2")]
    pub indices: Option<TensorProto>,
    /// The dense shape.
    #[prost(int64, repeated, packed = "false", tag = "3")]
    pub dims: Vec<i64>,
}

/// The shape of a tensor type: one entry per axis.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct TensorShapeProto {
    /// The axes.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// Nested types of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    use super::{Message, Oneof};

    /// One axis: a known size, a symbol, or neither (unknown).
    #[derive(Clone, PartialEq, Eq, Message)]
    pub struct Dimension {
        /// The size, when known.
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        /// Meaning of the axis (e.g. `DATA_BATCH`).
        #[prost(string, optional, tag = "3")]
        pub denotation: Option<String>,
    }

    /// Nested types of [`Dimension`].
    pub mod dimension {
        use super::Oneof;

        /// A known size or a symbol.
        #[derive(Clone, PartialEq, Eq, Oneof)]
        pub enum Value {
            /// A known size.
            #[prost(int64, tag = "1")]
            DimValue(i64),
            /// A symbolic size, equal wherever the same symbol appears.
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

/// The type of a value: a tensor, a sequence, a map, an optional, a sparse tensor or an
/// opaque type.
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    /// Which kind of type.
    #[prost(oneof = "type_proto::Value", tags = "1, 4, 5, 9, 8, 7")]
    pub value: Option<type_proto::Value>,
    /// Meaning of the value (e.g. `IMAGE`).
    #[prost(string, optional, tag = "6")]
    pub denotation: Option<String>,
}

/// Nested types of [`TypeProto`].
pub mod type_proto {
    use super::{DataType, Message, Oneof, TensorShapeProto, TypeProto};

    /// The kinds of type.
    #[derive(Clone, PartialEq, Oneof)]
    pub enum Value {
        /// A dense tensor.
        #[prost(message, tag = "1")]
        TensorType(Tensor),
        /// A sequence.
        #[prost(message, tag = "4")]
        SequenceType(Box<Sequence>),
        /// A map.
        #[prost(message, tag = "5")]
        MapType(Box<Map>),
        /// An optional value.
        #[prost(message, tag = "9")]
        OptionalType(Box<Optional>),
        /// A sparse tensor.
        #[prost(message, tag = "8")]
        SparseTensorType(SparseTensor),
        /// An opaque type.
        #[prost(message, tag = "7")]
        OpaqueType(Opaque),
    }

    /// A dense tensor type.
    #[derive(Clone, PartialEq, Eq, Message)]
    pub struct Tensor {
        /// Element type, a [`DataType`] value.
        #[prost(enumeration = "DataType", optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// Shape; absent when even the rank is unknown.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// A sequence type.
    #[derive(Clone, PartialEq, Message)]
    pub struct Sequence {
        /// Type of the elements.
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<TypeProto>>,
    }

    /// A map type.
    #[derive(Clone, PartialEq, Message)]
    pub struct Map {
        /// Key type, a [`DataType`] value (an integer or string type).
        #[prost(enumeration = "DataType", optional, tag = "1")]
        pub key_type: Option<i32>,
        /// Value type.
        #[prost(message, optional, boxed, tag = "2")]
        pub value_type: Option<Box<TypeProto>>,
    }

    /// An optional type.
    #[derive(Clone, PartialEq, Message)]
    pub struct Optional {
        /// Type of the value when present.
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<TypeProto>>,
    }

    /// A sparse tensor type.
    #[derive(Clone, PartialEq, Eq, Message)]
    pub struct SparseTensor {
        /// Element type, a [`DataType`] value.
        #[prost(enumeration = "DataType", optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// Dense shape.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// An opaque type.
    #[derive(Clone, PartialEq, Eq, Message)]
    pub struct Opaque {
        /// Its domain.
        #[prost(string, optional, tag = "1")]
        pub domain: Option<String>,
        /// Its name.
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
    }
}

/// A name with a type: graph inputs, outputs and `value_info` entries.
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    /// The tensor's name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Its type (ONNX requires it for graph inputs and outputs).
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// Free text.
    #[prost(string, optional, tag = "3")]
    pub doc_string: Option<String>,
    /// Named metadata.
    #[prost(message, repeated, tag = "4")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// Quantization parameters of one tensor.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct TensorAnnotation {
    /// The annotated tensor.
    #[prost(string, optional, tag = "1")]
    pub tensor_name: Option<String>,
    /// Parameter kind (`SCALE_TENSOR`, `ZERO_POINT_TENSOR`) to tensor name.
    #[prost(message, repeated, tag = "2")]
    pub quant_parameter_tensor_names: Vec<StringStringEntryProto>,
}

/// Training information: an initialisation graph and a training-step graph.
#[derive(Clone, PartialEq, Message)]
pub struct TrainingInfoProto {
    /// Computes the initial state.
    #[prost(message, optional, tag = "1")]
    pub initialization: Option<GraphProto>,
    /// One training step.
    #[prost(message, optional, tag = "2")]
    pub algorithm: Option<GraphProto>,
    /// Initializer name to initialisation output.
    #[prost(message, repeated, tag = "3")]
    pub initialization_binding: Vec<StringStringEntryProto>,
    /// Initializer name to algorithm output.
    #[prost(message, repeated, tag = "4")]
    pub update_binding: Vec<StringStringEntryProto>,
}

/// A model-local function: a named subgraph callable as an operator of its domain.
#[derive(Clone, PartialEq, Message)]
pub struct FunctionProto {
    /// The operator name it defines.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Formal inputs.
    #[prost(string, repeated, tag = "4")]
    pub input: Vec<String>,
    /// Formal outputs.
    #[prost(string, repeated, tag = "5")]
    pub output: Vec<String>,
    /// Attribute names without defaults.
    #[prost(string, repeated, tag = "6")]
    pub attribute: Vec<String>,
    /// Attributes with defaults.
    #[prost(message, repeated, tag = "11")]
    pub attribute_proto: Vec<AttributeProto>,
    /// The body.
    #[prost(message, repeated, tag = "7")]
    pub node: Vec<NodeProto>,
    /// Free text.
    #[prost(string, optional, tag = "8")]
    pub doc_string: Option<String>,
    /// Opsets the body uses.
    #[prost(message, repeated, tag = "9")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// The function's domain.
    #[prost(string, optional, tag = "10")]
    pub domain: Option<String>,
    /// Overload name.
    #[prost(string, optional, tag = "13")]
    pub overload: Option<String>,
    /// Types of the body's tensors.
    #[prost(message, repeated, tag = "12")]
    pub value_info: Vec<ValueInfoProto>,
    /// Named metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// A multi-device configuration of the model.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct DeviceConfigurationProto {
    /// Its name, referred to by nodes.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Number of devices.
    #[prost(int32, optional, tag = "2")]
    pub num_devices: Option<i32>,
    /// Device names.
    #[prost(string, repeated, tag = "3")]
    pub device: Vec<String>,
}

/// A node's placement under one device configuration.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct NodeDeviceConfigurationProto {
    /// The [`DeviceConfigurationProto`] name.
    #[prost(string, optional, tag = "1")]
    pub configuration_id: Option<String>,
    /// How the node's tensors are sharded.
    #[prost(message, repeated, tag = "2")]
    pub sharding_spec: Vec<ShardingSpecProto>,
    /// Pipeline stage.
    #[prost(int32, optional, tag = "3")]
    pub pipeline_stage: Option<i32>,
}

/// Sharding of one tensor across devices.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct ShardingSpecProto {
    /// The tensor.
    #[prost(string, optional, tag = "1")]
    pub tensor_name: Option<String>,
    /// Devices (or device groups).
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub device: Vec<i64>,
    /// Device group to devices.
    #[prost(message, repeated, tag = "3")]
    pub index_to_device_group_map: Vec<IntIntListEntryProto>,
    /// Sharded axes.
    #[prost(message, repeated, tag = "4")]
    pub sharded_dim: Vec<ShardedDimProto>,
}

/// A key with a list of integers.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct IntIntListEntryProto {
    /// The key.
    #[prost(int64, optional, tag = "1")]
    pub key: Option<i64>,
    /// The values.
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub value: Vec<i64>,
}

/// Sharding of one axis.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct ShardedDimProto {
    /// The axis.
    #[prost(int64, optional, tag = "1")]
    pub axis: Option<i64>,
    /// Simple shardings, applied in order.
    #[prost(message, repeated, tag = "2")]
    pub simple_sharding: Vec<SimpleShardedDimProto>,
}

/// An axis split evenly into shards.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct SimpleShardedDimProto {
    /// The axis size, known or symbolic.
    #[prost(oneof = "simple_sharded_dim_proto::Dim", tags = "1, 2")]
    pub dim: Option<simple_sharded_dim_proto::Dim>,
    /// Number of shards.
    #[prost(int64, optional, tag = "3")]
    pub num_shards: Option<i64>,
}

/// Nested types of [`SimpleShardedDimProto`].
pub mod simple_sharded_dim_proto {
    use super::Oneof;

    /// A known or symbolic axis size.
    #[derive(Clone, PartialEq, Eq, Oneof)]
    pub enum Dim {
        /// Known.
        #[prost(int64, tag = "1")]
        DimValue(i64),
        /// Symbolic.
        #[prost(string, tag = "2")]
        DimParam(String),
    }
}

// Constructors for the messages later code writes most: nodes, attributes, value infos.

impl NodeProto {
    /// A default-domain node with a name, inputs and outputs, and no attributes.
    pub fn new(
        op_type: impl Into<String>,
        name: impl Into<String>,
        inputs: impl IntoIterator<Item = impl Into<String>>,
        outputs: impl IntoIterator<Item = impl Into<String>>,
    ) -> NodeProto {
        NodeProto {
            input: inputs.into_iter().map(Into::into).collect(),
            output: outputs.into_iter().map(Into::into).collect(),
            name: Some(name.into()),
            op_type: Some(op_type.into()),
            ..NodeProto::default()
        }
    }

    /// Adds an attribute (builder style).
    #[must_use]
    pub fn with_attribute(mut self, attribute: AttributeProto) -> NodeProto {
        self.attribute.push(attribute);
        self
    }

    /// The attribute called `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name() == name)
    }

    /// Whether the node's operator is one of the default domain's (`""` or `"ai.onnx"`).
    pub fn in_default_domain(&self) -> bool {
        matches!(self.domain(), "" | "ai.onnx")
    }
}

impl AttributeProto {
    fn named(name: impl Into<String>, kind: AttributeType) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(kind as i32),
            ..AttributeProto::default()
        }
    }

    /// An INT attribute.
    pub fn int(name: impl Into<String>, value: i64) -> AttributeProto {
        AttributeProto {
            i: Some(value),
            ..AttributeProto::named(name, AttributeType::Int)
        }
    }

    /// A FLOAT attribute.
    pub fn float(name: impl Into<String>, value: f32) -> AttributeProto {
        AttributeProto {
            f: Some(value),
            ..AttributeProto::named(name, AttributeType::Float)
        }
    }

    /// A STRING attribute.
    pub fn string(name: impl Into<String>, value: impl Into<String>) -> AttributeProto {
        AttributeProto {
            s: Some(value.into().into_bytes()),
            ..AttributeProto::named(name, AttributeType::String)
        }
    }

    /// An INTS attribute.
    pub fn ints(name: impl Into<String>, values: impl IntoIterator<Item = i64>) -> AttributeProto {
        AttributeProto {
            ints: values.into_iter().collect(),
            ..AttributeProto::named(name, AttributeType::Ints)
        }
    }

    /// A FLOATS attribute.
    pub fn floats(
        name: impl Into<String>,
        values: impl IntoIterator<Item = f32>,
    ) -> AttributeProto {
        AttributeProto {
            floats: values.into_iter().collect(),
            ..AttributeProto::named(name, AttributeType::Floats)
        }
    }

    /// A TENSOR attribute.
    pub fn tensor(name: impl Into<String>, value: TensorProto) -> AttributeProto {
        AttributeProto {
            t: Some(value),
            ..AttributeProto::named(name, AttributeType::Tensor)
        }
    }
}

impl ValueInfoProto {
    /// A tensor value info with an element type and known dimensions (for symbolic ones,
    /// use [`ValueInfoProto::tensor_dims`]).
    pub fn tensor(name: impl Into<String>, elem_type: DataType, dims: &[i64]) -> ValueInfoProto {
        let dims = dims
            .iter()
            .map(|&d| tensor_shape_proto::Dimension {
                value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                denotation: None,
            })
            .collect();
        ValueInfoProto::tensor_dims(name, elem_type, dims)
    }

    /// A tensor value info with explicit dimensions.
    pub fn tensor_dims(
        name: impl Into<String>,
        elem_type: DataType,
        dims: Vec<tensor_shape_proto::Dimension>,
    ) -> ValueInfoProto {
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(elem_type as i32),
                    shape: Some(TensorShapeProto { dim: dims }),
                })),
                denotation: None,
            }),
            ..ValueInfoProto::default()
        }
    }

    /// The tensor type, when this value is a dense tensor.
    pub fn tensor_type(&self) -> Option<&type_proto::Tensor> {
        match self.r#type.as_ref()?.value.as_ref()? {
            type_proto::Value::TensorType(t) => Some(t),
            _ => None,
        }
    }
}

impl tensor_shape_proto::Dimension {
    /// A known size.
    pub fn known(size: i64) -> Self {
        Self {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(size)),
            denotation: None,
        }
    }

    /// A symbolic size.
    pub fn symbol(name: impl Into<String>) -> Self {
        Self {
            value: Some(tensor_shape_proto::dimension::Value::DimParam(name.into())),
            denotation: None,
        }
    }
}

impl OperatorSetIdProto {
    /// An opset import.
    pub fn new(domain: impl Into<String>, version: i64) -> Self {
        Self {
            domain: Some(domain.into()),
            version: Some(version),
        }
    }
}
