//! The transform: activity analysis, the reverse walk over the forward graph, and the
//! assembly of the gradient model (docs/design.md section 11).

use std::collections::{HashMap, HashSet};

use super::emit::Emitter;
use super::facts::{self, DimFact, Facts};
use super::rules::{self, NON_DIFFERENTIABLE, NodeGrads};
use super::{AutodiffError, BadRequestSnafu, NoRuleSnafu, OpsetSnafu, UnsupportedSnafu};
use crate::onnx::model::node_label;
use crate::onnx::proto::{
    DataType, NodeProto, OperatorSetIdProto, ValueInfoProto, tensor_shape_proto::Dimension,
};
use crate::onnx::{Model, shape::Dim};
use crate::runtime::Runtime;

/// The input that weights the score: `[N, K]`, like the score.
pub const GRAD_SEED: &str = "grad_seed";

/// Gradient outputs are called `grad:<tensor>`.
pub const GRAD_PREFIX: &str = "grad:";

/// The lowest default-domain opset the transform reads (`ReduceSum`, `Split`, `Squeeze` and
/// `Unsqueeze` take their axes as inputs from 13 on).
pub const MIN_OPSET: i64 = 13;

/// The output's opset is raised to at least this (`ScatterElements` with `reduction`).
pub const MIN_OUTPUT_OPSET: i64 = 16;

/// What to differentiate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GradRequest {
    /// Tensors to differentiate with respect to: graph inputs or intermediate tensors.
    pub wrt: Vec<String>,
    /// The score tensor; `None` for the default ([`default_score`]).
    pub score: Option<String>,
    /// Also output the score tensor itself (under its own name) when it is not an output
    /// already: explanation methods that compare scores (Integrated Gradients' completeness)
    /// need the logits of models that output probabilities.
    pub expose_score: bool,
}

impl GradRequest {
    /// Gradients with respect to `wrt`, of the default score.
    pub fn new(wrt: impl IntoIterator<Item = impl Into<String>>) -> GradRequest {
        GradRequest {
            wrt: wrt.into_iter().map(Into::into).collect(),
            score: None,
            expose_score: false,
        }
    }

    /// Also outputs the score tensor.
    #[must_use]
    pub fn exposing_score(mut self) -> GradRequest {
        self.expose_score = true;
        self
    }

    /// Differentiates `score` instead of the default.
    #[must_use]
    pub fn with_score(mut self, score: impl Into<String>) -> GradRequest {
        self.score = Some(score.into());
        self
    }
}

/// A gradient model and what went into it.
#[derive(Debug, Clone)]
pub struct GradientModel {
    /// The model: the forward graph plus the backward nodes.
    pub model: Model,
    /// The score that was differentiated.
    pub score: String,
    /// The tensors differentiated with respect to (outputs `grad:<name>`).
    pub wrt: Vec<String>,
    /// Nodes in the forward graph.
    pub forward_nodes: usize,
    /// Nodes the transform added.
    pub backward_nodes: usize,
}

/// The default score: the input of the final `Softmax` when the first output is one, else the
/// first output.
pub fn default_score(model: &Model) -> Result<String, AutodiffError> {
    let first = model
        .outputs()
        .first()
        .map(|o| o.name().to_string())
        .ok_or_else(|| {
            BadRequestSnafu {
                path: model.path(),
                what: "--score tensor",
                tensor: String::new(),
                reason: "the model has no outputs",
            }
            .build()
        })?;
    match model.node_by_output(&first) {
        Some(node)
            if node.op_type() == "Softmax"
                && node.in_default_domain()
                && !node.input.is_empty() =>
        {
            Ok(node.input[0].clone())
        }
        _ => Ok(first),
    }
}

