//! ImageDecoder: a uint8 tensor of encoded bytes (BMP, JPEG, PNG, PNM, TIFF
//! or WebP, by the `image` crate) decoded to `[H, W, 3]` RGB or BGR, or
//! `[H, W, 1]` grayscale.

use oxrt_core::{
    DataType, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::kernel::required;

#[derive(Clone, Copy, Debug, PartialEq)]
enum PixelFormat {
    Rgb,
    Bgr,
    Grayscale,
}

struct ImageDecoder(PixelFormat);

/// ITU-R 601 luma with the integer rounding Pillow uses for "L".
fn luma(r: u8, g: u8, b: u8) -> u8 {
    let l = (u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16;
    l.min(255) as u8
}

impl Kernel for ImageDecoder {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let encoded = required(inputs, 0)?;
        let bytes = encoded.as_slice::<u8>()?;
        let format = image::guess_format(bytes).map_err(|e| {
            Error::NotSupported(format!("ImageDecoder: unrecognized image format ({e})"))
        })?;
        let img = image::load_from_memory_with_format(bytes, format).map_err(|e| {
            Error::invalid(format!(
                "ImageDecoder: cannot decode the {format:?} image: {e}"
            ))
        })?;
        let rgb = img.to_rgb8();
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let px = rgb.into_raw();
        let (channels, data): (usize, Vec<u8>) = match self.0 {
            PixelFormat::Rgb => (3, px),
            PixelFormat::Bgr => (
                3,
                px.chunks_exact(3)
                    .flat_map(|p| [p[2], p[1], p[0]])
                    .collect(),
            ),
            PixelFormat::Grayscale => (
                1,
                px.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect(),
            ),
        };
        Ok(vec![Tensor::from_vec(vec![h, w, channels], data)?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let format = match node.string_or("pixel_format", "RGB")? {
        "RGB" => PixelFormat::Rgb,
        "BGR" => PixelFormat::Bgr,
        "Grayscale" => PixelFormat::Grayscale,
        other => {
            return Err(Error::invalid(format!(
                "pixel_format must be RGB, BGR or Grayscale, got '{other}'"
            )))
        }
    };
    Ok(Box::new(ImageDecoder(format)))
}

/// Registers ImageDecoder.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new(
        "ImageDecoder",
        20..,
        &[DataType::U8],
        create,
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A 2x1 binary PPM: red then blue.
    #[test]
    fn decodes_pnm_in_each_pixel_format() {
        let mut bytes = b"P6\n2 1\n255\n".to_vec();
        bytes.extend([255, 0, 0, 0, 0, 255]);
        let t = Tensor::from_vec(vec![bytes.len()], bytes).unwrap();
        let run = |f| ImageDecoder(f).compute(&[Some(&t)]).unwrap().remove(0);
        let rgb = run(PixelFormat::Rgb);
        assert_eq!(rgb.shape(), &[1, 2, 3]);
        assert_eq!(rgb.as_slice::<u8>().unwrap(), &[255, 0, 0, 0, 0, 255]);
        assert_eq!(
            run(PixelFormat::Bgr).as_slice::<u8>().unwrap(),
            &[0, 0, 255, 255, 0, 0]
        );
        assert_eq!(
            run(PixelFormat::Grayscale).as_slice::<u8>().unwrap(),
            &[76, 29]
        );
        let junk = Tensor::from_vec(vec![3], vec![1u8, 2, 3]).unwrap();
        assert!(ImageDecoder(PixelFormat::Rgb)
            .compute(&[Some(&junk)])
            .is_err());
    }
}
