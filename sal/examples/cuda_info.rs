//! Prints what libtorch sees: proof that `libtorch_cuda.so` is linked (see
//! `build-support/link_libtorch.rs`) and that NCCL loads where the `nccl` feature is on.
//!
//! `cargo run -p sal --example cuda_info [--features nccl]`

fn main() {
    let count = tch::Cuda::device_count();
    println!("cuda available: {}", tch::Cuda::is_available());
    println!("cuda devices: {count}");
    println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
    for device in 0..count {
        let probe = tch::Tensor::ones([2], (tch::Kind::Float, tch::Device::Cuda(device as usize)));
        println!("cuda:{device}: sum of ones = {}", probe.sum(tch::Kind::Float).double_value(&[]));
    }
    #[cfg(feature = "nccl")]
    match sal::collective::nccl_unique_id() {
        Ok(_) => println!("nccl: loaded"),
        Err(e) => println!("nccl: {e}"),
    }
    #[cfg(not(feature = "nccl"))]
    println!("nccl: not built (feature `nccl` off)");
}
