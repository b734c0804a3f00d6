//! Sampling grids: GridSample (N-D; nearest, linear and cubic; zeros,
//! border and reflection padding) and AffineGrid (2-D and 3-D).

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{ensure_allocatable, read_ints, required};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;
use crate::ops::resize::cubic_kernel;
use crate::ops::unary::round_half_even;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Interp {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Padding {
    Zeros,
    Border,
    Reflection,
}

/// Reflects `x` off the borders `lo`/`hi` until it lies between them.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    let fold = |d: f64, near: f64, far: f64, sign: f64| {
        let n = (d / range).trunc();
        let r = d - n * range;
        if n % 2.0 == 0.0 {
            near + sign * r
        } else {
            far - sign * r
        }
    };
    if x < lo {
        fold(lo - x, lo, hi, 1.0)
    } else if x > hi {
        fold(x - hi, hi, lo, -1.0)
    } else {
        x
    }
}

struct GridSample {
    interp: Interp,
    padding: Padding,
    align_corners: bool,
}

impl GridSample {
    /// The source coordinate of normalized grid value `v` along an axis of
    /// `len`, after padding adjustment (computed in f32, as ONNX does).
    fn source(&self, v: f64, len: usize) -> f64 {
        let n = len as f64;
        let mut x = if self.align_corners {
            (v + 1.0) / 2.0 * (n - 1.0)
        } else {
            ((v + 1.0) * n - 1.0) / 2.0
        } as f32 as f64;
        if self.interp == Interp::Nearest {
            x = round_half_even(x);
        }
        let (lo, hi) = self.borders(len);
        if x < lo || x > hi {
            x = match self.padding {
                Padding::Zeros => x,
                Padding::Border => x.clamp(0.0, n - 1.0),
                Padding::Reflection => reflect(x, lo, hi),
            };
        }
        x
    }

    fn borders(&self, len: usize) -> (f64, f64) {
        if self.align_corners {
            (0.0, len as f64 - 1.0)
        } else {
            (-0.5, len as f64 - 0.5)
        }
    }

    /// The element read at integer position `i` of an axis of `len`
    /// (`None`: outside, reads as zero).
    fn pixel(&self, i: i64, len: usize) -> Option<usize> {
        let last = len as i64 - 1;
        match self.padding {
            Padding::Zeros => (0..=last).contains(&i).then_some(i as usize),
            Padding::Border => Some(i.clamp(0, last) as usize),
            Padding::Reflection => {
                let (lo, hi) = self.borders(len);
                Some((reflect(i as f64, lo, hi) as i64).clamp(0, last) as usize)
            }
        }
    }

    /// Taps (element index or outside, weight) along one axis.
    fn taps(&self, x: f64, len: usize) -> Vec<(Option<usize>, f64)> {
        let x0 = x.floor();
        let t = x - x0;
        let x0 = x0 as i64;
        match self.interp {
            Interp::Nearest => vec![(self.pixel(x as i64, len), 1.0)],
            Interp::Linear => vec![(self.pixel(x0, len), 1.0 - t), (self.pixel(x0 + 1, len), t)],
            Interp::Cubic => [t + 1.0, t, 1.0 - t, 2.0 - t]
                .iter()
                .enumerate()
                .map(|(j, &d)| (self.pixel(x0 - 1 + j as i64, len), cubic_kernel(-0.75, d)))
                .collect(),
        }
    }

