//! Classic ML operators of the `ai.onnx.ml` domain: Binarizer,
//! ArrayFeatureExtractor, LabelEncoder (opset 2+ attribute forms and
//! opset 4 tensor forms) and TreeEnsemble (opset 5: all comparison modes,
//! set membership, missing-value tracking, four aggregations).

use std::collections::HashMap;

use oxrt_core::dtype::DataType;
use oxrt_core::ir::Attribute;
use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{numbers, read_ints, required};
use crate::ops::cast::cast;

const ML: &str = "ai.onnx.ml";

/// Binarizer: 1 where `x > threshold`, else 0, in the input type.
struct Binarizer(f64);

impl Kernel for Binarizer {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let v: Vec<f64> = numbers(x, "X")?
            .into_iter()
            .map(|v| if v > self.0 { 1.0 } else { 0.0 })
            .collect();
        Ok(vec![cast(&Tensor::from_vec(x.shape(), v)?, x.dtype())?])
    }
}

fn create_binarizer(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Binarizer(f64::from(
        node.float_or("threshold", 0.0)?,
    ))))
}

/// ArrayFeatureExtractor: the listed indices of the last axis (a 1-D input
/// gives one row, as ONNX Runtime does).
struct ArrayFeatureExtractor;

impl Kernel for ArrayFeatureExtractor {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, idx) = (required(inputs, 0)?, required(inputs, 1)?);
        let picks = read_ints(idx, "indices")?;
        let last = *x
            .shape()
            .last()
            .ok_or_else(|| Error::invalid("X must have an axis"))?;
        let cols: Vec<usize> = picks
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .filter(|&i| i < last)
                    .ok_or_else(|| {
                        Error::invalid(format!("index {i} is outside the last axis of {last}"))
                    })
            })
            .collect::<Result<_>>()?;
        let rows = x.len() / last.max(1);
        let flat: Vec<usize> = (0..rows)
            .flat_map(|r| cols.iter().map(move |&c| r * last + c))
            .collect();
        let mut shape = if x.rank() == 1 {
            vec![1]
        } else {
            x.shape()[..x.rank() - 1].to_vec()
        };
        shape.push(cols.len());
        Ok(vec![Tensor::from_storage(
            x.dtype(),
            shape,
            x.storage().gather(&flat)?,
        )?])
    }
}

fn create_array_feature_extractor(_: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(ArrayFeatureExtractor))
}

/// A LabelEncoder key: strings, integers or floats (by bit pattern).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Str(String),
    Int(i64),
    Float(u64),
}

fn float_key(v: f64) -> Key {
    // -0.0 and 0.0 are one key.
    Key::Float(if v == 0.0 { 0 } else { v.to_bits() })
}

/// The keys (or values) of a LabelEncoder attribute set, as a tensor.
fn attr_tensor(node: &Node, list: &str, tensor: &str) -> Result<Option<Tensor>> {
    let Some(name) = [
        format!("{list}_strings"),
        format!("{list}_int64s"),
        format!("{list}_floats"),
        tensor.to_string(),
    ]
    .into_iter()
    .find(|n| node.attributes.contains_key(n)) else {
        return Ok(None);
    };
    Ok(Some(match node.attributes.get(&name) {
        Some(Attribute::Strings(v)) => Tensor::from_strings(
            vec![v.len()],
            v.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        )?,
        Some(Attribute::Ints(v)) => Tensor::from_vec(vec![v.len()], v.clone())?,
        Some(Attribute::Floats(v)) => Tensor::from_vec(vec![v.len()], v.clone())?,
        Some(Attribute::Tensor(t)) => t.as_ref().clone(),
        _ => {
            return Err(Error::invalid(format!(
                "attribute '{name}' has the wrong kind"
            )))
        }
    }))
}

fn keys_of(t: &Tensor) -> Result<Vec<Key>> {
    if let Ok(s) = t.as_strings() {
        return Ok(s.iter().cloned().map(Key::Str).collect());
    }
    if t.dtype().is_float() {
        return Ok(numbers(t, "keys")?.into_iter().map(float_key).collect());
    }
    Ok(read_ints(t, "keys")?.into_iter().map(Key::Int).collect())
}

struct LabelEncoder {
    map: HashMap<Key, usize>,
    /// The values, then the default as the last element.
    values: Tensor,
}

