//! String operators: StringConcat (broadcasting), StringSplit (Python
//! `str.split` semantics, padded to the longest split), StringNormalizer
//! (case change, stopwords) and RegexFullMatch (the `regex` crate).

use std::collections::HashSet;

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::broadcast::{broadcast_all, broadcast_index};
use crate::kernel::required;

/// StringConcat: elementwise `a + b` with numpy broadcasting.
struct Concat;

impl Kernel for Concat {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        let shape = broadcast_all(&[a.shape(), b.shape()])?;
        let (sa, sb) = (a.as_strings()?, b.as_strings()?);
        let out = broadcast_index(a.shape(), &shape)
            .into_iter()
            .zip(broadcast_index(b.shape(), &shape))
            .map(|(i, j)| format!("{}{}", sa[i], sb[j]))
            .collect();
        Ok(vec![Tensor::from_strings(shape, out)?])
    }
}

/// Python's `s.split(None, maxsplit)`: runs of whitespace separate, none
/// at the ends; after `maxsplit` splits the rest is one piece.
fn split_whitespace(s: &str, maxsplit: Option<usize>) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if maxsplit.is_some_and(|m| parts.len() == m) {
            parts.push(rest.to_string());
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        parts.push(rest[..end].to_string());
        rest = rest[end..].trim_start();
    }
    parts
}

/// StringSplit: outputs the pieces padded with "" to the longest, and the
/// number of pieces of each element.
struct Split {
    delimiter: Option<String>,
    maxsplit: Option<usize>,
}

impl Kernel for Split {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let pieces: Vec<Vec<String>> = x
            .as_strings()?
            .iter()
            .map(|s| match &self.delimiter {
                None => split_whitespace(s, self.maxsplit),
                Some(d) => match self.maxsplit {
                    Some(m) => s.splitn(m + 1, d.as_str()).map(str::to_string).collect(),
                    None => s.split(d.as_str()).map(str::to_string).collect(),
                },
            })
            .collect();
        let width = pieces.iter().map(Vec::len).max().unwrap_or(0);
        let counts: Vec<i64> = pieces.iter().map(|p| p.len() as i64).collect();
        let mut flat = Vec::with_capacity(pieces.len() * width);
        for mut p in pieces {
            p.resize(width, String::new());
            flat.extend(p);
        }
        let mut shape = x.shape().to_vec();
        shape.push(width);
        Ok(vec![
            Tensor::from_strings(shape, flat)?,
            Tensor::from_vec(x.shape(), counts)?,
        ])
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Lower,
    Upper,
    None,
}

/// StringNormalizer: drops stopwords (case-sensitively or not), changes
/// case; empty results are removed, keeping at least one "".
struct Normalizer {
    case: Case,
    case_sensitive: bool,
    stopwords: HashSet<String>,
}

impl Kernel for Normalizer {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let two_d = match x.shape() {
            [_] => false,
            [1, _] => true,
            other => {
                return Err(Error::invalid(format!(
                    "StringNormalizer takes [C] or [1, C] strings, got shape {other:?}"
                )))
            }
        };
        let is_stop = |w: &str| {
            if self.case_sensitive {
                self.stopwords.contains(w)
            } else {
                let l = w.to_lowercase();
                self.stopwords.iter().any(|s| s.to_lowercase() == l)
            }
        };
        let mut out: Vec<String> = x
            .as_strings()?
            .iter()
            .filter(|w| !is_stop(w))
            .map(|w| match self.case {
                Case::Lower => w.to_lowercase(),
                Case::Upper => w.to_uppercase(),
                Case::None => w.clone(),
            })
            .filter(|w| !w.is_empty())
            .collect();
        if out.is_empty() {
            out.push(String::new());
        }
        let shape = if two_d {
            vec![1, out.len()]
        } else {
            vec![out.len()]
        };
        Ok(vec![Tensor::from_strings(shape, out)?])
    }
}

/// RegexFullMatch: whether each string matches the whole pattern.
struct FullMatch {
    regex: regex::Regex,
}

