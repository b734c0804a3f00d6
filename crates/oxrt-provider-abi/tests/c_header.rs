//! The C header `include/oxrt_provider.h` is generated from this crate with
//! cbindgen; this test fails when it is out of date. Regenerate with
//! `OXRT_BLESS=1 cargo test -p oxrt-provider-abi --test c_header`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn generate() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(Path::new(dir).join("cbindgen.toml"))
        .expect("read cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn header_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/oxrt_provider.h");
    let fresh = generate();
    if std::env::var_os("OXRT_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "{} is out of date: run OXRT_BLESS=1 cargo test -p oxrt-provider-abi --test c_header",
        path.display()
    );
    // The parts a C provider needs are all there.
    for item in [
        "OxrtProviderApi",
        "OxrtTensor",
        "OxrtOutputAllocator",
        "OXRT_PROVIDER_ABI_VERSION",
        "oxrt_provider_entry",
    ] {
        assert!(fresh.contains(item), "{item} missing from the header");
    }
}

#[test]
fn header_compiles_as_c() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = std::env::temp_dir().join(format!("oxrt_header_{}.c", std::process::id()));
    std::fs::write(
        &tmp,
        "#include \"oxrt_provider.h\"\nint check(const OxrtProviderApi *t) { return t->abi_version == OXRT_PROVIDER_ABI_VERSION; }\n",
    )
    .unwrap();
    let status = std::process::Command::new("cc")
        .args(["-fsyntax-only", "-Wall", "-Werror", "-I"])
        .arg(dir.join("include"))
        .arg(&tmp)
        .status();
    let _ = std::fs::remove_file(&tmp);
    match status {
        Ok(s) => assert!(s.success(), "the header does not compile as C"),
        Err(e) => eprintln!("skipped: no C compiler (`cc`) to check the header with: {e}"),
    }
}
