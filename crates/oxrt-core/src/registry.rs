//! `KernelRegistry`: kernels keyed by domain, op type, opset range and
//! element type, so each node gets the implementation of its opset version.

use std::collections::HashMap;
use std::ops::{Bound, RangeBounds};

use crate::dtype::DataType;
use crate::error::Result;
use crate::ir::Node;
use crate::provider::{Kernel, KernelInfo, NodeContext};

/// Creates a kernel for a node.
pub type KernelFactory = fn(&Node, &KernelInfo<'_>) -> Result<Box<dyn Kernel>>;

/// One registered kernel.
#[derive(Clone)]
pub struct KernelDef {
    /// Operator domain (`""` for ONNX).
    pub domain: &'static str,
    pub op: &'static str,
    /// First opset version served.
    pub since: i64,
    /// Last opset version served (inclusive), `None` for "up to the newest".
    pub until: Option<i64>,
    /// Element types accepted for the type-defining input (empty: any).
    pub types: &'static [DataType],
    /// The input whose element type is checked against `types`.
    pub type_input: usize,
    pub factory: KernelFactory,
}

impl KernelDef {
    /// A kernel for `op` in the ONNX domain over an opset range, checking input 0's type.
    pub fn new(
        op: &'static str,
        opsets: impl RangeBounds<i64>,
        types: &'static [DataType],
        factory: KernelFactory,
    ) -> Self {
        let since = match opsets.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 1,
        };
        let until = match opsets.end_bound() {
            Bound::Included(&e) => Some(e),
            Bound::Excluded(&e) => Some(e - 1),
            Bound::Unbounded => None,
        };
        Self {
            domain: "",
            op,
            since,
            until,
            types,
            type_input: 0,
            factory,
        }
    }

    /// Checks the element type of input `i` instead of input 0.
    pub fn type_input(mut self, i: usize) -> Self {
        self.type_input = i;
        self
    }

    fn covers(&self, opset: i64) -> bool {
        opset >= self.since && self.until.is_none_or(|u| opset <= u)
    }
}

/// Kernels of one provider.
#[derive(Clone, Default)]
pub struct KernelRegistry {
    kernels: HashMap<(String, String), Vec<KernelDef>>,
}

impl KernelRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kernel.
    pub fn add(&mut self, def: KernelDef) {
        self.kernels
            .entry((def.domain.to_string(), def.op.to_string()))
            .or_default()
            .push(def);
    }

    /// Number of distinct (domain, op) pairs.
    pub fn op_count(&self) -> usize {
        self.kernels.len()
    }

    /// Sorted `(domain, op)` names of the registered operators.
    pub fn ops(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.kernels.keys().cloned().collect();
        v.sort();
        v
    }

    /// Finds the kernel for `node` at the context's opset and input type.
    pub fn lookup(&self, node: &Node, ctx: &NodeContext<'_>) -> Result<&KernelDef, String> {
        let key = (node.domain.clone(), node.op_type.clone());
        let Some(defs) = self.kernels.get(&key) else {
            return Err("no kernel is registered for this operator".into());
        };
        let at_opset: Vec<&KernelDef> = defs.iter().filter(|d| d.covers(ctx.opset)).collect();
        if at_opset.is_empty() {
            let ranges: Vec<String> = defs
                .iter()
                .map(|d| match d.until {
                    Some(u) => format!("{}..={u}", d.since),
                    None => format!("{}+", d.since),
                })
                .collect();
            return Err(format!(
                "opset {} is not covered (implemented for opsets {})",
                ctx.opset,
                ranges.join(", ")
            ));
        }
        for d in &at_opset {
            match ctx.input_dtype(d.type_input) {
                Some(t) if !d.types.is_empty() && !d.types.contains(&t) => continue,
                _ => return Ok(d),
            }
        }
        let t = at_opset
            .first()
            .and_then(|d| ctx.input_dtype(d.type_input))
            .map_or_else(|| "?".to_string(), |t| t.to_string());
        Err(format!("element type {t} is not implemented"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::*;
    use crate::ir::ValueType;
    use crate::tensor::Tensor;

    struct Nop;
    impl Kernel for Nop {
        fn compute(&self, _: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
            Ok(vec![])
        }
    }
    fn make(_: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
        Ok(Box::new(Nop))
    }

    fn relu() -> Node {
        Node {
            name: "r".into(),
            op_type: "Relu".into(),
            domain: String::new(),
            inputs: vec!["x".into()],
            outputs: vec!["y".into()],
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn lookup_respects_opset_range_and_type() {
        let mut reg = KernelRegistry::new();
        reg.add(KernelDef::new("Relu", 6..=13, &[DataType::F32], make));
        let f32_t = ValueType::tensor(DataType::F32, &[1]);
        let i8_t = ValueType::tensor(DataType::I8, &[1]);
        let ctx = |opset, t| NodeContext {
            opset,
            input_types: vec![Some(t)],
        };
        assert!(reg.lookup(&relu(), &ctx(13, &f32_t)).is_ok());
        let err = reg.lookup(&relu(), &ctx(14, &f32_t)).err().unwrap();
        assert_eq!(
            err,
            "opset 14 is not covered (implemented for opsets 6..=13)"
        );
        let err = reg.lookup(&relu(), &ctx(13, &i8_t)).err().unwrap();
        assert_eq!(err, "element type int8 is not implemented");
        let mut other = relu();
        other.op_type = "Nope".into();
        assert!(reg.lookup(&other, &ctx(13, &f32_t)).is_err());
    }
}
