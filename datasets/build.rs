include!("../build-support/rpath_libtorch.rs");

fn main() {
    rpath_to_libtorch();
}
