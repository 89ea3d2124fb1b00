//! The polar retraction that keeps an orthogonal projector orthogonal.
//!
//! A matrix `W ∈ R^{a×b}` is (semi-)orthogonal when its shorter side is orthonormal:
//! `W Wᵀ = I_a` if `a ≤ b`, `Wᵀ W = I_b` otherwise. After a gradient step `W` leaves this set; we
//! map it back to the closest such matrix in Frobenius norm, the polar factor `U Vᵀ` of its SVD
//! `W = U Σ Vᵀ` (every singular value set to 1). This is a retraction on the Stiefel manifold:
//! for a small step it moves `W` by second-order amounts only, so projected gradient descent
//! keeps its first-order behaviour.
//!
//! The polar factor is computed with the Newton–Schulz iteration
//! `W ← 1.5·W − 0.5·(W Wᵀ) W` (or `W (Wᵀ W)` for tall `W`), which sends each singular value
//! through `σ ← 1.5σ − 0.5σ³`, converging quadratically to 1 for `0 < σ < √3` while keeping the
//! singular vectors. It needs only matrix products (so it runs on the tensor's device) and, near
//! orthogonality (the case after each optimiser step), two or three iterations. To guarantee
//! `σ_max < √3` the matrix is first divided by `sqrt(max(1, ‖G‖_∞))`, an upper bound on `σ_max`
//! (`G` the Gram matrix of the shorter side). The iteration runs in f64.

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// Largest `|G − I|` entry accepted as orthogonal after the iteration.
pub const ORTHOGONALITY_TOL: f64 = 1e-10;
/// Iteration cap; from a random start about `log_1.5(σ_max/σ_min) + 5` iterations are needed.
pub const MAX_ITERATIONS: usize = 200;

/// The Gram matrix of the shorter side: `W Wᵀ` for wide or square `W`, `Wᵀ W` for tall `W`.
fn short_gram(w: &Tensor) -> Result<Tensor> {
    let (a, b) = w.dims2()?;
    Ok(if a <= b {
        w.matmul(&w.t()?)?
    } else {
        w.t()?.matmul(w)?
    })
}

/// `max_ij |G_ij − δ_ij|` for the short-side Gram matrix `G` of `w`: 0 exactly when `w` is
/// (semi-)orthogonal.
pub fn orthogonality_error(w: &Tensor) -> Result<f64> {
    let w = w.to_dtype(DType::F64)?;
    let g = short_gram(&w)?;
    let k = g.dim(0)?;
    let eye = Tensor::eye(k, DType::F64, w.device())?;
    Ok(g.sub(&eye)?.abs()?.max_all()?.to_scalar::<f64>()?)
}

/// The polar factor of a 2-D `w` (see the module documentation), in `w`'s dtype.
pub fn polar_factor(w: &Tensor) -> Result<Tensor> {
    let dtype = w.dtype();
    let (a, b) = w.dims2()?;
    let mut x = w.to_dtype(DType::F64)?;
    let k = a.min(b);
    let eye = Tensor::eye(k, DType::F64, w.device())?;
    let row_sums = short_gram(&x)?.abs()?.sum(1)?;
    let bound = row_sums.max_all()?.to_scalar::<f64>()?;
    if !bound.is_finite() || bound == 0.0 {
        return Err(Error::RetractionDiverged {
            iterations: 0,
            residual: bound,
        });
    }
    if bound > 1.0 {
        x = x.affine(1.0 / bound.sqrt(), 0.0)?;
    }
    let mut residual = f64::INFINITY;
    for iteration in 0..MAX_ITERATIONS {
        let g = short_gram(&x)?;
        residual = g.sub(&eye)?.abs()?.max_all()?.to_scalar::<f64>()?;
        if residual <= ORTHOGONALITY_TOL {
            return Ok(x.to_dtype(dtype)?);
        }
        if !residual.is_finite() {
            return Err(Error::RetractionDiverged {
                iterations: iteration,
                residual,
            });
        }
        let gx = if a <= b { g.matmul(&x)? } else { x.matmul(&g)? };
        x = (x.affine(1.5, 0.0)? - gx.affine(0.5, 0.0)?)?;
    }
    Err(Error::RetractionDiverged {
        iterations: MAX_ITERATIONS,
        residual,
    })
}

/// A seeded Gaussian matrix, for tests.
#[cfg(test)]
pub(crate) fn gaussian(a: usize, b: usize, seed: u64) -> Tensor {
    // Box–Muller on a small LCG keeps the crate free of an RNG dependency.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64 + 0.5) / ((1u64 << 53) as f64)
    };
    let data: Vec<f64> = (0..a * b)
        .map(|_| (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos())
        .collect();
    Tensor::from_vec(data, (a, b), &candle_core::Device::Cpu).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_matrices_become_orthogonal_for_every_shape() {
        for (a, b) in [(5, 5), (3, 7), (8, 4)] {
            let w = gaussian(a, b, 11 + a as u64);
            assert!(orthogonality_error(&w).unwrap() > 0.1);
            let q = polar_factor(&w).unwrap();
            assert!(
                orthogonality_error(&q).unwrap() <= ORTHOGONALITY_TOL,
                "{a}x{b}"
            );
        }
    }

    #[test]
    fn polar_factor_keeps_singular_vectors() {
        // W = Q diag(s) with Q orthogonal has polar factor Q; check Q is recovered.
        let q = polar_factor(&gaussian(4, 4, 3)).unwrap();
        let s = Tensor::new(&[3.0f64, 1.0, 0.2, 0.05], &candle_core::Device::Cpu).unwrap();
        let w = q.broadcast_mul(&s.reshape((1, 4)).unwrap()).unwrap();
        let back = polar_factor(&w).unwrap();
        let diff = back
            .sub(&q)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(
            diff < 1e-9,
            "polar factor moved the singular vectors by {diff}"
        );
    }

    #[test]
    fn orthogonal_input_is_a_fixed_point() {
        let q = polar_factor(&gaussian(3, 6, 8)).unwrap();
        let again = polar_factor(&q).unwrap();
        let diff = again
            .sub(&q)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(diff < 1e-12);
    }

    #[test]
    fn rank_deficient_input_is_an_error_not_a_panic() {
        let w = Tensor::zeros((3, 3), DType::F64, &candle_core::Device::Cpu).unwrap();
        assert!(polar_factor(&w).is_err());
    }
}