impl Kernel for LabelEncoder {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let default = self.values.len() - 1;
        let idx: Vec<usize> = keys_of(x)?
            .iter()
            .map(|k| self.map.get(k).copied().unwrap_or(default))
            .collect();
        Ok(vec![Tensor::from_storage(
            self.values.dtype(),
            x.shape().to_vec(),
            self.values.storage().gather(&idx)?,
        )?])
    }
}

fn create_label_encoder(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let keys = attr_tensor(node, "keys", "keys_tensor")?
        .ok_or_else(|| Error::invalid("LabelEncoder needs keys"))?;
    let values = attr_tensor(node, "values", "values_tensor")?
        .ok_or_else(|| Error::invalid("LabelEncoder needs values"))?;
    if keys.len() != values.len() {
        return Err(Error::invalid(format!(
            "{} keys but {} values",
            keys.len(),
            values.len()
        )));
    }
    // The default, in the values' type (spec defaults: -1, -0.0, "_Unused").
    let default = match (node.get_tensor("default_tensor")?, values.dtype()) {
        (Some(t), _) => t.as_ref().clone().reshape(vec![1])?,
        (None, DataType::String) => Tensor::from_strings(
            vec![1],
            vec![node.string_or("default_string", "_Unused")?.to_string()],
        )?,
        (None, DataType::I64) => {
            Tensor::from_vec(vec![1], vec![node.int_or("default_int64", -1)?])?
        }
        (None, _) => cast(
            &Tensor::from_vec(vec![1], vec![node.float_or("default_float", -0.0)?])?,
            values.dtype(),
        )?,
    };
    if default.dtype() != values.dtype() {
        return Err(Error::invalid(format!(
            "default of {} for values of {}",
            default.dtype(),
            values.dtype()
        )));
    }
    let mut map = HashMap::new();
    for (i, k) in keys_of(&keys)?.into_iter().enumerate() {
        map.entry(k).or_insert(i);
    }
    let n = values.len();
    let values = Tensor::from_storage(
        values.dtype(),
        vec![n + 1],
        oxrt_core::Storage::concat(&[values.storage(), default.storage()])?,
    )?;
    Ok(Box::new(LabelEncoder { map, values }))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Member,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Aggregate {
    Average,
    Sum,
    Min,
    Max,
}

/// Where a branch leads: another node or a leaf.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Next {
    Node(usize),
    Leaf(usize),
}

struct TreeNode {
    cmp: Cmp,
    split: f64,
    members: Vec<f64>,
    feature: usize,
    missing_true: bool,
    on_true: Next,
    on_false: Next,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum PostTransform {
    None,
    Softmax,
    Logistic,
}

struct TreeEnsemble {
    nodes: Vec<TreeNode>,
    roots: Vec<Next>,
    leaf_weights: Vec<f64>,
    leaf_targets: Vec<usize>,
    targets: usize,
    aggregate: Aggregate,
    post: PostTransform,
}

impl TreeEnsemble {
    /// The leaf a row reaches from `start` (at most one visit per node).
    fn leaf(&self, row: &[f64], start: Next) -> Result<usize> {
        let mut at = start;
        for _ in 0..=self.nodes.len() {
            let i = match at {
                Next::Leaf(l) => return Ok(l),
                Next::Node(i) => i,
            };
            let n = &self.nodes[i];
            let x = *row.get(n.feature).ok_or_else(|| {
                Error::invalid(format!(
                    "feature {} is outside the {} columns",
                    n.feature,
                    row.len()
                ))
            })?;
            let hit = (n.missing_true && x.is_nan())
                || match n.cmp {
                    Cmp::Leq => x <= n.split,
                    Cmp::Lt => x < n.split,
                    Cmp::Gte => x >= n.split,
                    Cmp::Gt => x > n.split,
                    Cmp::Eq => x == n.split,
                    Cmp::Neq => x != n.split,
                    Cmp::Member => n.members.contains(&x),
                };
            at = if hit { n.on_true } else { n.on_false };
        }
        Err(Error::invalid("the tree ensemble has a cycle"))
    }
}

impl Kernel for TreeEnsemble {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let (rows, cols) = match x.shape() {
            [r, c] => (*r, *c),
            [c] => (1, *c),
            other => return Err(Error::invalid(format!("X must be [N, F], got {other:?}"))),
        };
        let xv = numbers(x, "X")?;
        let t = self.targets;
        let init = match self.aggregate {
            Aggregate::Min => f64::from(f32::MAX),
            Aggregate::Max => f64::from(f32::MIN),
            _ => 0.0,
        };
        let mut out = vec![init; rows * t];
        for r in 0..rows {
            let row = &xv[r * cols..(r + 1) * cols];
            for &root in &self.roots {
                let l = self.leaf(row, root)?;
                let (w, target) = (self.leaf_weights[l], self.leaf_targets[l]);
                let slot = &mut out[r * t + target];
                *slot = match self.aggregate {
                    Aggregate::Sum => *slot + w,
                    Aggregate::Average => *slot + w / self.roots.len() as f64,
                    Aggregate::Min => slot.min(w),
                    Aggregate::Max => slot.max(w),
                };
            }
            let o = &mut out[r * t..(r + 1) * t];
            match self.post {
                PostTransform::None => {}
                PostTransform::Logistic => {
                    o.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()))
                }
                PostTransform::Softmax => {
                    let m = o.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    o.iter_mut().for_each(|v| *v = (*v - m).exp());
                    let s: f64 = o.iter().sum();
                    o.iter_mut().for_each(|v| *v /= s);
                }
            }
        }
        Ok(vec![cast(
            &Tensor::from_vec(vec![rows, t], out)?,
            x.dtype(),
        )?])
    }
}

