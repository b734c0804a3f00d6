//! Compiles the vendored ONNX schema with protox (pure Rust) and prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/onnx/onnx-ml.proto", "proto/onnx/onnx-data.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let mut config = prost_build::Config::new();
    // `raw_data` and string payloads become `Bytes`, so a model decoded from a
    // memory map keeps its weights as slices of the map instead of copies.
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
