//! Tensors of the graph (initializers, `Constant` values) to and from `ndarray` arrays.
//!
//! Supported element types: FLOAT (`f32`), DOUBLE (`f64`), INT32 (`i32`) and INT64 (`i64`),
//! stored either as little-endian `raw_data` or in the typed repeated field of their type
//! (`float_data`, `double_data`, `int32_data`, `int64_data`). Other types, external data and
//! segments are errors that name the tensor.

use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};
use snafu::Snafu;

use super::proto::{AttributeProto, DataType, NodeProto, TensorProto, tensor_proto};

/// Why a tensor could not be converted. Every message names the tensor.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum TensorError {
    /// The element type is not one this module converts.
    #[snafu(display(
        "tensor {tensor:?}: data type {data_type} is not supported (supported: FLOAT, DOUBLE, \
         INT32, INT64)"
    ))]
    UnsupportedType {
        /// The tensor's name.
        tensor: String,
        /// Its data type, by name.
        data_type: String,
    },
    /// The element type is supported but is not the one asked for.
    #[snafu(display("tensor {tensor:?}: data type {data_type}, expected {expected}"))]
    WrongType {
        /// The tensor's name.
        tensor: String,
        /// Its data type.
        data_type: String,
        /// What the caller asked for.
        expected: String,
    },
    /// The data lives in an external file, which this module does not read.
    #[snafu(display(
        "tensor {tensor:?}: data stored in an external file ({location}) is not supported"
    ))]
    ExternalData {
        /// The tensor's name.
        tensor: String,
        /// The `location` entry of `external_data`.
        location: String,
    },
    /// The tensor is a segment of a larger tensor.
    #[snafu(display("tensor {tensor:?}: segmented tensors are not supported"))]
    Segmented {
        /// The tensor's name.
        tensor: String,
    },
    /// A dimension is negative.
    #[snafu(display("tensor {tensor:?}: invalid dimensions {dims:?}"))]
    BadDims {
        /// The tensor's name.
        tensor: String,
        /// Its dimensions.
        dims: Vec<i64>,
    },
    /// The data does not hold as many elements as the dimensions say.
    #[snafu(display(
        "tensor {tensor:?}: dimensions {dims:?} need {expected} elements, {field} holds {actual}"
    ))]
    Length {
        /// The tensor's name.
        tensor: String,
        /// Its dimensions.
        dims: Vec<i64>,
        /// Elements the dimensions need.
        expected: usize,
        /// Elements (or, for `raw_data` of the wrong size, bytes / element size) present.
        actual: String,
        /// The field holding the data.
        field: &'static str,
    },
}

/// How [`from_array`] stores the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Little-endian bytes in `raw_data` (what exporters write for weights).
    Raw,
    /// The typed repeated field of the element type (`float_data`, `int64_data`, ...).
    Typed,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for i32 {}
    impl Sealed for i64 {}
}

/// An element type this module converts: `f32`, `f64`, `i32`, `i64`.
pub trait Element: Copy + sealed::Sealed + 'static {
    /// The ONNX data type.
    const DATA_TYPE: DataType;
    /// Bytes per element in `raw_data`.
    const SIZE: usize;
    /// The name of the typed field.
    const FIELD: &'static str;
    /// Reads one element from `SIZE` little-endian bytes.
    fn from_le(bytes: &[u8]) -> Self;
    /// Appends the little-endian bytes.
    fn push_le(self, out: &mut Vec<u8>);
    /// The typed field's values.
    fn typed(tensor: &TensorProto) -> Vec<Self>;
    /// Stores values in the typed field.
    fn set_typed(tensor: &mut TensorProto, values: Vec<Self>);
}

macro_rules! element {
    ($ty:ty, $dt:ident, $field:ident) => {
        impl Element for $ty {
            const DATA_TYPE: DataType = DataType::$dt;
            const SIZE: usize = std::mem::size_of::<$ty>();
            const FIELD: &'static str = stringify!($field);
            fn from_le(bytes: &[u8]) -> Self {
                let mut buf = [0u8; std::mem::size_of::<$ty>()];
                buf.copy_from_slice(bytes);
                <$ty>::from_le_bytes(buf)
            }
            fn push_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn typed(tensor: &TensorProto) -> Vec<Self> {
                tensor.$field.clone()
            }
            fn set_typed(tensor: &mut TensorProto, values: Vec<Self>) {
                tensor.$field = values;
            }
        }
    };
}
element!(f32, Float, float_data);
element!(f64, Double, double_data);
element!(i32, Int32, int32_data);
element!(i64, Int64, int64_data);

