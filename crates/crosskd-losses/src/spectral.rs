//! Spectral diagnostics: singular values of a projector or of a batch of features, with the
//! stable rank `Σσ²/σ_max²` and the effective (entropy) rank `exp(−Σ p_i ln p_i)`, `p_i = σ_i/Σσ`.

use candle_core::Tensor;
use crosskd_ops::linalg::{effective_rank, stable_rank};
use crosskd_projectors::rows::feature_rows;
use crosskd_projectors::Projector;

use crate::host::right_singular;
use crate::Result;

/// A spectrum and its rank summaries.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrum {
    /// Singular values, descending.
    pub singular_values: Vec<f64>,
    /// `Σσ²/σ_max²` (0 for the zero matrix).
    pub stable_rank: f64,
    /// `exp(H(σ/Σσ))` (0 for the zero matrix).
    pub effective_rank: f64,
}

impl Spectrum {
    /// Summarises a spectrum.
    pub fn from_singular_values(singular_values: Vec<f64>) -> Self {
        let stable = stable_rank(&singular_values);
        let effective = effective_rank(&singular_values);
        Self {
            singular_values,
            stable_rank: stable,
            effective_rank: effective,
        }
    }

    /// The number of singular values above `rel_tol · σ_max`.
    pub fn numerical_rank(&self, rel_tol: f64) -> usize {
        let max = self.singular_values.first().copied().unwrap_or(0.0);
        self.singular_values
            .iter()
            .filter(|&&s| s > rel_tol * max && s > 0.0)
            .count()
    }
}

/// The spectrum of a 2-D matrix (tall matrices via their Gram matrix, see `host::right_singular`).
pub fn matrix_spectrum(m: &Tensor) -> Result<Spectrum> {
    let (s, _) = right_singular(m)?;
    Ok(Spectrum::from_singular_values(s))
}

/// The spectrum of a batch of features `(N, C)` or `(N, C, H, W)` as rows (no centring).
pub fn feature_spectrum(z: &Tensor) -> Result<Spectrum> {
    matrix_spectrum(&feature_rows(&z.detach(), "feature spectrum")?)
}

/// The spectrum of a projector's matrix `P` (`Projector::weight_matrix`).
pub fn projector_spectrum(p: &Projector) -> Result<Spectrum> {
    matrix_spectrum(&p.weight_matrix()?.detach())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn diagonal_matrix_spectrum_and_ranks() {
        let m = Tensor::new(
            &[[4.0f64, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]],
            &Device::Cpu,
        )
        .unwrap();
        let s = matrix_spectrum(&m).unwrap();
        assert!((s.singular_values[0] - 4.0).abs() < 1e-12);
        assert!((s.singular_values[1] - 2.0).abs() < 1e-12);
        assert!(s.singular_values[2].abs() < 1e-12);
        assert!((s.stable_rank - (16.0 + 4.0) / 16.0).abs() < 1e-12);
        // p = (2/3, 1/3): exp(−(2/3 ln 2/3 + 1/3 ln 1/3)).
        let h = -(2.0 / 3.0 * (2.0f64 / 3.0).ln() + 1.0 / 3.0 * (1.0f64 / 3.0).ln());
        assert!((s.effective_rank - h.exp()).abs() < 1e-9);
        assert_eq!(s.numerical_rank(1e-9), 2);
    }

    #[test]
    fn dense_features_use_positions_as_rows() {
        // Channels 0 and 1 equal: rank 1 at most... plus channel 2 independent: rank 2.
        let a = crosskd_ops::gradcheck::random_f64(&[2, 1, 3, 3], 1).unwrap();
        let b = crosskd_ops::gradcheck::random_f64(&[2, 1, 3, 3], 2).unwrap();
        let z = Tensor::cat(&[&a, &a, &b], 1).unwrap();
        let s = feature_spectrum(&z).unwrap();
        assert_eq!(s.singular_values.len(), 3);
        assert_eq!(s.numerical_rank(1e-9), 2);
    }
}
