//! Backward rules, one file per operator family, registered in one table (op type → rule).
//!
//! A rule receives the adjoints of a node's outputs (`None` where an output does not reach the
//! score) and which inputs need a gradient, and emits standard ONNX nodes computing the
//! gradients of those inputs. Each rule is tested against central finite differences in
//! `tests/autodiff_ops.rs`.
//!
//! | File | Operators |
//! | --- | --- |
//! | [`activation`] | Relu, LeakyRelu, Sigmoid, Tanh, Erf, Gelu, Softmax, LogSoftmax, Clip, Sqrt, Exp, Log, Neg, Abs, Reciprocal |
//! | [`elementwise`] | Add, Sub, Mul, Div, Pow, Sum, Where |
//! | [`linalg`] | MatMul, Gemm |
//! | [`conv`] | Conv, ConvTranspose |
//! | [`pool`] | MaxPool, AveragePool, GlobalAveragePool |
//! | [`norm`] | BatchNormalization (inference), LayerNormalization |
//! | [`reduce`] | ReduceSum, ReduceMean |
//! | [`layout`] | Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Expand, Identity, Dropout, Cast |
//! | [`indexing`] | Concat, Split, Slice, Gather, Pad |

use std::collections::HashMap;
use std::sync::LazyLock;

use super::emit::{Emitter, RuleResult};
use crate::onnx::proto::NodeProto;

pub mod activation;
pub mod conv;
pub mod elementwise;
pub mod indexing;
pub mod layout;
pub mod linalg;
pub mod norm;
pub mod pool;
pub mod reduce;

/// What a rule is given for one forward node.
pub struct NodeGrads<'a> {
    /// The forward node.
    pub node: &'a NodeProto,
    /// The adjoint of each output (`None`: the output does not reach the score).
    pub outputs: Vec<Option<String>>,
    /// Whether each input needs a gradient.
    pub needs: Vec<bool>,
}

impl NodeGrads<'_> {
    /// The node's `i`-th input (empty for an omitted optional input).
    pub fn input(&self, i: usize) -> &str {
        self.node.input.get(i).map(String::as_str).unwrap_or("")
    }

    /// The node's `i`-th output.
    pub fn output(&self, i: usize) -> &str {
        self.node.output.get(i).map(String::as_str).unwrap_or("")
    }

    /// The adjoint of output 0, which every rule with one differentiable output reads.
    pub fn grad(&self) -> RuleResult<&str> {
        self.outputs
            .first()
            .and_then(|g| g.as_deref())
            .ok_or_else(|| String::from("no adjoint reached output 0"))
    }

    /// Whether input `i` needs a gradient.
    pub fn needs(&self, i: usize) -> bool {
        self.needs.get(i).copied().unwrap_or(false)
    }

    /// A gradient list with `value` for input 0 only.
    pub fn only_first(&self, value: String) -> Vec<Option<String>> {
        let mut grads = vec![None; self.node.input.len()];
        if let Some(first) = grads.first_mut() {
            *first = Some(value);
        }
        grads
    }
}

/// Emits the gradients of a node's inputs (one entry per input; `None` for none).
pub type Backward = fn(&mut Emitter, &NodeGrads) -> RuleResult<Vec<Option<String>>>;

/// Which ports carry gradients.
#[derive(Debug, Clone, Copy)]
pub enum Ports {
    /// All of them.
    All,
    /// These indices.
    Only(&'static [usize]),
}

impl Ports {
    /// Whether port `i` carries gradients.
    pub fn contains(self, i: usize) -> bool {
        match self {
            Ports::All => true,
            Ports::Only(list) => list.contains(&i),
        }
    }
}

/// The backward rule of one operator.
#[derive(Clone, Copy)]
pub struct Rule {
    /// The op type (default domain).
    pub op_type: &'static str,
    /// Inputs through which gradients flow.
    pub inputs: Ports,
    /// Outputs that carry gradients (others are indices, masks, statistics).
    pub outputs: Ports,
    /// For ops whose outputs are differentiable only for some attributes (`Cast` to an
    /// integer type is not).
    pub differentiable: Option<fn(&NodeProto) -> bool>,
    /// The rule itself.
    pub backward: Backward,
}

impl Rule {
    /// A rule with gradients through every input and output.
    pub const fn new(op_type: &'static str, backward: Backward) -> Rule {
        Rule {
            op_type,
            inputs: Ports::All,
            outputs: Ports::All,
            differentiable: None,
            backward,
        }
    }

    /// Restricts the differentiable inputs.
    pub const fn inputs(mut self, ports: &'static [usize]) -> Rule {
        self.inputs = Ports::Only(ports);
        self
    }

    /// Restricts the differentiable outputs.
    pub const fn outputs(mut self, ports: &'static [usize]) -> Rule {
        self.outputs = Ports::Only(ports);
        self
    }

    /// Outputs are differentiable only when `test` holds for the node.
    pub const fn when(mut self, test: fn(&NodeProto) -> bool) -> Rule {
        self.differentiable = Some(test);
        self
    }
}

/// Operators whose outputs carry no gradient: shapes, comparisons, indices, and piecewise
/// constant functions (derivative zero almost everywhere).
pub const NON_DIFFERENTIABLE: &[&str] = &[
    "Shape",
    "Size",
    "Constant",
    "ConstantOfShape",
    "Equal",
    "Greater",
    "GreaterOrEqual",
    "Less",
    "LessOrEqual",
    "Not",
    "And",
    "Or",
    "Xor",
    "ArgMax",
    "ArgMin",
    "NonZero",
    "IsNaN",
    "IsInf",
    "Range",
    "EyeLike",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Bernoulli",
    "Multinomial",
];

/// Every rule, by op type.
pub static RULES: LazyLock<HashMap<&'static str, Rule>> = LazyLock::new(|| {
    let mut table = HashMap::new();
    for family in [
        activation::rules(),
        elementwise::rules(),
        linalg::rules(),
        conv::rules(),
        pool::rules(),
        norm::rules(),
        reduce::rules(),
        layout::rules(),
        indexing::rules(),
    ] {
        for rule in family {
            table.insert(rule.op_type, rule);
        }
    }
    table
});

/// The rule for a default-domain node, if there is one.
pub fn rule_for(node: &NodeProto) -> Option<&'static Rule> {
    if !node.in_default_domain() {
        return None;
    }
    RULES.get(node.op_type())
}

/// The op types that have rules, sorted (for documentation and `grad --help`).
pub fn supported_ops() -> Vec<&'static str> {
    let mut ops: Vec<&str> = RULES.keys().copied().collect();
    ops.sort_unstable();
    ops
}
