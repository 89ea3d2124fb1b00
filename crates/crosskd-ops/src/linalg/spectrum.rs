//! Scalar summaries of a singular-value spectrum.

/// Stable rank `Σ_i σ_i² / σ_max²` of a spectrum of singular values (any order, all ≥ 0).
///
/// Lies in `[1, len]` for a nonzero spectrum; the zero or empty spectrum gives 0.
pub fn stable_rank(singular_values: &[f64]) -> f64 {
    let sigma_max = singular_values.iter().fold(0.0_f64, |m, s| m.max(s.abs()));
    if sigma_max == 0.0 {
        return 0.0;
    }
    // Dividing first keeps the sum of squares from overflowing for huge σ.
    singular_values
        .iter()
        .map(|s| (s / sigma_max).powi(2))
        .sum()
}

/// Effective rank `exp(H(p))` with `p_i = σ_i / Σ_j σ_j` and `H(p) = −Σ_i p_i ln p_i`
/// (`0 ln 0 = 0`), as defined by O. Roy and M. Vetterli, "The effective rank: a measure of
/// effective dimensionality", EUSIPCO 2007.
///
/// Lies in `[1, len]` for a nonzero spectrum (`len` exactly when all σ are equal); the zero or
/// empty spectrum, for which the definition does not apply, gives 0. Singular values must be ≥ 0.
pub fn effective_rank(singular_values: &[f64]) -> f64 {
    let total: f64 = singular_values.iter().map(|s| s.abs()).sum();
    if total == 0.0 {
        return 0.0;
    }
    let entropy: f64 = singular_values
        .iter()
        .map(|s| s.abs() / total)
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    entropy.exp()
}
