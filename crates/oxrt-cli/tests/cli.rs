//! The `oxrt` binary on the example model and on bad files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/mnist")
        .join(file)
}

fn oxrt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oxrt"))
        .args(args)
        .output()
        .expect("run oxrt")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn run_prints_top_k_for_the_classifier() {
    let model = example("model.onnx");
    let input = format!("input={}", example("samples.npy").display());
    let o = oxrt(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        &input,
        "--top-k",
        "2",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("logits: float [5, 10]"), "{out}");
    // The first sample is a 7 (see sample_labels.npy).
    assert!(out.contains("[0] top-2: class 7 ("), "{out}");
}

#[test]
fn run_writes_outputs_as_npy() {
    let dir = tempfile::tempdir().unwrap();
    let model = example("model.onnx");
    let input = format!("input={}", example("samples.npy").display());
    let o = oxrt(&[
        "run",
        model.to_str().unwrap(),
        "-i",
        &input,
        "--output-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let bytes = std::fs::read(dir.path().join("logits.npy")).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[5, 10]);
    let values = npy.into_vec::<f32>().unwrap();
    let best = values[..10]
        .iter()
        .enumerate()
        .fold(0, |b, (i, v)| if *v > values[b] { i } else { b });
    assert_eq!(best, 7);
}

#[test]
fn inspect_and_check_the_example() {
    let model = example("model.onnx");
    let o = oxrt(&["inspect", model.to_str().unwrap()]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.contains("opsets:    ai.onnx=13"), "{out}");
    assert!(
        out.contains("input                tensor(float) [batch, 1, 8, 8]"),
        "{out}"
    );
    assert!(out.contains("Conv                 2"), "{out}");
    assert!(out.contains("initializers: 6 tensors, 7.41 KiB"), "{out}");
    let o = oxrt(&["check", model.to_str().unwrap()]);
    assert!(o.status.success());
    let (out, _) = text(&o);
    assert!(
        out.contains("runnable (8 nodes, 6 after optimization (all): 6 on cpu)"),
        "{out}"
    );
    assert!(
        out.contains("activation fusion                       2"),
        "{out}"
    );
}

#[test]
fn bad_files_give_one_line_errors_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(example("model.onnx")).unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        ("empty.onnx", b"", "is empty"),
        (
            "text.onnx",
            b"hello, not a model\n",
            "not a valid ONNX model",
        ),
        (
            "truncated.onnx",
            &full[..full.len() / 3],
            "not a valid ONNX model",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        for cmd in ["check", "inspect"] {
            let o = oxrt(&[cmd, path.to_str().unwrap()]);
            let (_, err) = text(&o);
            assert_eq!(o.status.code(), Some(1), "{cmd} {name}");
            assert_eq!(err.lines().count(), 1, "{cmd} {name}: {err}");
            assert!(
                err.starts_with("error: ") && err.contains(expected) && err.contains(name),
                "{cmd} {name}: {err}"
            );
        }
    }
}

#[test]
fn run_reports_wrong_inputs_and_unknown_providers() {
    let model = example("model.onnx");
    let labels = format!("input={}", example("test_labels.npy").display());
    let o = oxrt(&["run", model.to_str().unwrap(), "-i", &labels]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o).1.trim(),
        "error: input 'input': expected element type float, got int64"
    );

    let o = oxrt(&["run", model.to_str().unwrap()]);
    assert!(text(&o).1.contains("no inputs given: pass --input NAME=FILE.npy for each of [input tensor(float) [batch, 1, 8, 8]]"));

    let o = oxrt(&[
        "run",
        model.to_str().unwrap(),
        "--provider",
        "tpu",
        "-i",
        "input=x.npy",
    ]);
    assert!(text(&o)
        .1
        .contains("execution provider 'tpu' is not available"));

    let o = oxrt(&["run", model.to_str().unwrap(), "-i", "input=/no/such.npy"]);
    assert!(text(&o).1.contains("/no/such.npy"));
}

#[test]
fn providers_lists_cpu_and_fpga_sim() {
    let o = oxrt(&["providers"]);
    assert!(o.status.success());
    let out = text(&o).0;
    assert!(out.starts_with("cpu "), "{out}");
    assert!(
        out.contains("fpga-sim") && out.contains("simulated FPGA"),
        "{out}"
    );
    let o = oxrt(&["providers", "--load", "/no/such/libx.so"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o)
        .1
        .contains("provider library /no/such/libx.so not found"));
}

#[test]
fn profile_on_fpga_sim_prints_steps_and_writes_a_chrome_trace() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    let model = example("model.onnx");
    let input = format!("input={}", example("samples.npy").display());
    let o = oxrt(&[
        "run",
        model.to_str().unwrap(),
        "-i",
        &input,
        "--provider",
        "fpga-sim,cpu",
        "--provider-option",
        "mac_units=256",
        &format!("--profile={}", trace.display()),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for needle in [
        "conv1    Conv               fpga-sim",
        "Upload",
        "Download",
        "flatten  Flatten            cpu",
        "total",
    ] {
        assert!(out.contains(needle), "{needle} missing from\n{out}");
    }
    let json = std::fs::read_to_string(&trace).unwrap();
    assert!(
        json.starts_with("{\"displayTimeUnit\"") || json.contains("\"traceEvents\""),
        "{json}"
    );
    assert!(json.contains("fpga-sim device"), "{json}");
    // Same top-1 as on CPU.
    let cpu = text(&oxrt(&["run", model.to_str().unwrap(), "-i", &input])).0;
    let top = |s: &str| {
        s.lines()
            .filter(|l| l.contains("top-3"))
            .map(|l| l.split(',').next().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(top(&out), top(&cpu));
    // A bad option is a clear error.
    let o = oxrt(&[
        "run",
        model.to_str().unwrap(),
        "-i",
        &input,
        "--provider",
        "fpga-sim",
        "--provider-option",
        "mac_units",
    ]);
    assert!(text(&o)
        .1
        .contains("--provider-option 'mac_units' must be KEY=VALUE"));
}
