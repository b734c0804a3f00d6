//! Region pooling: RoiAlign (average or max of bilinear samples on a
//! regular grid in each output bin; half_pixel or output_half_pixel
//! coordinates) and MaxRoiPool (the maximum over each bin of the rounded
//! region, as Caffe and ONNX Runtime do).

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{ensure_allocatable, numbers, read_ints, required};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;

struct RoiAlign {
    max: bool,
    half_pixel: bool,
    out_h: usize,
    out_w: usize,
    sampling_ratio: usize,
    spatial_scale: f64,
}

/// The four taps (flat positions and weights) of a bilinear sample at
/// `(y, x)`; `None` outside the map (then the sample is 0).
fn bilinear(y: f64, x: f64, height: usize, width: usize) -> Option<[(usize, f64); 4]> {
    let (hf, wf) = (height as f64, width as f64);
    if y < -1.0 || y > hf || x < -1.0 || x > wf {
        return None;
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let (mut y0, mut x0) = (y as usize, x as usize);
    let (y1, x1);
    if y0 >= height - 1 {
        y0 = height - 1;
        y1 = y0;
        y = y0 as f64;
    } else {
        y1 = y0 + 1;
    }
    if x0 >= width - 1 {
        x0 = width - 1;
        x1 = x0;
        x = x0 as f64;
    } else {
        x1 = x0 + 1;
    }
    let (ly, lx) = (y - y0 as f64, x - x0 as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    Some([
        (y0 * width + x0, hy * hx),
        (y0 * width + x1, hy * lx),
        (y1 * width + x0, ly * hx),
        (y1 * width + x1, ly * lx),
    ])
}

/// The `[N, C, H, W]` dims of `x` and the number of `rois` rows, each of
/// `cols` values.
fn region_inputs(x: &Tensor, rois: &Tensor, cols: usize) -> Result<([usize; 4], usize)> {
    let dims = <[usize; 4]>::try_from(x.shape())
        .map_err(|_| Error::invalid(format!("X must be [N, C, H, W], got {:?}", x.shape())))?;
    match rois.shape() {
        [r, k] if *k == cols => Ok((dims, *r)),
        other => Err(Error::invalid(format!(
            "rois must be [R, {cols}], got {other:?}"
        ))),
    }
}

impl RoiAlign {
    fn run(&self, x: &Tensor, rois: &Tensor, batch_idx: &Tensor) -> Result<Tensor> {
        let ([n, c, height, width], r) = region_inputs(x, rois, 4)?;
        let batches = read_ints(batch_idx, "batch_indices")?;
        if batches.len() != r {
            return Err(Error::invalid(format!(
                "{} batch indices for {r} rois",
                batches.len()
            )));
        }
        let shape = vec![r, c, self.out_h, self.out_w];
        ensure_allocatable(&shape, "RoiAlign output")?;
        let data = x
            .to_f64_vec()
            .ok_or_else(|| Error::NotSupported(format!("RoiAlign of {}", x.dtype())))?;
        let boxes = rois
            .to_f64_vec()
            .ok_or_else(|| Error::invalid("rois must be float"))?;
        let (ph, pw) = (self.out_h, self.out_w);
        let mut out = vec![0.0; r * c * ph * pw];
        let offset = if self.half_pixel { 0.5 } else { 0.0 };
        for (ri, &b) in batches.iter().enumerate() {
            let b = usize::try_from(b).ok().filter(|&b| b < n).ok_or_else(|| {
                Error::invalid(format!("batch index {b} is outside the batch of {n}"))
            })?;
            let bx = &boxes[ri * 4..ri * 4 + 4];
            let (x0, y0) = (
                bx[0] * self.spatial_scale - offset,
                bx[1] * self.spatial_scale - offset,
            );
            let (x1, y1) = (
                bx[2] * self.spatial_scale - offset,
                bx[3] * self.spatial_scale - offset,
            );
            let (mut rw, mut rh) = (x1 - x0, y1 - y0);
            if !self.half_pixel {
                rw = rw.max(1.0);
                rh = rh.max(1.0);
            }
            let (bin_h, bin_w) = (rh / ph as f64, rw / pw as f64);
            let grid = |size: f64, bins: usize| {
                if self.sampling_ratio > 0 {
                    self.sampling_ratio
                } else {
                    (size / bins as f64).ceil().max(0.0) as usize
                }
            };
            let (gh, gw) = (grid(rh, ph), grid(rw, pw));
            let count = (gh * gw).max(1) as f64;
            // The samples of every bin, shared by all channels.
            let mut samples = Vec::with_capacity(ph * pw * gh * gw);
            for i in 0..ph {
                for j in 0..pw {
                    for iy in 0..gh {
                        let y = y0 + i as f64 * bin_h + (iy as f64 + 0.5) * bin_h / gh as f64;
                        for ix in 0..gw {
                            let x = x0 + j as f64 * bin_w + (ix as f64 + 0.5) * bin_w / gw as f64;
                            samples.push(bilinear(y, x, height, width));
                        }
                    }
                }
            }
            for ch in 0..c {
                let plane = &data[(b * c + ch) * height * width..][..height * width];
                for bin in 0..ph * pw {
                    let taps = &samples[bin * gh * gw..(bin + 1) * gh * gw];
                    let value = if self.max {
                        // Max over samples of the largest weighted tap.
                        taps.iter()
                            .map(|s| {
                                s.map_or(0.0, |t| {
                                    t.iter()
                                        .map(|&(p, w)| w * plane[p])
                                        .fold(f64::NEG_INFINITY, f64::max)
                                })
                            })
                            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                            .unwrap_or(0.0)
                    } else {
                        taps.iter()
                            .map(|s| s.map_or(0.0, |t| t.iter().map(|&(p, w)| w * plane[p]).sum()))
                            .sum::<f64>()
                            / count
                    };
                    out[(ri * c + ch) * ph * pw + bin] = value;
                }
            }
        }
        cast(&Tensor::from_vec(shape, out)?, x.dtype())
    }
}

impl Kernel for RoiAlign {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![self.run(
            required(inputs, 0)?,
            required(inputs, 1)?,
            required(inputs, 2)?,
        )?])
    }
}

fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let size = |name: &str, default: i64| -> Result<usize> {
        let v = node.int_or(name, default)?;
        usize::try_from(v).map_err(|_| Error::invalid(format!("{name} {v} must not be negative")))
    };
    let default_mode = if info.node.opset >= 16 {
        "half_pixel"
    } else {
        "output_half_pixel"
    };
    let half_pixel = match node.string_or("coordinate_transformation_mode", default_mode)? {
        "half_pixel" => true,
        "output_half_pixel" => false,
        other => {
            return Err(Error::invalid(format!(
                "unknown coordinate_transformation_mode '{other}'"
            )))
        }
    };
    let max = match node.string_or("mode", "avg")? {
        "avg" => false,
        "max" => true,
        other => return Err(Error::invalid(format!("unknown mode '{other}'"))),
    };
    Ok(Box::new(RoiAlign {
        max,
        half_pixel,
        out_h: size("output_height", 1)?,
        out_w: size("output_width", 1)?,
        sampling_ratio: size("sampling_ratio", 0)?,
        spatial_scale: f64::from(node.float_or("spatial_scale", 1.0)?),
    }))
}

/// MaxRoiPool: `rois [R, 5]` rows of (batch index, x1, y1, x2, y2), scaled
/// and rounded to pixels; each of `pooled_shape` bins takes the maximum of
/// its cells (0 for an empty bin).
struct MaxRoiPool {
    pooled: [usize; 2],
    spatial_scale: f64,
}