/// The tensor's data type (UNDEFINED for values that are not a known type).
pub fn data_type(tensor: &TensorProto) -> DataType {
    tensor.data_type()
}

/// A data type's name as ONNX spells it (`FLOAT`, `INT64`, ...), or the number when unknown.
pub fn data_type_name(code: i32) -> String {
    match DataType::try_from(code) {
        Ok(dt) => format!("{dt:?}").to_uppercase(),
        Err(_) => format!("unknown ({code})"),
    }
}

/// The element count of `dims`, checked (no negative dimensions, no overflow).
fn element_count(tensor: &TensorProto) -> Result<usize, TensorError> {
    let bad = || TensorError::BadDims {
        tensor: tensor.name().to_string(),
        dims: tensor.dims.clone(),
    };
    tensor.dims.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d).map_err(|_| bad())?;
        acc.checked_mul(d).ok_or_else(bad)
    })
}

fn check_stored_here(tensor: &TensorProto) -> Result<(), TensorError> {
    if tensor.data_location() == tensor_proto::DataLocation::External {
        let location = tensor
            .external_data
            .iter()
            .find(|e| e.key() == "location")
            .map(|e| e.value().to_string())
            .unwrap_or_default();
        return Err(TensorError::ExternalData {
            tensor: tensor.name().to_string(),
            location,
        });
    }
    if tensor.segment.is_some() {
        return Err(TensorError::Segmented {
            tensor: tensor.name().to_string(),
        });
    }
    Ok(())
}

/// The tensor as an array of exactly its element type `T` (e.g. `to_array::<f32>` of a
/// FLOAT tensor), from `raw_data` when present, else from the typed field.
pub fn to_array<T: Element>(tensor: &TensorProto) -> Result<ArrayD<T>, TensorError> {
    let code = tensor.data_type.unwrap_or(0);
    if code != T::DATA_TYPE as i32 {
        return Err(type_error(
            tensor,
            code,
            &data_type_name(T::DATA_TYPE as i32),
        ));
    }
    check_stored_here(tensor)?;
    let count = element_count(tensor)?;
    let values: Vec<T> = match &tensor.raw_data {
        Some(raw) => {
            if raw.len() != count * T::SIZE {
                return Err(TensorError::Length {
                    tensor: tensor.name().to_string(),
                    dims: tensor.dims.clone(),
                    expected: count,
                    actual: format!("{} bytes / {}", raw.len(), T::SIZE),
                    field: "raw_data",
                });
            }
            raw.chunks_exact(T::SIZE).map(T::from_le).collect()
        }
        None => {
            let values = T::typed(tensor);
            if values.len() != count {
                return Err(TensorError::Length {
                    tensor: tensor.name().to_string(),
                    dims: tensor.dims.clone(),
                    expected: count,
                    actual: values.len().to_string(),
                    field: T::FIELD,
                });
            }
            values
        }
    };
    let shape: Vec<usize> = tensor.dims.iter().map(|&d| d as usize).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|_| TensorError::BadDims {
        tensor: tensor.name().to_string(),
        dims: tensor.dims.clone(),
    })
}

fn type_error(tensor: &TensorProto, code: i32, expected: &str) -> TensorError {
    let data_type = data_type_name(code);
    let supported = [
        DataType::Float,
        DataType::Double,
        DataType::Int32,
        DataType::Int64,
    ]
    .iter()
    .any(|dt| *dt as i32 == code);
    if supported {
        TensorError::WrongType {
            tensor: tensor.name().to_string(),
            data_type,
            expected: expected.to_string(),
        }
    } else {
        TensorError::UnsupportedType {
            tensor: tensor.name().to_string(),
            data_type,
        }
    }
}

