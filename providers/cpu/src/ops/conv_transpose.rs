//! ConvTranspose (N-d, groups, strides, dilations, pads, auto_pad,
//! output_padding, output_shape), as the ONNX reference resolves its
//! padding, and Col2Im (sliding blocks summed back into an image);
//! accumulated in f64.

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::broadcast::strides;
use crate::kernel::{ensure_allocatable, optional, required, unsupported_type};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;

struct ConvTranspose {
    auto_pad: String,
    group: usize,
    dilations: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
    pads: Option<Vec<i64>>,
    output_padding: Option<Vec<i64>>,
    output_shape: Option<Vec<i64>>,
}

/// Begin pads and output sizes per spatial axis.
fn geometry(
    k: &ConvTranspose,
    input: &[usize],
    kernel: &[usize],
) -> Result<(Vec<i64>, Vec<usize>)> {
    let n = input.len();
    let get = |v: &Option<Vec<i64>>, default: i64, len: usize| -> Result<Vec<i64>> {
        match v {
            Some(v) if v.len() >= len => Ok(v.clone()),
            Some(v) => Err(Error::invalid(format!(
                "attribute has {} values, expected {len}",
                v.len()
            ))),
            None => Ok(vec![default; len]),
        }
    };
    let (dil, st, opad) = (
        get(&k.dilations, 1, n)?,
        get(&k.strides, 1, n)?,
        get(&k.output_padding, 0, n)?,
    );
    let full =
        |i: usize| st[i] * (input[i] as i64 - 1) + opad[i] + (kernel[i] as i64 - 1) * dil[i] + 1;
    let same = matches!(k.auto_pad.as_str(), "SAME_UPPER" | "SAME_LOWER");
    let (begin, out): (Vec<i64>, Vec<i64>) = if k.pads.is_none() && same {
        let out: Vec<i64> = match &k.output_shape {
            Some(o) => o[o.len().saturating_sub(n)..].to_vec(),
            None => (0..n).map(|i| input[i] as i64 * st[i]).collect(),
        };
        let begin = (0..n)
            .map(|i| {
                let total = full(i) - out[i];
                if k.auto_pad == "SAME_UPPER" {
                    total.div_euclid(2)
                } else {
                    total - total.div_euclid(2)
                }
            })
            .collect();
        (begin, out)
    } else {
        let pads = get(&k.pads, 0, 2 * n)?;
        let out = match &k.output_shape {
            Some(o) => o[o.len().saturating_sub(n)..].to_vec(),
            None => (0..n).map(|i| full(i) - pads[i] - pads[i + n]).collect(),
        };
        (pads[..n].to_vec(), out)
    };
    let out = out
        .iter()
        .map(|&o| {
            usize::try_from(o).map_err(|_| Error::invalid(format!("output size {o} is negative")))
        })
        .collect::<Result<_>>()?;
    Ok((begin, out))
}

