//! Provider shared libraries: real cdylibs built against the ABI alone (the
//! misbehaving-on-demand test provider and fpga-sim), loaded from their
//! paths, each way a library can be wrong, and whole models running on them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{bytes, model, node, vi, D};
use oxrt::core::dylib::{LoadedProvider, ProviderLoadError};
use oxrt::core::profile::EventKind;
use oxrt::{Error, Provider, Session, Tensor};

/// Builds both provider libraries (in their own target dir, so the outer
/// build's lock is not contended) and returns the directory holding them.
fn libraries() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = root.join("target/provider-libraries");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "oxrt-abi-test-provider"])
            .args(["-p", "oxrt-provider-fpga-sim", "--target-dir"])
            .arg(&target)
            .current_dir(&root)
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the provider libraries failed");
        target.join("debug")
    })
}

fn library(crate_name: &str) -> PathBuf {
    libraries().join(format!(
        "{}{crate_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

fn test_provider() -> PathBuf {
    library("oxrt_abi_test_provider")
}

fn fpga_sim() -> PathBuf {
    library("oxrt_provider_fpga_sim")
}

fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn loads_a_provider_and_passes_options() {
    let p = LoadedProvider::load(test_provider(), &opts(&[("label", "unit-7")])).unwrap();
    assert_eq!((p.name(), p.version()), ("abi-test", "0.1.0"));
    assert_eq!(p.device_description(), "test device (unit-7)");
    // Two instances from one library, dropped in any order.
    let q = LoadedProvider::load(test_provider(), &[]).unwrap();
    drop(p);
    assert_eq!(q.device_description(), "test device (default)");
}

#[test]
fn missing_file() {
    let err = LoadedProvider::load("/no/such/libprovider.so", &[])
        .err()
        .unwrap();
    assert!(matches!(err, ProviderLoadError::NotFound { .. }));
    assert_eq!(
        err.to_string(),
        "provider library /no/such/libprovider.so not found"
    );
}

#[test]
fn not_a_library() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libfake.so");
    std::fs::write(&path, "not an ELF file").unwrap();
    let err = LoadedProvider::load(&path, &[]).err().unwrap();
    assert!(
        matches!(err, ProviderLoadError::NotALibrary { .. }),
        "{err}"
    );
    // The loader's reason is included, not just "dlopen failed".
    assert!(err.to_string().contains("libfake.so"), "{err}");
}

#[test]
fn missing_entry_symbol() {
    let err = LoadedProvider::load_with_entry(test_provider(), "oxrt_provider_entry_nope", &[])
        .err()
        .unwrap();
    assert!(
        matches!(err, ProviderLoadError::MissingSymbol { .. }),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("does not export the entry symbol 'oxrt_provider_entry_nope'"));
}

#[test]
fn abi_version_mismatch_names_both_versions() {
    let err = LoadedProvider::load_with_entry(test_provider(), "oxrt_provider_entry_v99", &[])
        .err()
        .unwrap();
    match &err {
        ProviderLoadError::AbiMismatch { host, provider, .. } => {
            assert_eq!((*host, *provider), (1, 99))
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .contains("speaks ABI version 99, this oxrt speaks ABI version 1"),
        "{err}"
    );
}

#[test]
fn failing_and_panicking_init_are_errors_with_the_message() {
    let err = LoadedProvider::load(test_provider(), &opts(&[("fail_init", "1")]))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "provider 'abi-test' from {} failed to initialize: simulated init failure: device 7 is not present",
            test_provider().display()
        )
    );
    let err = LoadedProvider::load(test_provider(), &opts(&[("panic_init", "1")]))
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("provider panicked: panic_init was requested"),
        "{err}"
    );
}

#[test]
fn a_panicking_entry_point_is_caught() {
    let err = LoadedProvider::load_with_entry(test_provider(), "oxrt_provider_entry_panic", &[])
        .err()
        .unwrap();
    assert!(matches!(err, ProviderLoadError::BadTable { .. }), "{err}");
    assert!(err.to_string().contains("Internal"), "{err}");
}

/// A one-node model: y = Neg(x), x of shape [2, 3].
fn neg_model() -> Vec<u8> {
    let g = model(
        vec![node("Neg", "negate", &["x"], &["y"])],
        vec![vi("x", 1, &[D::N(2), D::N(3)])],
        vec![vi("y", 1, &[D::N(2), D::N(3)])],
        vec![],
        13,
    );
    bytes(&g)
}

fn neg_session(options: &[(&str, &str)]) -> Session {
    Session::builder()
        .with_provider_library(test_provider(), options.iter().copied())
        .commit_from_memory(&neg_model())
        .unwrap()
}

#[test]
fn a_library_provider_runs_nodes_in_host_memory() {
    let s = neg_session(&[]);
    assert_eq!(s.node_placement(), vec![("negate", "abi-test")]);
    let x = Tensor::from_vec(vec![2, 3], vec![1.0f32, -2.0, 3.5, 0.0, 5.0, -6.0]).unwrap();
    let out = s.run([("x", x)]).unwrap();
    assert_eq!(
        out["y"].as_slice::<f32>().unwrap(),
        &[-1.0, 2.0, -3.5, -0.0, -5.0, 6.0]
    );
}

