//! `oxrt bench`: latency of one model: warm-up runs, then timed runs;
//! median, p90, min and mean, as a table or one JSON object.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use oxrt::{DataType, Dim, Session, Tensor, ValueType};

/// What `oxrt bench` measured.
pub struct Timing {
    /// Wall time of each timed run, in milliseconds.
    pub runs_ms: Vec<f64>,
}

impl Timing {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.runs_ms.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The `q` quantile (0..=1), nearest rank.
    pub fn quantile(&self, q: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn mean(&self) -> f64 {
        self.runs_ms.iter().sum::<f64>() / self.runs_ms.len().max(1) as f64
    }
}

/// A pseudo-random input of the declared type: floats uniform in [-1, 1),
/// integers in [0, 16), booleans alternating. Symbolic dims come from
/// `dims`; an unbound one is an error naming it.
pub fn random_input(
    name: &str,
    ty: &ValueType,
    dims: &HashMap<String, usize>,
    seed: u64,
) -> Result<Tensor> {
    let ValueType::Tensor {
        dtype,
        shape: Some(shape),
    } = ty
    else {
        bail!("input '{name}' is {ty}: pass it with --input NAME=FILE.npy");
    };
    let shape: Vec<usize> = shape
        .iter()
        .map(|d| match d {
            Dim::Known(n) => Ok(*n),
            Dim::Symbolic(s) => dims.get(s).copied().with_context(|| {
                format!("input '{name}' has the symbolic dim '{s}': give its size with --dim {s}=N")
            }),
            Dim::Unknown => bail!("input '{name}' has a dim of unknown size: pass it with --input"),
        })
        .collect::<Result<_>>()?;
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 40) as f64 / (1u64 << 24) as f64
    };
    let t = match dtype {
        DataType::F32 => {
            Tensor::from_vec(shape, (0..n).map(|_| (next() * 2.0 - 1.0) as f32).collect())
        }
        DataType::F64 => Tensor::from_vec(shape, (0..n).map(|_| next() * 2.0 - 1.0).collect()),
        DataType::F16 => Tensor::from_vec(
            shape,
            (0..n)
                .map(|_| oxrt::f16::from_f64(next() * 2.0 - 1.0))
                .collect(),
        ),
        DataType::I64 => Tensor::from_vec(shape, (0..n).map(|_| (next() * 16.0) as i64).collect()),
        DataType::I32 => Tensor::from_vec(shape, (0..n).map(|_| (next() * 16.0) as i32).collect()),
        DataType::Bool => Tensor::from_vec(shape, (0..n).map(|i| i % 2 == 0).collect()),
        other => bail!("input '{name}' is {other}: pass it with --input NAME=FILE.npy"),
    }?;
    Ok(t)
}

/// Runs `session` `warmup` times, then `iterations` timed times, with
/// progress on stderr when `progress`.
pub fn measure(
    session: &Session,
    feeds: &[(String, Tensor)],
    warmup: usize,
    iterations: usize,
    progress: bool,
) -> Result<Timing> {
    for _ in 0..warmup {
        session.run(feeds.to_vec())?;
    }
    let mut runs_ms = Vec::with_capacity(iterations);
    let step = (iterations / 10).max(1);
    for i in 0..iterations {
        let feeds = feeds.to_vec();
        let t0 = Instant::now();
        let out = session.run(feeds)?;
        runs_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        drop(out);
        if progress && (i + 1) % step == 0 {
            eprint!("\r{}/{iterations} runs", i + 1);
        }
    }
    if progress {
        eprintln!();
    }
    Ok(Timing { runs_ms })
}

/// Options of `oxrt bench`.
pub struct BenchArgs<'a> {
    pub model: &'a Path,
    pub inputs: &'a [(String, Tensor)],
    pub dims: &'a HashMap<String, usize>,
    pub iterations: usize,
    pub warmup: usize,
    pub json: bool,
}

/// `oxrt bench`.
pub fn bench(session: &Session, args: &BenchArgs<'_>) -> Result<()> {
    let mut feeds: Vec<(String, Tensor)> = Vec::new();
    for (i, v) in session.inputs().iter().enumerate() {
        match args.inputs.iter().find(|(n, _)| *n == v.name) {
            Some((_, t)) => feeds.push((v.name.clone(), t.clone())),
            None => feeds.push((
                v.name.clone(),
                random_input(&v.name, &v.ty, args.dims, i as u64)?,
            )),
        }
    }
    if let Some((n, _)) = args
        .inputs
        .iter()
        .find(|(n, _)| !session.inputs().iter().any(|v| v.name == *n))
    {
        bail!("--input '{n}': the model has no such input");
    }
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let t = measure(session, &feeds, args.warmup, args.iterations, !args.json)?;
    let (median, p90, min, mean) = (t.median(), t.quantile(0.9), t.min(), t.mean());
    if args.json {
        let v = serde_json::json!({
            "model": args.model.display().to_string(),
            "median_ms": median,
            "p90_ms": p90,
            "min_ms": min,
            "mean_ms": mean,
            "throughput_per_s": 1e3 / median,
            "iterations": args.iterations,
            "warmup": args.warmup,
            "threads": session.intra_threads(),
            "optimization_level": session.optimization_level().to_string(),
            "providers": session.providers(),
        });
        println!("{v}");
    } else {
        println!(
            "{}: {} timed runs after {} warm-up, {} intra-op threads, level {}",
            args.model.display(),
            args.iterations,
            args.warmup,
            session.intra_threads(),
            session.optimization_level()
        );
        println!("  median {median:.3} ms   p90 {p90:.3} ms   min {min:.3} ms   mean {mean:.3} ms");
        println!("  throughput {:.1} runs/s", 1e3 / median);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn statistics_of_known_runs() {
        let t = Timing {
            runs_ms: vec![5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 6.0, 7.0, 8.0, 9.0],
        };
        assert_eq!(t.median(), 5.5);
        assert_eq!(t.quantile(0.9), 9.0);
        assert_eq!(t.min(), 1.0);
        assert_eq!(t.mean(), 5.5);
    }

    #[test]
    fn random_inputs_follow_the_declared_type() {
        let ty = ValueType::Tensor {
            dtype: DataType::I64,
            shape: Some(vec![Dim::Symbolic("batch".into()), Dim::Known(3)]),
        };
        let dims = HashMap::from([("batch".to_string(), 2)]);
        let t = random_input("ids", &ty, &dims, 0).unwrap();
        assert_eq!(t.shape(), [2, 3]);
        assert!(t
            .as_slice::<i64>()
            .unwrap()
            .iter()
            .all(|v| (0..16).contains(v)));
        let err = random_input("ids", &ty, &HashMap::new(), 0).unwrap_err();
        assert!(err.to_string().contains("--dim batch=N"), "{err}");
    }
}