impl MaxRoiPool {
    fn run(&self, x: &Tensor, rois: &Tensor) -> Result<Tensor> {
        let ([n, c, height, width], r) = region_inputs(x, rois, 5)?;
        let [ph, pw] = self.pooled;
        let shape = vec![r, c, ph, pw];
        ensure_allocatable(&shape, "MaxRoiPool output")?;
        let data = numbers(x, "X")?;
        let boxes = numbers(rois, "rois")?;
        let mut out = vec![0.0; r * c * ph * pw];
        for ri in 0..r {
            let b = &boxes[ri * 5..ri * 5 + 5];
            let batch = Some(b[0])
                .filter(|v| *v >= 0.0 && (*v as usize) < n)
                .ok_or_else(|| Error::invalid(format!("roi #{ri} names batch {} of {n}", b[0])))?
                as usize;
            let px = |v: f64| (v * self.spatial_scale).round() as i64;
            let (x1, y1, x2, y2) = (px(b[1]), px(b[2]), px(b[3]), px(b[4]));
            let rh = (y2 - y1 + 1).max(1) as f64;
            let rw = (x2 - x1 + 1).max(1) as f64;
            let (bh, bw) = (rh / ph as f64, rw / pw as f64);
            // A bin's cells along one axis, clipped to the map.
            let span = |i: usize, bin: f64, start: i64, size: usize| {
                let lo = ((i as f64 * bin).floor() as i64 + start).clamp(0, size as i64) as usize;
                let hi =
                    (((i + 1) as f64 * bin).ceil() as i64 + start).clamp(0, size as i64) as usize;
                lo..hi
            };
            for ch in 0..c {
                let plane = &data[(batch * c + ch) * height * width..][..height * width];
                for i in 0..ph {
                    for j in 0..pw {
                        let (rows, cols) = (span(i, bh, y1, height), span(j, bw, x1, width));
                        let m = rows
                            .flat_map(|y| cols.clone().map(move |x| plane[y * width + x]))
                            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
                        out[((ri * c + ch) * ph + i) * pw + j] = m.unwrap_or(0.0);
                    }
                }
            }
        }
        cast(&Tensor::from_vec(shape, out)?, x.dtype())
    }
}

impl Kernel for MaxRoiPool {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![self.run(required(inputs, 0)?, required(inputs, 1)?)?])
    }
}

fn create_max_roi_pool(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let pooled = match node.get_ints("pooled_shape")? {
        Some(&[h, w]) if h > 0 && w > 0 => [h as usize, w as usize],
        Some(other) => {
            return Err(Error::invalid(format!(
                "pooled_shape must be two positive sizes, got {other:?}"
            )))
        }
        None => return Err(Error::invalid("attribute 'pooled_shape' is required")),
    };
    Ok(Box::new(MaxRoiPool {
        pooled,
        spatial_scale: f64::from(node.float_or("spatial_scale", 1.0)?),
    }))
}

/// Registers RoiAlign and MaxRoiPool.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new(
        "MaxRoiPool",
        1..,
        FLOATS,
        create_max_roi_pool,
    ));
    reg.add(KernelDef::new("RoiAlign", 10.., FLOATS, create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn averages_bilinear_samples() {
        // A 2x2 map and one box over all of it: the mean of 4 samples.
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![0.0f32, 1.0, 2.0, 3.0]).unwrap();
        let rois = Tensor::from_vec(vec![1, 4], vec![0.0f32, 0.0, 2.0, 2.0]).unwrap();
        let idx = Tensor::from_vec(vec![1], vec![0i64]).unwrap();
        let k = RoiAlign {
            max: false,
            half_pixel: true,
            out_h: 1,
            out_w: 1,
            sampling_ratio: 2,
            spatial_scale: 1.0,
        };
        let y = k.run(&x, &rois, &idx).unwrap();
        // Samples at (0, 0), (0, 1), (1, 0), (1, 1) in half-pixel space.
        assert!((y.as_slice::<f32>().unwrap()[0] - 1.5).abs() < 1e-6);
        let bad = Tensor::from_vec(vec![1], vec![3i64]).unwrap();
        assert!(k.run(&x, &rois, &bad).is_err());
    }

    #[test]
    fn max_roi_pool_takes_each_bins_maximum() {
        // A 4x4 map of 0..16; the roi covers columns 1..=2 and rows 0..=3.
        let x = Tensor::from_vec(vec![1, 1, 4, 4], (0..16).map(|v| v as f32).collect()).unwrap();
        let rois = Tensor::from_vec(vec![1, 5], vec![0.0f32, 1.0, 0.0, 2.0, 3.0]).unwrap();
        let k = MaxRoiPool {
            pooled: [2, 1],
            spatial_scale: 1.0,
        };
        let y = k.run(&x, &rois).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 1]);
        // Rows 0..2 -> max at (1, 2) = 6; rows 2..4 -> max at (3, 2) = 14.
        assert_eq!(y.as_slice::<f32>().unwrap(), &[6.0, 14.0]);
        let bad = Tensor::from_vec(vec![1, 5], vec![2.0f32, 0.0, 0.0, 1.0, 1.0]).unwrap();
        assert!(k.run(&x, &bad).is_err());
    }
}