impl Kernel for FullMatch {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let out: Vec<bool> = x
            .as_strings()?
            .iter()
            .map(|s| self.regex.is_match(s))
            .collect();
        Ok(vec![Tensor::from_vec(x.shape(), out)?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(match node.op_type.as_str() {
        "StringConcat" => Box::new(Concat),
        "StringSplit" => Box::new(Split {
            delimiter: node
                .get_string("delimiter")?
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            maxsplit: node
                .get_int("maxsplit")?
                .and_then(|m| usize::try_from(m).ok()),
        }),
        "StringNormalizer" => Box::new(Normalizer {
            case: match node.string_or("case_change_action", "NONE")? {
                "LOWER" => Case::Lower,
                "UPPER" => Case::Upper,
                "NONE" => Case::None,
                other => {
                    return Err(Error::invalid(format!(
                        "case_change_action must be LOWER, UPPER or NONE, got '{other}'"
                    )))
                }
            },
            case_sensitive: node.int_or("is_case_sensitive", 0)? != 0,
            stopwords: match node.attributes.get("stopwords") {
                Some(oxrt_core::ir::Attribute::Strings(v)) => v
                    .iter()
                    .map(|b| {
                        String::from_utf8(b.clone())
                            .map_err(|_| Error::invalid("a stopword is not UTF-8"))
                    })
                    .collect::<Result<_>>()?,
                _ => HashSet::new(),
            },
        }),
        _ => {
            let pattern = node
                .get_string("pattern")?
                .ok_or_else(|| Error::invalid("attribute 'pattern' is required"))?;
            let regex = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                Error::invalid(format!("pattern '{pattern}' is not a valid regex: {e}"))
            })?;
            Box::new(FullMatch { regex })
        }
    })
}

/// Registers the string operators.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("StringConcat", 20.., &[], create));
    reg.add(KernelDef::new("StringSplit", 20.., &[], create));
    reg.add(KernelDef::new("StringNormalizer", 10.., &[], create));
    reg.add(KernelDef::new("RegexFullMatch", 20.., &[], create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn strings(v: &[&str]) -> Tensor {
        Tensor::from_strings(vec![v.len()], v.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn split_like_python() {
        assert_eq!(split_whitespace("  a  b c ", None), vec!["a", "b", "c"]);
        assert_eq!(split_whitespace("a  b c ", Some(1)), vec!["a", "b c "]);
        assert!(split_whitespace("   ", None).is_empty());
        let k = Split {
            delimiter: Some("-".into()),
            maxsplit: None,
        };
        let out = k.compute(&[Some(&strings(&["a-b", "c--d", ""]))]).unwrap();
        assert_eq!(out[0].shape(), &[3, 3]);
        assert_eq!(
            out[0].as_strings().unwrap(),
            &["a", "b", "", "c", "", "d", "", "", ""]
        );
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[2, 3, 1]);
    }

    #[test]
    fn concat_normalize_and_match() {
        let a = strings(&["x", "y"]);
        let b = Tensor::from_strings(vec![], vec!["!".into()]).unwrap();
        let c = Concat.compute(&[Some(&a), Some(&b)]).unwrap();
        assert_eq!(c[0].as_strings().unwrap(), &["x!", "y!"]);
        let n = Normalizer {
            case: Case::Upper,
            case_sensitive: false,
            stopwords: ["monday".to_string()].into_iter().collect(),
        };
        let out = n
            .compute(&[Some(&strings(&["Monday", "tuesday"]))])
            .unwrap();
        assert_eq!(out[0].as_strings().unwrap(), &["TUESDAY"]);
        let m = FullMatch {
            regex: regex::Regex::new("^(?:[a-z]+@example\\.com)$").unwrap(),
        };
        let out = m
            .compute(&[Some(&strings(&["me@example.com", "me@example.com.evil"]))])
            .unwrap();
        assert_eq!(out[0].as_slice::<bool>().unwrap(), &[true, false]);
    }
}
