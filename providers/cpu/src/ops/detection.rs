//! NonMaxSuppression: per batch and class, greedy selection of the
//! highest-scoring boxes, dropping those that overlap a selected box by
//! more than the IoU threshold.

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{optional, read_ints, required, unsupported_type};

struct Nms {
    center_point_box: bool,
}

/// `[x_min, x_max, y_min, y_max]` of a box in either encoding.
fn extent(b: &[f64], center: bool) -> [f64; 4] {
    if center {
        let (hw, hh) = (b[2] / 2.0, b[3] / 2.0);
        [b[0] - hw, b[0] + hw, b[1] - hh, b[1] + hh]
    } else {
        // [y1, x1, y2, x2], corners in either order.
        [
            b[1].min(b[3]),
            b[1].max(b[3]),
            b[0].min(b[2]),
            b[0].max(b[2]),
        ]
    }
}

/// Whether `a` and `b` overlap by more than `threshold` (intersection over union).
fn suppresses(a: &[f64], b: &[f64], center: bool, threshold: f64) -> bool {
    let (p, q) = (extent(a, center), extent(b, center));
    let (x0, x1) = (p[0].max(q[0]), p[1].min(q[1]));
    let (y0, y1) = (p[2].max(q[2]), p[3].min(q[3]));
    if x1 <= x0 || y1 <= y0 {
        return false;
    }
    let inter = (x1 - x0) * (y1 - y0);
    let area = |e: [f64; 4]| (e[1] - e[0]) * (e[3] - e[2]);
    let (a1, a2) = (area(p), area(q));
    let union = a1 + a2 - inter;
    if a1 <= 0.0 || a2 <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > threshold
}

impl Kernel for Nms {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (boxes, scores) = (required(inputs, 0)?, required(inputs, 1)?);
        let (&[nb, n, 4], &[sb, c, sn]) = (boxes.shape(), scores.shape()) else {
            return Err(Error::invalid(format!(
                "boxes must be [batch, boxes, 4] and scores [batch, classes, boxes], got {:?} and {:?}",
                boxes.shape(),
                scores.shape()
            )));
        };
        if nb != sb || n != sn {
            return Err(Error::invalid(format!(
                "boxes {:?} and scores {:?} disagree on batch or box count",
                boxes.shape(),
                scores.shape()
            )));
        }
        let scalar = |i: usize| -> Result<Option<f64>> {
            match optional(inputs, i) {
                Some(t) if !t.is_empty() => Ok(t.to_f64_vec().and_then(|v| v.first().copied())),
                _ => Ok(None),
            }
        };
        let max_out = match optional(inputs, 2) {
            Some(t) if !t.is_empty() => {
                read_ints(t, "max_output_boxes_per_class")?[0].max(0) as usize
            }
            _ => 0,
        };
        let iou = scalar(3)?.unwrap_or(0.0);
        let min_score = scalar(4)?;
        let bv = boxes
            .to_f64_vec()
            .ok_or_else(|| unsupported_type("NonMaxSuppression", boxes))?;
        let sv = scores
            .to_f64_vec()
            .ok_or_else(|| unsupported_type("NonMaxSuppression", scores))?;
        let mut out: Vec<i64> = Vec::new();
        for b in 0..nb {
            let boxes_b = &bv[b * n * 4..(b + 1) * n * 4];
            for cl in 0..c {
                let s = &sv[(b * c + cl) * n..][..n];
                let mut order: Vec<usize> = (0..n)
                    .filter(|&i| min_score.is_none_or(|t| s[i] > t))
                    .collect();
                // Highest score first; equal scores by box index.
                order.sort_by(|&i, &j| s[j].total_cmp(&s[i]).then(i.cmp(&j)));
                let mut kept: Vec<usize> = Vec::new();
                for i in order {
                    if kept.len() >= max_out {
                        break;
                    }
                    let bx = &boxes_b[i * 4..i * 4 + 4];
                    if kept.iter().all(|&k| {
                        !suppresses(bx, &boxes_b[k * 4..k * 4 + 4], self.center_point_box, iou)
                    }) {
                        kept.push(i);
                        out.extend([b as i64, cl as i64, i as i64]);
                    }
                }
            }
        }
        Ok(vec![Tensor::from_vec(vec![out.len() / 3, 3], out)?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Nms {
        center_point_box: node.int_or("center_point_box", 0)? != 0,
    }))
}

/// Registers NonMaxSuppression.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("NonMaxSuppression", 10.., &[], create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keeps_the_best_of_overlapping_boxes() {
        // Boxes 0 and 1 overlap heavily; box 2 is apart.
        let boxes = Tensor::from_vec(
            vec![1, 3, 4],
            vec![
                0.0f32, 0.0, 1.0, 1.0, 0.0, 0.1, 1.0, 1.1, 0.0, 10.0, 1.0, 11.0,
            ],
        )
        .unwrap();
        let scores = Tensor::from_vec(vec![1, 1, 3], vec![0.9f32, 0.95, 0.3]).unwrap();
        let max = Tensor::from_vec(vec![1], vec![3i64]).unwrap();
        let iou = Tensor::from_vec(vec![1], vec![0.5f32]).unwrap();
        let k = Nms {
            center_point_box: false,
        };
        let y = k
            .compute(&[Some(&boxes), Some(&scores), Some(&max), Some(&iou)])
            .unwrap();
        assert_eq!(y[0].shape(), &[2, 3]);
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[0, 0, 1, 0, 0, 2]);
        let thr = Tensor::from_vec(vec![1], vec![0.5f32]).unwrap();
        let y = k
            .compute(&[
                Some(&boxes),
                Some(&scores),
                Some(&max),
                Some(&iou),
                Some(&thr),
            ])
            .unwrap();
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[0, 0, 1]);
    }
}
