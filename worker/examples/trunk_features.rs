//! Runs an architecture's trunk, with pretrained weights loaded by the worker's strict loader, on
//! images from a safetensors file and writes the feature maps to another: the Rust side of
//! `scripts/check_keras_resnet50v2.sh`, which compares them with Keras.
//!
//! cargo run -p worker --example trunk_features -- ARCHITECTURE WEIGHTS INPUTS OUTPUTS
//!
//! INPUTS holds `[N, 3, H, W]` f32 images in [0, 1] under any names; OUTPUTS gets each one's
//! `[N, C, h, w]` f32 features under the same name (inference mode: batch norms use their
//! running statistics).

use std::path::PathBuf;

use anyhow::Context;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use worker::models;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [architecture, weights, inputs, outputs] = args.as_slice() else {
        anyhow::bail!(
            "usage: trunk_features ARCHITECTURE WEIGHTS.safetensors INPUTS.safetensors OUTPUTS.safetensors"
        );
    };
    let vs = VarStore::new(Device::Cpu);
    let model = models::build_features(&vs.root(), architecture)?;
    models::load_pretrained(&vs, &PathBuf::from(weights))?;
    let images = Tensor::read_safetensors(inputs).with_context(|| format!("{inputs}: cannot read"))?;
    let _guard = tch::no_grad_guard();
    let features: Vec<(String, Tensor)> = images
        .into_iter()
        .map(|(name, batch)| {
            let output = model.forward_t(&batch.to_kind(Kind::Float), false).contiguous();
            (name, output)
        })
        .collect();
    Tensor::write_safetensors(&features, outputs).with_context(|| format!("{outputs}: cannot write"))?;
    for (name, output) in &features {
        println!("{name}: {:?}", output.size());
    }
    Ok(())
}
