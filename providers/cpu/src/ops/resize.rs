//! Resize (opset 10 and 11+) and Upsample: nearest (four rounding modes),
//! linear and cubic interpolation, every coordinate transformation,
//! antialiasing, `exclude_outside`, `axes`, `keep_aspect_ratio_policy` and
//! tf_crop_and_resize with an extrapolation value.
//!
//! Interpolation is separable: each resized axis is planned once (for every
//! output position, the input taps and their weights) and applied in f64,
//! one axis after the other, as the ONNX reference does.

use oxrt_core::dtype::DataType;
use oxrt_core::shape::normalize_axis;
use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{ensure_allocatable, numbers, optional, read_ints, required};
use crate::ops::cast::cast;
use crate::ops::unary::round_half_even;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Nearest(Nearest),
    Linear,
    Cubic(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum AspectPolicy {
    Stretch,
    NotLarger,
    NotSmaller,
}

/// Resize attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeAttrs {
    mode: Mode,
    coord: Coord,
    antialias: bool,
    exclude_outside: bool,
    extrapolation: f64,
    policy: AspectPolicy,
    axes: Option<Vec<i64>>,
}

/// Interpolation weights of the taps around a source coordinate
/// `left + ratio` (`ratio` in `(0, 1]`); tap `j` reads `left + 1 - n/2 + j`.
fn coefficients(mode: Mode, antialias: bool, ratio: f64, scale: f64) -> Vec<f64> {
    let normalized = |c: Vec<f64>| {
        let sum: f64 = c.iter().sum();
        c.into_iter().map(|v| v / sum).collect()
    };
    match mode {
        Mode::Nearest(_) if ratio == 1.0 => vec![0.0, 1.0],
        Mode::Nearest(n) => {
            let right = match n {
                Nearest::RoundPreferFloor => ratio > 0.5,
                Nearest::RoundPreferCeil => ratio >= 0.5,
                Nearest::Floor => false,
                Nearest::Ceil => true,
            };
            if right {
                vec![0.0, 1.0]
            } else {
                vec![1.0, 0.0]
            }
        }
        Mode::Linear if antialias => {
            let s = scale.min(1.0);
            let start = (-1.0 / s).floor() as i64 + 1;
            let taps = 2 - 2 * start;
            normalized(
                (start..start + taps)
                    .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
                    .collect(),
            )
        }
        Mode::Linear => vec![1.0 - ratio, ratio],
        Mode::Cubic(a) if antialias => {
            let s = scale.min(1.0);
            let start = (-2.0 / s).floor() as i64 + 1;
            let end = 2 - start;
            normalized(
                (start..end)
                    .map(|i| cubic_kernel(a, (s * (i as f64 - ratio)).abs()))
                    .collect(),
            )
        }
        Mode::Cubic(a) => [1.0 + ratio, ratio, 1.0 - ratio, 2.0 - ratio]
            .iter()
            .map(|&x| cubic_kernel(a, x))
            .collect(),
    }
}

