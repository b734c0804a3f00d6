//! Loading provider libraries: a real cdylib built against the ABI alone,
//! and each way a library can be wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use oxrt_core::dylib::{LoadedProvider, ProviderLoadError};

/// Builds providers/abi-test-provider (its own target dir, so the outer
/// build's lock is not contended) and returns the cdylib's path.
fn test_provider() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = root.join("target/abi-test-provider");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "oxrt-abi-test-provider",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(&root)
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the test provider failed");
        let name = format!(
            "{}oxrt_abi_test_provider{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        );
        target.join("debug").join(name)
    })
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
