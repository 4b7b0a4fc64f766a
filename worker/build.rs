include!("../build-support/link_libtorch.rs");
include!("../build-support/git_commit.rs");

/// Compiles `csrc/` (a C++ shim over libtorch for what tch does not bind) against the headers of
/// the libtorch that `torch-sys` links: `DEP_TCH_LIBTORCH_LIB` is its `lib/`, the headers sit in
/// `include/` beside it.
fn compile_shim() {
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-changed=csrc/determinism.cpp");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        panic!("DEP_TCH_LIBTORCH_LIB is not set: torch-sys must be a direct dependency");
    };
    let lib = std::fs::canonicalize(&lib).unwrap_or_else(|_| std::path::PathBuf::from(lib));
    let include = lib.parent().map(|root| root.join("include")).unwrap_or_default();
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .warnings(false)
        .file("csrc/autocast.cpp")
        .file("csrc/determinism.cpp")
        .compile("worker_shim");
}

fn main() {
    compile_shim();
    git_commit();
    link_libtorch();
}