/// The Keys cubic convolution kernel with parameter `a` at distance `x >= 0`.
pub(crate) fn cubic_kernel(a: f64, x: f64) -> f64 {
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// How one axis is resized: `taps` (input index, weight) pairs per output
/// position, and the positions that take the extrapolation value.
struct AxisPlan {
    out: usize,
    taps: usize,
    index: Vec<usize>,
    weight: Vec<f64>,
    extrapolated: Vec<bool>,
}

impl AxisPlan {
    fn new(
        attrs: &ResizeAttrs,
        input: usize,
        out: usize,
        scale: f64,
        roi: (f64, f64),
    ) -> Result<Self> {
        if input == 0 && out > 0 {
            return Err(Error::invalid(
                "cannot resize an empty axis to a non-empty one",
            ));
        }
        let in_f = input as f64;
        let out_f = scale * in_f;
        let mut plan = AxisPlan {
            out,
            taps: 0,
            index: Vec::new(),
            weight: Vec::new(),
            extrapolated: vec![false; out],
        };
        for y in 0..out {
            let yf = y as f64;
            let x = match attrs.coord {
                Coord::AlignCorners if out_f == 1.0 => 0.0,
                Coord::AlignCorners => yf * (in_f - 1.0) / (out_f - 1.0),
                Coord::Asymmetric => yf / scale,
                Coord::PytorchHalfPixel if out_f == 1.0 => -0.5,
                Coord::PytorchHalfPixel | Coord::HalfPixel => (yf + 0.5) / scale - 0.5,
                Coord::HalfPixelSymmetric => {
                    let adjustment = out as f64 / out_f;
                    let offset = in_f / 2.0 * (1.0 - adjustment);
                    offset + (yf + 0.5) / scale - 0.5
                }
                Coord::TfCropAndResize => {
                    let (start, end) = roi;
                    let x = if out_f == 1.0 {
                        (end - start) * (in_f - 1.0) / 2.0
                    } else {
                        yf * (end - start) * (in_f - 1.0) / (out_f - 1.0)
                    };
                    x + start * (in_f - 1.0)
                }
            };
            if attrs.coord == Coord::TfCropAndResize && (x < 0.0 || x > in_f - 1.0) {
                plan.extrapolated[y] = true;
            }
            let floor = x.floor();
            let (left, ratio) = if x == floor {
                (floor as i64 - 1, 1.0)
            } else {
                (floor as i64, x - floor)
            };
            let mut c = coefficients(attrs.mode, attrs.antialias, ratio, scale);
            let n = c.len() as i64;
            let first = left + 1 - n / 2;
            if attrs.exclude_outside {
                for (j, w) in c.iter_mut().enumerate() {
                    let i = first + j as i64;
                    if i < 0 || i >= input as i64 {
                        *w = 0.0;
                    }
                }
                let sum: f64 = c.iter().sum();
                if sum != 0.0 {
                    c.iter_mut().for_each(|w| *w /= sum);
                }
            }
            plan.taps = c.len();
            for (j, w) in c.into_iter().enumerate() {
                let i = (first + j as i64).clamp(0, input as i64 - 1);
                plan.index.push(i as usize);
                plan.weight.push(w);
            }
        }
        Ok(plan)
    }

    /// Resizes axis `axis` of `data` (shape `shape`, updated in place).
    fn apply(
        &self,
        data: &[f64],
        shape: &mut [usize],
        axis: usize,
        extrapolation: f64,
    ) -> Vec<f64> {
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let input = shape[axis];
        let mut out = vec![0.0; outer * self.out * inner];
        for o in 0..outer {
            let src = &data[o * input * inner..(o + 1) * input * inner];
            for y in 0..self.out {
                let dst = &mut out[(o * self.out + y) * inner..(o * self.out + y + 1) * inner];
                if self.extrapolated[y] {
                    dst.fill(extrapolation);
                    continue;
                }
                for t in 0..self.taps {
                    let w = self.weight[y * self.taps + t];
                    if w == 0.0 {
                        continue;
                    }
                    let row = &src[self.index[y * self.taps + t] * inner..][..inner];
                    for (d, s) in dst.iter_mut().zip(row) {
                        *d += w * s;
                    }
                }
            }
        }
        shape[axis] = self.out;
        out
    }
}

/// Resizes `x` by per-axis `scales` or to `sizes` (each over `attrs.axes`,
/// or every axis), with `roi` for tf_crop_and_resize.
pub fn resize(
    x: &Tensor,
    attrs: &ResizeAttrs,
    roi: Option<&[f64]>,
    scales: Option<&[f64]>,
    sizes: Option<&[i64]>,
) -> Result<Tensor> {
    let r = x.rank();
    let axes: Vec<usize> = match &attrs.axes {
        Some(a) => a
            .iter()
            .map(|&a| normalize_axis(a, r))
            .collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    let n = axes.len();
    let mut scale = vec![1.0; r];
    let mut out: Vec<usize> = x.shape().to_vec();
    match (scales, sizes) {
        (Some(s), None) => {
            if s.len() != n {
                return Err(Error::invalid(format!(
                    "scales has {} values for {n} axes",
                    s.len()
                )));
            }
            for (&a, &v) in axes.iter().zip(s) {
                if v.is_nan() || v <= 0.0 {
                    return Err(Error::invalid(format!("scale {v} must be positive")));
                }
                scale[a] = v;
                out[a] = (v * x.shape()[a] as f64) as usize;
            }
        }
        (None, Some(z)) => {
            if z.len() != n {
                return Err(Error::invalid(format!(
                    "sizes has {} values for {n} axes",
                    z.len()
                )));
            }
            for (&a, &v) in axes.iter().zip(z) {
                out[a] = usize::try_from(v)
                    .map_err(|_| Error::invalid(format!("size {v} is negative")))?;
                scale[a] = out[a] as f64 / x.shape()[a] as f64;
            }
            if attrs.policy != AspectPolicy::Stretch {
                let it = axes.iter().map(|&a| scale[a]);
                let s = if attrs.policy == AspectPolicy::NotLarger {
                    it.fold(f64::INFINITY, f64::min)
                } else {
                    it.fold(f64::NEG_INFINITY, f64::max)
                };
                for &a in &axes {
                    scale[a] = s;
                    out[a] = (s * x.shape()[a] as f64 + 0.5) as usize;
                }
            }
        }
        _ => {
            return Err(Error::invalid(
                "exactly one of 'scales' and 'sizes' must be given",
            ))
        }
    }
    ensure_allocatable(&out, "Resize output")?;
    let roi_of = |k: usize| -> (f64, f64) {
        match roi {
            Some(v) if v.len() == 2 * n => (v[k], v[n + k]),
            _ => (0.0, 1.0),
        }
    };
    if attrs.coord == Coord::TfCropAndResize && roi.is_none_or(|v| v.len() != 2 * n) {
        return Err(Error::invalid(format!(
            "tf_crop_and_resize needs a roi of {} values",
            2 * n
        )));
    }
    let mut data = x
        .to_f64_vec()
        .ok_or_else(|| Error::NotSupported(format!("Resize of {}", x.dtype())))?;
    let mut shape = x.shape().to_vec();
    for (k, &a) in axes.iter().enumerate() {
        let (r0, r1) = roi_of(k);
        let trivial_roi = attrs.coord != Coord::TfCropAndResize || (r0 == 0.0 && r1 == 1.0);
        if (scale[a] - 1.0).abs() < 1e-9 && out[a] == shape[a] && trivial_roi {
            continue;
        }
        let plan = AxisPlan::new(attrs, shape[a], out[a], scale[a], (r0, r1))?;
        data = plan.apply(&data, &mut shape, a, attrs.extrapolation);
    }
    if !x.dtype().is_float() {
        data.iter_mut().for_each(|v| *v = round_half_even(*v));
    }
    cast(&Tensor::from_vec(shape, data)?, x.dtype())
}

struct Resize {
    attrs: ResizeAttrs,
    /// Opset 10 Resize and opset 9 Upsample read `scales` from input 1;
    /// opset 7 Upsample from the attribute.
    legacy: Option<Option<Vec<f64>>>,
}

impl Kernel for Resize {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let nonempty = |i: usize| optional(inputs, i).filter(|t| !t.is_empty());
        let out = match &self.legacy {
            Some(Some(scales)) => resize(x, &self.attrs, None, Some(scales), None)?,
            Some(None) => {
                let scales = numbers(required(inputs, 1)?, "scales")?;
                resize(x, &self.attrs, None, Some(&scales), None)?
            }
            None => {
                let roi = nonempty(1).map(|t| numbers(t, "roi")).transpose()?;
                let scales = nonempty(2).map(|t| numbers(t, "scales")).transpose()?;
                let sizes = nonempty(3).map(|t| read_ints(t, "sizes")).transpose()?;
                resize(
                    x,
                    &self.attrs,
                    roi.as_deref(),
                    scales.as_deref(),
                    sizes.as_deref(),
                )?
            }
        };
        Ok(vec![out])
    }
}

fn attrs(node: &Node, opset: i64) -> Result<ResizeAttrs> {
    let legacy = node.op_type == "Upsample" || opset < 11;
    let bad = |what: &str, v: &str| Error::invalid(format!("unknown {what} '{v}'"));
    let nearest = if legacy {
        Nearest::Floor
    } else {
        match node.string_or("nearest_mode", "round_prefer_floor")? {
            "round_prefer_floor" => Nearest::RoundPreferFloor,
            "round_prefer_ceil" => Nearest::RoundPreferCeil,
            "floor" => Nearest::Floor,
            "ceil" => Nearest::Ceil,
            other => return Err(bad("nearest_mode", other)),
        }
    };
    let mode = match node.string_or("mode", "nearest")? {
        "nearest" => Mode::Nearest(nearest),
        "linear" | "bilinear" | "trilinear" => Mode::Linear,
        "cubic" if !legacy => Mode::Cubic(f64::from(node.float_or("cubic_coeff_a", -0.75)?)),
        other => return Err(bad("mode", other)),
    };
    let coord = if legacy {
        Coord::Asymmetric
    } else {
        match node.string_or("coordinate_transformation_mode", "half_pixel")? {
            "half_pixel" => Coord::HalfPixel,
            "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
            "pytorch_half_pixel" => Coord::PytorchHalfPixel,
            "align_corners" => Coord::AlignCorners,
            "asymmetric" => Coord::Asymmetric,
            "tf_crop_and_resize" => Coord::TfCropAndResize,
            "tf_half_pixel_for_nn" => {
                return Err(Error::NotSupported(
                    "coordinate_transformation_mode tf_half_pixel_for_nn".into(),
                ))
            }
            other => return Err(bad("coordinate_transformation_mode", other)),
        }
    };
    let policy = match node.string_or("keep_aspect_ratio_policy", "stretch")? {
        "stretch" => AspectPolicy::Stretch,
        "not_larger" => AspectPolicy::NotLarger,
        "not_smaller" => AspectPolicy::NotSmaller,
        other => return Err(bad("keep_aspect_ratio_policy", other)),
    };
    let antialias = node.int_or("antialias", 0)? != 0;
    if antialias && matches!(mode, Mode::Nearest(_)) {
        return Err(Error::invalid(
            "antialias applies to linear and cubic modes only",
        ));
    }
    Ok(ResizeAttrs {
        mode,
        coord,
        antialias,
        exclude_outside: node.int_or("exclude_outside", 0)? != 0,
        extrapolation: f64::from(node.float_or("extrapolation_value", 0.0)?),
        policy,
        axes: node.get_ints("axes")?.map(<[i64]>::to_vec),
    })
}

fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let opset = info.node.opset;
    let attrs = attrs(node, opset)?;
    let legacy = if node.op_type == "Upsample" && opset < 9 {
        let scales = node
            .get_floats("scales")?
            .ok_or_else(|| Error::invalid("attribute 'scales' is required"))?;
        Some(Some(scales.iter().map(|&s| f64::from(s)).collect()))
    } else if node.op_type == "Upsample" || opset < 11 {
        Some(None)
    } else {
        None
    };
    Ok(Box::new(Resize { attrs, legacy }))
}

