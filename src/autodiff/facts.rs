//! What the backward rules need to know about forward tensors: rank, which dimensions are
//! fixed and which follow the batch, element type, and the values of small integer tensors
//! (reshape targets, slice bounds, gather indices).
//!
//! Static shape inference misses shapes in real exports (TorchScript ViTs compute them at run
//! time), so the facts come from ONNX Runtime itself: the model runs on synthetic inputs at
//! batch 2 and batch 3 with the tensors of interest added as outputs. A dimension equal in both
//! runs is [`DimFact::Fixed`]; one that differs follows the batch ([`DimFact::Batch`]) and the
//! emitted code reads it at run time with `Shape`. Models with a fixed batch run once.

use std::collections::{HashMap, HashSet};

use ndarray::ArrayD;
use ort::value::{DynValue, Tensor, TensorElementType};
use snafu::{OptionExt, ResultExt, Snafu, ensure};

use super::{AutodiffError, FactsSnafu};
use crate::onnx::proto::{DataType, ValueInfoProto, tensor_shape_proto::dimension};
use crate::onnx::shape::TempFile;
use crate::onnx::{Model, OnnxError, tensor};
use crate::runtime::{Runtime, RuntimeError};

/// Integer tensors up to this many elements have their values recorded.
const MAX_RECORDED_VALUES: usize = 1024;

/// The batch sizes of the two probe runs (neither is 1, so broadcast dimensions stand out).
const PROBE_BATCHES: [i64; 2] = [2, 3];

/// One dimension of a forward tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DimFact {
    /// The same in every run.
    Fixed(i64),
    /// Changes with the batch size: read at run time.
    Batch,
}

impl DimFact {
    /// The size, when fixed.
    pub fn fixed(self) -> Option<i64> {
        match self {
            DimFact::Fixed(n) => Some(n),
            DimFact::Batch => None,
        }
    }
}

/// What is known about one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorFact {
    /// Its dimensions.
    pub dims: Vec<DimFact>,
    /// Its element type.
    pub elem_type: DataType,
    /// The values of a small integer tensor, when the same at every batch size.
    pub values: Option<Vec<i64>>,
}

impl TensorFact {
    /// The dimensions when all are fixed.
    pub fn fixed_dims(&self) -> Option<Vec<i64>> {
        self.dims.iter().map(|d| d.fixed()).collect()
    }
}

/// Why the facts could not be learnt; [`learn`] reports it with the model's path.
#[derive(Debug, Snafu)]
enum FactsError {
    /// A wanted tensor is neither an input, an initializer nor a node output.
    #[snafu(display("no tensor {name:?} in the graph"))]
    NoTensor {
        /// The tensor.
        name: String,
    },
    /// A graph input is not a tensor.
    #[snafu(display("graph input {name:?} is not a tensor"))]
    InputNotTensor {
        /// The input.
        name: String,
    },
    /// A graph input has no shape to feed.
    #[snafu(display("graph input {name:?} declares no shape"))]
    NoShape {
        /// The input.
        name: String,
    },
    /// A graph input has a symbolic size other than the batch.
    #[snafu(display(
        "graph input {name:?} has a symbolic size on axis {axis}; only the batch axis (0) may \
         be symbolic"
    ))]
    SymbolicAxis {
        /// The input.
        name: String,
        /// The axis.
        axis: usize,
    },
    /// A graph input's element type has no synthetic values.
    #[snafu(display(
        "graph input {name:?} has element type {elem_type:?}, which the shape probe cannot feed"
    ))]
    InputType {
        /// The input.
        name: String,
        /// Its element type.
        elem_type: DataType,
    },
    /// The synthetic values do not fit the input's shape.
    #[snafu(display("{source}"))]
    InputShape {
        /// ndarray's reason.
        source: ndarray::ShapeError,
    },
    /// ONNX Runtime refused the synthetic input.
    #[snafu(display("input {name:?}: {source}"))]
    InputTensor {
        /// The input.
        name: String,
        /// ONNX Runtime's reason.
        source: ort::Error,
    },
    /// The probe copy of the model could not be saved.
    #[snafu(display("{source}"))]
    SaveProbe {
        /// The writer's error (boxed: it is large).
        #[snafu(source(from(OnnxError, Box::new)))]
        source: Box<OnnxError>,
    },
    /// No session could be made of the probe copy.
    #[snafu(display("{source}"))]
    ProbeSession {
        /// The runtime's error.
        source: RuntimeError,
    },
    /// The probe run failed.
    #[snafu(display("probe run at batch {batch} failed: {source}"))]
    ProbeRun {
        /// The batch size of the run.
        batch: i64,
        /// ONNX Runtime's reason.
        source: ort::Error,
    },
    /// A probed output is not a tensor.
    #[snafu(display("{name:?} is not a tensor"))]
    OutputNotTensor {
        /// The output.
        name: String,
    },
    /// ONNX Runtime did not return a probed output.
    #[snafu(display("ONNX Runtime did not return {name:?}"))]
    NotReturned {
        /// The output.
        name: String,
    },
    /// A tensor's rank differs between the probe runs.
    #[snafu(display("{name:?} changes rank with the batch size ({first:?} vs {other:?})"))]
    RankChanges {
        /// The tensor.
        name: String,
        /// Its shape in the first run.
        first: Vec<i64>,
        /// Its shape in a later run.
        other: Vec<i64>,
    },
}