impl Kernel for ConvTranspose {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, w) = (required(inputs, 0)?, required(inputs, 1)?);
        let (xs, ws) = (x.shape(), w.shape());
        if xs.len() < 3 || ws.len() != xs.len() || ws[0] != xs[1] || xs[1] % self.group != 0 {
            return Err(Error::invalid(format!(
                "X {xs:?} and W {ws:?} do not fit a transposed convolution with {} groups",
                self.group
            )));
        }
        let (batch, cin) = (xs[0], xs[1]);
        let cout_g = ws[1];
        let cout = cout_g * self.group;
        let cin_g = cin / self.group;
        let (spatial, kernel) = (&xs[2..], &ws[2..]);
        let (begin, out) = geometry(self, spatial, kernel)?;
        let n = spatial.len();
        let dil = self.dilations.clone().unwrap_or_else(|| vec![1; n]);
        let st = self.strides.clone().unwrap_or_else(|| vec![1; n]);
        let mut yshape = vec![batch, cout];
        yshape.extend(&out);
        ensure_allocatable(&yshape, "ConvTranspose output")?;
        let xv = x
            .to_f64_vec()
            .ok_or_else(|| unsupported_type("ConvTranspose", x))?;
        let wv = w
            .to_f64_vec()
            .ok_or_else(|| unsupported_type("ConvTranspose", w))?;
        let (in_len, k_len): (usize, usize) = (spatial.iter().product(), kernel.iter().product());
        let out_len: usize = out.iter().product();
        let (in_st, k_st, out_st) = (strides(spatial), strides(kernel), strides(&out));
        let mut y = vec![0.0f64; batch * cout * out_len];
        if let Some(b) = optional(inputs, 2) {
            let bv = b
                .to_f64_vec()
                .ok_or_else(|| unsupported_type("ConvTranspose bias", b))?;
            if bv.len() != cout {
                return Err(Error::invalid(format!(
                    "bias has {} values for {cout} channels",
                    bv.len()
                )));
            }
            for (i, v) in y.iter_mut().enumerate() {
                *v = bv[(i / out_len.max(1)) % cout];
            }
        }
        for p in 0..in_len {
            for kp in 0..k_len {
                // Output position of input position p under kernel tap kp.
                let mut o = 0usize;
                let mut inside = true;
                for d in 0..n {
                    let ip = (p / in_st[d]) % spatial[d];
                    let kk = (kp / k_st[d]) % kernel[d];
                    let pos = ip as i64 * st[d] + kk as i64 * dil[d] - begin[d];
                    if pos < 0 || pos >= out[d] as i64 {
                        inside = false;
                        break;
                    }
                    o += pos as usize * out_st[d];
                }
                if !inside {
                    continue;
                }
                for bi in 0..batch {
                    for ci in 0..cin {
                        let xval = xv[(bi * cin + ci) * in_len + p];
                        let g = ci / cin_g;
                        for oc in 0..cout_g {
                            let wval = wv[(ci * cout_g + oc) * k_len + kp];
                            y[(bi * cout + g * cout_g + oc) * out_len + o] += xval * wval;
                        }
                    }
                }
            }
        }
        Ok(vec![cast(&Tensor::from_vec(yshape, y)?, x.dtype())?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let ints =
        |name: &str| -> Result<Option<Vec<i64>>> { Ok(node.get_ints(name)?.map(<[i64]>::to_vec)) };
    let group = usize::try_from(node.int_or("group", 1)?)
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| Error::invalid("group must be positive"))?;
    Ok(Box::new(ConvTranspose {
        auto_pad: node.string_or("auto_pad", "NOTSET")?.to_string(),
        group,
        dilations: ints("dilations")?,
        strides: ints("strides")?,
        pads: ints("pads")?,
        output_padding: ints("output_padding")?,
        output_shape: ints("output_shape")?,
    }))
}

/// Col2Im: `[N, C * prod(block), L]` columns summed back into
/// `[N, C, image...]`, the inverse layout of im2col.
struct Col2Im {
    dilations: Option<Vec<i64>>,
    pads: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
}

