//! The digit-classifier walkthrough: open a session, read the input
//! metadata, run, softmax + argmax, print the predicted digits, and report
//! accuracy on the held-out test set, in float32 and in fp16 mixed
//! precision.
//!
//! Run with `cargo run --release --example mnist`.

use std::error::Error;
use std::path::{Path, PathBuf};

use oxrt::{Dim, Session, Tensor};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mnist")
}

/// Reads a `.npy` file into a tensor (float32 or int64).
fn read_npy(path: &Path) -> Result<Tensor, Box<dyn Error>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let tensor = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float => {
            Tensor::from_vec(shape, npy.into_vec::<f32>()?)?
        }
        _ => Tensor::from_vec(shape, npy.into_vec::<i64>()?)?,
    };
    Ok(tensor)
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|v| v / sum).collect()
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// How many rows of `logits` pick their label.
fn accuracy(logits: &[f32], labels: &[i64]) -> usize {
    logits
        .chunks(10)
        .zip(labels)
        .filter(|(row, &label)| argmax(row) as i64 == label)
        .count()
}

fn show_digit(pixels: &[f32]) {
    for row in pixels.chunks(8) {
        let line: String = row
            .iter()
            .map(|&p| match p {
                p if p > 0.75 => '#',
                p if p > 0.4 => '+',
                p if p > 0.1 => '.',
                _ => ' ',
            })
            .collect();
        println!("    |{line}|");
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = data_dir().canonicalize()?;
    let session = Session::builder().commit_from_file(dir.join("model.onnx"))?;

    let input = &session.inputs()[0];
    let output = &session.outputs()[0];
    println!("model:  {}", session.source());
    println!("input:  {} {}", input.name, input.ty);
    println!("output: {} {}", output.name, output.ty);
    let symbolic: Vec<&Dim> = input
        .ty
        .dims()
        .unwrap_or_default()
        .iter()
        .filter(|d| matches!(d, Dim::Symbolic(_)))
        .collect();
    println!("symbolic dims: {symbolic:?}\n");

    let samples = read_npy(&dir.join("samples.npy"))?;
    let labels = read_npy(&dir.join("sample_labels.npy"))?;
    let pixels = samples.as_slice::<f32>()?.to_vec();
    let outputs = session.run([(input.name.as_str(), samples)])?;
    let logits = outputs[0].as_slice::<f32>()?;
    for (i, (row, label)) in logits.chunks(10).zip(labels.as_slice::<i64>()?).enumerate() {
        let probs = softmax(row);
        let digit = argmax(&probs);
        println!(
            "sample {i}: predicted {digit} (p = {:.3}), label {label}",
            probs[digit]
        );
        if i == 0 {
            show_digit(&pixels[..64]);
        }
    }

    let images = read_npy(&dir.join("test_images.npy"))?;
    let labels = read_npy(&dir.join("test_labels.npy"))?;
    let labels = labels.as_slice::<i64>()?;
    let n = images.shape()[0];
    let outputs = session.run([(input.name.as_str(), images.clone())])?;
    let logits = outputs[0].as_slice::<f32>()?;
    let correct = accuracy(logits, labels);
    println!(
        "\nheld-out accuracy: {correct}/{n} = {:.2}%",
        100.0 * correct as f64 / n as f64
    );

    // The same model in fp16 mixed precision.
    let half = Session::builder()
        .with_fp16(true)
        .commit_from_file(dir.join("model.onnx"))?;
    let outputs = half.run([(input.name.as_str(), images)])?;
    let half_logits = outputs[0].as_slice::<f32>()?;
    let half_correct = accuracy(half_logits, labels);
    let diff = logits
        .iter()
        .zip(half_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "fp16 mixed precision: {half_correct}/{n} = {:.2}% ({:+} digits), max |logit change| {diff:.4}",
        100.0 * half_correct as f64 / n as f64,
        half_correct as i64 - correct as i64
    );
    Ok(())
}
