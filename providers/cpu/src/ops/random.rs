//! Random generators: RandomUniform, RandomNormal (and their `Like`
//! forms), Bernoulli and Multinomial, plus the mask stream Dropout uses in
//! training mode.
//!
//! The generator is MT19937 seeded as numpy's `RandomState(seed)`, with
//! numpy's 53-bit doubles, polar Gaussian and binomial inversion, so a
//! seeded node reproduces the ONNX reference implementation exactly. Without
//! a seed, each run draws a fresh seed from the operating system's entropy
//! (through std's randomized hashing).

use std::hash::{BuildHasher, Hasher};

use oxrt_core::{
    DataType, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::kernel::{ensure_allocatable, required};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;

const N: usize = 624;
const M: usize = 397;

/// The Mersenne Twister MT19937 with numpy's legacy draws.
pub struct Mt19937 {
    state: [u32; N],
    pos: usize,
    /// The second value of the last polar Gaussian pair.
    gauss: Option<f64>,
}

impl Mt19937 {
    /// Seeded like `numpy.random.RandomState(seed)` (`init_genrand`).
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self {
            state,
            pos: N,
            gauss: None,
        }
    }

    /// A generator for an optional `seed` attribute: fixed when given,
    /// fresh entropy otherwise.
    pub fn from_seed(seed: Option<u32>) -> Self {
        Self::new(seed.unwrap_or_else(|| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x6f78_7274);
            h.finish() as u32
        }))
    }

    fn generate(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % N] & 0x7fff_ffff);
            let mut v = self.state[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.pos = 0;
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.generate();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A uniform double in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// A standard normal value (polar method, pairs cached).
    pub fn gaussian(&mut self) -> f64 {
        if let Some(g) = self.gauss.take() {
            return g;
        }
        loop {
            let x1 = 2.0 * self.next_f64() - 1.0;
            let x2 = 2.0 * self.next_f64() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.gauss = Some(f * x1);
                return f * x2;
            }
        }
    }

    /// One Bernoulli trial with probability `p` (numpy's binomial with
    /// n = 1: inversion on the smaller of p and 1 - p; p = 0 draws nothing).
    pub fn bernoulli(&mut self, p: f64) -> bool {
        if p == 0.0 {
            return false;
        }
        if p <= 0.5 {
            self.next_f64() > 1.0 - p
        } else {
            self.next_f64() <= p
        }
    }
}

/// The `seed` attribute as numpy takes it (`int(seed)` in `[0, 2^32)`).
fn seed_attr(node: &Node) -> Result<Option<u32>> {
    node.get_float("seed")?
        .map(|s| {
            let v = s.trunc();
            if (0.0..4_294_967_296.0).contains(&v) {
                Ok(v as u32)
            } else {
                Err(Error::invalid(format!("seed {s} must be in [0, 2^32)")))
            }
        })
        .transpose()
}

fn dtype_attr(node: &Node, default: DataType) -> Result<DataType> {
    match node.get_int("dtype")? {
        None => Ok(default),
        Some(code) => i32::try_from(code)
            .ok()
            .and_then(DataType::from_onnx)
            .ok_or_else(|| Error::invalid(format!("dtype {code} is not an ONNX element type"))),
    }
}

#[derive(Clone, Copy, Debug)]
enum Distribution {
    Uniform { low: f64, high: f64 },
    Normal { mean: f64, scale: f64 },
}

/// RandomUniform/RandomNormal (`shape` attribute) and their `Like` forms
/// (the input's shape, and its dtype unless `dtype` is given).
struct Random {
    dist: Distribution,
    seed: Option<u32>,
    dtype: Option<DataType>,
    shape: Option<Vec<usize>>,
}