impl Kernel for Col2Im {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let dims = |i: usize, what: &str| -> Result<Vec<usize>> {
            crate::kernel::read_ints(required(inputs, i)?, what)?
                .iter()
                .map(|&v| {
                    usize::try_from(v)
                        .map_err(|_| Error::invalid(format!("{what} has a negative size")))
                })
                .collect()
        };
        let (image, block) = (dims(1, "image_shape")?, dims(2, "block_shape")?);
        let n = image.len();
        let &[batch, cols, l] = x.shape() else {
            return Err(Error::invalid(format!(
                "input must be [N, C * block, L], got {:?}",
                x.shape()
            )));
        };
        let b_len: usize = block.iter().product();
        if block.len() != n || b_len == 0 || cols % b_len != 0 {
            return Err(Error::invalid(format!(
                "{cols} columns do not divide into blocks of {block:?}"
            )));
        }
        let c = cols / b_len;
        let dil = self.dilations.clone().unwrap_or_else(|| vec![1; n]);
        let st = self.strides.clone().unwrap_or_else(|| vec![1; n]);
        let pads = self.pads.clone().unwrap_or_else(|| vec![0; 2 * n]);
        // Sliding positions per axis.
        let slides: Vec<usize> = (0..n)
            .map(|d| {
                let span = dil[d] * (block[d] as i64 - 1) + 1;
                let room = image[d] as i64 + pads[d] + pads[d + n] - span;
                if room < 0 || st[d] <= 0 {
                    return Err(Error::invalid(format!(
                        "block {block:?} does not fit image {image:?}"
                    )));
                }
                Ok((room / st[d] + 1) as usize)
            })
            .collect::<Result<_>>()?;
        if slides.iter().product::<usize>() != l {
            return Err(Error::invalid(format!(
                "{l} columns, but the blocks slide {slides:?} times"
            )));
        }
        let mut shape = vec![batch, c];
        shape.extend(&image);
        ensure_allocatable(&shape, "Col2Im output")?;
        let v = x
            .to_f64_vec()
            .ok_or_else(|| unsupported_type("Col2Im", x))?;
        let img_len: usize = image.iter().product();
        let (b_st, s_st, i_st) = (strides(&block), strides(&slides), strides(&image));
        let mut y = vec![0.0f64; batch * c * img_len];
        for bp in 0..b_len {
            for sp in 0..l {
                let mut at = 0usize;
                let mut inside = true;
                for d in 0..n {
                    let (bk, sk) = ((bp / b_st[d]) % block[d], (sp / s_st[d]) % slides[d]);
                    let pos = sk as i64 * st[d] - pads[d] + bk as i64 * dil[d];
                    if pos < 0 || pos >= image[d] as i64 {
                        inside = false;
                        break;
                    }
                    at += pos as usize * i_st[d];
                }
                if !inside {
                    continue;
                }
                for bi in 0..batch {
                    for ci in 0..c {
                        y[(bi * c + ci) * img_len + at] +=
                            v[(bi * cols + ci * b_len + bp) * l + sp];
                    }
                }
            }
        }
        Ok(vec![cast(&Tensor::from_vec(shape, y)?, x.dtype())?])
    }
}

fn create_col2im(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let ints =
        |name: &str| -> Result<Option<Vec<i64>>> { Ok(node.get_ints(name)?.map(<[i64]>::to_vec)) };
    Ok(Box::new(Col2Im {
        dilations: ints("dilations")?,
        pads: ints("pads")?,
        strides: ints("strides")?,
    }))
}

/// Registers ConvTranspose and Col2Im.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("ConvTranspose", 1.., FLOATS, create));
    reg.add(KernelDef::new("Col2Im", 18.., FLOATS, create_col2im));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn plain() -> ConvTranspose {
        ConvTranspose {
            auto_pad: "NOTSET".into(),
            group: 1,
            dilations: None,
            strides: None,
            pads: None,
            output_padding: None,
            output_shape: None,
        }
    }

    #[test]
    fn col2im_sums_overlapping_blocks() {
        // 1-D image of 3, blocks of 2, stride 1: two columns overlap at the middle.
        let x = Tensor::from_vec(vec![1, 2, 2], vec![1.0f32, 10.0, 2.0, 20.0]).unwrap();
        let image = Tensor::from_vec(vec![1], vec![3i64]).unwrap();
        let block = Tensor::from_vec(vec![1], vec![2i64]).unwrap();
        let k = Col2Im {
            dilations: None,
            pads: None,
            strides: None,
        };
        let y = k.compute(&[Some(&x), Some(&image), Some(&block)]).unwrap();
        assert_eq!(y[0].shape(), &[1, 1, 3]);
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1.0, 12.0, 20.0]);
    }

    #[test]
    fn one_d_stride_two() {
        // x = [1, 2], w = [1, 1, 1], stride 2: [1,1,1+2,2,2].
        let x = Tensor::from_vec(vec![1, 1, 2], vec![1.0f32, 2.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 3], vec![1.0f32, 1.0, 1.0]).unwrap();
        let k = ConvTranspose {
            strides: Some(vec![2]),
            ..plain()
        };
        let y = k.compute(&[Some(&x), Some(&w)]).unwrap();
        assert_eq!(y[0].shape(), &[1, 1, 5]);
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1.0, 1.0, 3.0, 2.0, 2.0]);
        // Pads crop both ends.
        let k = ConvTranspose {
            strides: Some(vec![2]),
            pads: Some(vec![1, 1]),
            ..plain()
        };
        let y = k.compute(&[Some(&x), Some(&w)]).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1.0, 3.0, 2.0]);
        let bad = Tensor::from_vec(vec![2, 1, 3], vec![0.0f32; 6]).unwrap();
        assert!(plain().compute(&[Some(&x), Some(&bad)]).is_err());
    }
}
