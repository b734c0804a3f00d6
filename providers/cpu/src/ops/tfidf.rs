//! TfIdfVectorizer: counts the pool's n-grams (of `min_gram_length` to
//! `max_gram_length` items, with up to `max_skip_count` skipped items
//! between them) in each row of int or string tokens, weighted as TF, IDF
//! or TF-IDF.

use std::collections::{HashMap, HashSet};

use oxrt_core::{
    DataType, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::kernel::{ensure_allocatable, read_ints, required};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Token {
    Int(i64),
    Str(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Weighting {
    Tf,
    Idf,
    TfIdf,
}

struct TfIdf {
    /// Output column of each pool n-gram in range.
    grams: HashMap<Vec<Token>, usize>,
    /// Every prefix of those n-grams (the walk stops outside them).
    prefixes: HashSet<Vec<Token>>,
    min_len: usize,
    max_len: usize,
    max_skip: usize,
    columns: usize,
    weighting: Weighting,
    weights: Vec<f32>,
}

fn tokens(t: &Tensor) -> Result<Vec<Token>> {
    if let Ok(s) = t.as_strings() {
        return Ok(s.iter().cloned().map(Token::Str).collect());
    }
    Ok(read_ints(t, "X")?.into_iter().map(Token::Int).collect())
}

impl TfIdf {
    /// Adds the counts of one row to `counts`.
    fn count_row(&self, row: &[Token], counts: &mut [f32]) {
        let mut start_len = self.min_len;
        for skip in 1..=self.max_skip + 1 {
            for start in 0..row.len() {
                if start + skip * (start_len - 1) >= row.len() {
                    break;
                }
                let mut gram: Vec<Token> = Vec::with_capacity(self.max_len);
                let mut at = start;
                while gram.len() < self.max_len && at < row.len() {
                    gram.push(row[at].clone());
                    if !self.prefixes.contains(&gram) {
                        break;
                    }
                    if gram.len() >= start_len {
                        if let Some(&col) = self.grams.get(&gram) {
                            counts[col] += 1.0;
                        }
                    }
                    at += skip;
                }
            }
            // Unigrams are counted once, not once per skip distance.
            if start_len == 1 {
                start_len = 2;
                if start_len > self.max_len {
                    break;
                }
            }
        }
    }

    fn weigh(&self, counts: &mut [f32]) {
        for (i, c) in counts.iter_mut().enumerate() {
            let w = self.weights.get(i % self.columns.max(1)).copied();
            *c = match (self.weighting, w) {
                (Weighting::Tf, _) => *c,
                (Weighting::Idf, Some(w)) => {
                    if *c > 0.0 {
                        w
                    } else {
                        0.0
                    }
                }
                (Weighting::Idf, None) => {
                    if *c > 0.0 {
                        1.0
                    } else {
                        0.0
                    }
                }
                (Weighting::TfIdf, Some(w)) => w * *c,
                (Weighting::TfIdf, None) => *c,
            };
        }
    }
}

impl Kernel for TfIdf {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let toks = tokens(x)?;
        let (rows, width, shape) = match x.shape() {
            [c] => (1, *c, vec![self.columns]),
            [b, c] => (*b, *c, vec![*b, self.columns]),
            other => {
                return Err(Error::invalid(format!(
                    "X must be [C] or [B, C], got {other:?}"
                )))
            }
        };
        ensure_allocatable(&shape, "TfIdfVectorizer output")?;
        let mut out = vec![0.0f32; rows * self.columns];
        for r in 0..rows {
            self.count_row(
                &toks[r * width..(r + 1) * width],
                &mut out[r * self.columns..(r + 1) * self.columns],
            );
        }
        self.weigh(&mut out);
        Ok(vec![Tensor::from_vec(shape, out)?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let count = |name: &str| -> Result<usize> {
        let v = node
            .get_int(name)?
            .ok_or_else(|| Error::invalid(format!("attribute '{name}' is required")))?;
        usize::try_from(v).map_err(|_| Error::invalid(format!("{name} {v} must not be negative")))
    };
    let (min_len, max_len, max_skip) = (
        count("min_gram_length")?,
        count("max_gram_length")?,
        count("max_skip_count")?,
    );
    if min_len == 0 || min_len > max_len {
        return Err(Error::invalid(format!(
            "gram lengths {min_len}..={max_len} must be a non-empty range of positive lengths"
        )));
    }
    let weighting = match node.string_or("mode", "")? {
        "TF" => Weighting::Tf,
        "IDF" => Weighting::Idf,
        "TFIDF" => Weighting::TfIdf,
        other => {
            return Err(Error::invalid(format!(
                "mode must be TF, IDF or TFIDF, got '{other}'"
            )))
        }
    };
    let pool: Vec<Token> = match (
        node.get_ints("pool_int64s")?,
        node.attributes.get("pool_strings"),
    ) {
        (Some(v), _) => v.iter().map(|&i| Token::Int(i)).collect(),
        (None, Some(oxrt_core::ir::Attribute::Strings(s))) => s
            .iter()
            .map(|b| Token::Str(String::from_utf8_lossy(b).into_owned()))
            .collect(),
        _ => return Err(Error::invalid("pool_int64s or pool_strings is required")),
    };
    let starts = node.get_ints("ngram_counts")?.unwrap_or(&[]).to_vec();
    let indexes = node.get_ints("ngram_indexes")?.unwrap_or(&[]).to_vec();
    let columns = indexes
        .iter()
        .copied()
        .max()
        .and_then(|m| usize::try_from(m + 1).ok())
        .ok_or_else(|| Error::invalid("ngram_indexes must list non-negative columns"))?;
    let mut grams = HashMap::new();
    let mut prefixes = HashSet::new();
    // N-gram ids run over every size in pool order; sizes out of range
    // keep their ids but are not counted.
    let mut id = 0usize;
    for (i, &s) in starts.iter().enumerate() {
        let size = i + 1;
        let begin = usize::try_from(s).map_err(|_| Error::invalid("negative ngram_counts"))?;
        let end = starts.get(i + 1).map_or(Ok(pool.len()), |&e| {
            usize::try_from(e).map_err(|_| Error::invalid("negative ngram_counts"))
        })?;
        if begin > end || end > pool.len() {
            return Err(Error::invalid(format!(
                "ngram_counts {starts:?} do not fit a pool of {}",
                pool.len()
            )));
        }
        for gram in pool[begin..end].chunks_exact(size) {
            if (min_len..=max_len).contains(&size) {
                let col = indexes
                    .get(id)
                    .and_then(|&c| usize::try_from(c).ok())
                    .ok_or_else(|| {
                        Error::invalid(format!("n-gram #{id} has no valid ngram_indexes entry"))
                    })?;
                for k in 1..=size {
                    prefixes.insert(gram[..k].to_vec());
                }
                grams.insert(gram.to_vec(), col);
            }
            id += 1;
        }
    }
    let weights = node.get_floats("weights")?.unwrap_or(&[]).to_vec();
    Ok(Box::new(TfIdf {
        grams,
        prefixes,
        min_len,
        max_len,
        max_skip,
        columns,
        weighting,
        weights,
    }))
}

/// Registers TfIdfVectorizer.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new(
        "TfIdfVectorizer",
        9..,
        &[DataType::String, DataType::I32, DataType::I64],
        create,
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_unigrams_and_skip_bigrams() {
        let t = |v: &[i64]| v.iter().map(|&i| Token::Int(i)).collect::<Vec<_>>();
        let mut grams = HashMap::new();
        grams.insert(t(&[1]), 0);
        grams.insert(t(&[1, 2]), 1);
        let prefixes: HashSet<Vec<Token>> = [t(&[1]), t(&[1, 2])].into_iter().collect();
        let k = TfIdf {
            grams,
            prefixes,
            min_len: 1,
            max_len: 2,
            max_skip: 1,
            columns: 2,
            weighting: Weighting::Tf,
            weights: Vec::new(),
        };
        let x = Tensor::from_vec(vec![4], vec![1i64, 2, 1, 3]).unwrap();
        let y = k.compute(&[Some(&x)]).unwrap();
        // "1" twice; "1 2" adjacent once, and "1 _ 1"/"1 _ 3" are not bigrams of the pool.
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[2.0, 1.0]);
    }
}
