//! The per-side normalisations of [`crate::FeatureNorm`], applied to row matrices.

use candle_core::Tensor;
use crosskd_ops::norm::{batch_norm_train, layer_norm};

use crate::{FeatureNorm, Result};

/// ε of batch and layer normalisation (PyTorch's default).
pub const NORM_EPS: f64 = 1e-5;
/// ε of L2 normalisation: rows are divided by `sqrt(‖z‖² + ε²)`, which is smooth at zero.
pub const L2_EPS: f64 = 1e-8;

/// Applies `norm` to a row matrix `(n, d)`.
///
/// - batch norm: `(z_ij − μ_j)/sqrt(σ²_j + ε)` with batch mean and biased variance of column `j`;
/// - layer norm: `(z_ij − μ_i)/sqrt(σ²_i + ε)` with the mean and biased variance of row `i`;
/// - L2: `z_ij / sqrt(Σ_k z_ik² + ε²)`.
pub fn normalise_rows(rows: &Tensor, norm: FeatureNorm) -> Result<Tensor> {
    Ok(match norm {
        FeatureNorm::None => rows.clone(),
        FeatureNorm::BatchNorm => batch_norm_train(rows, None, None, NORM_EPS)?.0,
        FeatureNorm::LayerNorm => layer_norm(rows, None, None, NORM_EPS)?,
        FeatureNorm::L2 => {
            let norm = rows
                .sqr()?
                .sum_keepdim(1)?
                .affine(1.0, L2_EPS * L2_EPS)?
                .sqrt()?;
            rows.broadcast_div(&norm)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crosskd_ops::gradcheck::{assert_gradients, random_f64};

    #[test]
    fn l2_rows_have_unit_norm() {
        let x = random_f64(&[5, 4], 3).unwrap();
        let y = normalise_rows(&x, FeatureNorm::L2).unwrap();
        let norms: Vec<f64> = y.sqr().unwrap().sum(1).unwrap().to_vec1().unwrap();
        for n in norms {
            assert!((n - 1.0).abs() < 1e-12, "row norm² {n}");
        }
    }

    #[test]
    fn batch_norm_columns_are_standardised() {
        let x = random_f64(&[7, 3], 4).unwrap();
        let y = normalise_rows(&x, FeatureNorm::BatchNorm).unwrap();
        let mean: Vec<f64> = y.mean(0).unwrap().to_vec1().unwrap();
        let var: Vec<f64> = y.sqr().unwrap().mean(0).unwrap().to_vec1().unwrap();
        for (m, v) in mean.iter().zip(&var) {
            assert!(m.abs() < 1e-12);
            assert!((v - 1.0).abs() < 1e-3, "variance {v}");
        }
    }

    #[test]
    fn normalisations_have_exact_gradients() {
        for norm in [
            FeatureNorm::BatchNorm,
            FeatureNorm::LayerNorm,
            FeatureNorm::L2,
        ] {
            let x = random_f64(&[6, 4], 5).unwrap();
            assert_gradients(
                &format!("{norm:?}"),
                |a| normalise_rows(&a[0], norm).map_err(Into::into),
                &[x],
                1e-6,
                1e-6,
            );
        }
    }
}