impl Kernel for Random {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (shape, dtype) = match &self.shape {
            Some(s) => (s.clone(), self.dtype.unwrap_or(DataType::F32)),
            None => {
                let like = required(inputs, 0)?;
                (like.shape().to_vec(), self.dtype.unwrap_or(like.dtype()))
            }
        };
        if !dtype.is_float() {
            return Err(Error::invalid(format!(
                "random values of {dtype}: a float type is needed"
            )));
        }
        ensure_allocatable(&shape, "random output")?;
        let n: usize = shape.iter().product();
        let mut rng = Mt19937::from_seed(self.seed);
        // Drawn in f64, rounded to the output type, then scaled there (as
        // the reference does).
        let base: Vec<f64> = (0..n)
            .map(|_| match self.dist {
                Distribution::Uniform { .. } => rng.next_f64(),
                Distribution::Normal { .. } => rng.gaussian(),
            })
            .collect();
        let rounded = cast(&Tensor::from_vec(shape.clone(), base)?, dtype)?;
        let (mul, add) = match self.dist {
            Distribution::Uniform { low, high } => (high - low, low),
            Distribution::Normal { mean, scale } => (scale, mean),
        };
        let vals: Vec<f64> = rounded
            .to_f64_vec()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v * mul + add)
            .collect();
        Ok(vec![cast(&Tensor::from_vec(shape, vals)?, dtype)?])
    }
}

fn create_random(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let f = |name: &str, d: f32| -> Result<f64> { Ok(f64::from(node.float_or(name, d)?)) };
    let dist = if node.op_type.starts_with("RandomUniform") {
        Distribution::Uniform {
            low: f("low", 0.0)?,
            high: f("high", 1.0)?,
        }
    } else {
        Distribution::Normal {
            mean: f("mean", 0.0)?,
            scale: f("scale", 1.0)?,
        }
    };
    let like = node.op_type.ends_with("Like");
    let shape = if like {
        None
    } else {
        let s = node
            .get_ints("shape")?
            .ok_or_else(|| Error::invalid("attribute 'shape' is required"))?;
        Some(
            s.iter()
                .map(|&d| {
                    usize::try_from(d)
                        .map_err(|_| Error::invalid(format!("shape {s:?} has a negative size")))
                })
                .collect::<Result<Vec<_>>>()?,
        )
    };
    let dtype = if like {
        node.get_int("dtype")?
            .map(|_| dtype_attr(node, DataType::F32))
            .transpose()?
    } else {
        Some(dtype_attr(node, DataType::F32)?)
    };
    Ok(Box::new(Random {
        dist,
        seed: seed_attr(node)?,
        dtype,
        shape,
    }))
}

/// Bernoulli: 1 with the input's probability, per element.
struct Bernoulli {
    seed: Option<u32>,
    dtype: Option<DataType>,
}

impl Kernel for Bernoulli {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let p = x.to_f64_vec().ok_or_else(|| {
            Error::invalid(format!("probabilities must be float, got {}", x.dtype()))
        })?;
        if let Some(bad) = p.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(Error::invalid(format!(
                "probability {bad} is outside [0, 1]"
            )));
        }
        let mut rng = Mt19937::from_seed(self.seed);
        let draws: Vec<f64> = p
            .iter()
            .map(|&q| f64::from(u8::from(rng.bernoulli(q))))
            .collect();
        Ok(vec![cast(
            &Tensor::from_vec(x.shape(), draws)?,
            self.dtype.unwrap_or(x.dtype()),
        )?])
    }
}

fn create_bernoulli(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Bernoulli {
        seed: seed_attr(node)?,
        dtype: node
            .get_int("dtype")?
            .map(|_| dtype_attr(node, DataType::F32))
            .transpose()?,
    }))
}

/// Multinomial: `sample_size` class indices per batch row, drawn from the
/// softmax of the row's unnormalized log-probabilities.
struct Multinomial {
    seed: Option<u32>,
    samples: usize,
    dtype: DataType,
}

impl Kernel for Multinomial {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let [batch, classes] = x.shape()[..] else {
            return Err(Error::invalid(format!(
                "input must be [batch, classes], got {:?}",
                x.shape()
            )));
        };
        if classes == 0 {
            return Err(Error::invalid("Multinomial needs at least one class"));
        }
        let logits = x
            .to_f64_vec()
            .ok_or_else(|| Error::invalid("input must be float"))?;
        ensure_allocatable(&[batch, self.samples], "Multinomial output")?;
        let mut rng = Mt19937::from_seed(self.seed);
        let mut out = Vec::with_capacity(batch * self.samples);
        for row in logits.chunks(classes) {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut cdf: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
            for i in 1..classes {
                cdf[i] += cdf[i - 1];
            }
            let total = cdf[classes - 1];
            for _ in 0..self.samples {
                let u = rng.next_f64() * total;
                out.push(cdf.iter().position(|&c| u < c).unwrap_or(classes - 1) as f64);
            }
        }
        Ok(vec![cast(
            &Tensor::from_vec(vec![batch, self.samples], out)?,
            self.dtype,
        )?])
    }
}