/// Builds the gradient model of `model` for `request` (see the module documentation).
/// `runtime` runs the model twice to learn tensor shapes.
pub fn gradient_model(
    runtime: &Runtime,
    model: &Model,
    request: &GradRequest,
) -> Result<GradientModel, AutodiffError> {
    let path = model.path();
    let opset = check_opset(model)?;
    model.check_topological_order()?;
    let graph = model.graph();
    let score = match &request.score {
        Some(score) => score.clone(),
        None => default_score(model)?,
    };
    let bad = |what: &'static str, tensor: &str, reason: String| {
        BadRequestSnafu {
            path,
            what,
            tensor,
            reason,
        }
        .build()
    };
    if request.wrt.is_empty() {
        return Err(bad(
            "--wrt tensor",
            "",
            "no tensor to differentiate with respect to".into(),
        ));
    }
    let graph_inputs: HashSet<&str> = model.inputs().iter().map(|i| i.name()).collect();
    for (i, t) in request.wrt.iter().enumerate() {
        if request.wrt[..i].contains(t) {
            return Err(bad("--wrt tensor", t, "named twice".into()));
        }
        if !graph_inputs.contains(t.as_str()) && model.node_index_by_output(t).is_none() {
            let reason = if model.initializer(t).is_some() {
                "is a weight (initializer); gradients are taken with respect to graph inputs and \
                 intermediate tensors"
            } else {
                "no graph input or node output has this name"
            };
            return Err(bad("--wrt tensor", t, reason.into()));
        }
    }
    if !graph_inputs.contains(score.as_str()) && model.node_index_by_output(&score).is_none() {
        return Err(bad(
            "--score tensor",
            &score,
            "no graph input or node output has this name".into(),
        ));
    }

    // Forward activity: tensors whose value depends on a --wrt tensor through differentiable
    // operations. Outputs of operators without a rule are active too; they only become an
    // error if the score needs them.
    let mut active: HashSet<&str> = request.wrt.iter().map(String::as_str).collect();
    let mut unruled: HashMap<&str, usize> = HashMap::new();
    for (index, node) in graph.node.iter().enumerate() {
        let inputs_active = |ports: rules::Ports| {
            node.input
                .iter()
                .enumerate()
                .any(|(i, t)| ports.contains(i) && active.contains(t.as_str()))
        };
        match rules::rule_for(node) {
            Some(rule) => {
                let differentiable = rule.differentiable.is_none_or(|test| test(node));
                if differentiable && inputs_active(rule.inputs) {
                    for (o, t) in node.output.iter().enumerate() {
                        if rule.outputs.contains(o) && !t.is_empty() {
                            active.insert(t);
                        }
                    }
                }
            }
            None if is_non_differentiable(node) => {}
            None => {
                if inputs_active(rules::Ports::All) {
                    for t in node.output.iter().filter(|t| !t.is_empty()) {
                        active.insert(t);
                        unruled.insert(t, index);
                    }
                }
            }
        }
    }

    // Backward relevance: tensors the score depends on through differentiable ports.
    let mut relevant: HashSet<&str> = HashSet::from([score.as_str()]);
    for node in graph.node.iter().rev() {
        if !node.output.iter().any(|t| relevant.contains(t.as_str())) {
            continue;
        }
        let ports = match rules::rule_for(node) {
            Some(rule) => rule.inputs,
            None if is_non_differentiable(node) => continue,
            None => rules::Ports::All,
        };
        for (i, t) in node.input.iter().enumerate() {
            if ports.contains(i) && !t.is_empty() {
                relevant.insert(t);
            }
        }
    }
    for t in &request.wrt {
        if !relevant.contains(t.as_str()) {
            return Err(bad(
                "--wrt tensor",
                t,
                format!(
                    "the score {score:?} does not depend on it through differentiable operations"
                ),
            ));
        }
    }
    if !active.contains(score.as_str()) {
        return Err(bad(
            "--score tensor",
            &score,
            "does not depend on any --wrt tensor through differentiable operations".into(),
        ));
    }

    // The nodes to differentiate, and the tensors whose facts their rules need.
    let on_path = |t: &str| active.contains(t) && relevant.contains(t);
    let mut path_nodes = Vec::new();
    for (index, node) in graph.node.iter().enumerate() {
        if !node.output.iter().any(|t| on_path(t)) {
            continue;
        }
        if let Some(t) = node
            .output
            .iter()
            .find(|t| unruled.contains_key(t.as_str()))
        {
            let blamed = unruled[t.as_str()];
            return Err(no_rule(model, blamed, &graph.node[blamed], opset));
        }
        path_nodes.push(index);
    }
    let mut wanted: Vec<String> = Vec::new();
    for &index in &path_nodes {
        let node = &graph.node[index];
        for t in node.input.iter().chain(&node.output) {
            if !t.is_empty() {
                wanted.push(t.clone());
            }
        }
    }
    wanted.push(score.clone());
    wanted.extend(request.wrt.iter().cloned());
    let facts = facts::learn(runtime, model, &wanted)?;
    let score_fact = facts.get(&score).ok_or_else(|| {
        bad(
            "--score tensor",
            &score,
            "its shape could not be learnt".into(),
        )
    })?;
    if !matches!(score_fact.elem_type, DataType::Float | DataType::Double) {
        return Err(bad(
            "--score tensor",
            &score,
            format!(
                "has element type {:?}; only FLOAT and DOUBLE can be differentiated",
                score_fact.elem_type
            ),
        ));
    }

    // The reverse walk.
    let mut taken: HashSet<String> = HashSet::new();
    for info in graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
    {
        taken.insert(info.name().to_string());
    }
    for t in &graph.initializer {
        taken.insert(t.name().to_string());
    }
    for node in &graph.node {
        taken.insert(node.name().to_string());
        taken.extend(node.output.iter().cloned());
    }
    let output_opset = opset.max(MIN_OUTPUT_OPSET);
    let mut emitter = Emitter::new(&facts, output_opset, taken);
    let claim = |emitter: &mut Emitter, name: &str| {
        emitter
            .claim(name)
            .map_err(|reason| bad("--wrt tensor", name, reason))
    };
    claim(&mut emitter, GRAD_SEED)?;
    for t in &request.wrt {
        claim(&mut emitter, &format!("{GRAD_PREFIX}{t}"))?;
    }
    let mut contributions: HashMap<String, Vec<String>> = HashMap::new();
    contributions.insert(score.clone(), vec![GRAD_SEED.to_string()]);
    let mut adjoints: HashMap<String, String> = HashMap::new();
    for &index in path_nodes.iter().rev() {
        let node = &graph.node[index];
        let label = node_label(index, node);
        emitter.set_prefix(&label);
        let mut outputs = Vec::with_capacity(node.output.len());
        for t in &node.output {
            let adjoint = match contributions.get(t) {
                Some(parts) if on_path(t) => {
                    let sum = emitter.sum(parts);
                    adjoints.insert(t.clone(), sum.clone());
                    Some(sum)
                }
                _ => None,
            };
            outputs.push(adjoint);
        }
        if outputs.iter().all(Option::is_none) {
            continue;
        }
        let rule = rules::rule_for(node).ok_or_else(|| no_rule(model, index, node, opset))?;
        let needs: Vec<bool> = node
            .input
            .iter()
            .enumerate()
            .map(|(i, t)| !t.is_empty() && rule.inputs.contains(i) && on_path(t))
            .collect();
        let unsupported = |reason: String| {
            UnsupportedSnafu {
                path,
                node: label.clone(),
                op_type: node.op_type(),
                reason,
            }
            .build()
        };
        let grads = NodeGrads {
            node,
            outputs,
            needs: needs.clone(),
        };
        let input_grads = (rule.backward)(&mut emitter, &grads).map_err(unsupported)?;
        for (i, needed) in needs.iter().enumerate() {
            if !needed {
                continue;
            }
            let Some(Some(grad)) = input_grads.get(i) else {
                return Err(unsupported(format!(
                    "the rule gives no gradient for input {i} ({:?})",
                    node.input[i]
                )));
            };
            contributions
                .entry(node.input[i].clone())
                .or_default()
                .push(grad.clone());
        }
    }
    emitter.set_prefix("autodiff");
    for t in &request.wrt {
        let adjoint = match adjoints.get(t) {
            Some(a) => a.clone(),
            None => {
                let parts = contributions.get(t).cloned().unwrap_or_default();
                if parts.is_empty() {
                    return Err(bad(
                        "--wrt tensor",
                        t,
                        format!("no gradient reached it from the score {score:?}"),
                    ));
                }
                emitter.sum(&parts)
            }
        };
        emitter.push_node(
            "Identity",
            &[&adjoint],
            vec![],
            vec![format!("{GRAD_PREFIX}{t}")],
        );
    }

    // Assembly.
    let backward_nodes = emitter.node_count();
    let (nodes, initializers) = emitter.finish();
    let mut out = model.clone();
    let batch_symbol = batch_symbol(model);
    let value_info = |name: &str, facts: &Facts| -> Option<ValueInfoProto> {
        let fact = facts.get(name)?;
        let dims = fact
            .dims
            .iter()
            .map(|d| match d {
                DimFact::Fixed(n) => Dimension::known(*n),
                DimFact::Batch => Dimension::symbol(batch_symbol.clone()),
            })
            .collect();
        Some(ValueInfoProto::tensor_dims(name, fact.elem_type, dims))
    };
    let seed_info = value_info(&score, &facts)
        .map(|mut info| {
            info.name = Some(GRAD_SEED.to_string());
            info
        })
        .ok_or_else(|| {
            bad(
                "--score tensor",
                &score,
                "its shape could not be learnt".into(),
            )
        })?;
    let score_info = value_info(&score, &facts);
    let graph = out.graph_mut();
    graph.node.extend(nodes);
    graph.initializer.extend(initializers);
    graph.input.push(seed_info);
    if request.expose_score
        && !graph.output.iter().any(|o| o.name() == score)
        && let Some(info) = score_info
    {
        graph.output.push(info);
    }
    for t in &request.wrt {
        let info = value_info(t, &facts)
            .ok_or_else(|| bad("--wrt tensor", t, "its shape could not be learnt".into()))?;
        if !graph.output.iter().any(|o| o.name() == t) {
            graph.output.push(info.clone());
        }
        let mut grad_info = info;
        grad_info.name = Some(format!("{GRAD_PREFIX}{t}"));
        graph.output.push(grad_info);
    }
    let proto = out.proto_mut();
    let mut raised = false;
    for import in &mut proto.opset_import {
        if matches!(import.domain(), "" | "ai.onnx") {
            import.version = Some(output_opset);
            raised = true;
        }
    }
    if !raised {
        proto
            .opset_import
            .push(OperatorSetIdProto::new("", output_opset));
    }
    Ok(GradientModel {
        model: out,
        score,
        wrt: request.wrt.clone(),
        forward_nodes: model.graph().node.len(),
        backward_nodes,
    })
}

