//! Constant: every attribute form (value, value_float(s), value_int(s),
//! value_string(s)).

use oxrt_core::ir::Attribute;
use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

struct Constant(Tensor);

impl Kernel for Constant {
    fn compute(&self, _: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![self.0.clone()])
    }
}

fn strings(v: &[Vec<u8>]) -> Result<Vec<String>> {
    v.iter()
        .map(|s| {
            String::from_utf8(s.clone())
                .map_err(|_| Error::invalid("string value is not valid UTF-8"))
        })
        .collect()
}

fn value(node: &Node) -> Result<Tensor> {
    if node.attributes.len() != 1 {
        return Err(Error::invalid(format!(
            "Constant needs exactly one value attribute, got {}",
            node.attributes.len()
        )));
    }
    let Some((name, attr)) = node.attributes.iter().next() else {
        return Err(Error::invalid("Constant has no value attribute"));
    };
    match (name.as_str(), attr) {
        ("value", Attribute::Tensor(t)) => Ok(t.as_ref().clone()),
        ("value_float", Attribute::Float(v)) => Ok(Tensor::scalar(*v)),
        ("value_int", Attribute::Int(v)) => Ok(Tensor::scalar(*v)),
        ("value_floats", Attribute::Floats(v)) => Tensor::from_vec(vec![v.len()], v.clone()),
        ("value_ints", Attribute::Ints(v)) => Tensor::from_vec(vec![v.len()], v.clone()),
        ("value_string", Attribute::String(v)) => {
            Tensor::from_strings(vec![], strings(std::slice::from_ref(v))?)
        }
        ("value_strings", Attribute::Strings(v)) => {
            Tensor::from_strings(vec![v.len()], strings(v)?)
        }
        ("sparse_value", _) => Err(Error::NotSupported("Constant with sparse_value".into())),
        (name, attr) => Err(Error::invalid(format!(
            "attribute '{name}' of kind {} is not a Constant value",
            attr.kind()
        ))),
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Constant(value(node)?)))
}

/// Registers Constant.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Constant", 1.., &[], create));
}