fn create_multinomial(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let dtype = dtype_attr(node, DataType::I32)?;
    if !matches!(dtype, DataType::I32 | DataType::I64) {
        return Err(Error::invalid(format!(
            "Multinomial dtype must be int32 or int64, got {dtype}"
        )));
    }
    let samples = usize::try_from(node.int_or("sample_size", 1)?)
        .map_err(|_| Error::invalid("sample_size must not be negative"))?;
    Ok(Box::new(Multinomial {
        seed: seed_attr(node)?,
        samples,
        dtype,
    }))
}

/// The keep-mask of training-mode Dropout: `uniform >= ratio` per element.
pub fn dropout_mask(len: usize, ratio: f64, seed: Option<u32>) -> Vec<bool> {
    let mut rng = Mt19937::from_seed(seed);
    (0..len).map(|_| rng.next_f64() >= ratio).collect()
}

/// Reads a `seed` attribute for Dropout.
pub fn dropout_seed(node: &Node) -> Result<Option<u32>> {
    match node.get_int("seed")? {
        Some(s) => u32::try_from(s)
            .map(Some)
            .map_err(|_| Error::invalid(format!("seed {s} must be in [0, 2^32)"))),
        None => Ok(None),
    }
}

/// Registers the random generators.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("RandomUniform", 1.., &[], create_random));
    reg.add(KernelDef::new("RandomNormal", 1.., &[], create_random));
    reg.add(KernelDef::new("RandomUniformLike", 1.., &[], create_random));
    reg.add(KernelDef::new("RandomNormalLike", 1.., &[], create_random));
    reg.add(KernelDef::new("Bernoulli", 15.., FLOATS, create_bernoulli));
    reg.add(KernelDef::new(
        "Multinomial",
        7..,
        FLOATS,
        create_multinomial,
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The first outputs of `numpy.random.RandomState(0)`.
    #[test]
    fn matches_numpy_random_state() {
        let mut r = Mt19937::new(0);
        assert_eq!(r.next_u32(), 2_357_136_044);
        let mut r = Mt19937::new(0);
        let u: Vec<f64> = (0..3).map(|_| r.next_f64()).collect();
        let want = [
            0.548_813_503_927_324_9,
            0.715_189_366_372_419_5,
            0.602_763_376_071_644_3,
        ];
        for (a, b) in u.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{u:?}");
        }
        let mut r = Mt19937::new(0);
        assert!((r.gaussian() - 1.764_052_345_967_664).abs() < 1e-12);
    }

    #[test]
    fn seeded_nodes_repeat_and_shapes_hold() {
        let k = Random {
            dist: Distribution::Normal {
                mean: 1.0,
                scale: 2.0,
            },
            seed: Some(7),
            dtype: Some(DataType::F64),
            shape: Some(vec![2, 3]),
        };
        let a = k.compute(&[]).unwrap().remove(0);
        assert_eq!((a.shape(), a.dtype()), (&[2usize, 3][..], DataType::F64));
        assert_eq!(a, k.compute(&[]).unwrap().remove(0));
        let m = Multinomial {
            seed: Some(1),
            samples: 4,
            dtype: DataType::I64,
        };
        // One class holds all the probability mass.
        let x = Tensor::from_vec(vec![1, 3], vec![-1e9f32, 0.0, -1e9]).unwrap();
        let y = m.compute(&[Some(&x)]).unwrap().remove(0);
        assert_eq!(y.as_slice::<i64>().unwrap(), &[1, 1, 1, 1]);
        let b = Bernoulli {
            seed: None,
            dtype: None,
        };
        let p = Tensor::from_vec(vec![2], vec![0.0f32, 1.0]).unwrap();
        assert_eq!(
            b.compute(&[Some(&p)]).unwrap()[0]
                .as_slice::<f32>()
                .unwrap(),
            &[0.0, 1.0]
        );
        let bad = Tensor::from_vec(vec![1], vec![1.5f32]).unwrap();
        assert!(b.compute(&[Some(&bad)]).is_err());
    }
}
