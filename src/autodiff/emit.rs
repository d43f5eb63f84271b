//! Writing backward nodes: unique traceable names (`<forward node>.grad.<what>`), constants of
//! the right element type, and the shape helpers every rule shares (reshape like a forward
//! tensor, undo broadcasting, zeros).

use std::collections::{HashMap, HashSet};

use ndarray::{ArrayD, IxDyn};

use super::facts::{DimFact, Facts, TensorFact};
use crate::onnx::proto::{AttributeProto, DataType, NodeProto, TensorProto};
use crate::onnx::tensor::{self, Storage};

/// Why a rule could not emit its nodes; the transform adds the node and the file.
pub type RuleResult<T> = Result<T, String>;

/// Collects the backward graph's nodes and constants.
pub struct Emitter<'f> {
    facts: &'f Facts,
    /// The default-domain opset of the output model.
    pub opset: i64,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    taken: HashSet<String>,
    prefix: String,
    scalars: HashMap<(u64, i32), String>,
    shapes: HashMap<String, String>,
}

impl<'f> Emitter<'f> {
    /// An emitter for a graph whose tensor and node names are `taken`.
    pub fn new(facts: &'f Facts, opset: i64, taken: HashSet<String>) -> Emitter<'f> {
        Emitter {
            facts,
            opset,
            nodes: Vec::new(),
            initializers: Vec::new(),
            taken,
            prefix: String::from("autodiff"),
            scalars: HashMap::new(),
            shapes: HashMap::new(),
        }
    }

    /// Names the following nodes after the forward node `label`.
    pub fn set_prefix(&mut self, label: &str) {
        self.prefix = label.to_string();
    }

    /// The nodes and constants written so far.
    pub fn finish(self) -> (Vec<NodeProto>, Vec<TensorProto>) {
        (self.nodes, self.initializers)
    }

    /// How many nodes were written.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A new name `<prefix>.grad.<what>`, made unique with a counter.
    pub fn fresh(&mut self, what: &str) -> String {
        let base = format!("{}.grad.{what}", self.prefix);
        let mut name = base.clone();
        let mut n = 1;
        while self.taken.contains(&name) {
            name = format!("{base}.{n}");
            n += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    /// A name for a given output (`grad:T`), which must be free.
    pub fn claim(&mut self, name: &str) -> RuleResult<()> {
        if !self.taken.insert(name.to_string()) {
            return Err(format!("the graph already has a tensor called {name:?}"));
        }
        Ok(())
    }

    /// One node with one output; returns the output's name.
    pub fn op(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        self.op_n(op_type, inputs, attributes, 1).remove(0)
    }

    /// One node with `outputs` outputs.
    pub fn op_n(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        outputs: usize,
    ) -> Vec<String> {
        let names: Vec<String> = (0..outputs)
            .map(|i| match i {
                0 => self.fresh(op_type),
                _ => self.fresh(&format!("{op_type}.out{i}")),
            })
            .collect();
        self.push_node(op_type, inputs, attributes, names.clone());
        names
    }

    /// One node writing the given output names (already claimed).
    pub fn push_node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        outputs: Vec<String>,
    ) {
        let name = outputs
            .first()
            .cloned()
            .unwrap_or_else(|| self.fresh(op_type));
        let mut node = NodeProto::new(op_type, name, inputs.iter().copied(), outputs);
        node.attribute = attributes;
        self.nodes.push(node);
    }

    /// The facts about a forward tensor.
    pub fn fact(&self, tensor: &str) -> RuleResult<&'f TensorFact> {
        self.facts
            .get(tensor)
            .ok_or_else(|| format!("no shape is known for tensor {tensor:?}"))
    }

    /// A forward tensor's dimensions.
    pub fn dims(&self, tensor: &str) -> RuleResult<&'f [DimFact]> {
        Ok(&self.fact(tensor)?.dims)
    }

    /// A forward tensor's rank.
    pub fn rank(&self, tensor: &str) -> RuleResult<usize> {
        Ok(self.dims(tensor)?.len())
    }

    /// A forward tensor's dimensions, all of which must be fixed.
    pub fn fixed_dims(&self, tensor: &str, why: &str) -> RuleResult<Vec<i64>> {
        self.fact(tensor)?.fixed_dims().ok_or_else(|| {
            format!(
                "tensor {tensor:?} must have a fixed shape ({why}), but its size follows the batch"
            )
        })
    }

    /// The element type of a forward tensor.
    pub fn elem_type(&self, tensor: &str) -> RuleResult<DataType> {
        Ok(self.fact(tensor)?.elem_type)
    }

    /// The values of a small constant integer tensor (attribute-like inputs).
    pub fn int_values(&self, tensor: &str, what: &str) -> RuleResult<Vec<i64>> {
        self.fact(tensor)?.values.clone().ok_or_else(|| {
            format!("{what} ({tensor:?}) must be a constant integer tensor, but its value is not known ahead of time")
        })
    }

    /// A scalar constant of `like`'s element type.
    pub fn scalar(&mut self, value: f64, like: &str) -> RuleResult<String> {
        let elem_type = self.elem_type(like)?;
        self.scalar_of(value, elem_type)
    }

    /// A scalar constant of a given floating element type.
    pub fn scalar_of(&mut self, value: f64, elem_type: DataType) -> RuleResult<String> {
        let key = (value.to_bits(), elem_type as i32);
        if let Some(name) = self.scalars.get(&key) {
            return Ok(name.clone());
        }
        let name = self.fresh("const");
        let array = ArrayD::from_elem(IxDyn(&[]), value);
        let tensor = float_tensor(&name, &array, elem_type)?;
        self.initializers.push(tensor);
        self.scalars.insert(key, name.clone());
        Ok(name)
    }

