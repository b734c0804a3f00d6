//! Operators that replicate or rearrange elements: Expand, Tile,
//! DepthToSpace, SpaceToDepth and ReverseSequence.

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::broadcast::{broadcast_all, broadcast_index, select_index};
use crate::kernel::{ensure_allocatable, read_ints, required, take};
use crate::ops::layout::transpose;

fn dims(values: &[i64], what: &str) -> Result<Vec<usize>> {
    values
        .iter()
        .map(|&v| {
            usize::try_from(v)
                .map_err(|_| Error::invalid(format!("{what} has a negative value {v}")))
        })
        .collect()
}

/// Expand: broadcast the input to a shape (numpy rules, both ways).
struct Expand;

impl Kernel for Expand {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let target = dims(&read_ints(required(inputs, 1)?, "shape")?, "shape")?;
        let shape = broadcast_all(&[x.shape(), &target])?;
        ensure_allocatable(&shape, "Expand output")?;
        let idx = broadcast_index(x.shape(), &shape);
        Ok(vec![take(x, shape, &idx)?])
    }
}

/// Tile: repeat the input `repeats[d]` times along each axis.
struct Tile;

impl Kernel for Tile {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let repeats = dims(&read_ints(required(inputs, 1)?, "repeats")?, "repeats")?;
        if repeats.len() != x.rank() {
            return Err(Error::invalid(format!(
                "Tile needs one repeat per axis: {} repeats for rank {}",
                repeats.len(),
                x.rank()
            )));
        }
        let out: Vec<usize> = x
            .shape()
            .iter()
            .zip(&repeats)
            .map(|(&d, &r)| d.saturating_mul(r))
            .collect();
        ensure_allocatable(&out, "Tile output")?;
        let sel: Vec<Vec<usize>> = x
            .shape()
            .iter()
            .zip(&repeats)
            .map(|(&d, &r)| (0..r).flat_map(|_| 0..d).collect())
            .collect();
        let shape: Vec<usize> = sel.iter().map(Vec::len).collect();
        let idx = select_index(x.shape(), &sel);
        Ok(vec![take(x, shape, &idx)?])
    }
}

/// DepthToSpace (DCR or CRD order) and SpaceToDepth on NCHW tensors.
struct BlockMove {
    block: usize,
    to_space: bool,
    crd: bool,
}

impl Kernel for BlockMove {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let &[n, c, h, w] = x.shape() else {
            return Err(Error::invalid(format!(
                "expected a 4-D NCHW input, got shape {:?}",
                x.shape()
            )));
        };
        let b = self.block;
        let y = if self.to_space {
            if c % (b * b) != 0 {
                return Err(Error::invalid(format!(
                    "{c} channels do not divide by blocksize² = {}",
                    b * b
                )));
            }
            let oc = c / (b * b);
            let (split, perm) = if self.crd {
                (vec![n, oc, b, b, h, w], [0, 1, 4, 2, 5, 3])
            } else {
                (vec![n, b, b, oc, h, w], [0, 3, 4, 1, 5, 2])
            };
            transpose(&x.clone().reshape(split)?, &perm)?.reshape(vec![n, oc, h * b, w * b])?
        } else {
            if h % b != 0 || w % b != 0 {
                return Err(Error::invalid(format!(
                    "spatial size {h}x{w} does not divide by blocksize {b}"
                )));
            }
            let split = vec![n, c, h / b, b, w / b, b];
            transpose(&x.clone().reshape(split)?, &[0, 3, 5, 1, 2, 4])?.reshape(vec![
                n,
                c * b * b,
                h / b,
                w / b,
            ])?
        };
        Ok(vec![y])
    }
}

/// ReverseSequence: the first `sequence_lens[b]` steps of each batch entry
/// reversed along the time axis, the rest unchanged.
struct ReverseSequence {
    time_axis: usize,
    batch_axis: usize,
}

