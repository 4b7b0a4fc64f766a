// For crates that link no libtorch themselves (`common`, `datasets`, `coordinator`), via `include!`.
//
// They depend on `sal` without its `torch` feature. But cargo unifies features across the
// packages of one build, so `cargo build --workspace` and `cargo test --workspace` compile `sal`
// once, with `torch`, for every member, and these crates' binaries and tests then need libtorch
// at run time. An rpath to the project's libtorch (`LIBTORCH`, set by .cargo/config.toml) keeps
// such builds runnable; a crate built alone (`cargo build -p coordinator`) links no libtorch, and
// the rpath is inert.
fn rpath_to_libtorch() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Some(libtorch) = std::env::var_os("LIBTORCH") {
        let lib = std::path::Path::new(&libtorch).join("lib");
        let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
