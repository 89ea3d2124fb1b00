//! Seeded weight initialisation.
//!
//! candle's `Init` hints draw from an unseeded thread RNG, which would make runs irreproducible;
//! projector weights are drawn here from ChaCha8 seeded by `ProjectorConfig::seed` instead.

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};

use crate::Result;

/// `shape`-shaped f64 tensor with entries `U(−bound, bound)`.
pub fn seeded_uniform(shape: &[usize], bound: f64, seed: u64) -> Result<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n).map(|_| rng.gen_range(-bound..bound)).collect();
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// `shape`-shaped f64 tensor with entries `N(0, std²)` (Box–Muller).
pub fn seeded_normal(shape: &[usize], std: f64, seed: u64) -> Result<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n)
        .map(|_| {
            let u1: f64 = 1.0 - rng.gen::<f64>();
            let u2: f64 = rng.gen::<f64>();
            std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect();
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// `t` converted to `dtype` on `device`.
pub fn placed(t: Tensor, dtype: DType, device: &Device) -> Result<Tensor> {
    Ok(t.to_dtype(dtype)?.to_device(device)?)
}