fn tensor_attr(node: &Node, name: &str) -> Result<Option<Vec<f64>>> {
    node.get_tensor(name)?.map(|t| numbers(t, name)).transpose()
}

fn create_tree_ensemble(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let ints = |name: &str| -> Result<Vec<i64>> {
        Ok(node
            .get_ints(name)?
            .ok_or_else(|| Error::invalid(format!("attribute '{name}' is required")))?
            .to_vec())
    };
    let index = |v: i64, len: usize, what: &str| -> Result<usize> {
        usize::try_from(v)
            .ok()
            .filter(|&i| i < len)
            .ok_or_else(|| Error::invalid(format!("{what} {v} is out of range (0..{len})")))
    };
    let required_tensor = |name: &str| {
        tensor_attr(node, name)?
            .ok_or_else(|| Error::invalid(format!("attribute '{name}' is required")))
    };
    let splits = required_tensor("nodes_splits")?;
    let modes = required_tensor("nodes_modes")?;
    let leaf_weights = required_tensor("leaf_weights")?;
    let n = splits.len();
    let (features, true_ids, false_ids) = (
        ints("nodes_featureids")?,
        ints("nodes_truenodeids")?,
        ints("nodes_falsenodeids")?,
    );
    let (true_leafs, false_leafs) = (ints("nodes_trueleafs")?, ints("nodes_falseleafs")?);
    let missing = node
        .get_ints("nodes_missing_value_tracks_true")?
        .unwrap_or(&[]);
    let leaf_count = leaf_weights.len();
    let targets = usize::try_from(node.int_or("n_targets", 0)?)
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(|| Error::invalid("attribute 'n_targets' must be positive"))?;
    let leaf_targets: Vec<usize> = ints("leaf_targetids")?
        .iter()
        .map(|&t| index(t, targets, "leaf target"))
        .collect::<Result<_>>()?;
    for (name, len) in [
        ("modes", modes.len()),
        ("featureids", features.len()),
        ("truenodeids", true_ids.len()),
        ("falsenodeids", false_ids.len()),
        ("trueleafs", true_leafs.len()),
        ("falseleafs", false_leafs.len()),
    ] {
        if len != n {
            return Err(Error::invalid(format!(
                "nodes_{name} has {len} entries for {n} nodes"
            )));
        }
    }
    if leaf_targets.len() != leaf_count {
        return Err(Error::invalid(
            "leaf_targetids and leaf_weights differ in length",
        ));
    }
    let next = |id: i64, leaf: i64| -> Result<Next> {
        Ok(if leaf != 0 {
            Next::Leaf(index(id, leaf_count, "leaf id")?)
        } else {
            Next::Node(index(id, n, "node id")?)
        })
    };
    let mut members = tensor_attr(node, "membership_values")?
        .unwrap_or_default()
        .into_iter();
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let cmp = match modes[i] as i64 {
            0 => Cmp::Leq,
            1 => Cmp::Lt,
            2 => Cmp::Gte,
            3 => Cmp::Gt,
            4 => Cmp::Eq,
            5 => Cmp::Neq,
            6 => Cmp::Member,
            other => return Err(Error::invalid(format!("unknown node mode {other}"))),
        };
        // Each set-membership node takes the values up to the next NaN.
        let set: Vec<f64> = if cmp == Cmp::Member {
            members.by_ref().take_while(|v| !v.is_nan()).collect()
        } else {
            Vec::new()
        };
        nodes.push(TreeNode {
            cmp,
            split: splits[i],
            members: set,
            feature: usize::try_from(features[i])
                .map_err(|_| Error::invalid("negative feature id"))?,
            missing_true: missing.get(i).is_some_and(|&m| m != 0),
            on_true: next(true_ids[i], true_leafs[i])?,
            on_false: next(false_ids[i], false_leafs[i])?,
        });
    }
    let roots = ints("tree_roots")?
        .iter()
        .map(|&r| {
            let r = index(r, n, "tree root")?;
            let t = &nodes[r];
            // A root whose branches both reach the same leaf is that leaf.
            Ok(match (t.on_true, t.on_false) {
                (Next::Leaf(a), Next::Leaf(b)) if a == b => {
                    Next::Leaf(index(r as i64, leaf_count, "leaf id")?)
                }
                _ => Next::Node(r),
            })
        })
        .collect::<Result<_>>()?;
    let aggregate = match node.int_or("aggregate_function", 1)? {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        other => {
            return Err(Error::invalid(format!(
                "unknown aggregate_function {other}"
            )))
        }
    };
    let post = match node.int_or("post_transform", 0)? {
        0 => PostTransform::None,
        1 => PostTransform::Softmax,
        2 => PostTransform::Logistic,
        other => {
            return Err(Error::NotSupported(format!(
                "TreeEnsemble post_transform {other}"
            )))
        }
    };
    Ok(Box::new(TreeEnsemble {
        nodes,
        roots,
        leaf_weights,
        leaf_targets,
        targets,
        aggregate,
        post,
    }))
}