/// The default-domain opset, checked against what the transform reads.
fn check_opset(model: &Model) -> Result<i64, AutodiffError> {
    let fail = |reason: String| {
        OpsetSnafu {
            path: model.path(),
            reason,
        }
        .build()
    };
    let opset = model
        .opset_version()
        .ok_or_else(|| fail("the model imports no default-domain opset".into()))?;
    if opset < MIN_OPSET {
        return Err(fail(format!(
            "default-domain opset {opset} is below {MIN_OPSET}; re-export the model at opset \
             {MIN_OPSET} to 22"
        )));
    }
    Ok(opset)
}

/// Whether a node's outputs never carry gradients.
fn is_non_differentiable(node: &NodeProto) -> bool {
    node.in_default_domain() && NON_DIFFERENTIABLE.contains(&node.op_type())
}

/// The error for a node on the path whose operator has no rule.
fn no_rule(model: &Model, index: usize, node: &NodeProto, opset: i64) -> AutodiffError {
    let op_type = match node.domain() {
        "" | "ai.onnx" => node.op_type().to_string(),
        domain => format!("{domain}:{}", node.op_type()),
    };
    let hint = match node.op_type() {
        "Attention" => format!(
            ": opset-{opset} exports fuse attention into this operator, so the attention \
             probabilities are no longer a tensor; export at opset 22 or lower (supported: \
             {MIN_OPSET} to 22)"
        ),
        _ if !node.in_default_domain() => String::from(
            ": only default-domain operators can be differentiated (export without \
             runtime-specific fusions)",
        ),
        _ => String::new(),
    };
    NoRuleSnafu {
        path: model.path(),
        node: node_label(index, node),
        op_type,
        hint,
    }
    .build()
}

/// The symbolic name of the first graph input's batch dimension (`N` when it has none).
fn batch_symbol(model: &Model) -> String {
    model
        .inputs()
        .first()
        .and_then(|i| model.declared_shape(i.name()))
        .and_then(|dims| match dims.first() {
            Some(Dim::Symbol(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| String::from("N"))
}
