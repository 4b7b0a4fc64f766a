//! Nadam as Keras 3 writes it (`keras/src/optimizers/nadam.py`), Dozat's momentum schedule:
//!
//! ```text
//! u_t     = beta_1 * (1 - 0.5 * 0.96^t)        u_{t+1} = beta_1 * (1 - 0.5 * 0.96^(t+1))
//! P_t     = u_1 * u_2 * ... * u_t  (kept as state)   P_{t+1} = P_t * u_{t+1}
//! m += (g - m) * (1 - beta_1)
//! v += (g² - v) * (1 - beta_2)
//! m_hat = u_{t+1} * m / (1 - P_{t+1}) + (1 - u_t) * g / (1 - P_t)
//! v_hat = v / (1 - beta_2^t)
//! w -= lr * m_hat / (sqrt(v_hat) + epsilon)
//! ```

use tch::{Device, Kind, Tensor};

use super::{AdamConfig, FlatOptimizer, FlatParameters, FlatState, UpdateRule};

/// Dozat's schedule decays the momentum by this factor per step (Keras hard-codes it).
const SCHEDULE_DECAY: f64 = 0.96;

pub type Nadam = FlatOptimizer<NadamRule>;

pub struct NadamRule {
    config: AdamConfig,
    /// Keras' `_u_product`, `P_t` above: a CPU f64 scalar, so that it travels with the state.
    u_product: Tensor,
    momentums: FlatState,
    velocities: FlatState,
    /// Two segment-sized buffers (`m_hat`, the denominator): no allocation per step.
    scratch: Vec<(Tensor, Tensor)>,
}

impl UpdateRule for NadamRule {
    type Config = AdamConfig;

    fn new(parameters: &FlatParameters, _learning_rate: f64, config: AdamConfig) -> Self {
        let momentums = parameters.zeros();
        let velocities = parameters.zeros();
        let scratch = parameters.segments().iter().map(|s| (s.zeros(), s.zeros())).collect();
        let u_product = Tensor::ones([], (Kind::Double, Device::Cpu));
        Self { config, u_product, momentums, velocities, scratch }
    }

    fn update(&mut self, parameters: &FlatParameters, learning_rate: f64, t: i64) {
        let t = t as f64;
        let AdamConfig { beta_1, beta_2, epsilon } = self.config;
        let u_t = beta_1 * (1.0 - 0.5 * SCHEDULE_DECAY.powf(t));
        let u_next = beta_1 * (1.0 - 0.5 * SCHEDULE_DECAY.powf(t + 1.0));
        let u_product = self.u_product.double_value(&[]) * u_t;
        let _ = self.u_product.fill_(u_product);
        let u_product_next = u_product * u_next;
        let momentum_weight = u_next / (1.0 - u_product_next);
        let gradient_weight = (1.0 - u_t) / (1.0 - u_product);
        // Rearranged to fewer passes over memory, the same update:
        //   m_hat = (a + b) * lerp(m, g, b / (a + b))        a, b: the weights of m and g
        //   lr * m_hat / (sqrt(v / c) + eps) = lr * (a + b) * sqrt(c) * lerp / (sqrt(v) + eps * sqrt(c))
        let weights = momentum_weight + gradient_weight;
        let root_correction = (1.0 - beta_2.powf(t)).sqrt();
        let scale = -learning_rate * weights * root_correction;
        for (s, segment) in parameters.segments().iter().enumerate() {
            let g = &segment.gradients;
            let mut m = self.momentums.segments[s].shallow_clone();
            let mut v = self.velocities.segments[s].shallow_clone();
            let (m_hat, denominator) = &self.scratch[s];
            let _ = m.lerp_(g, 1.0 - beta_1);
            let _ = g.square_out(denominator);
            let _ = v.lerp_(denominator, 1.0 - beta_2);
            let _ = m.lerp_scalar_out(m_hat, g, gradient_weight / weights);
            let _ = v.sqrt_out(denominator);
            let _ = denominator.shallow_clone().g_add_scalar_(epsilon * root_correction).g_div_scalar_(scale);
            let _ = segment.values.shallow_clone().addcdiv_(m_hat, denominator);
        }
    }

    /// The momentum-schedule product, every momentum, every velocity.
    fn state_tensors(&self) -> Vec<Tensor> {
        std::iter::once(self.u_product.shallow_clone())
            .chain(self.momentums.handles())
            .chain(self.velocities.handles())
            .collect()
    }
}
