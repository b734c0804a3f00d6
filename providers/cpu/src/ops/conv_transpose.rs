//! ConvTranspose (N-d, groups, strides, dilations, pads, auto_pad,
//! output_padding, output_shape), as the ONNX reference resolves its
//! padding; accumulated in f64.

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

/// Registers ConvTranspose.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("ConvTranspose", 1.., FLOATS, create));
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