/// Facts about the tensors of one model.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    tensors: HashMap<String, TensorFact>,
}

impl Facts {
    /// The facts about `name`, if it was learnt.
    pub fn get(&self, name: &str) -> Option<&TensorFact> {
        self.tensors.get(name)
    }

    /// Records facts (for tests and for tensors known without a run).
    pub fn insert(&mut self, name: impl Into<String>, fact: TensorFact) {
        self.tensors.insert(name.into(), fact);
    }

    /// How many tensors are described.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether nothing is described.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// Learns the facts about `names` (graph inputs, initializers and node outputs of `model`).
pub fn learn(runtime: &Runtime, model: &Model, names: &[String]) -> Result<Facts, AutodiffError> {
    // AutodiffError::Facts carries the reason as text, with the model's path
    let fail = |error: FactsError| {
        FactsSnafu {
            path: model.path(),
            message: error.to_string(),
        }
        .build()
    };
    let inputs: Vec<InputPlan> = model
        .inputs()
        .into_iter()
        .map(|info| InputPlan::from_value_info(info).map_err(&fail))
        .collect::<Result<_, _>>()?;
    let batched = inputs.iter().any(|i| i.batch_axis);

    let mut facts = Facts::default();
    let mut wanted: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            continue;
        }
        if inputs.iter().any(|i| i.name == *name) {
            continue; // described from the probe inputs below
        } else if let Some(t) = model.initializer(name) {
            let values = match t.data_type() {
                DataType::Int64 | DataType::Int32 => tensor::to_i64(t)
                    .ok()
                    .filter(|a| a.len() <= MAX_RECORDED_VALUES)
                    .map(|a| a.iter().copied().collect()),
                _ => None,
            };
            facts.insert(
                name.clone(),
                TensorFact {
                    dims: t.dims.iter().map(|&d| DimFact::Fixed(d)).collect(),
                    elem_type: t.data_type(),
                    values,
                },
            );
        } else if model.node_index_by_output(name).is_some() {
            wanted.push(name);
        } else {
            return Err(fail(FactsError::NoTensor { name: name.clone() }));
        }
    }

    let batches: &[i64] = if batched {
        &PROBE_BATCHES
    } else {
        &PROBE_BATCHES[..1]
    };
    let mut runs = Vec::with_capacity(batches.len());
    for &batch in batches {
        runs.push(probe(runtime, model, &inputs, batch, &wanted).map_err(&fail)?);
    }
    for input in &inputs {
        let dims = input
            .dims
            .iter()
            .enumerate()
            .map(|(axis, &d)| match d {
                Some(n) => DimFact::Fixed(n),
                None if axis == 0 && batched => DimFact::Batch,
                None => DimFact::Fixed(1),
            })
            .collect();
        facts.insert(
            input.name.clone(),
            TensorFact {
                dims,
                elem_type: input.elem_type,
                values: None,
            },
        );
    }
    for name in wanted {
        let observed: Vec<&Observed> = runs
            .iter()
            .map(|run| {
                run.get(name)
                    .ok_or_else(|| fail(FactsError::NotReturned { name: name.into() }))
            })
            .collect::<Result<_, _>>()?;
        let first = observed[0];
        let mut dims: Vec<DimFact> = first.shape.iter().map(|&d| DimFact::Fixed(d)).collect();
        let mut values = first.values.clone();
        for other in &observed[1..] {
            if other.shape.len() != first.shape.len() {
                return Err(fail(FactsError::RankChanges {
                    name: name.into(),
                    first: first.shape.clone(),
                    other: other.shape.clone(),
                }));
            }
            for (dim, (&a, &b)) in dims.iter_mut().zip(first.shape.iter().zip(&other.shape)) {
                if a != b {
                    *dim = DimFact::Batch;
                }
            }
            if other.values != values {
                values = None;
            }
        }
        facts.insert(
            name.to_string(),
            TensorFact {
                dims,
                elem_type: first.elem_type,
                values,
            },
        );
    }
    Ok(facts)
}

/// How one graph input is fed to the probe runs.
struct InputPlan {
    name: String,
    elem_type: DataType,
    /// Declared sizes; `None` for the symbolic batch dimension.
    dims: Vec<Option<i64>>,
    batch_axis: bool,
}