impl Kernel for ReverseSequence {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let lens = read_ints(required(inputs, 1)?, "sequence_lens")?;
        let s = x.shape();
        let (t_ax, b_ax) = (self.time_axis, self.batch_axis);
        if s.len() < 2 || t_ax >= s.len() || b_ax >= s.len() || lens.len() != s[b_ax] {
            return Err(Error::invalid(format!(
                "ReverseSequence: input {s:?}, time axis {t_ax}, batch axis {b_ax}, {} lengths",
                lens.len()
            )));
        }
        let st = crate::broadcast::strides(s);
        let idx: Vec<usize> = (0..x.len())
            .map(|i| {
                let (b, t) = ((i / st[b_ax]) % s[b_ax], (i / st[t_ax]) % s[t_ax]);
                let len = usize::try_from(lens[b]).unwrap_or(0).min(s[t_ax]);
                if t < len {
                    i - t * st[t_ax] + (len - 1 - t) * st[t_ax]
                } else {
                    i
                }
            })
            .collect();
        Ok(vec![take(x, s.to_vec(), &idx)?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(match node.op_type.as_str() {
        "Expand" => Box::new(Expand),
        "ReverseSequence" => {
            let axis = |name: &str, default: i64| -> Result<usize> {
                usize::try_from(node.int_or(name, default)?)
                    .ok()
                    .filter(|&a| a < 2)
                    .ok_or_else(|| Error::invalid(format!("{name} must be 0 or 1")))
            };
            Box::new(ReverseSequence {
                time_axis: axis("time_axis", 0)?,
                batch_axis: axis("batch_axis", 1)?,
            })
        }
        "Tile" => Box::new(Tile),
        op => {
            let block = node
                .get_int("blocksize")?
                .and_then(|b| usize::try_from(b).ok())
                .filter(|&b| b > 0)
                .ok_or_else(|| {
                    Error::invalid("attribute 'blocksize' must be a positive integer")
                })?;
            let crd = match node.string_or("mode", "DCR")? {
                "DCR" => false,
                "CRD" => true,
                other => {
                    return Err(Error::invalid(format!(
                        "mode must be DCR or CRD, got '{other}'"
                    )))
                }
            };
            Box::new(BlockMove {
                block,
                to_space: op == "DepthToSpace",
                crd,
            })
        }
    })
}

/// Registers Expand, Tile, DepthToSpace, SpaceToDepth and ReverseSequence.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Expand", 8.., &[], create));
    reg.add(KernelDef::new("Tile", 6.., &[], create));
    reg.add(KernelDef::new("DepthToSpace", 1.., &[], create));
    reg.add(KernelDef::new("SpaceToDepth", 1.., &[], create));
    reg.add(KernelDef::new("ReverseSequence", 10.., &[], create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn expand_and_tile() {
        let x = Tensor::from_vec(vec![2, 1], vec![1i32, 2]).unwrap();
        let s = Tensor::from_vec(vec![3], vec![2i64, 1, 3]).unwrap();
        let y = Expand.compute(&[Some(&x), Some(&s)]).unwrap();
        assert_eq!(y[0].shape(), &[2, 2, 3]);
        assert_eq!(&y[0].as_slice::<i32>().unwrap()[..6], &[1, 1, 1, 2, 2, 2]);
        let r = Tensor::from_vec(vec![2], vec![2i64, 2]).unwrap();
        let t = Tile.compute(&[Some(&x), Some(&r)]).unwrap();
        assert_eq!(t[0].shape(), &[4, 2]);
        assert_eq!(t[0].as_slice::<i32>().unwrap(), &[1, 1, 2, 2, 1, 1, 2, 2]);
    }

    #[test]
    fn hostile_sizes_are_errors() {
        let x = Tensor::from_vec(vec![1], vec![1u8]).unwrap();
        let huge = Tensor::from_vec(vec![3], vec![1i64 << 40, 1 << 40, 1 << 40]).unwrap();
        let err = Expand.compute(&[Some(&x), Some(&huge)]).unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
        let reps = Tensor::from_vec(vec![1], vec![i64::MAX]).unwrap();
        assert!(Tile.compute(&[Some(&x), Some(&reps)]).is_err());
    }

    #[test]
    fn reverse_sequence_per_batch() {
        // time x batch = 3 x 2; lengths 3 and 1.
        let x = Tensor::from_vec(vec![3, 2], vec![0i32, 10, 1, 11, 2, 12]).unwrap();
        let lens = Tensor::from_vec(vec![2], vec![3i64, 1]).unwrap();
        let k = ReverseSequence {
            time_axis: 0,
            batch_axis: 1,
        };
        let y = k.compute(&[Some(&x), Some(&lens)]).unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[2, 10, 1, 11, 0, 12]);
    }

    #[test]
    fn depth_to_space_round_trips() {
        let x = Tensor::from_vec(vec![1, 8, 2, 3], (0..48).collect::<Vec<i32>>()).unwrap();
        for crd in [false, true] {
            let d2s = BlockMove {
                block: 2,
                to_space: true,
                crd,
            };
            let y = d2s.compute(&[Some(&x)]).unwrap().remove(0);
            assert_eq!(y.shape(), &[1, 2, 4, 6]);
            if !crd {
                let s2d = BlockMove {
                    block: 2,
                    to_space: false,
                    crd,
                };
                assert_eq!(s2d.compute(&[Some(&y)]).unwrap()[0], x);
            }
        }
        let y = BlockMove {
            block: 2,
            to_space: true,
            crd: false,
        }
        .compute(&[Some(&x)])
        .unwrap()
        .remove(0);
        // DCR: y[0,0,0,1] comes from block offset (0,1), channel 0: depth
        // (0*2 + 1)*2 + 0 = 2, and x[0,2,0,0] = 12.
        assert_eq!(y.as_slice::<i32>().unwrap()[1], 12);
    }
}