#[test]
fn failing_and_panicking_compute_are_errors_from_run() {
    let x = || Tensor::from_vec(vec![2, 3], vec![0.0f32; 6]).unwrap();
    let err = neg_session(&[("fail_compute", "1")])
        .run([("x", x())])
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("node 'negate' (Neg)"), "{msg}");
    assert!(
        msg.contains("provider 'abi-test' failed in compute (Internal)"),
        "{msg}"
    );
    assert!(msg.contains("the device fell off the bus"), "{msg}");
    let s = neg_session(&[("panic_compute", "1")]);
    for _ in 0..2 {
        // The host survives and the session stays usable.
        let msg = s.run([("x", x())]).unwrap_err().to_string();
        assert!(
            msg.contains("provider panicked: panic_compute was requested"),
            "{msg}"
        );
    }
}

#[test]
fn session_builder_reports_load_errors() {
    let err = Session::builder()
        .with_provider_library("/no/such/libfoo.so", Vec::<(String, String)>::new())
        .commit_from_memory(&neg_model())
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            Error::ProviderLibrary(ProviderLoadError::NotFound { .. })
        ),
        "{err}"
    );
    let err = Session::builder()
        .with_provider_library(test_provider(), [("fail_init", "1")])
        .commit_from_memory(&neg_model())
        .err()
        .unwrap();
    assert!(err.to_string().contains("device 7 is not present"), "{err}");
}

/// The example classifier's held-out images and CPU logits.
fn mnist_reference() -> (Tensor, Vec<f32>) {
    let dir = common::mnist_dir();
    let images = common::read_npy(&dir.join("test_images.npy"));
    let cpu = Session::builder()
        .commit_from_file(dir.join("model.onnx"))
        .unwrap();
    let logits = cpu.run([("input", images.clone())]).unwrap()["logits"]
        .as_slice::<f32>()
        .unwrap()
        .to_vec();
    (images, logits)
}

fn argmax_rows(v: &[f32]) -> Vec<usize> {
    v.chunks(10)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
                .0
        })
        .collect()
}

fn check_against_cpu(session: &Session) {
    let (images, expected) = mnist_reference();
    let (out, profile) = session.run_with_profile([("input", images)]).unwrap();
    let got = out["logits"].as_slice::<f32>().unwrap();
    let diff = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff <= 1e-4, "max |fpga-sim - cpu| = {diff}");
    assert_eq!(argmax_rows(got), argmax_rows(&expected));
    // Every node but Flatten ran on the device, with copies at the boundaries.
    let placement = session.node_placement();
    let on_device = placement.iter().filter(|(_, p)| *p == "fpga-sim").count();
    assert_eq!((on_device, placement.len()), (7, 8), "{placement:?}");
    let kinds = |k: EventKind| profile.events.iter().filter(|e| e.kind == k).count();
    assert_eq!(
        (kinds(EventKind::Upload), kinds(EventKind::Download)),
        (2, 2)
    );
    for e in profile.events.iter().filter(|e| e.provider == "fpga-sim") {
        assert!(e.device.device_ns > 0, "{e:?}");
    }
    assert_eq!(profile.events[0].device.bytes_to_device, 360 * 64 * 4);
}

#[test]
fn the_example_classifier_runs_on_the_fpga_sim_library() {
    let s = Session::builder()
        .with_provider_library(fpga_sim(), [("mac_units", "512")])
        .commit_from_file(common::mnist_dir().join("model.onnx"))
        .unwrap();
    check_against_cpu(&s);
}

#[cfg(feature = "fpga-sim")]
#[test]
fn the_linked_fpga_sim_goes_through_the_same_table() {
    let s = Session::builder()
        .with_providers([Provider::FpgaSim(vec![])])
        .commit_from_file(common::mnist_dir().join("model.onnx"))
        .unwrap();
    check_against_cpu(&s);
    let p: Provider = "fpga-sim".parse().unwrap();
    assert!(matches!(p, Provider::FpgaSim(_)));
}

#[test]
fn fpga_sim_options_are_checked_and_device_memory_is_bounded() {
    let err = LoadedProvider::load(fpga_sim(), &opts(&[("warp_speed", "9")]))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("unknown option 'warp_speed'"),
        "{err}"
    );
    // 1 MiB of device memory cannot hold a 4 MiB input.
    let s = Session::builder()
        .with_provider_library(fpga_sim(), [("ddr_mib", "1")])
        .commit_from_file(common::mnist_dir().join("model.onnx"))
        .unwrap();
    let big = Tensor::from_vec(vec![16384, 1, 8, 8], vec![0.5f32; 16384 * 64]).unwrap();
    let msg = s.run([("input", big)]).unwrap_err().to_string();
    assert!(msg.contains("device out of memory"), "{msg}");
    let p = LoadedProvider::load(fpga_sim(), &[]).unwrap();
    assert!(
        p.device_description().contains("simulated FPGA"),
        "{}",
        p.device_description()
    );
}