    /// A float constant of `like`'s element type with any shape.
    pub fn constant(&mut self, what: &str, array: &ArrayD<f64>, like: &str) -> RuleResult<String> {
        let elem_type = self.elem_type(like)?;
        let name = self.fresh(what);
        let tensor = float_tensor(&name, array, elem_type)?;
        self.initializers.push(tensor);
        Ok(name)
    }

    /// Adds a constant built by a rule (its name from [`Emitter::fresh`]).
    pub fn add_initializer(&mut self, tensor: TensorProto) {
        self.initializers.push(tensor);
    }

    /// A 1-D int64 constant.
    pub fn ints(&mut self, values: &[i64]) -> String {
        let name = self.fresh("ints");
        let array = ndarray::Array1::from(values.to_vec());
        self.initializers
            .push(tensor::from_array(&name, &array, Storage::Raw));
        name
    }

    /// A forward tensor's shape as a 1-D int64 tensor: a constant when fixed, else a `Shape`
    /// node (one per tensor).
    pub fn shape_of(&mut self, tensor: &str) -> RuleResult<String> {
        if let Some(name) = self.shapes.get(tensor) {
            return Ok(name.clone());
        }
        let name = match self.fact(tensor)?.fixed_dims() {
            Some(dims) => self.ints(&dims),
            None => self.op("Shape", &[tensor], vec![]),
        };
        self.shapes.insert(tensor.to_string(), name.clone());
        Ok(name)
    }

    /// `value` reshaped to the shape of the forward tensor `like`.
    pub fn reshape_like(&mut self, value: &str, like: &str) -> RuleResult<String> {
        let shape = self.shape_of(like)?;
        Ok(self.op("Reshape", &[value, &shape], vec![]))
    }

    /// Zeros with the shape and element type of the forward tensor `like`.
    pub fn zeros_like(&mut self, like: &str) -> RuleResult<String> {
        let shape = self.shape_of(like)?;
        self.filled(&shape, 0.0, like)
    }

    /// `ConstantOfShape(shape)` filled with `value`, of `like`'s element type.
    pub fn filled(&mut self, shape: &str, value: f64, like: &str) -> RuleResult<String> {
        let elem_type = self.elem_type(like)?;
        let fill = float_tensor("", &ArrayD::from_elem(IxDyn(&[1]), value), elem_type)?;
        Ok(self.op(
            "ConstantOfShape",
            &[shape],
            vec![AttributeProto::tensor("value", fill)],
        ))
    }

    /// `ReduceSum(value, axes, keepdims)`; `value` itself when `axes` is empty.
    pub fn reduce_sum(&mut self, value: &str, axes: &[i64], keepdims: bool) -> String {
        if axes.is_empty() {
            return value.to_string();
        }
        let axes = self.ints(axes);
        self.op(
            "ReduceSum",
            &[value, &axes],
            vec![AttributeProto::int("keepdims", i64::from(keepdims))],
        )
    }

    /// Undoes broadcasting: `grad` has the dimensions `full`, and the forward tensor `operand`
    /// was broadcast to them; sums over the broadcast axes and reshapes to the operand's shape.
    pub fn unbroadcast(
        &mut self,
        grad: &str,
        full: &[DimFact],
        operand: &str,
    ) -> RuleResult<String> {
        let dims = self.dims(operand)?;
        if dims.len() > full.len() {
            return Err(format!(
                "operand {operand:?} has rank {} above the result's {}",
                dims.len(),
                full.len()
            ));
        }
        let lead = full.len() - dims.len();
        let mut axes: Vec<i64> = (0..lead as i64).collect();
        for (i, (&d, &f)) in dims.iter().zip(&full[lead..]).enumerate() {
            if d == DimFact::Fixed(1) && f != DimFact::Fixed(1) {
                axes.push((lead + i) as i64);
            }
        }
        if axes.is_empty() {
            return Ok(grad.to_string());
        }
        let summed = self.reduce_sum(grad, &axes, true);
        if lead == 0 {
            return Ok(summed);
        }
        self.reshape_like(&summed, operand)
    }

    /// `Sum` of several contributions (the one itself when alone).
    pub fn sum(&mut self, parts: &[String]) -> String {
        match parts {
            [one] => one.clone(),
            _ => {
                let inputs: Vec<&str> = parts.iter().map(String::as_str).collect();
                self.op("Sum", &inputs, vec![])
            }
        }
    }
}

/// A float tensor of `elem_type` (FLOAT or DOUBLE) from f64 values.
fn float_tensor(name: &str, array: &ArrayD<f64>, elem_type: DataType) -> RuleResult<TensorProto> {
    match elem_type {
        DataType::Float => Ok(tensor::from_array(
            name,
            &array.mapv(|v| v as f32),
            Storage::Raw,
        )),
        DataType::Double => Ok(tensor::from_array(name, array, Storage::Raw)),
        other => Err(format!(
            "gradients are computed for FLOAT and DOUBLE tensors only, not {other:?}"
        )),
    }
}

/// Attribute readers with the defaults the ONNX specification gives (the rules' `attr`).
pub use crate::onnx::attr;

/// Normalises a possibly negative axis against `rank`.
pub fn normalise_axis(axis: i64, rank: usize) -> RuleResult<usize> {
    let rank = rank as i64;
    let axis = if axis < 0 { axis + rank } else { axis };
    if (0..rank).contains(&axis) {
        Ok(axis as usize)
    } else {
        Err(format!("axis {axis} is outside rank {rank}"))
    }
}
