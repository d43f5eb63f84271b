//! Attribute readers with the defaults the ONNX specification gives, for the transforms that
//! read nodes (the gradient rules, the quantizer).

use super::proto::NodeProto;

/// An INT attribute, or `default`.
pub fn int(node: &NodeProto, name: &str, default: i64) -> i64 {
    node.attribute(name).and_then(|a| a.i).unwrap_or(default)
}

/// A FLOAT attribute, or `default`.
pub fn float(node: &NodeProto, name: &str, default: f32) -> f32 {
    node.attribute(name).and_then(|a| a.f).unwrap_or(default)
}

/// An INTS attribute, if present.
pub fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute(name).map(|a| a.ints.clone())
}

/// A STRING attribute, or `default`.
pub fn string(node: &NodeProto, name: &str, default: &str) -> String {
    node.attribute(name)
        .and_then(|a| a.s.as_ref())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_else(|| default.to_string())
}
