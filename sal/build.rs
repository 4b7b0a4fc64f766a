include!("../build-support/link_libtorch.rs");

fn main() {
    // Only the tensor part links libtorch; the pure part (the coordinator's) links nothing.
    if std::env::var_os("CARGO_FEATURE_TORCH").is_some() {
        link_libtorch();
    }
}