fn ml(op: &'static str, since: i64, factory: oxrt_core::registry::KernelFactory) -> KernelDef {
    let mut def = KernelDef::new(op, since.., &[], factory);
    def.domain = ML;
    def
}

/// Registers the ai.onnx.ml operators.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(ml("Binarizer", 1, create_binarizer));
    reg.add(ml(
        "ArrayFeatureExtractor",
        1,
        create_array_feature_extractor,
    ));
    reg.add(ml("LabelEncoder", 2, create_label_encoder));
    reg.add(ml("TreeEnsemble", 5, create_tree_ensemble));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn label_encoder_maps_with_a_default() {
        let mut map = HashMap::new();
        map.insert(Key::Str("a".into()), 0);
        map.insert(Key::Str("b".into()), 1);
        let k = LabelEncoder {
            map,
            values: Tensor::from_vec(vec![3], vec![10i64, 20, -1]).unwrap(),
        };
        let x = Tensor::from_strings(vec![3], vec!["b".into(), "z".into(), "a".into()]).unwrap();
        let y = k.compute(&[Some(&x)]).unwrap();
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[20, -1, 10]);
    }

    #[test]
    fn one_split_tree() {
        let k = TreeEnsemble {
            nodes: vec![TreeNode {
                cmp: Cmp::Leq,
                split: 0.5,
                members: Vec::new(),
                feature: 0,
                missing_true: true,
                on_true: Next::Leaf(0),
                on_false: Next::Leaf(1),
            }],
            roots: vec![Next::Node(0)],
            leaf_weights: vec![1.0, 2.0],
            leaf_targets: vec![0, 0],
            targets: 1,
            aggregate: Aggregate::Sum,
            post: PostTransform::None,
        };
        let x = Tensor::from_vec(vec![3, 1], vec![0.0f32, 1.0, f32::NAN]).unwrap();
        let y = k.compute(&[Some(&x)]).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1.0, 2.0, 1.0]);
    }
}