impl InputPlan {
    fn from_value_info(info: &ValueInfoProto) -> Result<InputPlan, FactsError> {
        let name = info.name().to_string();
        let tensor_type = info
            .tensor_type()
            .context(InputNotTensorSnafu { name: &name })?;
        let shape = tensor_type
            .shape
            .as_ref()
            .context(NoShapeSnafu { name: &name })?;
        let mut dims = Vec::with_capacity(shape.dim.len());
        let mut batch_axis = false;
        for (axis, dim) in shape.dim.iter().enumerate() {
            match &dim.value {
                Some(dimension::Value::DimValue(n)) if *n > 0 => dims.push(Some(*n)),
                _ => {
                    ensure!(axis == 0, SymbolicAxisSnafu { name: &name, axis });
                    dims.push(None);
                    batch_axis = true;
                }
            }
        }
        Ok(InputPlan {
            name,
            elem_type: tensor_type.elem_type(),
            dims,
            batch_axis,
        })
    }

    /// A deterministic input at `batch`: values in [0, 1) for floats, zeros for integers.
    fn value(&self, batch: i64) -> Result<DynValue, FactsError> {
        let shape: Vec<usize> = self
            .dims
            .iter()
            .map(|d| d.unwrap_or(batch) as usize)
            .collect();
        let count: usize = shape.iter().product();
        let unit = |i: usize| ((i as u64).wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0;
        let failed = || InputTensorSnafu { name: &self.name };
        let value = match self.elem_type {
            DataType::Float => {
                let data: Vec<f32> = (0..count).map(|i| unit(i) as f32).collect();
                let array = ArrayD::from_shape_vec(shape, data).context(InputShapeSnafu)?;
                Tensor::from_array(array).context(failed())?.into_dyn()
            }
            DataType::Double => {
                let data: Vec<f64> = (0..count).map(unit).collect();
                let array = ArrayD::from_shape_vec(shape, data).context(InputShapeSnafu)?;
                Tensor::from_array(array).context(failed())?.into_dyn()
            }
            DataType::Int64 => {
                let array = ArrayD::<i64>::zeros(shape);
                Tensor::from_array(array).context(failed())?.into_dyn()
            }
            DataType::Int32 => {
                let array = ArrayD::<i32>::zeros(shape);
                Tensor::from_array(array).context(failed())?.into_dyn()
            }
            elem_type => {
                return InputTypeSnafu {
                    name: &self.name,
                    elem_type,
                }
                .fail();
            }
        };
        Ok(value)
    }
}

/// One tensor as one probe run saw it.
struct Observed {
    shape: Vec<i64>,
    elem_type: DataType,
    values: Option<Vec<i64>>,
}

/// Runs a copy of `model` with `wanted` as extra outputs, at `batch`.
fn probe(
    runtime: &Runtime,
    model: &Model,
    inputs: &[InputPlan],
    batch: i64,
    wanted: &[&str],
) -> Result<HashMap<String, Observed>, FactsError> {
    let mut copy = model.clone();
    let outputs = &mut copy.graph_mut().output;
    let existing: HashSet<String> = outputs.iter().map(|o| o.name().to_string()).collect();
    for &name in wanted {
        if !existing.contains(name) {
            outputs.push(ValueInfoProto {
                name: Some(name.to_string()),
                ..ValueInfoProto::default()
            });
        }
    }
    let file = TempFile::new();
    copy.save(&file.0).context(SaveProbeSnafu)?;
    let mut loaded = runtime.session(&file.0).context(ProbeSessionSnafu)?;
    let mut feeds = Vec::with_capacity(inputs.len());
    for input in inputs {
        feeds.push((input.name.clone(), input.value(batch)?));
    }
    let results = loaded.session.run(feeds).context(ProbeRunSnafu { batch })?;
    let mut observed = HashMap::with_capacity(wanted.len());
    for &name in wanted {
        let Some(value) = results.get(name) else {
            continue;
        };
        let dtype = value.dtype();
        let shape = dtype
            .tensor_shape()
            .context(OutputNotTensorSnafu { name })?
            .to_vec();
        let elem_type = dtype
            .tensor_type()
            .map(data_type_of)
            .unwrap_or(DataType::Undefined);
        let count: i64 = shape.iter().product();
        let values = if count as usize <= MAX_RECORDED_VALUES {
            match elem_type {
                DataType::Int64 => value
                    .try_extract_array::<i64>()
                    .ok()
                    .map(|a| a.iter().copied().collect()),
                DataType::Int32 => value
                    .try_extract_array::<i32>()
                    .ok()
                    .map(|a| a.iter().map(|&v| i64::from(v)).collect()),
                _ => None,
            }
        } else {
            None
        };
        observed.insert(
            name.to_string(),
            Observed {
                shape,
                elem_type,
                values,
            },
        );
    }
    Ok(observed)
}

/// ONNX Runtime's element type as the ONNX data type.
fn data_type_of(t: TensorElementType) -> DataType {
    match t {
        TensorElementType::Float32 => DataType::Float,
        TensorElementType::Float64 => DataType::Double,
        TensorElementType::Float16 => DataType::Float16,
        TensorElementType::Bfloat16 => DataType::Bfloat16,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Bool => DataType::Bool,
        _ => DataType::Undefined,
    }
}
