fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc: no system protobuf compiler is needed to build.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=proto/sal_sweep.proto");
    tonic_prost_build::configure().compile_protos(&["proto/sal_sweep.proto"], &["proto"])?;
    Ok(())
}