    fn sample(&self, x: &Tensor, grid: &Tensor) -> Result<Tensor> {
        let (xs, gs) = (x.shape(), grid.shape());
        let d = xs.len().saturating_sub(2);
        if d == 0 || gs.len() != xs.len() || gs[0] != xs[0] || gs[gs.len() - 1] != d {
            return Err(Error::invalid(format!(
                "GridSample needs X [N, C, D1..Dk] and grid [N, O1..Ok, {d}], got {xs:?} and {gs:?}"
            )));
        }
        let (batch, channels) = (xs[0], xs[1]);
        let spatial = &xs[2..];
        let plane: usize = spatial.iter().product();
        let points: usize = gs[1..gs.len() - 1].iter().product();
        let mut shape = vec![batch, channels];
        shape.extend(&gs[1..gs.len() - 1]);
        ensure_allocatable(&shape, "GridSample output")?;
        let data = x
            .to_f64_vec()
            .ok_or_else(|| Error::NotSupported(format!("GridSample of {}", x.dtype())))?;
        let g = grid
            .to_f64_vec()
            .ok_or_else(|| Error::invalid(format!("grid must be float, got {}", grid.dtype())))?;
        let mut strides = vec![1usize; d];
        for k in (0..d.saturating_sub(1)).rev() {
            strides[k] = strides[k + 1] * spatial[k + 1];
        }
        let mut out = vec![0.0; batch * channels * points];
        for n in 0..batch {
            for p in 0..points {
                let coords = &g[(n * points + p) * d..][..d];
                // The grid's last axis lists x (the innermost axis) first.
                let taps: Vec<Vec<(Option<usize>, f64)>> = (0..d)
                    .map(|k| self.taps(self.source(coords[d - 1 - k], spatial[k]), spatial[k]))
                    .collect();
                // Every combination of one tap per axis: (offset, weight).
                let mut combos: Vec<(Option<usize>, f64)> = vec![(Some(0), 1.0)];
                for (k, axis) in taps.iter().enumerate() {
                    let stride = strides[k];
                    combos = combos
                        .iter()
                        .flat_map(|&(off, w)| {
                            axis.iter().map(move |&(i, tw)| {
                                (off.zip(i).map(|(o, i)| o + i * stride), w * tw)
                            })
                        })
                        .collect();
                }
                for c in 0..channels {
                    let src = &data[(n * channels + c) * plane..][..plane];
                    out[(n * channels + c) * points + p] = combos
                        .iter()
                        .filter_map(|&(off, w)| off.map(|o| w * src[o]))
                        .sum();
                }
            }
        }
        cast(&Tensor::from_vec(shape, out)?, x.dtype())
    }
}

impl Kernel for GridSample {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![
            self.sample(required(inputs, 0)?, required(inputs, 1)?)?
        ])
    }
}

fn create_grid_sample(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let interp = match node.string_or("mode", "linear")? {
        "nearest" => Interp::Nearest,
        "linear" | "bilinear" => Interp::Linear,
        "cubic" | "bicubic" => Interp::Cubic,
        other => return Err(Error::invalid(format!("unknown GridSample mode '{other}'"))),
    };
    let padding = match node.string_or("padding_mode", "zeros")? {
        "zeros" => Padding::Zeros,
        "border" => Padding::Border,
        "reflection" => Padding::Reflection,
        other => return Err(Error::invalid(format!("unknown padding_mode '{other}'"))),
    };
    Ok(Box::new(GridSample {
        interp,
        padding,
        align_corners: node.int_or("align_corners", 0)? != 0,
    }))
}

/// The normalized coordinates of an axis of `n` points in `[-1, 1]`.
fn base_coords(n: usize, align_corners: bool) -> Vec<f64> {
    let nf = n as f64;
    (0..n)
        .map(|i| {
            let i = i as f64;
            if align_corners {
                if n == 1 {
                    -1.0
                } else {
                    -1.0 + i * 2.0 / (nf - 1.0)
                }
            } else {
                -1.0 + (2.0 * i + 1.0) / nf
            }
        })
        .collect()
}

