fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc: no system protobuf compiler is needed to build.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=proto/sal_sweep.proto");
    // The descriptor set feeds server reflection (`grpcurl` needs no .proto file).
    let descriptor = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("sal_sweep_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(descriptor)
        .compile_protos(&["proto/sal_sweep.proto"], &["proto"])?;
    Ok(())
}
