// Shared by every crate that links an executable (binaries and test binaries), via `include!`.
//
// Two problems with linking libtorch from the PyPI wheel, and their fixes (tch-rs issue #907):
// - the executable must find `libtorch*.so` without the user exporting LD_LIBRARY_PATH: an rpath
//   to the wheel's `torch/lib` (DEP_TCH_LIBTORCH_LIB is set because `torch-sys` is a direct
//   dependency);
// - under `--as-needed` the linker drops `libtorch_cuda.so`, since no symbol of it is referenced
//   directly, and the program then sees no GPU: link `-ltorch` with `--no-as-needed`.
// The NCCL library the wheel brings sits in `nvidia/nccl/lib` beside `torch/`; an rpath to it lets
// the NCCL backend load it at run time on GPU nodes.
fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" {
        return;
    }
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        // `.venv/libtorch` is a link into site-packages; NCCL is found relative to the real folder.
        let lib = std::fs::canonicalize(&lib).unwrap_or_else(|_| std::path::PathBuf::from(lib));
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        if let Some(site_packages) = lib.parent().and_then(|torch| torch.parent()) {
            let nccl = site_packages.join("nvidia").join("nccl").join("lib");
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", nccl.display());
        }
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
}
