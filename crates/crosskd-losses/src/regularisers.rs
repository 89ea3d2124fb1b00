//! Teacher-free spectral regularisers (`docs/method.md`, "Teacher-free regulariser").
//!
//! All act on the student's feature `Z` seen as rows (`(N, C)` or `(N, C, H, W)` → `(n, d)`,
//! see `crosskd_projectors::rows`) and are divided by the number of rows `n`:
//!
//! - `tail`: `Σ_{i>k} σ_i(Z)²/n = ‖Z − Z V_k V_kᵀ‖²/n`, `V_k` the top-k right singular vectors
//!   of the batch, computed without gradient. Because `d(Σ_{i≤k} σ_i²) = 2 tr(V_k V_kᵀ Zᵀ dZ)`
//!   wherever `σ_k > σ_{k+1}`, the gradient autograd produces with `V_k` held constant,
//!   `2(Z − Z V_k V_kᵀ)/n`, is the exact gradient of the tail energy. `k` is fixed (`rank`) or the
//!   smallest `k` whose leading energy reaches the fraction `energy-fraction` of the total.
//! - `random-subspace`: `‖(I − Π_R) Z‖²/n`, `Π_R` the projection onto the span of `R = E·W`, a
//!   fixed seeded Gaussian map `W` (`d_E × rank`) of an earlier feature `E` of the same batch
//!   (pooled, or resized to `Z`'s spatial size): the expected spectral term of a random teacher.
//!   `Π_R` is a constant (no gradient to `E`).
//! - `energy`: `‖Z‖²/n`, or `‖Z − 1 μᵀ‖²/n` (centred, `μ` the batch mean of the rows).

use candle_core::{DType, Device, Tensor};
use crosskd_ops::linalg::{orthonormal_basis, project_onto_complement};
use crosskd_ops::pool::global_avg_pool2d;
use crosskd_ops::resize::resize_bilinear;
use crosskd_projectors::rows::feature_rows;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::host::{right_singular, to_tensor, RANK_REL_TOL};
use crate::{Error, LossTerms, Result};

/// How `tail` chooses `k`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TailRank {
    /// A fixed `k` (clamped to the number of singular values).
    Fixed(usize),
    /// The smallest `k` with `Σ_{i≤k} σ_i² ≥ f · Σ_i σ_i²`, `f ∈ (0, 1]`.
    EnergyFraction(f64),
}

/// The `k` that `rank` selects for the spectrum `sigma` (descending).
pub fn select_rank(sigma: &[f64], rank: TailRank) -> usize {
    match rank {
        TailRank::Fixed(k) => k.min(sigma.len()),
        TailRank::EnergyFraction(f) => {
            let total: f64 = sigma.iter().map(|s| s * s).sum();
            let mut acc = 0.0;
            for (i, s) in sigma.iter().enumerate() {
                acc += s * s;
                if acc >= f * total {
                    return i + 1;
                }
            }
            sigma.len()
        }
    }
}

/// `‖Z − Z V_k V_kᵀ‖²/n` with `V_k` constant (see the module documentation).
pub fn tail_spectral_energy(z: &Tensor, rank: TailRank) -> Result<Tensor> {
    let rows = feature_rows(z, "tail regulariser feature")?;
    let n = rows.dim(0)?;
    let (sigma, vt) = right_singular(&rows)?;
    let k = select_rank(&sigma, rank);
    let residual = if k == 0 {
        rows
    } else {
        let d = vt.cols;
        let vk = crosskd_ops::linalg::Matrix::from_row_major(vt.data[..k * d].to_vec(), k, d)?;
        let vk_t = to_tensor(&vk, rows.dtype(), rows.device())?; // k × d
        (&rows - rows.matmul(&vk_t.t()?)?.matmul(&vk_t)?)?
    };
    Ok(residual.sqr()?.sum_all()?.affine(1.0 / n as f64, 0.0)?)
}