/// AffineGrid: `theta [N, k, k+1]` applied to the normalized coordinates of
/// every point of an output of `size` (`[N, C, H, W]` or `[N, C, D, H, W]`).
fn affine_grid(theta: &Tensor, size: &[i64], align_corners: bool) -> Result<Tensor> {
    let dims: Vec<usize> = size
        .iter()
        .map(|&v| {
            usize::try_from(v)
                .map_err(|_| Error::invalid(format!("size {size:?} has a negative entry")))
        })
        .collect::<Result<_>>()?;
    let k = dims.len().saturating_sub(2);
    let ts = theta.shape();
    if !(k == 2 || k == 3) || ts != [dims[0], k, k + 1] {
        return Err(Error::invalid(format!(
            "AffineGrid needs size of 4 or 5 values and theta [N, k, k+1], got size {size:?} and theta {ts:?}"
        )));
    }
    let spatial = &dims[2..];
    let mut shape = vec![dims[0]];
    shape.extend(spatial);
    shape.push(k);
    ensure_allocatable(&shape, "AffineGrid output")?;
    let th = theta
        .to_f64_vec()
        .ok_or_else(|| Error::invalid(format!("theta must be float, got {}", theta.dtype())))?;
    let axes: Vec<Vec<f64>> = spatial
        .iter()
        .map(|&n| base_coords(n, align_corners))
        .collect();
    let points: usize = spatial.iter().product();
    let mut out = Vec::with_capacity(dims[0] * points * k);
    for n in 0..dims[0] {
        let t = &th[n * k * (k + 1)..][..k * (k + 1)];
        for p in 0..points {
            // Homogeneous point: x (innermost axis) first, then y (and z), then 1.
            let mut rem = p;
            let mut idx = vec![0usize; k];
            for a in (0..k).rev() {
                idx[a] = rem % spatial[a];
                rem /= spatial[a];
            }
            let mut h: Vec<f64> = (0..k).map(|j| axes[k - 1 - j][idx[k - 1 - j]]).collect();
            h.push(1.0);
            for r in 0..k {
                out.push((0..=k).map(|c| t[r * (k + 1) + c] * h[c]).sum::<f64>());
            }
        }
    }
    cast(&Tensor::from_vec(shape, out)?, theta.dtype())
}

struct AffineGrid {
    align_corners: bool,
}

impl Kernel for AffineGrid {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let size = read_ints(required(inputs, 1)?, "size")?;
        Ok(vec![affine_grid(
            required(inputs, 0)?,
            &size,
            self.align_corners,
        )?])
    }
}

fn create_affine_grid(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(AffineGrid {
        align_corners: node.int_or("align_corners", 0)? != 0,
    }))
}

/// Registers GridSample and AffineGrid.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new(
        "GridSample",
        16..,
        FLOATS,
        create_grid_sample,
    ));
    reg.add(KernelDef::new(
        "AffineGrid",
        20..,
        FLOATS,
        create_affine_grid,
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reflection_folds_back_inside() {
        assert_eq!(reflect(-1.0, -0.5, 3.5), 0.0);
        assert_eq!(reflect(4.5, -0.5, 3.5), 2.5);
        assert_eq!(reflect(9.0, 0.0, 4.0), 1.0);
        assert_eq!(reflect(2.0, 0.0, 4.0), 2.0);
    }

    #[test]
    fn identity_affine_grid_samples_the_input_back() {
        let theta = Tensor::from_vec(vec![1, 2, 3], vec![1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0]).unwrap();
        let grid = affine_grid(&theta, &[1, 1, 2, 3], false).unwrap();
        assert_eq!(grid.shape(), &[1, 2, 3, 2]);
        let x = Tensor::from_vec(vec![1, 1, 2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        for interp in [Interp::Nearest, Interp::Linear, Interp::Cubic] {
            let gs = GridSample {
                interp,
                padding: Padding::Border,
                align_corners: false,
            };
            let y = gs.sample(&x, &grid).unwrap();
            let got = y.as_slice::<f32>().unwrap();
            for (g, w) in got.iter().zip(x.as_slice::<f32>().unwrap()) {
                assert!((g - w).abs() < 1e-5, "{interp:?}: {got:?}");
            }
        }
        assert!(affine_grid(&theta, &[1, 1, 2], false).is_err());
    }
}