/// Element types Resize interpolates.
const TYPES: &[DataType] = &[
    DataType::F32,
    DataType::F64,
    DataType::F16,
    DataType::BF16,
    DataType::I8,
    DataType::U8,
    DataType::I16,
    DataType::U16,
    DataType::I32,
    DataType::U32,
    DataType::I64,
    DataType::U64,
];

/// Registers Resize and Upsample.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Resize", 10.., TYPES, create));
    reg.add(KernelDef::new("Upsample", 7..10, TYPES, create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn linear(coord: Coord) -> ResizeAttrs {
        ResizeAttrs {
            mode: Mode::Linear,
            coord,
            antialias: false,
            exclude_outside: false,
            extrapolation: 0.0,
            policy: AspectPolicy::Stretch,
            axes: None,
        }
    }

    #[test]
    fn align_corners_hits_the_corners() {
        let x = Tensor::from_vec(vec![1, 2], vec![0.0f32, 3.0]).unwrap();
        let y = resize(&x, &linear(Coord::AlignCorners), None, None, Some(&[1, 4])).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn nearest_modes_round_as_named() {
        let x = Tensor::from_vec(vec![4], vec![10i32, 20, 30, 40]).unwrap();
        let mut a = linear(Coord::Asymmetric);
        a.mode = Mode::Nearest(Nearest::Floor);
        let y = resize(&x, &a, None, Some(&[2.0]), None).unwrap();
        assert_eq!(
            y.as_slice::<i32>().unwrap(),
            &[10, 10, 20, 20, 30, 30, 40, 40]
        );
        a.mode = Mode::Nearest(Nearest::Ceil);
        let y = resize(&x, &a, None, Some(&[0.5]), None).unwrap();
        assert_eq!(y.as_slice::<i32>().unwrap(), &[10, 30]);
    }

    #[test]
    fn bad_parameters_are_errors() {
        let x = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let a = linear(Coord::HalfPixel);
        assert!(resize(&x, &a, None, Some(&[1.0, 2.0]), None).is_err());
        assert!(resize(&x, &a, None, Some(&[-1.0]), None).is_err());
        assert!(resize(&x, &a, None, None, Some(&[-3])).is_err());
        assert!(resize(&x, &a, None, None, Some(&[i64::MAX])).is_err());
        assert!(resize(&x, &a, None, None, None).is_err());
        let tf = linear(Coord::TfCropAndResize);
        assert!(resize(&x, &tf, None, None, Some(&[3])).is_err());
    }
}