/// A floating-point tensor (FLOAT, or DOUBLE rounded to `f32`) as `f32`.
pub fn to_f32(tensor: &TensorProto) -> Result<ArrayD<f32>, TensorError> {
    match tensor.data_type() {
        DataType::Double => Ok(to_array::<f64>(tensor)?.mapv(|v| v as f32)),
        DataType::Float => to_array::<f32>(tensor),
        _ => Err(type_error(
            tensor,
            tensor.data_type.unwrap_or(0),
            "FLOAT or DOUBLE",
        )),
    }
}

/// A floating-point tensor (FLOAT or DOUBLE) as `f64`.
pub fn to_f64(tensor: &TensorProto) -> Result<ArrayD<f64>, TensorError> {
    match tensor.data_type() {
        DataType::Float => Ok(to_array::<f32>(tensor)?.mapv(f64::from)),
        DataType::Double => to_array::<f64>(tensor),
        _ => Err(type_error(
            tensor,
            tensor.data_type.unwrap_or(0),
            "FLOAT or DOUBLE",
        )),
    }
}

/// An integer tensor (INT64, or INT32 widened) as `i64`.
pub fn to_i64(tensor: &TensorProto) -> Result<ArrayD<i64>, TensorError> {
    match tensor.data_type() {
        DataType::Int32 => Ok(to_array::<i32>(tensor)?.mapv(i64::from)),
        DataType::Int64 => to_array::<i64>(tensor),
        _ => Err(type_error(
            tensor,
            tensor.data_type.unwrap_or(0),
            "INT32 or INT64",
        )),
    }
}

/// A tensor named `name` holding `array` (any layout; written row-major) in `storage`.
pub fn from_array<T, S, D>(name: &str, array: &ArrayBase<S, D>, storage: Storage) -> TensorProto
where
    T: Element,
    S: Data<Elem = T>,
    D: Dimension,
{
    let mut tensor = TensorProto {
        dims: array.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(T::DATA_TYPE as i32),
        name: Some(name.to_string()),
        ..TensorProto::default()
    };
    match storage {
        Storage::Raw => {
            let mut raw = Vec::with_capacity(array.len() * T::SIZE);
            for &v in array.iter() {
                v.push_le(&mut raw);
            }
            tensor.raw_data = Some(raw);
        }
        Storage::Typed => T::set_typed(&mut tensor, array.iter().copied().collect()),
    }
    tensor
}

/// The value of a `Constant` node as a tensor named like its output, whichever attribute holds
/// it (`value`, `value_float(s)`, `value_int(s)`); `None` for other nodes, and for
/// `sparse_value` and `value_string(s)`.
pub fn constant_value(node: &NodeProto) -> Option<TensorProto> {
    if node.op_type() != "Constant" || !node.in_default_domain() {
        return None;
    }
    let name = node.output.first().cloned().unwrap_or_default();
    let attribute = node.attribute.first()?;
    let scalar = |data_type: DataType| TensorProto {
        data_type: Some(data_type as i32),
        name: Some(name.clone()),
        ..TensorProto::default()
    };
    let tensor = match attribute.name() {
        "value" => {
            let mut t = attribute.t.clone()?;
            t.name = Some(name.clone());
            t
        }
        "value_float" => TensorProto {
            float_data: vec![attribute.f.unwrap_or_default()],
            ..scalar(DataType::Float)
        },
        "value_floats" => TensorProto {
            dims: vec![attribute.floats.len() as i64],
            float_data: attribute.floats.clone(),
            ..scalar(DataType::Float)
        },
        "value_int" => TensorProto {
            int64_data: vec![attribute.i.unwrap_or_default()],
            ..scalar(DataType::Int64)
        },
        "value_ints" => TensorProto {
            dims: vec![attribute.ints.len() as i64],
            int64_data: attribute.ints.clone(),
            ..scalar(DataType::Int64)
        },
        _ => return None,
    };
    Some(tensor)
}

/// A `Constant` node called `node_name` whose output is `tensor`'s name and whose value is
/// `tensor`.
pub fn constant_node(node_name: &str, tensor: TensorProto) -> NodeProto {
    let output = tensor.name().to_string();
    NodeProto::new(
        "Constant",
        node_name,
        std::iter::empty::<String>(),
        [output],
    )
    .with_attribute(AttributeProto::tensor("value", tensor))
}