/// The fixed Gaussian map `W ∈ R^{d_early × rank}` of `random-subspace` (entries `N(0, 1)`,
/// ChaCha8 seeded by `seed`).
pub fn random_map(
    d_early: usize,
    rank: usize,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data: Vec<f64> = (0..d_early * rank)
        .map(|_| {
            // Box–Muller: two uniforms in (0, 1] give one standard normal.
            let u1: f64 = 1.0 - rng.gen::<f64>();
            let u2: f64 = rng.gen::<f64>();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect();
    Ok(Tensor::from_vec(data, (d_early, rank), &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}

/// `‖(I − Π_R) Z‖²/n` with `R = rows(E)·W` (see the module documentation). `early` is pooled to
/// `(N, C_E)` when `z` is pooled, or resized to `z`'s spatial size when both are dense.
pub fn random_subspace_energy(z: &Tensor, early: &Tensor, map: &Tensor) -> Result<Tensor> {
    let rows = feature_rows(z, "random-subspace regulariser feature")?;
    let early = early.detach();
    let early = match (z.rank(), early.rank()) {
        (2, 4) => global_avg_pool2d(&early)?,
        (4, 4) if (early.dim(2)?, early.dim(3)?) != (z.dim(2)?, z.dim(3)?) => {
            resize_bilinear(&early, z.dim(2)?, z.dim(3)?)?
        }
        _ => early,
    };
    let e_rows = feature_rows(&early, "random-subspace early feature")?;
    if e_rows.dim(0)? != rows.dim(0)? || e_rows.dim(1)? != map.dim(0)? {
        return Err(Error::Shape {
            context: "random-subspace regulariser, early feature".into(),
            expected: format!(
                "{} rows of width {} (the feature has shape {:?})",
                rows.dim(0)?,
                map.dim(0)?,
                z.dims()
            ),
            got: early.dims().to_vec(),
        });
    }
    let r = e_rows.matmul(&map.to_dtype(e_rows.dtype())?)?;
    let basis = orthonormal_basis(&r, RANK_REL_TOL)?;
    let outside = project_onto_complement(&basis, &rows)?;
    Ok(outside
        .sqr()?
        .sum_all()?
        .affine(1.0 / rows.dim(0)? as f64, 0.0)?)
}

/// `‖Z‖²/n`, or `‖Z − 1 μᵀ‖²/n` when `centred`.
pub fn feature_energy(z: &Tensor, centred: bool) -> Result<Tensor> {
    let rows = feature_rows(z, "energy regulariser feature")?;
    let n = rows.dim(0)?;
    let rows = if centred {
        rows.broadcast_sub(&rows.mean_keepdim(0)?)?
    } else {
        rows
    };
    Ok(rows.sqr()?.sum_all()?.affine(1.0 / n as f64, 0.0)?)
}

fn default_weight() -> f64 {
    1.0
}

/// The `[regulariser]` section of a run config.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RegulariserConfig {
    /// `tail`: give exactly one of `rank` and `energy-fraction`.
    #[serde(rename_all = "kebab-case")]
    Tail {
        /// Fixed `k`.
        #[serde(default)]
        rank: Option<usize>,
        /// `k` from an energy fraction in (0, 1].
        #[serde(default)]
        energy_fraction: Option<f64>,
        /// Weight of the term (default 1).
        #[serde(default = "default_weight")]
        weight: f64,
    },
    /// `random-subspace`.
    #[serde(rename_all = "kebab-case")]
    RandomSubspace {
        /// Columns of the random map (the random teacher's width).
        rank: usize,
        /// Seed of the map (default 0).
        #[serde(default)]
        seed: u64,
        /// Weight of the term (default 1).
        #[serde(default = "default_weight")]
        weight: f64,
    },
    /// `energy`.
    #[serde(rename_all = "kebab-case")]
    Energy {
        /// Subtract the batch mean first (default false).
        #[serde(default)]
        centred: bool,
        /// Weight of the term (default 1).
        #[serde(default = "default_weight")]
        weight: f64,
    },
}

/// A validated teacher-free regulariser.
#[derive(Debug, Clone, Copy)]
pub struct Regulariser {
    config: RegulariserConfig,
}

impl Regulariser {
    /// Validates the configuration.
    pub fn new(config: RegulariserConfig) -> Result<Self> {
        let bad = |m: String| Err(Error::Config(format!("regulariser: {m}")));
        match config {
            RegulariserConfig::Tail {
                rank,
                energy_fraction,
                ..
            } => match (rank, energy_fraction) {
                (Some(_), None) => {}
                (None, Some(f)) if f > 0.0 && f <= 1.0 => {}
                (None, Some(f)) => {
                    return bad(format!("tail: energy-fraction must lie in (0, 1], got {f}"))
                }
                _ => return bad("tail: give exactly one of rank and energy-fraction".into()),
            },
            RegulariserConfig::RandomSubspace { rank: 0, .. } => {
                return bad("random-subspace: rank must be positive".into())
            }
            _ => {}
        }
        if !self_weight(&config).is_finite() {
            return bad(format!(
                "weight must be finite, got {}",
                self_weight(&config)
            ));
        }
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> RegulariserConfig {
        self.config
    }

    /// The term's name in logs: `tail`, `random-subspace` or `energy`.
    pub fn name(&self) -> &'static str {
        match self.config {
            RegulariserConfig::Tail { .. } => "tail",
            RegulariserConfig::RandomSubspace { .. } => "random-subspace",
            RegulariserConfig::Energy { .. } => "energy",
        }
    }

    /// The weight of the term.
    pub fn weight(&self) -> f64 {
        self_weight(&self.config)
    }

    /// The unweighted value for feature `z`; `early` is required by `random-subspace` only.
    pub fn value(&self, z: &Tensor, early: Option<&Tensor>) -> Result<Tensor> {
        match self.config {
            RegulariserConfig::Tail { rank: Some(k), .. } => {
                tail_spectral_energy(z, TailRank::Fixed(k))
            }
            RegulariserConfig::Tail {
                energy_fraction: Some(f),
                ..
            } => tail_spectral_energy(z, TailRank::EnergyFraction(f)),
            RegulariserConfig::Tail { .. } => Err(Error::Config("tail: no rank".into())),
            RegulariserConfig::RandomSubspace { rank, seed, .. } => {
                let early = early.ok_or_else(|| Error::MissingInput {
                    method: "random-subspace regulariser".into(),
                    what: "an early feature of the same batch".into(),
                })?;
                let map = random_map(early.dim(1)?, rank, seed, z.dtype(), z.device())?;
                random_subspace_energy(z, early, &map)
            }
            RegulariserConfig::Energy { centred, .. } => feature_energy(z, centred),
        }
    }

    /// The value as one named, weighted term.
    pub fn terms(&self, z: &Tensor, early: Option<&Tensor>) -> Result<LossTerms> {
        let mut out = LossTerms::default();
        out.push(self.name(), self.weight(), self.value(z, early)?);
        Ok(out)
    }
}

fn self_weight(c: &RegulariserConfig) -> f64 {
    match *c {
        RegulariserConfig::Tail { weight, .. }
        | RegulariserConfig::RandomSubspace { weight, .. }
        | RegulariserConfig::Energy { weight, .. } => weight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crosskd_ops::gradcheck::{assert_gradients, random_f64};
    use crosskd_ops::linalg::singular_values;

    fn scalar(t: &Tensor) -> f64 {
        t.to_scalar::<f64>().unwrap()
    }

    #[test]
    fn tail_equals_the_sum_of_trailing_squared_singular_values() {
        let z = random_f64(&[9, 5], 1).unwrap();
        let s: Vec<f64> = singular_values(&z).unwrap().to_vec1().unwrap();
        for k in 0..=5 {
            let expect: f64 = s[k..].iter().map(|v| v * v).sum::<f64>() / 9.0;
            let got = scalar(&tail_spectral_energy(&z, TailRank::Fixed(k)).unwrap());
            assert!((got - expect).abs() < 1e-12, "k = {k}: {got} vs {expect}");
        }
        // Tall matrices take the Gram route: same values.
        let tall = random_f64(&[40, 3], 2).unwrap();
        let s: Vec<f64> = singular_values(&tall).unwrap().to_vec1().unwrap();
        let got = scalar(&tail_spectral_energy(&tall, TailRank::Fixed(1)).unwrap());
        let expect = (s[1] * s[1] + s[2] * s[2]) / 40.0;
        assert!((got - expect).abs() < 1e-10 * expect);
    }

    #[test]
    fn energy_fraction_picks_the_smallest_sufficient_rank() {
        let s = [3.0, 2.0, 1.0, 0.0]; // energies 9, 4, 1 of 14
        assert_eq!(select_rank(&s, TailRank::EnergyFraction(0.5)), 1);
        assert_eq!(select_rank(&s, TailRank::EnergyFraction(0.9)), 2);
        assert_eq!(select_rank(&s, TailRank::EnergyFraction(1.0)), 3);
        assert_eq!(select_rank(&s, TailRank::Fixed(7)), 4);
    }

    #[test]
    fn tail_has_exact_gradients_where_the_spectrum_has_a_gap() {
        // Random features have distinct singular values almost surely (checked below).
        for (shape, rank) in [
            (vec![7, 4], TailRank::Fixed(2)),
            (vec![3, 6], TailRank::Fixed(1)),
            (vec![20, 3], TailRank::Fixed(1)),
            (vec![2, 3, 2, 2], TailRank::EnergyFraction(0.6)),
        ] {
            let z = random_f64(&shape, 3).unwrap();
            let rows = feature_rows(&z, "z").unwrap();
            let s: Vec<f64> = singular_values(&rows).unwrap().to_vec1().unwrap();
            let k = select_rank(&s, rank);
            assert!(
                k < s.len() && s[k - 1] - s[k] > 1e-2,
                "no spectral gap at k = {k}: {s:?}"
            );
            assert_gradients(
                &format!("tail {shape:?} {rank:?}"),
                |a| Ok(tail_spectral_energy(&a[0], rank)?),
                &[z],
                1e-6,
                1e-6,
            );
        }
    }

    #[test]
    fn random_subspace_matches_an_explicit_projection_and_has_exact_gradients() {
        let z = random_f64(&[8, 3], 4).unwrap();
        let early = random_f64(&[8, 5], 5).unwrap();
        let map = random_map(5, 2, 7, DType::F64, &Device::Cpu).unwrap();
        let r = early.matmul(&map).unwrap();
        // Independent projection: Π_R = R (RᵀR)⁻¹ Rᵀ with a 2×2 inverse by hand.
        let g = r.t().unwrap().matmul(&r).unwrap().to_vec2::<f64>().unwrap();
        let det = g[0][0] * g[1][1] - g[0][1] * g[1][0];
        let inv = Tensor::new(
            &[
                [g[1][1] / det, -g[0][1] / det],
                [-g[1][0] / det, g[0][0] / det],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let proj = r.matmul(&inv).unwrap().matmul(&r.t().unwrap()).unwrap();
        let outside = (&z - proj.matmul(&z).unwrap()).unwrap();
        let expect = scalar(&outside.sqr().unwrap().sum_all().unwrap()) / 8.0;
        let got = scalar(&random_subspace_energy(&z, &early, &map).unwrap());
        assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
        assert_gradients(
            "random-subspace",
            |a| Ok(random_subspace_energy(&a[0], &early, &map)?),
            &[z],
            1e-6,
            1e-6,
        );
    }

    #[test]
    fn random_subspace_pools_or_resizes_the_early_feature() {
        let reg = Regulariser::new(RegulariserConfig::RandomSubspace {
            rank: 2,
            seed: 1,
            weight: 1.0,
        })
        .unwrap();
        let pooled = random_f64(&[6, 3], 1).unwrap();
        let dense = random_f64(&[2, 3, 2, 2], 2).unwrap();
        let early = random_f64(&[6, 4, 5, 5], 3).unwrap();
        let early_dense = random_f64(&[2, 4, 4, 4], 4).unwrap();
        assert!(scalar(&reg.value(&pooled, Some(&early)).unwrap()) > 0.0);
        assert!(scalar(&reg.value(&dense, Some(&early_dense)).unwrap()) > 0.0);
        assert!(reg.value(&pooled, None).is_err());
    }

    #[test]
    fn energy_values_and_gradients() {
        let z = random_f64(&[5, 4], 6).unwrap();
        let total = scalar(&z.sqr().unwrap().sum_all().unwrap()) / 5.0;
        assert!((scalar(&feature_energy(&z, false).unwrap()) - total).abs() < 1e-12);
        let centred = scalar(&feature_energy(&z, true).unwrap());
        let mean_sq = scalar(&z.mean(0).unwrap().sqr().unwrap().sum_all().unwrap());
        assert!((centred - (total - mean_sq)).abs() < 1e-12);
        for c in [false, true] {
            assert_gradients(
                "energy",
                |a| Ok(feature_energy(&a[0], c)?),
                std::slice::from_ref(&z),
                1e-6,
                1e-6,
            );
        }
    }

    #[test]
    fn config_from_toml_and_validation() {
        let c: RegulariserConfig =
            toml::from_str("kind = \"tail\"\nenergy-fraction = 0.9\nweight = 0.1").unwrap();
        assert_eq!(
            c,
            RegulariserConfig::Tail {
                rank: None,
                energy_fraction: Some(0.9),
                weight: 0.1
            }
        );
        assert!(Regulariser::new(c).is_ok());
        let both = RegulariserConfig::Tail {
            rank: Some(2),
            energy_fraction: Some(0.9),
            weight: 1.0,
        };
        assert!(Regulariser::new(both).is_err());
        let c: RegulariserConfig = toml::from_str("kind = \"random-subspace\"\nrank = 8").unwrap();
        assert_eq!(
            c,
            RegulariserConfig::RandomSubspace {
                rank: 8,
                seed: 0,
                weight: 1.0
            }
        );
        assert!(toml::from_str::<RegulariserConfig>("kind = \"energy\"\ncentered = true").is_err());
    }
}
