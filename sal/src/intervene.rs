//! The tensor side of SAL: Equation 2's noise, Equation 3's plastic deformation, and the
//! grouping of a model's trainable parameters into layers.
//!
//! Random numbers come from a ChaCha generator seeded by (trial seed, epoch, intervention), drawn
//! on the host in f32 and copied to the parameter's device. Every rank therefore adds exactly the
//! same numbers whatever its device, and replicas stay bit-identical.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::nn::VarStore;
use tch::Tensor;

use crate::error::SalError;

/// Which intervention a random stream serves; part of the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Intervention {
    Noise = 1,
    Plastic = 2,
}

/// The generator for one intervention of one epoch of one trial, identical on every rank.
pub fn intervention_rng(trial_seed: u64, epoch: u32, intervention: Intervention) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&trial_seed.to_le_bytes());
    key[8..16].copy_from_slice(&u64::from(epoch).to_le_bytes());
    key[16..24].copy_from_slice(&(intervention as u64).to_le_bytes());
    key[24..].copy_from_slice(b"SAL-PDO\0");
    ChaCha8Rng::from_seed(key)
}

/// Standard-normal numbers shaped like `like`, on its device and of its kind.
fn standard_normal_like(like: &Tensor, rng: &mut ChaCha8Rng) -> Tensor {
    let values: Vec<f32> = (0..like.numel()).map(|_| StandardNormal.sample(rng)).collect();
    Tensor::from_slice(&values).view(like.size().as_slice()).to_kind(like.kind()).to_device(like.device())
}

/// A module that owns trainable parameters, e.g. a conv with its bias, a norm's affine pair.
#[derive(Debug)]
pub struct Layer {
    /// The module path, e.g. `layer4.2.conv3`.
    pub path: String,
    /// `(full name, parameter)` in creation order; shallow clones sharing the model's storage.
    pub parameters: Vec<(String, Tensor)>,
}

/// The model's trainable layers in construction order.
///
/// A parameter's layer is its name without the last component (`fc.weight` and `fc.bias` form
/// `fc`). Order is that of each layer's first parameter in the VarStore's creation order; names
/// come from the name map, matched to the ordered list by tensor identity, because
/// `trainable_variables()` is ordered but unnamed.
pub fn trainable_layers(vs: &VarStore) -> Vec<Layer> {
    let named = vs.variables();
    let mut layers: Vec<Layer> = Vec::new();
    for tensor in vs.trainable_variables() {
        let Some((name, _)) = named.iter().find(|(_, t)| same_tensor(t, &tensor)) else {
            continue;
        };
        let path = match name.rsplit_once('.') {
            Some((path, _)) => path.to_string(),
            None => String::new(),
        };
        match layers.iter_mut().find(|layer| layer.path == path) {
            Some(layer) => layer.parameters.push((name.clone(), tensor)),
            None => layers.push(Layer { path, parameters: vec![(name.clone(), tensor)] }),
        }
    }
    layers
}

fn same_tensor(a: &Tensor, b: &Tensor) -> bool {
    a.data_ptr() == b.data_ptr() && a.size() == b.size() && a.kind() == b.kind()
}

/// Equation 2: `w += sigma * N(0, 1)` on every trainable parameter, in creation order.
pub fn apply_noise(vs: &VarStore, sigma: f64, rng: &mut ChaCha8Rng) {
    let _guard = tch::no_grad_guard();
    for parameter in vs.trainable_variables() {
        let noise = standard_normal_like(&parameter, rng);
        let mut target = parameter.shallow_clone();
        let _ = target.g_add_(&(noise * sigma));
    }
}

/// Equation 3 on the last `count` trainable layers: `w = scale * w + std * N(0, 1)`.
/// Returns the paths of the layers it deformed. Fewer layers than `count` deforms them all.
pub fn apply_plastic(
    vs: &VarStore,
    count: usize,
    scale: f64,
    std: f64,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<String>, SalError> {
    let layers = trainable_layers(vs);
    if layers.is_empty() {
        return Err(SalError::NoTrainableLayers { available: 0 });
    }
    let _guard = tch::no_grad_guard();
    let first = layers.len().saturating_sub(count);
    let mut deformed = Vec::new();
    for layer in &layers[first..] {
        for (_, parameter) in &layer.parameters {
            let noise = standard_normal_like(parameter, rng);
            let mut target = parameter.shallow_clone();
            let _ = target.g_mul_scalar_(scale);
            let _ = target.g_add_(&(noise * std));
        }
        deformed.push(layer.path.clone());
    }
    Ok(deformed)
}
